//! Checks that compare when calls may happen: calendars against compliance
//! quiet hours and allowed windows, `retry at` times against the calendar,
//! dial timeouts against ring minimums, and attempt limits against the
//! campaign's length.

use super::calendar::{self, PolicyInfo};
use super::diagnostics as diag;
use super::flow::RetryAt;
use super::scope::Scope;
use super::types::SchemaInfo;
use crate::diagnostic::Diagnostic;
use crate::ir::{self, Type};
use crate::source::{Span, Spanned};
use crate::syntax::ast;

pub struct Timing<'a> {
    pub flow: &'a ast::Flow,
    pub calendars: &'a [ir::Calendar],
    pub scope: &'a Scope<'a>,
    pub arms: &'a [ir::Arm],
    pub policies: &'a [PolicyInfo],
    pub retry_at: &'a [RetryAt],
    pub dial_timeouts: &'a [(u64, Span)],
    pub start: Option<&'a Spanned<ast::DateTime>>,
    pub stop: Option<&'a Spanned<ast::DateTime>>,
    pub max_per_day: Option<&'a Spanned<u32>>,
    pub schema: &'a SchemaInfo,
}

impl Timing<'_> {
    pub fn check(&self, diags: &mut Vec<Diagnostic>) {
        let mut calendars: Vec<Option<usize>> = self.arms.iter().map(|a| a.calendar).collect();
        calendars.sort();
        calendars.dedup();
        let mut warned_no_policy = false;
        for &cal in &calendars {
            let week = calendar::effective_week(cal.map(|c| &self.calendars[c]), self.policies);
            if let Some(c) = cal {
                let ast_cal = self.scope.calendars.items[c];
                calendar::check_hours_against_quiet(ast_cal, self.policies, diags);
                let own_empty = self.calendars[c].weekly.iter().all(Vec::is_empty);
                if week.iter().all(Vec::is_empty) && !own_empty {
                    diags.push(diag::no_callable_time(
                        ast_cal.name.span,
                        &format!(
                            "the calendar `{}` under the flow's compliance policies",
                            ast_cal.name.node
                        ),
                    ));
                }
                self.closed_before_start(ast_cal, diags);
            } else if week.iter().all(Vec::is_empty) {
                diags.push(diag::no_callable_time(
                    self.flow.name.span,
                    "the flow's compliance policies",
                ));
            }
            if let Some(span) = self.campaign_never_callable(&week) {
                diags.push(diag::campaign_never_callable(
                    span,
                    self.start.map_or(span, |s| s.span),
                ));
            }
            if self.policies.is_empty() && !warned_no_policy {
                if let Some(window) = calendar::outside_day(&week) {
                    let span = cal.map_or(self.flow.name.span, |c| {
                        self.scope.calendars.items[c].name.span
                    });
                    diags.push(diag::no_compliance(span, &window));
                    warned_no_policy = true;
                }
            }
        }
        self.retry_times(diags);
        self.ring(diags);
        self.consent(diags);
        self.limits(diags);
    }

    /// The `stop` setting's span when no minute between `start` and `stop`
    /// (local times) is callable under `week`; weeks with no callable time at
    /// all are reported elsewhere.
    fn campaign_never_callable(&self, week: &ir::Week) -> Option<Span> {
        use chrono::{Datelike, Timelike};
        let (start, stop) = (self.start?, self.stop?);
        let (from, to) = (start.node.local, stop.node.local);
        if to <= from || week.iter().all(Vec::is_empty) {
            return None;
        }
        let minute = |t: chrono::NaiveDateTime| (t.hour() * 60 + t.minute()) as u16;
        let mut day = from.date();
        // Past a week every weekday has come round once.
        for _ in 0..8 {
            if day > to.date() {
                break;
            }
            let lo = if day == from.date() { minute(from) } else { 0 };
            let hi = if day == to.date() { minute(to) } else { 1440 };
            let weekday = day.weekday().num_days_from_monday() as usize;
            if week[weekday]
                .iter()
                .any(|w| w.start.max(lo) < w.end.min(hi))
            {
                return None;
            }
            day = day.succ_opt()?;
        }
        if (to.date() - from.date()).num_days() >= 7 {
            return None;
        }
        Some(stop.span)
    }

    fn closed_before_start(&self, cal: &ast::Calendar, diags: &mut Vec<Diagnostic>) {
        let Some(start) = self.start else { return };
        for entry in &cal.entries {
            if let ast::CalendarEntry::Closed { dates, .. } = entry {
                // A calendar file's past events are history, not a mistake.
                let written = |d: &&crate::source::Spanned<chrono::NaiveDate>| {
                    d.span.file == cal.name.span.file
                };
                for d in dates
                    .iter()
                    .filter(written)
                    .filter(|d| d.node < start.node.local.date())
                {
                    diags.push(diag::closed_before_start(d.span, start.span));
                }
            }
        }
    }

    fn retry_times(&self, diags: &mut Vec<Diagnostic>) {
        let mut checks: Vec<(Vec<u16>, Span, Vec<usize>)> = self
            .retry_at
            .iter()
            .map(|r| (r.times.clone(), r.span, r.arms.clone()))
            .collect();
        for (s, strategy) in self.scope.strategies.items.iter().enumerate() {
            let arms: Vec<usize> = (0..self.arms.len())
                .filter(|a| self.arms[*a].strategy == Some(s))
                .collect();
            if arms.is_empty() {
                continue;
            }
            for rule in &strategy.rules {
                if let ast::RuleAction::Retry { form, .. } = &rule.action {
                    if let ast::RetryForm::At(times) | ast::RetryForm::NextDayAt(times) = &form.node
                    {
                        checks.push((
                            times.iter().map(|t| t.node).collect(),
                            form.span,
                            arms.clone(),
                        ));
                    }
                }
            }
        }
        for (times, span, arms) in checks {
            for arm in arms {
                let cal = self.arms[arm].calendar;
                let week = calendar::effective_week(cal.map(|c| &self.calendars[c]), self.policies);
                if week.iter().all(Vec::is_empty) {
                    continue; // Reported as a calendar without callable time.
                }
                if !calendar::any_time_callable(&week, &times) {
                    let named = cal.map(|c| {
                        (
                            self.scope.calendars.items[c].name.node.as_str(),
                            self.scope.calendars.items[c].name.span,
                        )
                    });
                    diags.push(diag::retry_at_never_callable(span, named));
                    break;
                }
            }
        }
    }

    fn ring(&self, diags: &mut Vec<Diagnostic>) {
        for p in self.policies {
            let Some(min) = p.ir.min_ring_seconds else {
                continue;
            };
            for &(seconds, span) in self.dial_timeouts.iter().filter(|(s, _)| *s < min) {
                diags.push(
                    diag::ring_too_short(span, seconds, min, &p.ir.name)
                        .secondary(p.ring_span, "the policy"),
                );
            }
        }
    }

    fn consent(&self, diags: &mut Vec<Diagnostic>) {
        let has_field = self
            .schema
            .field("consent")
            .is_some_and(|t| *t == Type::Bool);
        if has_field {
            return;
        }
        for p in self.policies.iter().filter(|p| p.ir.require_consent) {
            let span = self
                .scope
                .compliances
                .items
                .iter()
                .find(|c| c.name.node == p.ir.name)
                .and_then(|c| {
                    c.entries.iter().find_map(|e| match e {
                        ast::ComplianceEntry::RequireConsent(s) => Some(*s),
                        _ => None,
                    })
                })
                .unwrap_or(p.name_span);
            diags.push(diag::consent_without_field(span, self.schema.span));
        }
    }

    /// Whether each arm's `max attempts` fits in the campaign under the rolling
    /// and daily limits: N per D allows at most N·⌈L/D⌉ dials in a campaign of length L.
    fn limits(&self, diags: &mut Vec<Diagnostic>) {
        let (Some(start), Some(stop)) = (self.start, self.stop) else {
            return;
        };
        let length = (stop.node.local - start.node.local).num_seconds();
        if length <= 0 {
            return;
        }
        let length = length as u64;
        let mut strategies: Vec<usize> = self.arms.iter().filter_map(|a| a.strategy).collect();
        strategies.sort();
        strategies.dedup();
        for s in strategies {
            let Some(attempts) = self.scope.strategies.items[s].max_attempts.as_ref() else {
                continue;
            };
            let mut tightest: Option<(u64, Span, String)> = None;
            for p in self.policies {
                for (limit, span) in p.ir.rolling_limits.iter().zip(&p.rolling_spans) {
                    let allowed = u64::from(limit.max) * length.div_ceil(limit.per_seconds);
                    if tightest.as_ref().is_none_or(|t| allowed < t.0) {
                        let why = format!(
                            "{} per {} over a campaign of {}",
                            limit.max,
                            human_duration(limit.per_seconds),
                            human_duration(length)
                        );
                        tightest = Some((allowed, *span, why));
                    }
                }
            }
            if let Some(per_day) = self.max_per_day {
                let days = (stop.node.local.date() - start.node.local.date())
                    .num_days()
                    .max(0) as u64
                    + 1;
                let allowed = u64::from(per_day.node) * days;
                if tightest.as_ref().is_none_or(|t| allowed < t.0) {
                    tightest = Some((
                        allowed,
                        per_day.span,
                        format!("{} per day over {} day(s)", per_day.node, days),
                    ));
                }
            }
            if let Some((allowed, span, why)) = tightest {
                if u64::from(attempts.node) > allowed {
                    diags.push(diag::strategy_impossible(
                        attempts.span,
                        attempts.node,
                        allowed,
                        span,
                        &why,
                    ));
                }
            }
        }
    }
}

pub fn human_duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}
