//! The campaign simulator: every contact's run on one virtual clock, with the
//! `sim` dialer, fair by due time, within the flow's concurrency and pacing.
//! Events are processed in time order; a call occupies a line from its start
//! to its end, so concurrency and rate limits act as they would for real.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::interpreter::{self, Attempt, End, Reply, Request, Run, Schedules};
use crate::contacts;
use crate::dialer::{Call, SimDialer};
use crate::ir::{self, ArmId, Outcome, StepId, Value};

/// What became of one contact.
#[derive(Clone, Debug)]
pub struct ContactResult {
    pub line: usize,
    pub phone: String,
    pub zone: Tz,
    pub arm: ArmId,
    /// How the contact ended; `None` while it has not (a paused campaign).
    pub end: Option<End>,
    pub attempts: Vec<Attempt>,
    pub path: Vec<StepId>,
}

impl ContactResult {
    /// pending, completed, failed or skipped.
    pub fn state(&self) -> &'static str {
        match &self.end {
            None => "pending",
            Some(e) if e.skipped => "skipped",
            Some(e) if e.completed => "completed",
            Some(_) => "failed",
        }
    }

    pub fn reason(&self) -> &str {
        self.end.as_ref().map_or("", |e| e.reason.as_str())
    }
}

#[derive(Debug)]
pub struct Simulation {
    pub contacts: Vec<ContactResult>,
    pub start: DateTime<Utc>,
    /// The virtual instant the last contact finished.
    pub finish: DateTime<Utc>,
    /// When `pause campaign when step … reached N times` stopped new dials.
    pub paused_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The contact's pending request is due.
    Due,
    /// The contact's call has ended.
    CallEnded,
    /// The pace allows another dial.
    Wake,
}

/// An event for a contact at an instant; the sequence number keeps events of
/// one instant in the order they were scheduled (fair by due time).
type Scheduled = (DateTime<Utc>, u64, usize, Event);

struct Line {
    outcome: Outcome,
    started_at: DateTime<Utc>,
}

pub fn simulate(
    flow: &ir::Flow,
    list: &[contacts::Contact],
    dialer: &SimDialer,
    start: DateTime<Utc>,
) -> Simulation {
    simulate_with(flow, list, dialer, start, &HashSet::new())
}

/// A simulation that never dials the numbers (E.164) of a do-not-call list:
/// those contacts end skipped, whatever the flow says.
pub fn simulate_with(
    flow: &ir::Flow,
    list: &[contacts::Contact],
    dialer: &SimDialer,
    start: DateTime<Utc>,
    do_not_call: &HashSet<String>,
) -> Simulation {
    let mut sim = Simulator::new(flow, list, dialer, start, do_not_call);
    sim.run();
    let contacts = sim
        .results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| pending(&list[i], flow, sim.runs[i].as_mut())))
        .collect();
    Simulation {
        contacts,
        start,
        finish: sim.finish,
        paused_at: sim.paused_at,
    }
}

/// The event loop. Contacts wait in a heap until their dial is due, then in
/// a first-come queue until a line is free and the pace allows a dial: the
/// scheduler is fair by due time, and concurrency and rate are hard limits.
struct Simulator<'a> {
    flow: &'a ir::Flow,
    list: &'a [contacts::Contact],
    dialer: &'a SimDialer,
    do_not_call: &'a HashSet<String>,
    schedules: Schedules,
    start: DateTime<Utc>,
    runs: Vec<Option<Run<'a>>>,
    pending: Vec<Option<Request>>,
    lines: Vec<Option<Line>>,
    results: Vec<Option<ContactResult>>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Contacts whose dial is due, waiting for a line or for the pace.
    ready: VecDeque<usize>,
    in_flight: usize,
    concurrency: Option<usize>,
    rate: Option<(usize, Duration)>,
    recent_dials: VecDeque<DateTime<Utc>>,
    /// A wake-up is scheduled for when the pace allows the next dial.
    wake_pending: bool,
    finish: DateTime<Utc>,
    /// The step and count that pause the campaign, and how often it was reached.
    pause_when: Option<(StepId, u32)>,
    reached: u32,
    /// Path entries already counted, per contact.
    counted: Vec<usize>,
    paused_at: Option<DateTime<Utc>>,
}

impl<'a> Simulator<'a> {
    fn new(
        flow: &'a ir::Flow,
        list: &'a [contacts::Contact],
        dialer: &'a SimDialer,
        start: DateTime<Utc>,
        do_not_call: &'a HashSet<String>,
    ) -> Self {
        let n = list.len();
        let mut s = Simulator {
            flow,
            list,
            dialer,
            do_not_call,
            schedules: Schedules::default(),
            start,
            runs: (0..n).map(|_| None).collect(),
            pending: vec![None; n],
            lines: (0..n).map(|_| None).collect(),
            results: vec![None; n],
            queue: BinaryHeap::new(),
            seq: 0,
            ready: VecDeque::new(),
            in_flight: 0,
            concurrency: flow.concurrency.map(|c| c as usize),
            rate: flow.rate.map(|r| {
                (
                    r.count as usize,
                    Duration::seconds(i64::from(r.per_seconds)),
                )
            }),
            recent_dials: VecDeque::new(),
            wake_pending: false,
            finish: start,
            pause_when: flow.pause_when.map(|p| (p.step, p.times)),
            reached: 0,
            counted: vec![0; n],
            paused_at: None,
        };
        for i in 0..n {
            s.push(start, i, Event::Due);
        }
        s
    }

    fn push(&mut self, at: DateTime<Utc>, i: usize, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, i, e)));
    }

    fn run(&mut self) {
        while let Some(Reverse((now, _, i, event))) = self.queue.pop() {
            self.finish = self.finish.max(now);
            match event {
                Event::Wake => self.wake_pending = false,
                Event::CallEnded => {
                    self.in_flight -= 1;
                    let line = self.lines[i].take().expect("a call was in progress");
                    let run = self.runs[i].as_mut().expect("a call belongs to a run");
                    let request = run.reply(Reply::Dialled {
                        outcome: line.outcome,
                        started_at: line.started_at,
                        ended_at: now,
                    });
                    self.handle(i, request, now);
                }
                Event::Due => {
                    let request = match self.runs[i].as_mut() {
                        Some(_) => self.pending[i].take().expect("a due contact has a request"),
                        None => match self.begin(i) {
                            Some(r) => r,
                            None => continue,
                        },
                    };
                    self.handle(i, request, now);
                }
            }
            self.dispatch(now);
        }
    }

    /// Starts a contact's run; `None` when it is skipped before any call.
    fn begin(&mut self, i: usize) -> Option<Request> {
        let c = &self.list[i];
        // The arm comes first: a skipped contact still belongs to its arm.
        let arm = interpreter::assign_arm(self.flow, &c.phone);
        if self.do_not_call.contains(&c.phone) {
            let end = End {
                completed: false,
                reason: "do_not_call".into(),
                skipped: true,
            };
            self.results[i] = Some(result(c, arm, end, None));
            return None;
        }
        let consent_required = self
            .flow
            .compliance
            .policies
            .iter()
            .any(|p| p.require_consent);
        if consent_required && matches!(c.fields.get("consent"), Some(Value::Bool(false))) {
            self.results[i] = Some(result(
                c,
                arm,
                End {
                    completed: false,
                    reason: "no_consent".into(),
                    skipped: true,
                },
                None,
            ));
            return None;
        }
        let run = Run::new(self.flow, arm, c, self.start, &mut self.schedules);
        Some(self.runs[i].insert(run).start())
    }

    /// Follows a contact's requests until it waits for a dial or ends.
    fn handle(&mut self, i: usize, mut request: Request, now: DateTime<Utc>) {
        loop {
            self.count_reached(i, now);
            let run = self.runs[i].as_mut().expect("the run exists");
            request = match request {
                Request::Done(end) => {
                    let arm = run.arm();
                    self.results[i] = Some(result(&self.list[i], arm, end, Some(run)));
                    self.runs[i] = None;
                    return;
                }
                Request::Dial { at, .. } if at > now => {
                    self.pending[i] = Some(request);
                    self.push(at, i, Event::Due);
                    return;
                }
                Request::Dial { .. } => {
                    self.pending[i] = Some(request);
                    self.ready.push_back(i);
                    return;
                }
                Request::Gather { keys, attempt, .. } => {
                    let pressed =
                        self.dialer
                            .gather(i, run.journal.attempts.len() as u32, attempt, &keys);
                    run.reply(Reply::Keys(pressed))
                }
                Request::Transfer { .. } => {
                    let outcome = self.dialer.transfer(i, run.journal.attempts.len() as u32);
                    run.reply(Reply::Transferred(outcome))
                }
            };
        }
    }

    /// Counts the steps a contact entered since last time, for `pause
    /// campaign when`; reaching the threshold pauses the campaign.
    fn count_reached(&mut self, i: usize, now: DateTime<Utc>) {
        let (Some((step, times)), Some(run)) = (self.pause_when, self.runs[i].as_ref()) else {
            return;
        };
        let path = &run.journal.path;
        self.reached += path[self.counted[i].min(path.len())..]
            .iter()
            .filter(|s| **s == step)
            .count() as u32;
        self.counted[i] = path.len();
        if self.reached >= times && self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
    }

    /// Places the calls the limits allow now, first come first served. A
    /// paused campaign places none; calls in progress finish.
    fn dispatch(&mut self, now: DateTime<Utc>) {
        if self.paused_at.is_some() {
            return;
        }
        while !self.ready.is_empty() {
            if self.concurrency.is_some_and(|c| self.in_flight >= c) {
                return; // A call's end frees a line and dispatches again.
            }
            if let Some((count, period)) = self.rate {
                while self
                    .recent_dials
                    .front()
                    .is_some_and(|t| now - *t >= period)
                {
                    self.recent_dials.pop_front();
                }
                if self.recent_dials.len() >= count {
                    if !self.wake_pending {
                        let at = self.recent_dials[0] + period;
                        self.wake_pending = true;
                        self.push(at, usize::MAX, Event::Wake);
                    }
                    return;
                }
            }
            let i = self.ready.pop_front().expect("not empty");
            let run = self.runs[i].as_mut().expect("a ready contact has a run");
            // Waiting may have carried the dial out of callable time or into
            // a limit: plan it again from now (unchanged when nothing moved).
            self.pending[i] = None;
            let request = run.reschedule(now);
            match request {
                Request::Dial {
                    at,
                    number,
                    timeout_seconds,
                    detect_voicemail,
                    ..
                } if at <= now => {
                    let c = &self.list[i];
                    let run = self.runs[i].as_ref().expect("a ready contact has a run");
                    let zone = c.zones.first().copied().unwrap_or(Tz::UTC);
                    let call = Call {
                        contact: i,
                        attempt: run.journal.attempts.len() as u32 + 1,
                        number: &number,
                        local: now.with_timezone(&zone).naive_local(),
                        timeout_seconds,
                        detect_voicemail,
                    };
                    let dialled = self.dialer.dial(&call);
                    let end = now + Duration::seconds(dialled.seconds.max(1) as i64);
                    self.in_flight += 1;
                    self.recent_dials.push_back(now);
                    self.lines[i] = Some(Line {
                        outcome: dialled.outcome,
                        started_at: now,
                    });
                    self.push(end, i, Event::CallEnded);
                }
                other => self.handle(i, other, now),
            }
        }
    }
}

/// A contact the run left unfinished (the campaign paused), with what it did so far.
fn pending(c: &contacts::Contact, flow: &ir::Flow, run: Option<&mut Run<'_>>) -> ContactResult {
    let arm = run
        .as_ref()
        .map_or_else(|| interpreter::assign_arm(flow, &c.phone), |r| r.arm());
    let mut r = result(
        c,
        arm,
        End {
            completed: false,
            reason: String::new(),
            skipped: false,
        },
        run,
    );
    r.end = None;
    r
}

fn result(c: &contacts::Contact, arm: ArmId, end: End, run: Option<&mut Run<'_>>) -> ContactResult {
    let journal = run
        .map(|r| std::mem::take(&mut r.journal))
        .unwrap_or_default();
    ContactResult {
        line: c.line,
        phone: c.phone.clone(),
        zone: c.zones.first().copied().unwrap_or(Tz::UTC),
        arm,
        end: Some(end),
        attempts: journal.attempts,
        path: journal.path,
    }
}
