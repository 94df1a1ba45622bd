//! Scenario tests (`test` items): one contact, a scripted dialer and a
//! virtual clock. A test fails when an expectation does not hold or when the
//! flow dials more often than the script says, and shows the timeline.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::clock::VirtualClock;
use super::engine::Engine;
use super::interpreter::{self, Trail};
use crate::calendar::{phone, zone};
use crate::contacts::Contact;
use crate::dialer::{Ask, Call, CallId, Dialer, Dialled};
use crate::ir::{self, Expectation, Outcome, TransferOutcome, Value};
use crate::record::{End, Ending, History};

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

    // The campaign engine runs the test: one contact, a virtual clock, the
    // script as the dialer, retries without jitter. A dial beyond the script
    // pauses the campaign, so the contact goes no further.
    let contact = Contact {
        line: 0,
        phone: phone.as_str().into(),
        fields: fields.into(),
        zones: zones.as_slice().into(),
        written: None,
    };
    let (pause, paused) = tokio::sync::watch::channel(false);
    let dialer = ScenarioDialer {
        script: RefCell::new(test.script.iter().collect()),
        keys: RefCell::new(VecDeque::new()),
        transfer: Cell::new(None),
        log: RefCell::new(Vec::new()),
        unscripted: Cell::new(None),
        pause,
    };
    let clock = VirtualClock::new(start);
    let contacts = [contact];
    let mut engine = Engine::new(flow, &contacts, &dialer, &clock, start)
        .without_jitter()
        .pause_on(paused);
    if let Some(arm) = test.arm {
        // A history of no attempts that names the arm: the contact starts there.
        engine = engine.history(vec![History {
            arm,
            ..Default::default()
        }]);
    }
    let run = match super::simulate::block_on(engine.run()) {
        Ok(mut r) => r.contacts.remove(0),
        Err(e) => {
            result.failures.push(format!("the test could not run: {e}"));
            return result;
        }
    };
    let arm = run.arm;
    let unscripted = dialer.unscripted.get();
    let log = dialer.log.into_inner();
    for a in &run.attempts {
        if unscripted == Some(a.number) {
            let at = local(a.started_at, zone);
            result.timeline.push(format!(
                "attempt {}: {at} dial {phone} from step `{}`",
                a.number,
                flow.steps[a.step_id()].name
            ));
            result.failures.push(format!(
                "the flow dialled more often than scripted: attempt {} at {at}",
                a.number
            ));
            break;
        }
        result.timeline.push(format!(
            "attempt {}: {} step `{}` → {}",
            a.number,
            local(a.started_at, zone),
            flow.steps[a.step_id()].name,
            a.outcome.name()
        ));
        result.timeline.extend(
            log.iter()
                .filter(|(n, _)| *n == a.number)
                .map(|(_, line)| line.clone()),
        );
    }
    let end = match (&run.end, unscripted) {
        (_, Some(_)) => End::new(Ending::Failed, "unscripted dial"),
        (Some(end), None) => end.clone(),
        (None, None) => End::new(Ending::Failed, "not finished"),
    };
    if end.ending == Ending::Skipped && &*end.reason == "no_consent" {
        result.timeline.push("skipped: no consent".into());
    }
    let messages = run.messages.as_deref().cloned().unwrap_or_default();
    let trail = Trail {
        attempts: run
            .attempts
            .iter()
            .filter(|a| unscripted.is_none_or(|n| a.number < n))
            .cloned()
            .collect(),
        path: run.path.to_vec(),
        said: messages.said,
        prompts: Vec::new(),
        sms: messages.sms,
        emails: messages.emails,
        flags: messages.flags,
        outbox: messages.outbox,
        opted_out: false,
    };
    result
        .timeline
        .push(format!("end {} \"{}\"", end.ending.name(), end.reason));
    check_expectations(flow, test, &end, &trail, arm, zone, &mut result);
    result
}

/// The script of a test as a dialer: each dial takes the next scripted
/// attempt; its `press` keys feed the call's gathers in order, its
/// `transfer` the call's transfer. A dial beyond the script is noted and
/// pauses the campaign.
struct ScenarioDialer<'t> {
    script: RefCell<VecDeque<&'t ir::ScriptedDial>>,
    keys: RefCell<VecDeque<char>>,
    transfer: Cell<Option<TransferOutcome>>,
    /// In-call events for the timeline, by attempt.
    log: RefCell<Vec<(u32, String)>>,
    unscripted: Cell<Option<u32>>,
    pause: tokio::sync::watch::Sender<bool>,
}

impl Dialer for ScenarioDialer<'_> {
    async fn place(&self, call: Call) -> Dialled {
        let Some(next) = self.script.borrow_mut().pop_front() else {
            self.unscripted.set(Some(call.id.attempt));
            let _ = self.pause.send(true);
            return Dialled {
                outcome: Outcome::Unknown,
                duration: Duration::zero(),
                sip: None,
            };
        };
        *self.keys.borrow_mut() = next.press.as_deref().unwrap_or("").chars().collect();
        self.transfer.set(next.transfer);
        Dialled {
            outcome: next.outcome,
            duration: Duration::seconds(next.lasting_seconds as i64),
            sip: None,
        }
    }

    async fn gather(&self, call: CallId, ask: Ask) -> Option<String> {
        let mut keys = self.keys.borrow_mut();
        let pressed: String = (0..ask.digits).filter_map(|_| keys.pop_front()).collect();
        let reply = (!pressed.is_empty()).then_some(pressed);
        self.log.borrow_mut().push((
            call.attempt,
            format!("  gather: {}", reply.as_deref().unwrap_or("(timeout)")),
        ));
        reply
    }

    async fn transfer(&self, call: CallId, number: String, _timeout: u64) -> TransferOutcome {
        let outcome = self.transfer.take().unwrap_or(TransferOutcome::Answered);
        self.log.borrow_mut().push((
            call.attempt,
            format!("  transfer to {number}: {}", outcome.name()),
        ));
        outcome
    }
}

fn local(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string()
}

fn check_expectations(
    flow: &ir::Flow,
    test: &ir::Test,
    end: &End,
    trail: &Trail,
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
                let actual = trail
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
                            trail.attempts.len()
                        ),
                    ),
                }
            }
            Expectation::Attempts { count } => {
                if trail.attempts.len() != *count as usize {
                    fail(
                        result,
                        format!(
                            "expected {count} attempt(s), there were {}",
                            trail.attempts.len()
                        ),
                    );
                }
            }
            Expectation::End { completed, reason } => {
                let wanted = if *completed {
                    Ending::Completed
                } else {
                    Ending::Failed
                };
                let ok = end.ending == wanted && reason.as_ref().is_none_or(|r| **r == *end.reason);
                if !ok {
                    let want = format!(
                        "{}{}",
                        wanted.name(),
                        reason
                            .as_ref()
                            .map(|r| format!(" \"{r}\""))
                            .unwrap_or_default()
                    );
                    let got = format!("{} \"{}\"", end.ending.name(), end.reason);
                    fail(result, format!("expected end {want}, got {got}"));
                }
            }
            Expectation::Path { steps } => {
                if trail.path != *steps {
                    let names = |p: &[usize]| {
                        p.iter()
                            .map(|s| flow.steps[*s].name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    fail(
                        result,
                        format!("expected path {}, got {}", names(steps), names(&trail.path)),
                    );
                }
            }
            Expectation::Sms { text } => {
                if !trail
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
                            trail.sms
                        ),
                    );
                }
            }
            Expectation::Email { text } => {
                if !trail
                    .emails
                    .iter()
                    .any(|s| text.as_ref().is_none_or(|t| s.contains(t.as_str())))
                {
                    fail(
                        result,
                        format!("expected an e-mail; sent: {:?}", trail.emails),
                    );
                }
            }
            Expectation::Flag { label } => {
                if !trail.flags.contains(label) {
                    fail(
                        result,
                        format!("expected the flag \"{label}\"; flags: {:?}", trail.flags),
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
                if end.ending != Ending::Skipped {
                    fail(
                        result,
                        format!("expected the contact skipped, it ended \"{}\"", end.reason),
                    );
                }
            }
        }
    }
}
