//! Scenario tests (`test` items): one contact, a scripted dialer and a
//! virtual clock. A test fails when an expectation does not hold or when the
//! flow dials more often than the script says, and shows the timeline.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::interpreter::{self, End, Journal, Reply, Request, Run, Schedules};
use crate::calendar::{phone, zone};
use crate::contacts::Contact;
use crate::ir::{self, Expectation, TransferOutcome, Value};

/// The result of one test item.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub name: String,
    pub failures: Vec<String>,
    /// What happened, one line each, in the contact's local time.
    pub timeline: Vec<String>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// When a test names no `now` and the flow no `start`: a Monday morning.
fn default_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 5).expect("a real date")
}

pub fn run_test(flow: &ir::Flow, test: &ir::Test) -> TestResult {
    let mut result = TestResult {
        name: test.name.clone(),
        failures: Vec::new(),
        timeline: Vec::new(),
    };
    // The contact: the test's fields over the schema's defaults.
    let mut fields = test.contact.clone();
    for f in &flow.contact.fields {
        if let Some(d) = &f.default {
            fields.entry(f.name.clone()).or_insert_with(|| d.clone());
        }
    }
    let phone_text = flow
        .contact
        .phone_field
        .as_ref()
        .and_then(|p| match fields.get(p) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        });
    let region = flow.region.as_deref().and_then(phone::region);
    let number = phone_text
        .as_deref()
        .and_then(|t| phone::parse(t, region).ok());
    let text_of = |name: &str| match test.contact.get(name) {
        Some(Value::Text(t)) => Some(t.as_str()),
        _ => None,
    };
    let zones = match zone::resolve(&flow.timezone, text_of, number.as_ref()) {
        Ok(z) => z,
        Err(_) if flow.timezone.is_empty() => vec![Tz::UTC],
        Err(e) => {
            result
                .failures
                .push(format!("the contact cannot be run: {e}"));
            return result;
        }
    };
    let zone = zones[0];
    let phone = number.map_or_else(|| phone_text.clone().unwrap_or_default(), |n| n.e164);
    // `now` is the contact's local time; the flow's `start` is in the flow's zone.
    let start = test
        .now
        .as_ref()
        .and_then(|t| interpreter::local_instant(t, zone))
        .or_else(|| {
            flow.start
                .as_ref()
                .and_then(|t| interpreter::local_instant(t, interpreter::flow_zone(flow)))
        })
        .unwrap_or_else(|| {
            crate::calendar::schedule::instant(zone, default_start(), 0) + Duration::hours(8)
        });

    let consent_required = flow.compliance.policies.iter().any(|p| p.require_consent);
    let consents = !matches!(fields.get("consent"), Some(Value::Bool(false)));
    let arm = interpreter::assign_arm(flow, &phone);
    let mut script: VecDeque<&ir::ScriptedDial> = test.script.iter().collect();
    let (end, journal) = if consent_required && !consents {
        result.timeline.push("skipped: no consent".into());
        (
            End {
                completed: false,
                reason: "no_consent".into(),
                skipped: true,
            },
            Journal::default(),
        )
    } else {
        let contact = Contact {
            line: 0,
            phone: phone.clone(),
            fields: fields.into(),
            zones: zones.clone(),
        };
        let mut run =
            Run::new(flow, arm, &contact, start, &mut Schedules::default()).without_jitter();
        let mut keys: VecDeque<char> = VecDeque::new();
        let mut transfer: Option<TransferOutcome> = None;
        let mut request = run.start();
        let end = loop {
            request = match request {
                Request::Done(end) => break end,
                Request::Dial {
                    at, step, number, ..
                } => {
                    let Some(next) = script.pop_front() else {
                        result.timeline.push(format!(
                            "attempt {}: {} dial {number} from step `{}`",
                            run.journal.attempts.len() + 1,
                            local(at, zone),
                            flow.steps[step].name
                        ));
                        result.failures.push(format!(
                            "the flow dialled more often than scripted: attempt {} at {}",
                            run.journal.attempts.len() + 1,
                            local(at, zone)
                        ));
                        break End {
                            completed: false,
                            reason: "unscripted dial".into(),
                            skipped: false,
                        };
                    };
                    result.timeline.push(format!(
                        "attempt {}: {} step `{}` → {}",
                        run.journal.attempts.len() + 1,
                        local(at, zone),
                        flow.steps[step].name,
                        next.outcome.name()
                    ));
                    keys = next.press.as_deref().unwrap_or("").chars().collect();
                    transfer = next.transfer;
                    let ended_at = at + Duration::seconds(next.lasting_seconds as i64);
                    run.reply(Reply::Dialled {
                        outcome: next.outcome,
                        started_at: at,
                        ended_at,
                    })
                }
                Request::Gather { digits, .. } => {
                    let pressed: String = (0..digits).filter_map(|_| keys.pop_front()).collect();
                    let reply = if pressed.is_empty() {
                        None
                    } else {
                        Some(pressed)
                    };
                    result.timeline.push(format!(
                        "  gather: {}",
                        reply.as_deref().unwrap_or("(timeout)")
                    ));
                    run.reply(Reply::Keys(reply))
                }
                Request::Transfer { number, .. } => {
                    let outcome = transfer.take().unwrap_or(TransferOutcome::Answered);
                    result
                        .timeline
                        .push(format!("  transfer to {number}: {}", outcome.name()));
                    run.reply(Reply::Transferred(outcome))
                }
            };
        };
        (end, run.journal)
    };
    let kind = if end.skipped {
        "skipped"
    } else if end.completed {
        "completed"
    } else {
        "failed"
    };
    result
        .timeline
        .push(format!("end {kind} \"{}\"", end.reason));
    check_expectations(flow, test, &end, &journal, arm, zone, &mut result);
    result
}

fn local(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string()
}

fn check_expectations(
    flow: &ir::Flow,
    test: &ir::Test,
    end: &End,
    journal: &Journal,
    arm: usize,
    zone: Tz,
    result: &mut TestResult,
) {
    let fail = |r: &mut TestResult, s: String| r.failures.push(s);
    for e in &test.expectations {
        match e {
            Expectation::AttemptAt { attempt, at } => {
                let tz = at
                    .zone
                    .as_deref()
                    .and_then(|z| z.parse::<Tz>().ok())
                    .unwrap_or(zone);
                let expected = tz
                    .from_local_datetime(&at.local)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc));
                let actual = journal
                    .attempts
                    .get(*attempt as usize - 1)
                    .map(|a| a.started_at);
                let same_minute =
                    |a: DateTime<Utc>, b: DateTime<Utc>| a.timestamp() / 60 == b.timestamp() / 60;
                match (expected, actual) {
                    (Some(e), Some(a)) if same_minute(e, a) => {}
                    (_, Some(a)) => fail(
                        result,
                        format!(
                            "expected attempt {attempt} at {}, it was at {}",
                            at.local.format("%Y-%m-%d %H:%M"),
                            local(a, tz)
                        ),
                    ),
                    (_, None) => fail(
                        result,
                        format!(
                            "expected attempt {attempt}, there were {} attempt(s)",
                            journal.attempts.len()
                        ),
                    ),
                }
            }
            Expectation::Attempts { count } => {
                if journal.attempts.len() != *count as usize {
                    fail(
                        result,
                        format!(
                            "expected {count} attempt(s), there were {}",
                            journal.attempts.len()
                        ),
                    );
                }
            }
            Expectation::End { completed, reason } => {
                let ok = !end.skipped
                    && end.completed == *completed
                    && reason.as_ref().is_none_or(|r| *r == end.reason);
                if !ok {
                    let want = format!(
                        "{}{}",
                        if *completed { "completed" } else { "failed" },
                        reason
                            .as_ref()
                            .map(|r| format!(" \"{r}\""))
                            .unwrap_or_default()
                    );
                    let got = format!(
                        "{} \"{}\"",
                        if end.skipped {
                            "skipped"
                        } else if end.completed {
                            "completed"
                        } else {
                            "failed"
                        },
                        end.reason
                    );
                    fail(result, format!("expected end {want}, got {got}"));
                }
            }
            Expectation::Path { steps } => {
                if journal.path != *steps {
                    let names = |p: &[usize]| {
                        p.iter()
                            .map(|s| flow.steps[*s].name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    fail(
                        result,
                        format!(
                            "expected path {}, got {}",
                            names(steps),
                            names(&journal.path)
                        ),
                    );
                }
            }
            Expectation::Sms { text } => {
                if !journal
                    .sms
                    .iter()
                    .any(|s| text.as_ref().is_none_or(|t| s.contains(t.as_str())))
                {
                    fail(
                        result,
                        format!(
                            "expected an SMS{}; sent: {:?}",
                            text.as_ref()
                                .map(|t| format!(" containing \"{t}\""))
                                .unwrap_or_default(),
                            journal.sms
                        ),
                    );
                }
            }
            Expectation::Email { text } => {
                if !journal
                    .emails
                    .iter()
                    .any(|s| text.as_ref().is_none_or(|t| s.contains(t.as_str())))
                {
                    fail(
                        result,
                        format!("expected an e-mail; sent: {:?}", journal.emails),
                    );
                }
            }
            Expectation::Flag { label } => {
                if !journal.flags.contains(label) {
                    fail(
                        result,
                        format!("expected the flag \"{label}\"; flags: {:?}", journal.flags),
                    );
                }
            }
            Expectation::Arm { arm: want } => {
                if *want != arm {
                    fail(
                        result,
                        format!(
                            "expected arm `{}`, the contact is in `{}`",
                            flow.arms[*want].name, flow.arms[arm].name
                        ),
                    );
                }
            }
            Expectation::Skipped => {
                if !end.skipped {
                    fail(
                        result,
                        format!("expected the contact skipped, it ended \"{}\"", end.reason),
                    );
                }
            }
        }
    }
}
