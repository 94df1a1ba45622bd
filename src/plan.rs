//! `flowc plan`: what a flow's strategies and calendars mean in time, as an
//! author reads it. Each strategy's attempt timeline, and the callable
//! windows of the coming week in one zone with closures and quiet hours.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::calendar::{holidays, retry, Schedule};
use crate::ir::{self, RetryForm, StrategyRule};

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub flow: String,
    pub zone: String,
    /// Local date and time the week starts at.
    pub from: String,
    pub strategies: Vec<StrategyPlan>,
    pub calendars: Vec<CalendarPlan>,
    pub quiet_hours: Vec<Quiet>,
    /// Whether a policy closes each contact's own public holidays.
    pub holidays_from_contact: bool,
    /// For `no holidays from contact`: the contact's country (and state)
    /// whose public holidays the week shows, or none when not given.
    pub contact_region: Option<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StrategyPlan {
    /// `none` when an arm runs without a strategy.
    pub name: String,
    pub arms: Vec<String>,
    pub max_attempts: Option<u32>,
    pub min_gap_seconds: u64,
    pub jitter_percent: f64,
    /// One entry per attempt after the first: what each outcome of the
    /// attempt before leads to.
    pub timeline: Vec<Step>,
    /// Outcomes the strategy stops on.
    pub stops: Vec<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub attempt: u32,
    pub after: Vec<Wait>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    pub outcome: String,
    /// How an author reads it: "≥15m later", "at 10:00, 14:00", "next day at 10:00".
    pub wait: String,
    /// For delay forms, the minimum delay before jitter.
    pub delay_seconds: Option<u64>,
    /// The retries this rule may still cause (`max N` on the rule).
    pub rule_max: Option<u32>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct CalendarPlan {
    /// `none` when arms run without a calendar (every hour, less quiet hours).
    pub name: String,
    pub arms: Vec<String>,
    pub days: Vec<Day>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    pub date: NaiveDate,
    pub weekday: String,
    /// Callable windows, local `HH:MM`.
    pub windows: Vec<Span>,
    pub closed: Vec<Closure>,
}

#[derive(Serialize, Debug)]
pub struct Span {
    pub start: String,
    pub end: String,
}

#[derive(Serialize, Debug)]
pub struct Closure {
    pub start: String,
    pub end: String,
    pub label: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct Quiet {
    pub policy: String,
    pub start: String,
    pub end: String,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn human(seconds: u64) -> String {
    crate::check::human_duration(seconds)
}

fn wait_text(form: &RetryForm, nth: u32) -> (String, Option<u64>) {
    match form {
        RetryForm::After { .. } | RetryForm::Backoff { .. } => {
            let d = retry::delay(form, nth).map_or(0, |d| d.num_seconds().max(0) as u64);
            (format!("≥{} later", human(d)), Some(d))
        }
        RetryForm::At { times } => (
            format!(
                "at {}",
                times
                    .iter()
                    .map(|t| hhmm(*t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        ),
        RetryForm::NextDayAt { times } => (
            format!(
                "next day at {}",
                times
                    .iter()
                    .map(|t| hhmm(*t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        ),
        RetryForm::On { instants } => (
            format!(
                "on {}",
                instants
                    .iter()
                    .map(|i| i.local.format("%Y-%m-%d %H:%M").to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        ),
    }
}

/// The attempts a plan shows when a strategy sets no bound.
const UNBOUNDED_SHOWN: u32 = 5;

fn strategy_plan(s: Option<&ir::Strategy>, arms: Vec<String>) -> StrategyPlan {
    let Some(s) = s else {
        return StrategyPlan {
            name: "none".into(),
            arms,
            max_attempts: None,
            min_gap_seconds: 0,
            jitter_percent: 0.0,
            timeline: vec![],
            stops: vec![],
        };
    };
    let last = s.max_attempts.unwrap_or(UNBOUNDED_SHOWN);
    let mut timeline = Vec::new();
    for attempt in 2..=last {
        let nth = attempt - 1;
        let after: Vec<Wait> = s
            .rules
            .iter()
            .filter_map(|(outcome, rule)| match rule {
                StrategyRule::Retry { form, max } => {
                    // A rule with `max N` has caused at most N retries by now.
                    if max.is_some_and(|m| nth > m) {
                        return None;
                    }
                    let (wait, delay_seconds) = wait_text(form, nth);
                    Some(Wait {
                        outcome: outcome.name().into(),
                        wait,
                        delay_seconds,
                        rule_max: *max,
                    })
                }
                StrategyRule::Stop => None,
            })
            .collect();
        timeline.push(Step { attempt, after });
    }
    let stops = s
        .rules
        .iter()
        .filter(|(_, r)| matches!(r, StrategyRule::Stop))
        .map(|(o, _)| o.name().to_string())
        .collect();
    StrategyPlan {
        name: s.name.clone(),
        arms,
        max_attempts: s.max_attempts,
        min_gap_seconds: s.min_gap_seconds,
        jitter_percent: s.jitter_percent,
        timeline,
        stops,
    }
}

fn closures(
    cal: Option<&ir::Calendar>,
    policies: &[&ir::Policy],
    contact: &ir::Policy,
    date: NaiveDate,
) -> Vec<Closure> {
    let mut out: Vec<Closure> = cal
        .map(|c| c.closed.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.date == date)
        .map(|c| {
            let w = c.window.unwrap_or(ir::Window {
                start: 0,
                end: 1440,
            });
            Closure {
                start: hhmm(w.start),
                end: hhmm(w.end),
                label: c.label.clone(),
            }
        })
        .collect();
    // A date the calendar opens (`open DATE`) is worked despite a holiday.
    if cal.is_some_and(|c| c.open.contains(&date)) {
        return out;
    }
    for p in policies.iter().copied().chain([contact]) {
        let on = |r: &str| p.no_holidays.iter().any(|x| x == r) && holidays::is_holiday(r, date);
        // A subdivision's table holds its country's holidays too: a national
        // holiday is shown once, under the country.
        for region in p
            .no_holidays
            .iter()
            .filter(|r| on(r) && r.split_once('-').is_none_or(|(country, _)| !on(country)))
        {
            out.push(Closure {
                start: hhmm(0),
                end: hhmm(1440),
                label: Some(format!("public holiday ({region}, {})", p.name)),
            });
        }
    }
    out
}

/// The regions whose holidays `no holidays from contact` closes for a
/// contact of `region` (`US-CA` is the United States and California).
fn contact_holidays(region: Option<&str>) -> Vec<String> {
    let Some(region) = region else {
        return Vec::new();
    };
    let country = region.split('-').next().unwrap_or(region).to_string();
    let mut out = vec![country.clone()];
    if region != country {
        out.push(region.to_string());
    }
    out.retain(|r| holidays::known(r));
    out
}

/// The plan of a flow for a zone, over the week starting at `from`. The
/// `region` (`US-CA`) is the contact's, for `no holidays from contact`.
pub fn plan(flow: &ir::Flow, zone: Tz, from: DateTime<Utc>, region: Option<&str>) -> Plan {
    let policies: Vec<&ir::Policy> = flow.compliance.policies.iter().collect();
    let from_contact = policies.iter().any(|p| p.holidays_from_contact);
    // The contact's own holidays, as one more policy (as the engine does).
    let contact = ir::Policy {
        name: "from contact".into(),
        no_holidays: if from_contact {
            contact_holidays(region)
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let with_contact: Vec<&ir::Policy> = policies.iter().copied().chain([&contact]).collect();
    let mut by_strategy: BTreeMap<Option<usize>, Vec<String>> = BTreeMap::new();
    let mut by_calendar: BTreeMap<Option<usize>, Vec<String>> = BTreeMap::new();
    for arm in &flow.arms {
        by_strategy
            .entry(arm.strategy)
            .or_default()
            .push(arm.name.clone());
        by_calendar
            .entry(arm.calendar)
            .or_default()
            .push(arm.name.clone());
    }
    let strategies = by_strategy
        .into_iter()
        .map(|(s, arms)| strategy_plan(s.map(|i| &flow.strategies[i]), arms))
        .collect();
    let start_date = from.with_timezone(&zone).date_naive();
    let calendars = by_calendar
        .into_iter()
        .map(|(c, arms)| {
            let cal = c.map(|i| &flow.calendars[i]);
            let schedule = Schedule::new(cal, &with_contact);
            let stretches = schedule.stretches(from, from + Duration::days(7), &[zone]);
            let days = (0..7)
                .filter_map(|d| start_date.checked_add_days(chrono::Days::new(d)))
                .map(|date| {
                    let windows = stretches
                        .iter()
                        .filter_map(|s| {
                            let (a, b) = (s.start.with_timezone(&zone), s.end.with_timezone(&zone));
                            let day_start = if a.date_naive() == date {
                                Some(a.time())
                            } else if a.date_naive() < date {
                                Some(chrono::NaiveTime::MIN)
                            } else {
                                None
                            }?;
                            if b.date_naive() < date {
                                return None;
                            }
                            let end = if b.date_naive() == date {
                                b.format("%H:%M").to_string()
                            } else {
                                "24:00".into()
                            };
                            Some(Span {
                                start: day_start.format("%H:%M").to_string(),
                                end,
                            })
                        })
                        .filter(|s| s.start != s.end)
                        .collect();
                    Day {
                        date,
                        weekday: WEEKDAYS[date.weekday().num_days_from_monday() as usize].into(),
                        windows,
                        closed: closures(cal, &policies, &contact, date),
                    }
                })
                .collect();
            CalendarPlan {
                name: cal.map_or("none".into(), |c| c.name.clone()),
                arms,
                days,
            }
        })
        .collect();
    let quiet_hours = policies
        .iter()
        .flat_map(|p| {
            p.quiet_hours.iter().map(|q| Quiet {
                policy: p.name.clone(),
                start: hhmm(q.start),
                end: hhmm(q.end),
            })
        })
        .collect();
    Plan {
        flow: flow.name.clone(),
        zone: zone.name().to_string(),
        from: from
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        strategies,
        calendars,
        quiet_hours,
        contact_region: region.filter(|_| from_contact).map(str::to_string),
        holidays_from_contact: from_contact,
    }
}

impl Plan {
    /// The plan as an author reads it.
    pub fn render(&self) -> String {
        let mut out = format!(
            "flow {}: the coming week in {}, from {}\n",
            self.flow, self.zone, self.from
        );
        for s in &self.strategies {
            out.push_str(&format!(
                "\nstrategy {} (arms: {})\n",
                s.name,
                s.arms.join(", ")
            ));
            match s.max_attempts {
                Some(n) => out.push_str(&format!("  at most {n} attempt(s)")),
                None if s.name == "none" => {
                    out.push_str("  no strategy: outcomes are routed by the flow only")
                }
                None => out.push_str("  no attempt bound"),
            }
            if s.min_gap_seconds > 0 {
                out.push_str(&format!(
                    "; at least {} between two dials",
                    human(s.min_gap_seconds)
                ));
            }
            if s.jitter_percent > 0.0 {
                out.push_str(&format!("; delays spread by up to {}%", s.jitter_percent));
            }
            out.push('\n');
            out.push_str("  attempt 1: at the first callable instant\n");
            for step in &s.timeline {
                let parts: Vec<String> = step
                    .after
                    .iter()
                    .map(|w| match w.rule_max {
                        Some(m) => format!("{} → {} (at most {m} by this rule)", w.outcome, w.wait),
                        None => format!("{} → {}", w.outcome, w.wait),
                    })
                    .collect();
                let text = if parts.is_empty() {
                    "no rule retries".to_string()
                } else {
                    parts.join("; ")
                };
                out.push_str(&format!("  attempt {}: {text}\n", step.attempt));
            }
            if !s.stops.is_empty() {
                out.push_str(&format!("  {} → stop\n", s.stops.join(", ")));
            }
        }
        for c in &self.calendars {
            out.push_str(&format!(
                "\ncallable windows, calendar {} (arms: {})\n",
                c.name,
                c.arms.join(", ")
            ));
            for d in &c.days {
                let windows = if d.windows.is_empty() {
                    "—".to_string()
                } else {
                    d.windows
                        .iter()
                        .map(|w| format!("{}-{}", w.start, w.end))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                out.push_str(&format!("  {} {}  {windows}", d.weekday, d.date));
                for cl in &d.closed {
                    let label = cl
                        .label
                        .as_deref()
                        .map(|l| format!(" \"{l}\""))
                        .unwrap_or_default();
                    out.push_str(&format!("   closed {}-{}{label}", cl.start, cl.end));
                }
                out.push('\n');
            }
        }
        if self.holidays_from_contact {
            match &self.contact_region {
                Some(r) => out.push_str(&format!(
                    "\npublic holidays: each contact's own (`no holidays from contact`); shown for a contact in {r}\n"
                )),
                None => out.push_str(
                    "\npublic holidays: each contact's own (`no holidays from contact`), not shown; see a country's with --region, such as --region US-CA\n",
                ),
            }
        }
        for q in &self.quiet_hours {
            out.push_str(&format!(
                "\nquiet hours ({}): {}-{}, local time\n",
                q.policy, q.start, q.end
            ));
        }
        out
    }
}
