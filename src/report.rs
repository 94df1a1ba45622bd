//! Reports: what the field measures, from what happened to each contact.
//! JSON names follow the seed platform's API (camelCase); rates are percents.

use std::collections::BTreeMap;

use chrono::{Datelike, Timelike};
use serde::Serialize;

use crate::contacts::{spreadsheet_safe, Contact};
use crate::ir::{self, Outcome};
use crate::record::{ContactResult, Status};
use crate::store::StoredMessage;

pub mod html;
pub mod patterns;
pub use patterns::{failure_patterns, Pattern};

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub total_contacts: u64,
    pub contacts_completed: u64,
    pub contacts_failed: u64,
    pub contacts_skipped: u64,
    pub contacts_pending: u64,
    pub contacts_in_progress: u64,
    /// Completed contacts over all contacts, in percent (the seed
    /// platform's definition).
    pub connection_rate: f64,
    /// Contacts that ended: completed, failed or skipped.
    pub contacts_finished: u64,
    /// Completed contacts over finished ones, in percent.
    pub connection_rate_of_finished: f64,
    pub calls_used: u64,
    /// Attempts per completed contact.
    pub average_attempts: f64,
    /// Of the contacts whose first attempt did not reach them (it was not
    /// answered, nor a voicemail that completed the contact), the share
    /// reached on a later attempt, in percent.
    pub retry_conversion_rate: f64,
    /// The contacts whose first attempt did not reach them.
    pub first_attempt_missed: u64,
    /// Of those, the ones a later attempt reached.
    pub reached_on_retry: u64,
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
    /// Two-proportion test of this arm's connection rate (of finished
    /// contacts) against the first arm's: the two-sided p-value; `null`
    /// for the first arm and when a side has no finished contact.
    pub p_value: Option<f64>,
    /// Why there is no p-value, when there is none.
    pub p_value_note: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(flatten)]
    pub metrics: Metrics,
    pub arms: Vec<ArmReport>,
    /// Where failures concentrate (`Report::with_patterns`; empty without it).
    pub failure_patterns: Vec<Pattern>,
}

impl Report {
    /// Adds the failure patterns, which need the contacts' list (`list` and
    /// `contacts` in the same order).
    pub fn with_patterns(
        self,
        flow: &ir::Flow,
        list: &[Contact],
        contacts: &[ContactResult],
    ) -> Report {
        self.with(failure_patterns(flow, list, contacts))
    }

    /// The report with failure patterns found apart.
    pub fn with(mut self, patterns: Vec<Pattern>) -> Report {
        self.failure_patterns = patterns;
        self
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 10_000.0 / whole as f64).round() / 100.0
    }
}

/// Whether an attempt reached its contact: answered, or a voicemail that
/// completed the contact (its last attempt, and the contact completed).
fn reached(c: &ContactResult, k: usize) -> bool {
    let a = &c.attempts[k];
    a.outcome == Outcome::Answered
        || (a.outcome == Outcome::Voicemail
            && k + 1 == c.attempts.len()
            && c.status() == Status::Completed)
}

pub fn metrics(contacts: &[&ContactResult]) -> Metrics {
    let total = contacts.len() as u64;
    let count = |status: Status| contacts.iter().filter(|c| c.status() == status).count() as u64;
    let completed: Vec<&&ContactResult> = contacts
        .iter()
        .filter(|c| c.status() == Status::Completed)
        .collect();
    let skipped = count(Status::Skipped);
    let pending = count(Status::Pending);
    let in_progress = count(Status::InProgress);
    let failed = count(Status::Failed);
    let finished = completed.len() as u64 + failed + skipped;
    let calls: u64 = contacts.iter().map(|c| c.attempts.len() as u64).sum();
    let completed_attempts: u64 = completed.iter().map(|c| c.attempts.len() as u64).sum();
    let first_missed: Vec<&&ContactResult> = contacts
        .iter()
        .filter(|c| !c.attempts.is_empty() && !reached(c, 0))
        .collect();
    let converted = first_missed
        .iter()
        .filter(|c| (1..c.attempts.len()).any(|k| reached(c, k)))
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
            .entry(format!("{}: {}", c.status(), c.reason()))
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
        contacts_finished: finished,
        connection_rate_of_finished: percent(completed.len() as u64, finished),
        calls_used: calls,
        average_attempts: if completed.is_empty() {
            0.0
        } else {
            (completed_attempts as f64 / completed.len() as f64 * 100.0).round() / 100.0
        },
        retry_conversion_rate: percent(converted, first_missed.len() as u64),
        first_attempt_missed: first_missed.len() as u64,
        reached_on_retry: converted,
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
            let (p_value, p_value_note) = if a == 0 {
                (
                    None,
                    Some("the arms are compared with this one".to_string()),
                )
            } else if m.contacts_finished == 0 || first.contacts_finished == 0 {
                let which = if m.contacts_finished == 0 {
                    flow.arms[a].name.as_str()
                } else {
                    flow.arms[0].name.as_str()
                };
                (
                    None,
                    Some(format!(
                        "no test: the arm `{which}` has no finished contact yet"
                    )),
                )
            } else {
                (
                    two_proportion_p(
                        m.contacts_completed,
                        m.contacts_finished,
                        first.contacts_completed,
                        first.contacts_finished,
                    ),
                    None,
                )
            };
            arms.push(ArmReport {
                arm: flow.arms[a].name.clone(),
                metrics: m,
                p_value,
                p_value_note,
            });
        }
    }
    Report {
        metrics: metrics(&all),
        arms,
        failure_patterns: Vec::new(),
    }
}

/// A share with what it divides: `2/4  50.00%`.
fn share(part: u64, whole: u64) -> String {
    format!("{part}/{whole} {:>6.2}%", percent(part, whole))
}

impl Report {
    /// The report as a table for people: every percentage with its counts.
    pub fn table(&self) -> String {
        let m = &self.metrics;
        let mut out = String::new();
        out.push_str(&format!(
            "contacts {}: {} completed, {} failed, {} skipped, {} pending, {} in progress\n",
            m.total_contacts,
            m.contacts_completed,
            m.contacts_failed,
            m.contacts_skipped,
            m.contacts_pending,
            m.contacts_in_progress
        ));
        out.push_str(&format!(
            "connection rate {} of all contacts, {} of finished ones\n",
            share(m.contacts_completed, m.total_contacts),
            share(m.contacts_completed, m.contacts_finished)
        ));
        out.push_str(&format!(
            "calls used {}   average attempts per completed contact {:.2}   retry conversion {} (of the contacts the first attempt did not reach)\n",
            m.calls_used,
            m.average_attempts,
            share(m.reached_on_retry, m.first_attempt_missed)
        ));
        out.push_str("\nattempt   dialled  answered  connection\n");
        for p in &m.per_attempt {
            out.push_str(&format!(
                "{:>7} {:>9} {:>9}  {}\n",
                p.attempt,
                p.dialled,
                p.answered,
                share(p.answered, p.dialled)
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
        let buckets = |list: &[Bucket]| {
            list.iter()
                .map(|b| {
                    format!(
                        "{} {}/{} {:.0}%",
                        b.key, b.answered, b.dialled, b.connection_rate
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str("\nby local hour (answered/dialled): ");
        out.push_str(&buckets(&m.by_hour));
        out.push_str("\nby weekday (answered/dialled): ");
        out.push_str(&buckets(&m.by_weekday));
        out.push('\n');
        if !self.arms.is_empty() {
            out.push_str(
                "\narm          contacts  finished  completed/finished   calls  p-value vs first\n",
            );
            for a in &self.arms {
                out.push_str(&format!(
                    "{:<12} {:>8} {:>9}  {:>17}  {:>6}  {}\n",
                    a.arm,
                    a.metrics.total_contacts,
                    a.metrics.contacts_finished,
                    share(a.metrics.contacts_completed, a.metrics.contacts_finished),
                    a.metrics.calls_used,
                    match (a.p_value, &a.p_value_note) {
                        (Some(p), _) => format!("{p:.4}"),
                        (None, Some(note)) => format!("-  ({note})"),
                        (None, None) => "-".to_string(),
                    }
                ));
            }
        }
        let flagged = patterns::flagged(&self.failure_patterns);
        if !flagged.is_empty() {
            out.push_str(
                "
failure patterns (groups that fail more or less than the rest, significantly):
",
            );
            for (p, g) in flagged.iter().take(10) {
                out.push_str(&format!(
                    "  {} {}: {} failed ({}/{}), {:+.1} points against the rest{}
",
                    p.label,
                    g.key,
                    format_args!("{:.1}%", g.failure_rate),
                    g.failed,
                    g.total,
                    g.difference,
                    if p.unit == "attempts" {
                        " (attempts that did not connect)"
                    } else {
                        ""
                    }
                ));
            }
        }
        out
    }
}

/// A CSV export for spreadsheets: `header`, then the contact's fields by
/// name after each row's own cells; every cell spreadsheet-safe.
struct Export<'f> {
    fields: Vec<&'f str>,
    writer: csv::Writer<Vec<u8>>,
}

impl<'f> Export<'f> {
    fn new(flow: &'f ir::Flow, header: &[&str]) -> Self {
        let fields: Vec<&str> = flow
            .contact
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record(header.iter().chain(&fields));
        Export { fields, writer }
    }

    fn row(&mut self, mut cells: Vec<String>, contact: &Contact) {
        cells.extend(self.fields.iter().map(|f| {
            contact
                .fields
                .get(f)
                .map_or_else(String::new, |v| crate::runtime::eval::show(&v))
        }));
        let _ = self
            .writer
            .write_record(cells.iter().map(|cell| spreadsheet_safe(cell).into_owned()));
    }

    fn finish(self) -> String {
        String::from_utf8(self.writer.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

/// The number as the list wrote it.
fn written<'c>(c: &'c ContactResult, contact: &'c Contact) -> &'c str {
    contact.written.as_deref().unwrap_or(&c.phone)
}

/// Contacts with their attempt history, one CSV row each (`flowc report
/// --format csv`): the number in E.164 and as the list wrote it, list line,
/// zone, arm, state, reason, attempts, the local time of the first and last
/// attempt, the history as `N outcome local-time` items separated by `; `,
/// the steps visited, then every field of the contact as imported. Cells a
/// spreadsheet would run as a formula are escaped. `only_failed` keeps the
/// failed contacts.
pub fn contacts_csv(
    flow: &ir::Flow,
    list: &[Contact],
    contacts: &[ContactResult],
    only_failed: bool,
) -> String {
    let mut export = Export::new(
        flow,
        &[
            "phone",
            "written",
            "line",
            "zone",
            "arm",
            "state",
            "reason",
            "attempts",
            "first_attempt_local",
            "last_attempt_local",
            "history",
            "path",
        ],
    );
    let local = |c: &ContactResult, at: chrono::DateTime<chrono::Utc>| {
        at.with_timezone(&c.zone)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    };
    for (c, contact) in contacts
        .iter()
        .zip(list)
        .filter(|(c, _)| !only_failed || c.status() == Status::Failed)
    {
        let history: Vec<String> = c
            .attempts
            .iter()
            .map(|a| {
                format!(
                    "{} {} {}",
                    a.number,
                    a.outcome.name(),
                    local(c, a.started_at)
                )
            })
            .collect();
        let path: Vec<&str> = c
            .path
            .iter()
            .map(|s| flow.steps[*s].name.as_str())
            .collect();
        let row = vec![
            c.phone.to_string(),
            written(c, contact).to_string(),
            c.line.to_string(),
            c.zone.name().to_string(),
            flow.arms[c.arm].name.clone(),
            c.status().to_string(),
            c.reason().to_string(),
            c.attempts.len().to_string(),
            c.attempts
                .first()
                .map_or_else(String::new, |a| local(c, a.started_at)),
            c.attempts
                .last()
                .map_or_else(String::new, |a| local(c, a.started_at)),
            history.join("; "),
            path.join(" > "),
        ];
        export.row(row, contact);
    }
    export.finish()
}

/// The contacts that need someone (`flowc report --follow-up`): every flag,
/// SMS and e-mail the runs raised or sent, with the contact's state and
/// fields, one CSV row each, spreadsheet-safe.
pub fn follow_up_csv(
    flow: &ir::Flow,
    list: &[Contact],
    contacts: &[ContactResult],
    messages: &[StoredMessage],
) -> String {
    let mut export = Export::new(
        flow,
        &[
            "kind",
            "text",
            "recipient",
            "status",
            "attempt",
            "phone",
            "written",
            "line",
            "state",
            "reason",
        ],
    );
    for m in messages {
        let (Some(c), Some(contact)) = (contacts.get(m.contact), list.get(m.contact)) else {
            continue;
        };
        let row = vec![
            m.kind.clone(),
            m.text.clone(),
            m.recipient.clone().unwrap_or_default(),
            m.status.clone(),
            m.attempt.to_string(),
            c.phone.to_string(),
            written(c, contact).to_string(),
            c.line.to_string(),
            c.status().to_string(),
            c.reason().to_string(),
        ];
        export.row(row, contact);
    }
    export.finish()
}
