//! Reports: what the field measures, from what happened to each contact.
//! JSON names follow the seed platform's API (camelCase); rates are percents.

use std::collections::BTreeMap;

use chrono::{Datelike, Timelike};
use serde::Serialize;

use crate::ir::{self, Outcome};
use crate::runtime::engine::ContactResult;

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub total_contacts: u64,
    pub contacts_completed: u64,
    pub contacts_failed: u64,
    pub contacts_skipped: u64,
    pub contacts_pending: u64,
    pub contacts_in_progress: u64,
    /// Completed contacts over all contacts, in percent.
    pub connection_rate: f64,
    pub calls_used: u64,
    /// Attempts per completed contact.
    pub average_attempts: f64,
    /// Of the contacts whose first attempt was not answered, the share that
    /// completed later, in percent.
    pub retry_conversion_rate: f64,
    pub per_attempt: Vec<PerAttempt>,
    pub outcomes: BTreeMap<String, u64>,
    pub by_hour: Vec<Bucket>,
    pub by_weekday: Vec<Bucket>,
    pub end_reasons: BTreeMap<String, u64>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PerAttempt {
    pub attempt: u32,
    pub dialled: u64,
    pub answered: u64,
    pub connection_rate: f64,
}

/// Attempts grouped by the contact's local hour or weekday.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub key: String,
    pub dialled: u64,
    pub answered: u64,
    pub connection_rate: f64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArmReport {
    pub arm: String,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Two-proportion test of this arm's connection rate against the first
    /// arm's: the two-sided p-value (absent for the first arm).
    pub p_value: Option<f64>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(flatten)]
    pub metrics: Metrics,
    pub arms: Vec<ArmReport>,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 10_000.0 / whole as f64).round() / 100.0
    }
}

pub fn metrics(contacts: &[&ContactResult]) -> Metrics {
    let total = contacts.len() as u64;
    let completed: Vec<&&ContactResult> = contacts
        .iter()
        .filter(|c| c.state() == "completed")
        .collect();
    let skipped = contacts.iter().filter(|c| c.state() == "skipped").count() as u64;
    let pending = contacts.iter().filter(|c| c.state() == "pending").count() as u64;
    let in_progress = contacts
        .iter()
        .filter(|c| c.state() == "in_progress")
        .count() as u64;
    let failed = total - completed.len() as u64 - skipped - pending - in_progress;
    let calls: u64 = contacts.iter().map(|c| c.attempts.len() as u64).sum();
    let completed_attempts: u64 = completed.iter().map(|c| c.attempts.len() as u64).sum();
    let first_missed: Vec<&&ContactResult> = contacts
        .iter()
        .filter(|c| {
            c.attempts
                .first()
                .is_some_and(|a| a.outcome != Outcome::Answered)
        })
        .collect();
    let converted = first_missed
        .iter()
        .filter(|c| c.state() == "completed")
        .count() as u64;

    let mut per_attempt: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_hour: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut by_weekday: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for c in contacts {
        for a in &c.attempts {
            let answered = u64::from(a.outcome == Outcome::Answered);
            let e = per_attempt.entry(a.number).or_default();
            e.0 += 1;
            e.1 += answered;
            *outcomes.entry(a.outcome.name().to_string()).or_default() += 1;
            let local = a.started_at.with_timezone(&c.zone);
            let h = by_hour.entry(local.hour()).or_default();
            h.0 += 1;
            h.1 += answered;
            let w = by_weekday
                .entry(local.weekday().num_days_from_monday() as usize)
                .or_default();
            w.0 += 1;
            w.1 += answered;
        }
    }
    let mut end_reasons: BTreeMap<String, u64> = BTreeMap::new();
    for c in contacts {
        *end_reasons
            .entry(format!("{}: {}", c.state(), c.reason()))
            .or_default() += 1;
    }
    let bucket = |key: String, (d, a): (u64, u64)| Bucket {
        key,
        dialled: d,
        answered: a,
        connection_rate: percent(a, d),
    };
    Metrics {
        total_contacts: total,
        contacts_completed: completed.len() as u64,
        contacts_failed: failed,
        contacts_skipped: skipped,
        contacts_pending: pending,
        contacts_in_progress: in_progress,
        connection_rate: percent(completed.len() as u64, total),
        calls_used: calls,
        average_attempts: if completed.is_empty() {
            0.0
        } else {
            (completed_attempts as f64 / completed.len() as f64 * 100.0).round() / 100.0
        },
        retry_conversion_rate: percent(converted, first_missed.len() as u64),
        per_attempt: per_attempt
            .into_iter()
            .map(|(attempt, (d, a))| PerAttempt {
                attempt,
                dialled: d,
                answered: a,
                connection_rate: percent(a, d),
            })
            .collect(),
        outcomes,
        by_hour: by_hour
            .into_iter()
            .map(|(h, v)| bucket(format!("{h:02}"), v))
            .collect(),
        by_weekday: by_weekday
            .into_iter()
            .map(|(w, v)| bucket(WEEKDAYS[w].to_string(), v))
            .collect(),
        end_reasons,
    }
}

/// The complementary error function (Abramowitz and Stegun 7.1.26, error below 1.5e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let r = poly * (-z * z).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Two-sided p-value that two completion rates differ (pooled two-proportion z-test).
pub fn two_proportion_p(a_success: u64, a_total: u64, b_success: u64, b_total: u64) -> Option<f64> {
    if a_total == 0 || b_total == 0 {
        return None;
    }
    let (p1, p2) = (
        a_success as f64 / a_total as f64,
        b_success as f64 / b_total as f64,
    );
    let pooled = (a_success + b_success) as f64 / (a_total + b_total) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / a_total as f64 + 1.0 / b_total as f64)).sqrt();
    if se == 0.0 {
        return Some(1.0);
    }
    Some(erfc(((p1 - p2) / se).abs() / std::f64::consts::SQRT_2))
}

pub fn report(flow: &ir::Flow, contacts: &[ContactResult]) -> Report {
    let all: Vec<&ContactResult> = contacts.iter().collect();
    let mut arms = Vec::new();
    if flow.experiment.is_some() {
        let per_arm: Vec<Vec<&ContactResult>> = (0..flow.arms.len())
            .map(|a| contacts.iter().filter(|c| c.arm == a).collect())
            .collect();
        let first = metrics(&per_arm[0]);
        for (a, list) in per_arm.iter().enumerate() {
            let m = metrics(list);
            let p_value = (a > 0)
                .then(|| {
                    two_proportion_p(
                        m.contacts_completed,
                        m.total_contacts,
                        first.contacts_completed,
                        first.total_contacts,
                    )
                })
                .flatten();
            arms.push(ArmReport {
                arm: flow.arms[a].name.clone(),
                metrics: m,
                p_value,
            });
        }
    }
    Report {
        metrics: metrics(&all),
        arms,
    }
}

impl Report {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let m = &self.metrics;
        let mut out = String::new();
        out.push_str(&format!(
            "contacts {}: {} completed, {} failed, {} skipped\n",
            m.total_contacts, m.contacts_completed, m.contacts_failed, m.contacts_skipped
        ));
        out.push_str(&format!(
            "connection rate {:.2}%   calls used {}   average attempts per completed contact {:.2}   retry conversion {:.2}%\n",
            m.connection_rate, m.calls_used, m.average_attempts, m.retry_conversion_rate
        ));
        out.push_str("\nattempt   dialled  answered  connection\n");
        for p in &m.per_attempt {
            out.push_str(&format!(
                "{:>7} {:>9} {:>9} {:>10.2}%\n",
                p.attempt, p.dialled, p.answered, p.connection_rate
            ));
        }
        out.push_str("\noutcomes: ");
        out.push_str(
            &m.outcomes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push_str("\nby local hour: ");
        out.push_str(
            &m.by_hour
                .iter()
                .map(|b| format!("{} {:.0}%", b.key, b.connection_rate))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push_str("\nby weekday: ");
        out.push_str(
            &m.by_weekday
                .iter()
                .map(|b| format!("{} {:.0}%", b.key, b.connection_rate))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
        if !self.arms.is_empty() {
            out.push_str(
                "\narm           contacts  completed  connection  calls  p-value vs first\n",
            );
            for a in &self.arms {
                out.push_str(&format!(
                    "{:<12} {:>9} {:>10} {:>10.2}% {:>6}  {}\n",
                    a.arm,
                    a.metrics.total_contacts,
                    a.metrics.contacts_completed,
                    a.metrics.connection_rate,
                    a.metrics.calls_used,
                    a.p_value.map_or("-".to_string(), |p| format!("{p:.4}"))
                ));
            }
        }
        out
    }
}

/// Contacts with their attempt history, one CSV row each (`flowc report
/// --format csv`): number, list line, zone, arm, state, reason, attempts,
/// the history as `N outcome local-time` items separated by `; `, and the
/// steps visited. `only_failed` keeps the failed contacts.
pub fn contacts_csv(flow: &ir::Flow, contacts: &[ContactResult], only_failed: bool) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "phone", "line", "zone", "arm", "state", "reason", "attempts", "history", "path",
    ]);
    for c in contacts
        .iter()
        .filter(|c| !only_failed || c.state() == "failed")
    {
        let history: Vec<String> = c
            .attempts
            .iter()
            .map(|a| {
                format!(
                    "{} {} {}",
                    a.number,
                    a.outcome.name(),
                    a.started_at.with_timezone(&c.zone).format("%Y-%m-%d %H:%M")
                )
            })
            .collect();
        let path: Vec<&str> = c
            .path
            .iter()
            .map(|s| flow.steps[*s].name.as_str())
            .collect();
        let _ = w.write_record([
            c.phone.as_str(),
            &c.line.to_string(),
            c.zone.name(),
            &flow.arms[c.arm].name,
            c.state(),
            c.reason(),
            &c.attempts.len().to_string(),
            &history.join("; "),
            &path.join(" > "),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}
