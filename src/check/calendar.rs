//! Calendars and compliance: building minute windows per weekday from the
//! author's lines, the built-in policy presets, and the checks that compare
//! calendars, strategies and policies with each other.

use super::diagnostics as diag;
use crate::calendar::holidays;
use crate::calendar::schedule::{merge, quiet_pieces, subtract, Schedule};
use crate::diagnostic::Diagnostic;
use crate::ir::{self, Week, Window};
use crate::source::Span;
use crate::syntax::ast;

/// A built-in compliance policy, with the figures of the rule it stands for.
pub struct Preset {
    pub name: &'static str,
    pub summary: &'static str,
    pub us_state: Option<&'static str>,
    pub quiet: Option<(u16, u16)>,
    pub rolling: &'static [(u32, u64)],
    pub limits_count_texts: bool,
    pub min_ring_seconds: Option<u64>,
    /// Weekdays (Monday = bit 0) and windows when calling is allowed at all.
    pub allowed: Option<(u8, &'static [(u16, u16)])>,
    pub no_holidays: Option<&'static str>,
}

const DAY: u64 = 86_400;

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "tcpa",
        summary: "US TCPA: no calls 21:00-08:00 local time; ring at least 15s",
        us_state: None,
        quiet: Some((21 * 60, 8 * 60)),
        rolling: &[],
        limits_count_texts: false,
        min_ring_seconds: Some(15),
        allowed: None,
        no_holidays: None,
    },
    Preset {
        name: "reg_f",
        summary: "US Regulation F (debt collection): at most 7 call attempts per 7 days",
        us_state: None,
        quiet: None,
        rolling: &[(7, 7 * DAY)],
        limits_count_texts: false,
        min_ring_seconds: None,
        allowed: None,
        no_holidays: None,
    },
    Preset {
        name: "florida",
        summary: "Florida: no calls 20:00-08:00 local time; at most 3 attempts per 24h",
        us_state: Some("FL"),
        quiet: Some((20 * 60, 8 * 60)),
        rolling: &[(3, DAY)],
        limits_count_texts: false,
        min_ring_seconds: None,
        allowed: None,
        no_holidays: None,
    },
    Preset {
        name: "oklahoma",
        summary: "Oklahoma: no calls 20:00-08:00 local time; at most 3 attempts per 24h",
        us_state: Some("OK"),
        quiet: Some((20 * 60, 8 * 60)),
        rolling: &[(3, DAY)],
        limits_count_texts: false,
        min_ring_seconds: None,
        allowed: None,
        no_holidays: None,
    },
    Preset {
        name: "maryland",
        summary: "Maryland: no calls 20:00-08:00 local time; at most 3 attempts or texts per 24h",
        us_state: Some("MD"),
        quiet: Some((20 * 60, 8 * 60)),
        rolling: &[(3, DAY)],
        limits_count_texts: true,
        min_ring_seconds: None,
        allowed: None,
        no_holidays: None,
    },
    Preset {
        name: "france",
        summary: "France: Monday to Friday 10:00-13:00 and 14:00-20:00, no public holidays, at most 4 attempts per 30 days",
        us_state: None,
        quiet: None,
        rolling: &[(4, 30 * DAY)],
        limits_count_texts: false,
        min_ring_seconds: None,
        allowed: Some((0x1f, &[(10 * 60, 13 * 60), (14 * 60, 20 * 60)])),
        no_holidays: Some("FR"),
    },
];

/// A policy in force, with where each of its parts was written (for a preset:
/// where the flow names it).
pub struct PolicyInfo {
    pub ir: ir::Policy,
    pub name_span: Span,
    pub quiet_span: Span,
    pub rolling_spans: Vec<Span>,
    pub ring_span: Span,
}

pub fn empty_week() -> Week {
    Default::default()
}

fn overlaps(a: Window, b: Window) -> bool {
    a.start < b.end && b.start < a.end
}

pub fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Checks that a window ends after it starts; returns it as an IR window.
fn window(w: &ast::Window, diags: &mut Vec<Diagnostic>) -> Option<Window> {
    if w.end.node <= w.start.node {
        diags.push(diag::backwards_window(w.span));
        return None;
    }
    Some(Window {
        start: w.start.node,
        end: w.end.node,
    })
}

pub fn build_calendar(cal: &ast::Calendar, diags: &mut Vec<Diagnostic>) -> ir::Calendar {
    let mut weekly = empty_week();
    // Every hours window written so far, per day, to report overlaps once.
    let mut seen: [Vec<(Window, Span)>; 7] = Default::default();
    let mut pauses: Vec<(ast::DaySet, Window)> = Vec::new();
    let mut closed = Vec::new();
    for entry in &cal.entries {
        match entry {
            ast::CalendarEntry::Hours { days, windows, .. } => {
                for w in windows {
                    let Some(win) = window(w, diags) else {
                        continue;
                    };
                    let mut reported = false;
                    for (d, day) in weekly
                        .iter_mut()
                        .enumerate()
                        .filter(|(d, _)| days.node.contains(*d))
                    {
                        if let Some((_, other)) = seen[d].iter().find(|(o, _)| overlaps(*o, win)) {
                            if !reported {
                                diags.push(diag::overlapping_hours(w.span, *other));
                                reported = true;
                            }
                        }
                        seen[d].push((win, w.span));
                        *day = merge(std::mem::take(day).into_iter().chain([win]).collect());
                    }
                }
            }
            ast::CalendarEntry::Pause {
                days, window: w, ..
            } => {
                if let Some(win) = window(w, diags) {
                    pauses.push((days.node, win));
                }
            }
            ast::CalendarEntry::Open { .. } => {}
            ast::CalendarEntry::Closed {
                dates,
                window: w,
                label,
                ..
            } => {
                let win = w.as_ref().and_then(|w| window(w, diags));
                if w.is_some() && win.is_none() {
                    continue;
                }
                for d in dates {
                    closed.push(ir::Closed {
                        date: d.node,
                        window: win,
                        label: label.clone(),
                    });
                }
            }
        }
    }
    let hours_lines = cal
        .entries
        .iter()
        .any(|e| matches!(e, ast::CalendarEntry::Hours { .. }));
    // A calendar read from a file with no `hours` line of its own is open
    // around the clock, less its pauses and the file's closed days.
    if cal.from.is_some() && !hours_lines {
        weekly = [(); 7].map(|()| {
            vec![Window {
                start: 0,
                end: 1440,
            }]
        });
    }
    for (days, cut) in pauses {
        for (_, day) in weekly
            .iter_mut()
            .enumerate()
            .filter(|(d, _)| days.contains(*d))
        {
            *day = subtract(day, cut);
        }
    }
    let hours_written = seen.iter().any(|d| !d.is_empty());
    let hours_rejected = cal.entries.iter().any(|e| match e {
        ast::CalendarEntry::Hours { windows, .. } => {
            windows.iter().any(|w| w.end.node <= w.start.node)
        }
        _ => false,
    });
    if weekly.iter().all(Vec::is_empty) && !hours_rejected {
        let what = if hours_written {
            format!("the calendar `{}`", cal.name.node)
        } else {
            format!("the calendar `{}` has no `hours` line and", cal.name.node)
        };
        diags.push(diag::no_callable_time(cal.name.span, &what));
    }
    let open = cal
        .entries
        .iter()
        .flat_map(|e| match e {
            ast::CalendarEntry::Open { dates, .. } => dates.iter().map(|d| d.node).collect(),
            _ => Vec::new(),
        })
        .collect();
    ir::Calendar {
        name: cal.name.node.clone(),
        weekly,
        closed,
        open,
    }
}

pub fn preset_policy(preset: &Preset, span: Span) -> PolicyInfo {
    let allowed = preset.allowed.map(|(days, windows)| {
        let mut week = empty_week();
        for (_, day) in week
            .iter_mut()
            .enumerate()
            .filter(|(d, _)| days & (1 << d) != 0)
        {
            for &(start, end) in windows {
                *day = merge(
                    std::mem::take(day)
                        .into_iter()
                        .chain([Window { start, end }])
                        .collect(),
                );
            }
        }
        week
    });
    PolicyInfo {
        ir: ir::Policy {
            name: preset.name.to_string(),
            preset: true,
            us_state: preset.us_state.map(str::to_string),
            quiet_hours: preset
                .quiet
                .map(|(start, end)| Window { start, end })
                .into_iter()
                .collect(),
            rolling_limits: preset
                .rolling
                .iter()
                .map(|&(max, per_seconds)| ir::RollingLimit { max, per_seconds })
                .collect(),
            limits_count_texts: preset.limits_count_texts,
            require_consent: false,
            allowed,
            min_ring_seconds: preset.min_ring_seconds,
            no_holidays: preset.no_holidays.map(str::to_string).into_iter().collect(),
            holidays_from_contact: false,
        },
        name_span: span,
        quiet_span: span,
        rolling_spans: vec![span; preset.rolling.len()],
        ring_span: span,
    }
}

pub fn custom_policy(c: &ast::Compliance, diags: &mut Vec<Diagnostic>) -> PolicyInfo {
    let mut info = PolicyInfo {
        ir: ir::Policy {
            name: c.name.node.clone(),
            ..Default::default()
        },
        name_span: c.name.span,
        quiet_span: c.name.span,
        rolling_spans: Vec::new(),
        ring_span: c.name.span,
    };
    for entry in &c.entries {
        match entry {
            ast::ComplianceEntry::QuietHours(w) => {
                if w.start.node == w.end.node {
                    diags.push(diag::backwards_window(w.span));
                    continue;
                }
                info.ir.quiet_hours.push(Window {
                    start: w.start.node,
                    end: w.end.node % 1440,
                });
                info.quiet_span = w.span;
            }
            ast::ComplianceEntry::Rolling { span, max, per } => {
                if max.node == 0 || per.node == 0 {
                    diags.push(diag::invalid_value(
                        *span,
                        "a rolling limit needs a count and a period above zero",
                        "write a limit such as `max attempts 3 per 24h`",
                    ));
                    continue;
                }
                info.ir.rolling_limits.push(ir::RollingLimit {
                    max: max.node,
                    per_seconds: per.node,
                });
                info.rolling_spans.push(*span);
            }
            ast::ComplianceEntry::RequireConsent(_) => info.ir.require_consent = true,
            ast::ComplianceEntry::Allowed { days, windows, .. } => {
                let week = info.ir.allowed.get_or_insert_with(empty_week);
                for w in windows {
                    if let Some(win) = window(w, diags) {
                        for (_, day) in week
                            .iter_mut()
                            .enumerate()
                            .filter(|(d, _)| days.node.contains(*d))
                        {
                            *day = merge(std::mem::take(day).into_iter().chain([win]).collect());
                        }
                    }
                }
            }
            ast::ComplianceEntry::MinRing(d) => {
                info.ir.min_ring_seconds = Some(d.node);
                info.ring_span = d.span;
            }
            ast::ComplianceEntry::NoHolidaysFromContact(_) => {
                info.ir.holidays_from_contact = true;
            }
            ast::ComplianceEntry::NoHolidays(region) => {
                if !holidays::known(&region.node) {
                    let upper = region.node.to_ascii_uppercase();
                    let help = match crate::diagnostic::did_you_mean(
                        &upper,
                        holidays::regions().iter().copied(),
                    ) {
                        _ if holidays::known(&upper) => format!("write it in capitals: \"{upper}\""),
                        Some(code) => format!("did you mean \"{code}\"?"),
                        None => "write an ISO country code such as \"MA\", or a subdivision such as \"US-CA\"".to_string(),
                    };
                    diags.push(diag::invalid_literal(
                        region.span,
                        &format!("there is no public-holiday table for \"{}\"", region.node),
                        &help,
                    ));
                }
                info.ir.no_holidays.push(region.node.clone());
            }
        }
    }
    info
}

/// When dialling may start under a calendar (or at any time without one)
/// and every policy: the calendar's windows, inside every `allowed`, outside
/// every quiet window. The same arithmetic the engine runs on.
pub fn effective_week(calendar: Option<&ir::Calendar>, policies: &[PolicyInfo]) -> Week {
    let refs: Vec<&ir::Policy> = policies.iter().map(|p| &p.ir).collect();
    Schedule::new(calendar, &refs).weekly().clone()
}

/// Whether any of the local times of day can start a dial on some weekday.
pub fn any_time_callable(week: &Week, times: &[u16]) -> bool {
    times
        .iter()
        .any(|&t| week.iter().flatten().any(|w| w.start <= t && t < w.end))
}

/// Calendar `hours` lines against each policy's quiet hours.
pub fn check_hours_against_quiet(
    cal: &ast::Calendar,
    policies: &[PolicyInfo],
    diags: &mut Vec<Diagnostic>,
) {
    for p in policies {
        for q in &p.ir.quiet_hours {
            for entry in &cal.entries {
                let ast::CalendarEntry::Hours { windows, .. } = entry else {
                    continue;
                };
                for w in windows {
                    let win = Window {
                        start: w.start.node,
                        end: w.end.node,
                    };
                    if win.end > win.start
                        && quiet_pieces(*q).iter().any(|piece| overlaps(*piece, win))
                    {
                        if let Some(state) = &p.ir.us_state {
                            let until = format!("{:02}:{:02}", q.start / 60, q.start % 60);
                            diags.push(diag::state_quiet_hours(
                                w.span,
                                p.quiet_span,
                                &p.ir.name,
                                state,
                                &until,
                            ));
                            continue;
                        }
                        diags.push(diag::hours_in_quiet(
                            w.span,
                            p.quiet_span,
                            &p.ir.name,
                            p.ir.preset,
                        ));
                    }
                }
            }
        }
    }
}

/// The first stretch of callable time outside 08:00-21:00, as "HH:MM-HH:MM".
pub fn outside_day(week: &Week) -> Option<String> {
    let day = Window {
        start: 8 * 60,
        end: 21 * 60,
    };
    week.iter()
        .flatten()
        .find(|w| w.start < day.start || w.end > day.end)
        .map(|w| {
            if w.start < day.start {
                format!("{}-{}", hhmm(w.start), hhmm(w.end.min(day.start)))
            } else {
                format!("{}-{}", hhmm(w.start.max(day.end)), hhmm(w.end))
            }
        })
}
