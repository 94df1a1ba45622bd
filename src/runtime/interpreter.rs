//! The interpreter: one contact's run of a compiled flow, as a state machine.
//! It asks for what it needs from the world (a dial at an instant, keys
//! pressed, a transfer's outcome) with a `Request` and continues with the
//! `Reply`, so the same code serves the scenario tests, the simulator and the
//! campaign engine whatever their clock and dialer.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::eval::{self, Scope};
use crate::calendar::limits::Limits;
use crate::calendar::{retry, Schedule};
use crate::contacts;
use crate::ir::{
    self, Action, ArmId, Outcome, Resolution, RetryForm, StepId, StrategyRule, TransferOutcome,
    Value,
};
use crate::record::{Attempt, End, Ending, Message, MessageKind, Messages};

/// What the run needs next.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A dial: its number and caller id are read when it is placed
    /// ([`Run::dial_number`], [`Run::dial_from`]), not at each of the many
    /// times it is planned.
    Dial {
        at: DateTime<Utc>,
        step: StepId,
        timeout_seconds: u64,
        detect_voicemail: bool,
    },
    /// `keys` are the keys the flow lists (a dialer simulating people picks among them).
    Gather {
        digits: u32,
        timeout_seconds: u64,
        attempt: u32,
        tries: u32,
        keys: Vec<String>,
    },
    Transfer {
        number: String,
        timeout_seconds: u64,
    },
    Done(End),
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `started_at` is when the call really started: a scheduler may start
    /// it later than asked (concurrency, pacing), never earlier.
    Dialled {
        outcome: Outcome,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
        /// The final SIP status, when the dialer speaks SIP.
        sip_status: Option<u16>,
    },
    /// Keys pressed, or `None` when nothing came before the timeout.
    Keys(Option<String>),
    Transferred(TransferOutcome),
}

/// Something a connected call hears.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Say(String),
    Play(String),
    /// `record`: what the caller says goes to `file` (a name in the run's
    /// recordings folder), for `max_seconds` at most.
    Record {
        file: String,
        max_seconds: Option<u64>,
    },
}

/// Everything the run did, for reports, tests and the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trail {
    pub attempts: Vec<Attempt>,
    pub path: Vec<StepId>,
    pub said: Vec<String>,
    /// What a connected call is to hear, in order (`say` and `play`).
    pub prompts: Vec<Prompt>,
    pub sms: Vec<String>,
    pub emails: Vec<String>,
    pub flags: Vec<String>,
    /// The SMS, e-mails and flags above, in order, with who they go to and
    /// how many attempts had been made: what the store keeps.
    pub outbox: Vec<Message>,
    pub opted_out: bool,
}

impl Trail {
    /// What the run said, sent and flagged, taken out of the trail; `None`
    /// when it did none of it (most contacts of a large campaign).
    pub fn take_messages(&mut self) -> Option<Box<Messages>> {
        let m = Messages {
            said: std::mem::take(&mut self.said),
            sms: std::mem::take(&mut self.sms),
            emails: std::mem::take(&mut self.emails),
            flags: std::mem::take(&mut self.flags),
            outbox: std::mem::take(&mut self.outbox),
        };
        (m != Messages::default()).then(|| Box::new(m))
    }
}

/// What the runs of the contacts of one arm, US state (state presets apply
/// to their state only) and holidays share.
struct Setup {
    schedule: Schedule,
    limits: Limits,
    /// First dials settled, by the contact's zones. Before any attempt the
    /// limits hold nothing back, so the answer depends on the zones alone,
    /// and a campaign's contacts share a few dozen zones and one start (a
    /// retried contact's run is made again from its first dial). At most
    /// one entry per set of zones met.
    first_dials: Mutex<HashMap<Box<[Tz]>, FirstDial>>,
}

/// A first dial settled: the instant asked for, and the answer.
type FirstDial = (DateTime<Utc>, Option<DateTime<Utc>>);

impl Setup {
    /// The instant at or after `at` callable in every zone that keeps
    /// every limit, given past attempts' starts (`retry::settle`).
    fn settle(
        &self,
        at: DateTime<Utc>,
        zones: &[Tz],
        starts: &[DateTime<Utc>],
    ) -> Option<DateTime<Utc>> {
        if !starts.is_empty() {
            return retry::settle(at, zones, &self.schedule, &self.limits, starts);
        }
        let mut first = self.first_dials.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((asked, answer)) = first.get(zones) {
            if *asked == at {
                return *answer;
            }
        }
        let answer = retry::settle(at, zones, &self.schedule, &self.limits, starts);
        first.insert(zones.into(), (at, answer));
        answer
    }
}

/// The setups of a campaign's runs, each made once: a run is made again
/// for every retry of a parked contact.
#[derive(Default)]
pub struct Schedules {
    cache: HashMap<(ArmId, Option<String>, Vec<String>), Arc<Setup>>,
    /// The campaign's `stop`, as an instant.
    stop: Option<Option<DateTime<Utc>>>,
}

impl Schedules {
    /// The setup of `arm` for a contact of `state` (one some policy names)
    /// with these holidays of its own.
    fn get(
        &mut self,
        flow: &ir::Flow,
        arm: ArmId,
        state: Option<String>,
        holidays: Vec<String>,
    ) -> Arc<Setup> {
        let key = (arm, state, holidays);
        if let Some(setup) = self.cache.get(&key) {
            return setup.clone();
        }
        let (arm, state, holidays) = key;
        let policies: Vec<&ir::Policy> = flow
            .compliance
            .policies
            .iter()
            .filter(|p| p.us_state.is_none() || p.us_state == state)
            .collect();
        let arm_ir = &flow.arms[arm];
        let calendar = arm_ir.calendar.map(|c| &flow.calendars[c]);
        let strategy = arm_ir.strategy.map(|s| &flow.strategies[s]);
        let limits = Limits {
            min_gap: Duration::seconds(strategy.map_or(0, |s| s.min_gap_seconds) as i64),
            per_day: flow.max_attempts_per_day,
            rolling: policies
                .iter()
                .flat_map(|p| p.rolling_limits.iter().copied())
                .collect(),
        };
        // The contact's own holidays, as one more policy.
        let own = ir::Policy {
            name: "holidays from contact".into(),
            no_holidays: holidays.clone(),
            ..Default::default()
        };
        let mut all = policies;
        all.push(&own);
        let setup = Arc::new(Setup {
            schedule: Schedule::new(calendar, &all),
            limits,
            first_dials: Mutex::default(),
        });
        self.cache.insert((arm, state, holidays), setup.clone());
        setup
    }

    /// `stop` is a campaign instant, in the flow's zone.
    fn stop(&mut self, flow: &ir::Flow) -> Option<DateTime<Utc>> {
        *self.stop.get_or_insert_with(|| {
            flow.stop
                .as_ref()
                .and_then(|s| local_instant(s, flow_zone(flow)))
        })
    }
}

type Frame<'f> = (&'f [Action], usize);

pub struct Run<'f> {
    flow: &'f ir::Flow,
    arm: ArmId,
    contact: &'f contacts::Contact,
    setup: Arc<Setup>,
    vars: Vec<Option<Value>>,
    pub trail: Trail,
    /// When each attempt started, for the limits (the trail's, in a row).
    starts: Vec<DateTime<Utc>>,
    now: DateTime<Utc>,
    stop: Option<DateTime<Utc>>,
    stack: Vec<Frame<'f>>,
    /// Where the last dial stands, to dial it again on a retry.
    dial_at: Vec<Frame<'f>>,
    dial: Option<(&'f ir::Dial, StepId, DateTime<Utc>)>,
    current_step: StepId,
    next_dial_at: Option<DateTime<Utc>>,
    routing: Option<Outcome>,
    retries: u32,
    rule_retries: BTreeMap<Outcome, u32>,
    waiting: Waiting<'f>,
    jitter: bool,
}

enum Waiting<'f> {
    Nothing,
    Dial,
    Gather(&'f ir::Gather, u32),
    Transfer(&'f ir::Transfer),
}

impl<'f> Run<'f> {
    /// The file a `record` writes: the contact's number and the attempt
    /// (`33612345678-2.wav`), then `-2`, `-3` … for more in one call.
    fn recording_name(&self) -> String {
        let stem = format!(
            "{}-{}",
            self.contact.phone.trim_start_matches('+'),
            self.trail.attempts.len()
        );
        let earlier = self
            .trail
            .prompts
            .iter()
            .filter(|p| matches!(p, Prompt::Record { file, .. } if file.strip_suffix(".wav").is_some_and(|f| f == stem || f.starts_with(&format!("{stem}-")))))
            .count();
        if earlier == 0 {
            format!("{stem}.wav")
        } else {
            format!("{stem}-{}.wav", earlier + 1)
        }
    }

    /// The number the planned dial calls: its expression's value, the
    /// contact's number when it has none.
    pub fn dial_number(&self) -> String {
        let Some((d, ..)) = self.dial else {
            return self.contact.phone.to_string();
        };
        // A field holding text (`dial contact.phone`), read in place.
        if let ir::ExprKind::Field(name) = &d.number.kind {
            if let Some(text) = self.contact.fields.text(name) {
                return text.to_string();
            }
        }
        self.with_scope(|s| eval::eval(&d.number, s))
            .map_or(self.contact.phone.to_string(), |v| eval::show(&v))
    }

    /// The caller id the planned dial asks for (`from`).
    pub fn dial_from(&self) -> Option<String> {
        self.dial.and_then(|(d, ..)| d.from.clone())
    }

    fn send(&mut self, kind: MessageKind, text: &str, recipient: Option<String>) {
        self.trail.outbox.push(Message {
            kind,
            attempt: self.trail.attempts.len() as u32,
            text: text.to_string(),
            recipient,
            subject: None,
        });
    }

    /// A run of `flow` for `contact` under experiment arm `arm`, starting at
    /// `now`, with the schedule the arm and the contact's state call for.
    pub fn new(
        flow: &'f ir::Flow,
        arm: ArmId,
        contact: &'f contacts::Contact,
        now: DateTime<Utc>,
        schedules: &mut Schedules,
    ) -> Run<'f> {
        // The contact's `state` field, else the state of its number's area
        // code (state laws presume a number of the state reaches a resident).
        let state: Option<Cow<'_, str>> = contact
            .fields
            .text("state")
            .map(|t| match t.bytes().any(|b| b.is_ascii_lowercase()) {
                true => Cow::Owned(t.to_ascii_uppercase()),
                false => Cow::Borrowed(t),
            })
            .or_else(|| crate::calendar::phone::us_state(&contact.phone).map(Cow::Borrowed));
        let policies = &flow.compliance.policies;
        // `no holidays from contact`: the number's country, and its state or
        // province where known (`US-CA`).
        let holidays_from_contact = policies.iter().any(|p| {
            p.holidays_from_contact
                && p.us_state
                    .as_ref()
                    .is_none_or(|s| state.as_deref() == Some(s.as_str()))
        });
        let holidays = if holidays_from_contact {
            let country = crate::calendar::phone::country_of(&contact.phone);
            let mut regions: Vec<String> = Vec::new();
            if let Some(c) = country.filter(|c| crate::calendar::holidays::known(c)) {
                let sub = state.as_ref().map(|s| format!("{c}-{s}"));
                regions.push(c);
                regions.extend(sub.filter(|s| crate::calendar::holidays::known(s)));
            }
            regions
        } else {
            Vec::new()
        };
        // Only a state some policy names makes a setup of its own.
        let state = state
            .filter(|s| policies.iter().any(|p| p.us_state.as_deref() == Some(s)))
            .map(Cow::into_owned);
        let setup = schedules.get(flow, arm, state, holidays);
        let stop = schedules.stop(flow);
        Run {
            flow,
            arm,
            setup,
            vars: vec![None; flow.variables.len()],
            trail: Trail {
                path: vec![flow.entry],
                ..Trail::default()
            },
            starts: Vec::new(),
            now,
            stop,
            stack: vec![(&flow.steps[flow.entry].actions, 0)],
            dial_at: Vec::new(),
            dial: None,
            current_step: flow.entry,
            next_dial_at: None,
            routing: None,
            retries: 0,
            rule_retries: BTreeMap::new(),
            waiting: Waiting::Nothing,
            jitter: true,
            contact,
        }
    }

    /// Retries wait exactly what their rule says: scenario tests assert a
    /// contact's timeline as written, while jitter spreads a campaign's load.
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    pub fn arm(&self) -> ArmId {
        self.arm
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Runs until the first request.
    pub fn start(&mut self) -> Request {
        self.resume()
    }

    /// Continues with what happened.
    pub fn reply(&mut self, reply: Reply) -> Request {
        match (
            std::mem::replace(&mut self.waiting, Waiting::Nothing),
            reply,
        ) {
            (
                Waiting::Dial,
                Reply::Dialled {
                    outcome,
                    started_at,
                    ended_at,
                    sip_status,
                },
            ) => {
                let (_, step, asked) = self.dial.expect("a dial is waiting");
                let started_at = started_at.max(asked);
                let number = self.trail.attempts.len() as u32 + 1;
                self.starts.push(started_at);
                self.trail.attempts.push(Attempt {
                    number,
                    step: Attempt::step_of(step),
                    started_at,
                    ended_at,
                    outcome,
                    sip_status,
                });
                self.now = ended_at.max(started_at);
                if let Some(end) = self.route(outcome) {
                    return Request::Done(end);
                }
            }
            (Waiting::Gather(g, attempt), Reply::Keys(keys)) => {
                let matched = keys
                    .as_ref()
                    .and_then(|k| g.keys.iter().find(|(key, _)| key == k));
                if let Some(d) = self.flow.variables.iter().position(|v| v.name == "digits") {
                    self.vars[d] = keys.clone().map(Value::Text);
                }
                match (matched, keys) {
                    (Some((_, block)), _) => self.stack.push((block, 0)),
                    (None, _) if attempt < g.tries => {
                        self.waiting = Waiting::Gather(g, attempt + 1);
                        return gather_request(g, attempt + 1);
                    }
                    (None, None) => self.stack.push((&g.on_timeout, 0)),
                    (None, Some(_)) => self.stack.push((&g.on_invalid, 0)),
                }
            }
            (Waiting::Transfer(t), Reply::Transferred(o)) => self.stack.push((
                match o {
                    TransferOutcome::Answered => &t.answered,
                    TransferOutcome::Failed => &t.failed,
                    TransferOutcome::Hangup => &t.hangup,
                },
                0,
            )),
            (_, other) => {
                return Request::Done(End::new(
                    Ending::Failed,
                    format!("unexpected reply {other:?}"),
                ))
            }
        }
        self.resume()
    }

    /// Evaluates with what an expression may read: fields, variables,
    /// built-ins and the contact's local clock.
    fn with_scope<T>(&self, f: impl FnOnce(&Scope<'_>) -> T) -> T {
        let zone = self.contact.zones.first().copied().unwrap_or(Tz::UTC);
        let now = self.now;
        let local = move || now.with_timezone(&zone).naive_local();
        let fields = &self.contact.fields;
        let field = |name: &str| fields.get(name);
        let outcome = self.trail.attempts.last().map(|a| a.outcome.name());
        let s = Scope {
            field: &field,
            vars: &self.vars,
            attempt: self.trail.attempts.len() as u32,
            outcome,
            arm: &self.flow.arms[self.arm].name,
            local: &local,
        };
        f(&s)
    }

    fn strategy(&self) -> Option<&'f ir::Strategy> {
        self.flow.arms[self.arm]
            .strategy
            .map(|s| &self.flow.strategies[s])
    }

    fn finish(completed: bool, reason: impl Into<std::sync::Arc<str>>) -> Option<End> {
        let ending = if completed {
            Ending::Completed
        } else {
            Ending::Failed
        };
        Some(End::new(ending, reason))
    }

    fn resume(&mut self) -> Request {
        // A loop the checker cannot see through (an `if` on a value that
        // never changes) must not hang the engine: after this many actions
        // without a dial, the contact ends.
        let mut budget: u32 = 100_000;
        loop {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return Request::Done(End::new(Ending::Failed, "endless_loop"));
            }
            let Some((actions, i)) = self.stack.last_mut() else {
                return Request::Done(End::new(Ending::Failed, "no_route"));
            };
            if *i >= actions.len() {
                self.stack.pop();
                continue;
            }
            let actions: &'f [Action] = actions;
            let action = &actions[*i];
            *i += 1;
            match action {
                Action::Dial(d) => {
                    let mut here = self.stack.clone();
                    if let Some(top) = here.last_mut() {
                        top.1 -= 1;
                    }
                    self.dial_at = here;
                    if let Some(max) = self.strategy().and_then(|s| s.max_attempts) {
                        if self.trail.attempts.len() as u32 >= max {
                            // Back at a dial after `on exhausted`: nothing more to try.
                            if self.routing == Some(Outcome::Exhausted) {
                                return Request::Done(End::new(
                                    Ending::Failed,
                                    "retries_exhausted",
                                ));
                            }
                            self.dial = Some((d, self.current_step, self.now));
                            match self.route(Outcome::Exhausted) {
                                Some(end) => return Request::Done(end),
                                None => continue,
                            }
                        }
                    }
                    let at = match self.next_dial_at.take() {
                        // Settled by the retry that asked for it, with the
                        // same attempts behind it: it settles to itself.
                        Some(t) if t >= self.now => Some(t),
                        t => self.setup.settle(
                            t.map_or(self.now, |t| t.max(self.now)),
                            &self.contact.zones,
                            &self.starts,
                        ),
                    };
                    let at = match at {
                        Some(at) if self.stop.is_none_or(|s| at < s) => at,
                        _ => return Request::Done(End::new(Ending::Skipped, "campaign_stopped")),
                    };
                    self.dial = Some((d, self.current_step, at));
                    self.routing = None;
                    self.waiting = Waiting::Dial;
                    self.now = at;
                    return Request::Dial {
                        at,
                        step: self.current_step,
                        timeout_seconds: d.timeout_seconds,
                        detect_voicemail: d.detect_voicemail,
                    };
                }
                Action::Say { text } => {
                    let said = self.with_scope(|s| eval::render(text, s));
                    self.trail.prompts.push(Prompt::Say(said.clone()));
                    self.trail.said.push(said);
                }
                Action::Play { file } => {
                    self.trail.prompts.push(Prompt::Play(file.clone()));
                    self.trail.said.push(format!("[{file}]"));
                }
                Action::Gather(g) => {
                    self.waiting = Waiting::Gather(g, 1);
                    return gather_request(g, 1);
                }
                Action::Record { var, max_seconds } => {
                    let file = self.recording_name();
                    self.trail.prompts.push(Prompt::Record {
                        file: file.clone(),
                        max_seconds: *max_seconds,
                    });
                    self.vars[*var] = Some(Value::Text(file));
                }
                Action::Transfer(t) => {
                    let number = self
                        .with_scope(|s| eval::eval(&t.number, s))
                        .map_or_else(String::new, |v| eval::show(&v));
                    self.waiting = Waiting::Transfer(t);
                    return Request::Transfer {
                        number,
                        timeout_seconds: t.timeout_seconds,
                    };
                }
                Action::Set { var, value } => {
                    self.vars[*var] = self.with_scope(|s| eval::eval(value, s))
                }
                Action::SendSms { text } => {
                    let sms = self.with_scope(|s| eval::render(text, s));
                    self.send(MessageKind::Sms, &sms, Some(self.contact.phone.to_string()));
                    self.trail.sms.push(sms);
                }
                Action::SendEmail { body, subject } => {
                    let email = self.with_scope(|s| eval::render(body, s));
                    let subject = subject
                        .as_ref()
                        .map(|t| self.with_scope(|s| eval::render(t, s)));
                    let to = self.contact.fields.text("email").map(str::to_string);
                    self.send(MessageKind::Email, &email, to);
                    if let Some(m) = self.trail.outbox.last_mut() {
                        m.subject = subject;
                    }
                    self.trail.emails.push(email);
                }
                Action::Flag { label } => {
                    self.send(MessageKind::Flag, label, None);
                    self.trail.flags.push(label.clone());
                }
                Action::OptOut => self.trail.opted_out = true,
                Action::Wait { seconds } => self.now += Duration::seconds(*seconds as i64),
                Action::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    let branch = if self.with_scope(|s| eval::truthy(cond, s)) {
                        then
                    } else {
                        otherwise
                    };
                    if !branch.is_empty() {
                        self.stack.push((branch, 0));
                    }
                }
                Action::Goto { step } => self.goto(*step),
                Action::Retry { form, max } => {
                    if let Some(end) = self.retry(form.as_ref(), *max) {
                        return Request::Done(end);
                    }
                }
                Action::End { completed, reason } => {
                    let reason = reason
                        .clone()
                        .unwrap_or_else(|| if *completed { "completed" } else { "failed" }.into());
                    let ending = if *completed {
                        Ending::Completed
                    } else {
                        Ending::Failed
                    };
                    return Request::Done(End::new(ending, reason));
                }
            }
        }
    }

    /// The dial waiting for an answer could not start when asked (the
    /// scheduler was at its limits): plans it again from `after`, within the
    /// calendar and the limits.
    pub fn reschedule(&mut self, after: DateTime<Utc>) -> Request {
        let Some((d, step, planned)) = self.dial else {
            return self.resume();
        };
        let dial = |at| Request::Dial {
            at,
            step,
            timeout_seconds: d.timeout_seconds,
            detect_voicemail: d.detect_voicemail,
        };
        // Placed when planned: the instant was settled already, and settling
        // a settled instant gives it back (nothing it depends on changed).
        if after == planned {
            return dial(planned);
        }
        match self.setup.settle(after, &self.contact.zones, &self.starts) {
            Some(at) if self.stop.is_none_or(|s| at < s) => {
                self.dial = Some((d, step, at));
                self.now = at;
                dial(at)
            }
            _ => {
                self.waiting = Waiting::Nothing;
                Request::Done(End::new(Ending::Skipped, "campaign_stopped"))
            }
        }
    }

    fn goto(&mut self, step: StepId) {
        self.stack = vec![(&self.flow.steps[step].actions, 0)];
        self.current_step = step;
        self.trail.path.push(step);
    }

    /// Routes a dial outcome for this arm; `Some` when the contact ends.
    fn route(&mut self, outcome: Outcome) -> Option<End> {
        let (dial, _, _) = self.dial?;
        self.routing = Some(outcome);
        match dial.routing[self.arm].get(&outcome) {
            Some(Resolution::Block(i)) => {
                self.stack.push((&dial.blocks[*i], 0));
                None
            }
            Some(Resolution::Strategy) => match self.strategy().and_then(|s| s.rules.get(&outcome))
            {
                Some(StrategyRule::Retry { form, max }) => self.retry(Some(form), *max),
                Some(StrategyRule::Stop) => Self::finish(false, outcome.name()),
                None => Self::finish(false, outcome.name()),
            },
            Some(Resolution::Default) | None => match outcome {
                Outcome::Exhausted => Self::finish(false, "retries_exhausted"),
                other => Self::finish(false, other.name()),
            },
        }
    }

    /// Retries the last dial with a form (or the strategy's rule for the
    /// outcome being routed); `Some` when the contact ends instead.
    fn retry(&mut self, form: Option<&'f RetryForm>, max: Option<u32>) -> Option<End> {
        let outcome = self.routing?;
        if outcome == Outcome::Exhausted {
            return Self::finish(false, "retries_exhausted");
        }
        let rule = self.strategy().and_then(|s| s.rules.get(&outcome));
        let (form, max) = match (form, rule) {
            (Some(f), _) => (f, max),
            (
                None,
                Some(StrategyRule::Retry {
                    form,
                    max: rule_max,
                }),
            ) => (form, max.or(*rule_max)),
            (None, _) => return self.route(Outcome::Exhausted),
        };
        let attempts = self.trail.attempts.len() as u32;
        let over_total = self
            .strategy()
            .and_then(|s| s.max_attempts)
            .is_some_and(|m| attempts >= m);
        let over_rule =
            max.is_some_and(|m| self.rule_retries.get(&outcome).copied().unwrap_or(0) >= m);
        if over_total || over_rule {
            return self.route(Outcome::Exhausted);
        }
        let strategy = self.strategy();
        let r = retry::Retry {
            ended_at: self.now,
            nth: self.retries + 1,
            jitter_percent: if self.jitter {
                strategy.map_or(0.0, |s| s.jitter_percent)
            } else {
                0.0
            },
            key: &self.contact.phone,
            min_gap: Duration::seconds(strategy.map_or(0, |s| s.min_gap_seconds) as i64),
            flow_zone: flow_zone(self.flow),
        };
        let Some(at) = retry::next_attempt(
            form,
            &r,
            &self.contact.zones,
            &self.setup.schedule,
            &self.setup.limits,
            &self.starts,
        ) else {
            return self.route(Outcome::Exhausted);
        };
        self.retries += 1;
        *self.rule_retries.entry(outcome).or_default() += 1;
        self.next_dial_at = Some(at);
        let (_, step, _) = self.dial?;
        self.stack = self.dial_at.clone();
        self.current_step = step;
        self.trail.path.push(step);
        None
    }
}

fn gather_request(g: &ir::Gather, attempt: u32) -> Request {
    Request::Gather {
        digits: g.digits,
        timeout_seconds: g.timeout_seconds,
        attempt,
        tries: g.tries,
        keys: g.keys.iter().map(|(k, _)| k.clone()).collect(),
    }
}

/// The flow's own zone, for `start`, `stop` and `retry on` instants without
/// a zone of their own: the literal fallback of its `timezone` line, else UTC.
pub fn flow_zone(flow: &ir::Flow) -> Tz {
    flow.timezone
        .iter()
        .find_map(|s| match s {
            ir::ZoneSource::Zone(z) => z.parse::<Tz>().ok(),
            _ => None,
        })
        .unwrap_or(Tz::UTC)
}

/// A flow date-time as an instant: in its own zone, else the given one.
pub fn local_instant(dt: &ir::LocalDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    use chrono::Timelike;
    let tz = dt
        .zone
        .as_deref()
        .and_then(|z| z.parse::<Tz>().ok())
        .unwrap_or(zone);
    let minute = (dt.local.hour() * 60 + dt.local.minute()) as u16;
    Some(crate::calendar::schedule::instant(
        tz,
        dt.local.date(),
        minute,
    ))
}

/// The experiment arm of a contact: a stable hash of its number and the
/// experiment's name, so a restart never moves a contact.
pub fn assign_arm(flow: &ir::Flow, phone: &str) -> ArmId {
    let Some(experiment) = &flow.experiment else {
        return 0;
    };
    let key = format!("{experiment}\u{0}{phone}");
    let point = retry::jitter_fraction(&key, 0) * 100.0;
    let mut acc = 0.0;
    for (i, arm) in flow.arms.iter().enumerate() {
        acc += arm.weight_percent;
        if point < acc {
            return i;
        }
    }
    flow.arms.len().saturating_sub(1)
}
