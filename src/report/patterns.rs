//! Failure patterns: "why did these contacts fail?" The finished contacts
//! (completed or failed; skipped ones were never called) are grouped along
//! each dimension a campaign manager would look at — how the number was
//! written, its country, its area code, the local hour of the attempts, the
//! SIP status of the last call, each enum or short text field of the contact — and each group's failure rate
//! is set against the rest of the campaign with a two-proportion test. A
//! group is *flagged* only when the difference is both significant
//! (p < 0.01 after a Bonferroni correction over the dimension's groups) and
//! large enough (at least 10 percentage points, at least 20 contacts).

use std::collections::BTreeMap;

use chrono::Timelike;
use serde::Serialize;

use super::{percent, two_proportion_p};
use crate::calendar::phone;
use crate::contacts::Contact;
use crate::ir::{self, Outcome, Type, Value};
use crate::record::{ContactResult, Status};

/// The smallest group that may be flagged.
pub const MIN_GROUP: u64 = 20;
/// The smallest difference, in percentage points, that is flagged.
pub const MIN_DIFFERENCE: f64 = 10.0;
/// The significance level, before the correction for the number of groups.
pub const ALPHA: f64 = 0.01;
/// A text field with more distinct values than this is not a segment.
const MAX_SEGMENTS: usize = 50;

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pattern {
    /// `numberFormat`, `country`, `areaCode`, `localHour`, `sipStatus`, or
    /// `field:NAME`.
    pub dimension: String,
    /// What a reader calls it: "number format as written".
    pub label: String,
    /// What is counted: `contacts` (failed contacts) or `attempts`
    /// (attempts that did not connect, for the local hour).
    pub unit: String,
    /// The campaign's failure rate over the same unit, in percent.
    pub average: f64,
    /// Groups, the most over-failing first.
    pub groups: Vec<Group>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub key: String,
    pub total: u64,
    pub failed: u64,
    pub failure_rate: f64,
    /// Percentage points above (or below) the rest of the campaign.
    pub difference: f64,
    /// Two-sided p-value of the group against the rest.
    pub p_value: Option<f64>,
    pub flagged: bool,
}

/// How a number was written in the list.
pub fn number_format(contact: &Contact) -> &'static str {
    let Some(written) = contact.written.as_deref() else {
        return "E.164";
    };
    let w = written.trim();
    let punctuated = w.chars().any(|c| " -.()/".contains(c));
    if w.starts_with('+') {
        if punctuated {
            "international, with punctuation"
        } else {
            "E.164"
        }
    } else if w.starts_with("00") {
        "international with 00"
    } else if punctuated {
        "national, with punctuation"
    } else {
        "national"
    }
}

/// The area code of a North American number (`+1 212`); for others, the
/// country code and the first digit of the national number (`+33 6`).
pub fn area_code(e164: &str) -> String {
    let digits = e164.trim_start_matches('+');
    if let Some(rest) = digits.strip_prefix('1') {
        return format!("+1 {}", rest.get(..3).unwrap_or(rest));
    }
    let code_len = (1..=3)
        .find(|n| {
            digits
                .get(..*n)
                .and_then(|c| c.parse::<u16>().ok())
                .is_some_and(|c| phonenumber::metadata::DATABASE.by_code(&c).is_some())
        })
        .unwrap_or(2);
    let (code, national) = digits.split_at(code_len.min(digits.len()));
    format!("+{code} {}", national.get(..1).unwrap_or(""))
}

/// Counts per key: (total, failed).
type Counts = BTreeMap<String, (u64, u64)>;

fn groups(counts: Counts) -> (f64, Vec<Group>) {
    let total: u64 = counts.values().map(|c| c.0).sum();
    let failed: u64 = counts.values().map(|c| c.1).sum();
    let tests = counts.len().max(1) as f64;
    let mut out: Vec<Group> = counts
        .into_iter()
        .map(|(key, (n, f))| {
            let rest_n = total - n;
            let rest_f = failed - f;
            let rate = percent(f, n);
            let difference = ((rate - percent(rest_f, rest_n)) * 100.0).round() / 100.0;
            let p_value = if rest_n == 0 {
                None
            } else {
                two_proportion_p(f, n, rest_f, rest_n)
            };
            let flagged = n >= MIN_GROUP
                && difference.abs() >= MIN_DIFFERENCE
                && p_value.is_some_and(|p| p * tests < ALPHA);
            Group {
                key,
                total: n,
                failed: f,
                failure_rate: rate,
                difference,
                p_value,
                flagged,
            }
        })
        .collect();
    // Flagged groups first, the most over-failing first; then by size.
    out.sort_by(|a, b| {
        b.flagged
            .cmp(&a.flagged)
            .then(b.difference.total_cmp(&a.difference))
            .then(b.total.cmp(&a.total))
    });
    (percent(failed, total), out)
}

fn pattern(dimension: &str, label: &str, unit: &str, counts: Counts) -> Option<Pattern> {
    // One group says nothing about where failures concentrate.
    if counts.len() < 2 {
        return None;
    }
    let (average, groups) = groups(counts);
    Some(Pattern {
        dimension: dimension.into(),
        label: label.into(),
        unit: unit.into(),
        average,
        groups,
    })
}

/// The failure patterns of a campaign: `list` and `results` in the same order.
pub fn failure_patterns(
    flow: &ir::Flow,
    list: &[Contact],
    results: &[ContactResult],
) -> Vec<Pattern> {
    let finished: Vec<(&Contact, &ContactResult)> = list
        .iter()
        .zip(results)
        .filter(|(_, r)| matches!(r.status(), Status::Completed | Status::Failed))
        .collect();
    let mut out = Vec::new();
    // Counts by each finished contact's key (none: not counted); `None`
    // once there are more than `most` groups.
    let tally = |most: usize, keys: &mut dyn Iterator<Item = Option<String>>| -> Option<Counts> {
        let mut counts = Counts::new();
        for ((_, r), k) in finished.iter().zip(keys) {
            let Some(k) = k else { continue };
            let e = counts.entry(k).or_default();
            e.0 += 1;
            e.1 += u64::from(r.status() == Status::Failed);
            if counts.len() > most {
                return None;
            }
        }
        Some(counts)
    };
    let by = |key: &dyn Fn(&Contact) -> Option<String>| -> Counts {
        tally(usize::MAX, &mut finished.iter().map(|(c, _)| key(c))).unwrap_or_default()
    };
    // The keys that cost most to find (a number's country takes its
    // numbering plan's patterns), found on two threads.
    let by_costly = |key: fn(&Contact) -> String| -> Counts {
        let keys = crate::on_two_threads(&finished, |_, part| {
            part.iter().map(|(c, _)| Some(key(c))).collect()
        });
        tally(usize::MAX, &mut keys.into_iter()).unwrap_or_default()
    };
    out.extend(pattern(
        "numberFormat",
        "number format as written",
        "contacts",
        by(&|c| Some(number_format(c).to_string())),
    ));
    out.extend(pattern(
        "country",
        "country",
        "contacts",
        by_costly(|c| phone::country_of(&c.phone).unwrap_or_else(|| "unknown".into())),
    ));
    out.extend(pattern(
        "areaCode",
        "area code",
        "contacts",
        by_costly(|c| area_code(&c.phone)),
    ));
    // Attempts by the contact's local hour: those that did not connect.
    let mut hours = Counts::new();
    for (_, r) in &finished {
        for a in &r.attempts {
            let hour = a.started_at.with_timezone(&r.zone).hour();
            let e = hours.entry(format!("{hour:02}")).or_default();
            e.0 += 1;
            e.1 += u64::from(a.outcome != Outcome::Answered);
        }
    }
    out.extend(pattern(
        "localHour",
        "local hour of the attempts",
        "attempts",
        hours,
    ));
    // The SIP status of each contact's last call, when the dialer spoke SIP
    // (other dialers give none, and the dimension is left out).
    let last_status = |r: &ContactResult| r.attempts.last().and_then(|a| a.sip_status);
    if finished.iter().any(|(_, r)| last_status(r).is_some()) {
        let mut statuses = Counts::new();
        for (_, r) in finished.iter().filter(|(_, r)| !r.attempts.is_empty()) {
            let key = last_status(r).map_or_else(|| "none".to_string(), |s| s.to_string());
            let e = statuses.entry(key).or_default();
            e.0 += 1;
            e.1 += u64::from(r.status() == Status::Failed);
        }
        out.extend(pattern(
            "sipStatus",
            "SIP status of the last call",
            "contacts",
            statuses,
        ));
    }
    // Segments: enum fields, and text fields with few distinct values.
    for field in &flow.contact.fields {
        let ty = match &field.ty {
            Type::Optional(t) => t.as_ref(),
            t => t,
        };
        if !matches!(ty, Type::Enum(_) | Type::Text) {
            continue;
        }
        let mut values = finished
            .iter()
            .map(|(c, _)| match c.fields.get(&field.name) {
                Some(Value::Text(t)) => Some(t),
                Some(_) => None,
                None => Some("(none)".into()),
            });
        let Some(counts) = tally(MAX_SEGMENTS, &mut values) else {
            continue;
        };
        out.extend(pattern(
            &format!("field:{}", field.name),
            &format!("contact field `{}`", field.name),
            "contacts",
            counts,
        ));
    }
    out
}

/// The flagged groups of every pattern, for a summary: the most
/// over-failing first.
pub fn flagged(patterns: &[Pattern]) -> Vec<(&Pattern, &Group)> {
    let mut out: Vec<(&Pattern, &Group)> = patterns
        .iter()
        .flat_map(|p| p.groups.iter().filter(|g| g.flagged).map(move |g| (p, g)))
        .collect();
    out.sort_by(|a, b| b.1.difference.total_cmp(&a.1.difference));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Attempt, End, Ending};

    /// 40 contacts: those whose last call got 404 fail, the 200s complete.
    fn campaign(statuses: &[Option<u16>]) -> (Vec<Contact>, Vec<ContactResult>) {
        let t = chrono::Utc::now();
        let mut list = Vec::new();
        let mut results = Vec::new();
        for (k, status) in statuses.iter().enumerate() {
            let phone: std::sync::Arc<str> = format!("+1212555{:04}", k).into();
            list.push(Contact {
                line: k as u32 + 2,
                phone: phone.clone(),
                zones: [chrono_tz::Tz::UTC].into(),
                fields: Default::default(),
                written: None,
            });
            let failed = *status == Some(404);
            results.push(ContactResult {
                line: k as u32 + 2,
                phone,
                zone: chrono_tz::Tz::UTC,
                arm: 0,
                end: Some(End::new(
                    if failed {
                        Ending::Failed
                    } else {
                        Ending::Completed
                    },
                    "",
                )),
                in_progress: false,
                attempts: vec![Attempt {
                    number: 1,
                    step: 0,
                    started_at: t,
                    ended_at: t,
                    outcome: if failed {
                        Outcome::InvalidNumber
                    } else {
                        Outcome::Answered
                    },
                    sip_status: *status,
                }]
                .into(),
                path: Box::default(),
                messages: None,
            });
        }
        (list, results)
    }

    fn flow() -> ir::Flow {
        let source = "contact {\n  phone: phone\n}\nflow f {\n  timezone \"UTC\"\n  step call {\n    dial contact.phone\n    on answered -> end completed\n    on other -> end failed\n  }\n}\n";
        let dir = std::env::temp_dir().join(format!("flowc-patterns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.flow");
        std::fs::write(&path, source).unwrap();
        let c = crate::check::check(&path, &crate::check::FsLoader).unwrap();
        c.program.unwrap().flow.unwrap()
    }

    #[test]
    fn failed_contacts_are_grouped_by_the_sip_status_of_their_last_call() {
        let mut statuses = vec![Some(200); 30];
        statuses.extend(vec![Some(404); 25]);
        let (list, results) = campaign(&statuses);
        let patterns = failure_patterns(&flow(), &list, &results);
        let sip = patterns
            .iter()
            .find(|p| p.dimension == "sipStatus")
            .unwrap();
        let first = &sip.groups[0];
        assert_eq!(
            (first.key.as_str(), first.failed, first.total),
            ("404", 25, 25)
        );
        assert!(first.flagged, "{sip:?}");
        // A dialer that speaks no SIP gives no such dimension.
        let (list, results) = campaign(&[None; 10]);
        let patterns = failure_patterns(&flow(), &list, &results);
        assert!(patterns.iter().all(|p| p.dimension != "sipStatus"));
    }
}
