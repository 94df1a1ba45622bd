//! The campaign engine: every contact's run of a flow, driven by one loop on
//! a `Clock`, calling through a `Dialer`, journalled in a `Store`. The same
//! code runs `flowc run` (wall clock, real waits) and `flowc simulate`
//! (virtual clock: it jumps to the next event once no call is under way).
//!
//! Contacts wait in a heap until their dial is due, then in a first-come
//! queue until a line is free and the pace allows a dial: the scheduler is
//! fair by due time, and concurrency and rate are hard limits. Contacts not
//! yet begun are all due at the campaign's start, so they are begun (in list
//! order) before the queue's later arrivals; one whose first dial is not due
//! yet is parked as a bare heap entry and begun again when due, so a large
//! list costs memory only for the contacts under way.
//!
//! Every attempt is written to the store before its dial (the writes of one
//! instant are flushed together, then the calls start) and completed after
//! the call with what the recipient did; a resumed run replays those replies
//! through the interpreter, so a contact continues exactly where it stopped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::clock::Clock;
use super::interpreter::{self, Attempt, End, Prompt, Reply, Request, Run, Schedules};
use crate::contacts::Contact;
use crate::dialer::{Ask, Call, CallId, Dialer, Dialled};
use crate::ir::{self, ArmId, Outcome, StepId, TransferOutcome, Value};
use crate::store::{CallEnd, History, Store, StoreError, StoredAttempt};

/// What became of one contact.
#[derive(Clone, Debug)]
pub struct ContactResult {
    pub line: usize,
    pub phone: String,
    pub zone: Tz,
    pub arm: ArmId,
    /// How the contact ended; `None` while it has not (a paused campaign).
    pub end: Option<End>,
    /// A call of this contact was under way when the run stopped (read
    /// from a store while a run goes on, or after a crash).
    pub in_progress: bool,
    pub attempts: Vec<Attempt>,
    pub path: Vec<StepId>,
    /// What the run said and sent, when it did (most contacts of a large
    /// campaign send nothing, so this costs them a null pointer).
    pub messages: Option<Box<Messages>>,
}

/// What a contact's run said, sent and flagged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Messages {
    pub said: Vec<String>,
    pub sms: Vec<String>,
    pub emails: Vec<String>,
    pub flags: Vec<String>,
    /// The SMS, e-mails and flags, with recipients and attempts.
    pub outbox: Vec<interpreter::Message>,
}

impl Messages {
    fn of(journal: &mut interpreter::Journal) -> Option<Box<Messages>> {
        let m = Messages {
            said: std::mem::take(&mut journal.said),
            sms: std::mem::take(&mut journal.sms),
            emails: std::mem::take(&mut journal.emails),
            flags: std::mem::take(&mut journal.flags),
            outbox: std::mem::take(&mut journal.outbox),
        };
        (m != Messages::default()).then(|| Box::new(m))
    }
}

impl ContactResult {
    /// pending, in_progress, completed, failed or skipped.
    pub fn state(&self) -> &'static str {
        match &self.end {
            None if self.in_progress => "in_progress",
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

/// What a run did.
#[derive(Debug)]
pub struct Results {
    pub contacts: Vec<ContactResult>,
    pub start: DateTime<Utc>,
    /// The instant the engine stopped.
    pub finish: DateTime<Utc>,
    /// When new dials stopped: `pause campaign when …` or the operator.
    pub paused_at: Option<DateTime<Utc>>,
    /// The operator paused the run (Ctrl-C), rather than the flow.
    pub paused_by_operator: bool,
    /// Calls under way that a stop cut off: they have no end, and resume
    /// as `unknown`.
    pub cut_off: usize,
    /// How late each dial started after its due instant, in milliseconds
    /// (wall clock only: a virtual clock is never late).
    pub lateness_ms: Vec<f64>,
}

/// Live counters, for a progress display. They always sum to `total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub pending: u64,
    pub in_progress: u64,
    pub calls: u64,
    /// How late the dials of this run started after their due instants.
    pub lateness: Lateness,
}

/// A histogram of dial lateness: how many dials started within each bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lateness {
    /// Dials at most `LATENESS_BOUNDS_MS[k]` late, per bound (not cumulative).
    pub within: [u64; LATENESS_BOUNDS_MS.len()],
    /// Dials later than the last bound.
    pub beyond: u64,
    /// The sum of every dial's lateness, in microseconds.
    pub sum_us: u64,
}

/// The bounds of [`Lateness`], in milliseconds.
pub const LATENESS_BOUNDS_MS: [u64; 9] = [1, 5, 10, 25, 50, 100, 250, 1000, 5000];

impl Lateness {
    pub fn record(&mut self, late_us: u64) {
        match LATENESS_BOUNDS_MS.iter().position(|b| late_us <= b * 1000) {
            Some(k) => self.within[k] += 1,
            None => self.beyond += 1,
        }
        self.sum_us += late_us;
    }

    pub fn count(&self) -> u64 {
        self.within.iter().sum::<u64>() + self.beyond
    }

    pub fn add(&mut self, other: &Lateness) {
        for (a, b) in self.within.iter_mut().zip(other.within) {
            *a += b;
        }
        self.beyond += other.beyond;
        self.sum_us += other.sum_us;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The contact's pending request is due (or, without a run, its first dial).
    Due,
    /// The contact's call has lasted as long as the dialer said.
    CallEnded,
    /// The pace allows another dial.
    Wake,
}

/// An event for a contact at an instant; the sequence number keeps events of
/// one instant in the order they were scheduled (fair by due time).
type Scheduled = (DateTime<Utc>, u64, usize, Event);

/// What a dialer's future brought back.
enum Io {
    Placed(Dialled),
    Keys(Option<String>),
    Transferred(TransferOutcome),
    HungUp,
}

type OnOptOut<'a> = Box<dyn FnMut(&str) + 'a>;
type OnProgress<'a> = Box<dyn FnMut(&Progress, DateTime<Utc>) + 'a>;

type IoFuture<'a> = Pin<Box<dyn Future<Output = (usize, Io)> + 'a>>;

/// A call under way.
struct Line {
    id: CallId,
    started_at: DateTime<Utc>,
    outcome: Outcome,
    keys: Vec<Option<String>>,
    transfers: Vec<TransferOutcome>,
    sip: Option<(u16, String)>,
    /// How many of the run's prompts (`say`, `play`) the dialer was given.
    prompted: usize,
}

pub struct Engine<'a, C: Clock, D: Dialer> {
    flow: &'a ir::Flow,
    list: &'a [Contact],
    dialer: &'a D,
    clock: &'a C,
    store: Option<&'a mut Store>,
    history: Vec<History>,
    do_not_call: HashSet<String>,
    on_opt_out: Option<OnOptOut<'a>>,
    on_progress: Option<OnProgress<'a>>,
    pause: Option<tokio::sync::watch::Receiver<bool>>,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Replaying a stored history need not reach the stored steps (`--migrate`).
    migrating: bool,
    jitter: bool,
    schedules: Schedules,
    start: DateTime<Utc>,
    // Boxed: a slot per contact costs a pointer until the contact is under way.
    runs: Vec<Option<Box<Run<'a>>>>,
    pending: Vec<Option<Box<Request>>>,
    lines: Vec<Option<Box<Line>>>,
    /// Contacts waiting for a retry keep only their attempts; their run is
    /// rebuilt by replaying them when the retry is due.
    parked: Vec<Option<Box<[Attempt]>>>,
    /// Contacts whose calls had in-call replies (keys, transfers): their
    /// runs stay in memory, since the attempts alone cannot replay them.
    in_call: Vec<bool>,
    results: Vec<Option<ContactResult>>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Contacts whose dial is due, waiting for a line or for the pace.
    ready: VecDeque<usize>,
    /// The first contact not begun yet; all before it were.
    unstarted: usize,
    in_flight: usize,
    io: FuturesUnordered<IoFuture<'a>>,
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
    counted: Vec<u32>,
    paused_at: Option<DateTime<Utc>>,
    paused_by_operator: bool,
    progress: Progress,
    lateness_ms: Vec<f64>,
    /// When each dial of the batch being placed was due (wall clock).
    due_at: Vec<DateTime<Utc>>,
    /// Contacts that waited for a line or the pace (wall clock only), and
    /// when one last freed up: their lateness counts from then.
    held: Vec<bool>,
    unstarted_held: bool,
    freed_at: DateTime<Utc>,
}

impl<'a, C: Clock, D: Dialer> Engine<'a, C, D> {
    /// A campaign of `flow` over `list`, starting at `start` (the stored
    /// start when resuming: every contact's run is replayed from it).
    pub fn new(
        flow: &'a ir::Flow,
        list: &'a [Contact],
        dialer: &'a D,
        clock: &'a C,
        start: DateTime<Utc>,
    ) -> Self {
        let n = list.len();
        Engine {
            flow,
            list,
            dialer,
            clock,
            store: None,
            history: Vec::new(),
            do_not_call: HashSet::new(),
            on_opt_out: None,
            on_progress: None,
            pause: None,
            stop: None,
            migrating: false,
            jitter: true,
            schedules: Schedules::default(),
            start,
            runs: (0..n).map(|_| None).collect(),
            pending: vec![None; n],
            lines: (0..n).map(|_| None).collect(),
            parked: (0..n).map(|_| None).collect(),
            in_call: vec![false; n],
            results: vec![None; n],
            queue: BinaryHeap::new(),
            seq: 0,
            ready: VecDeque::new(),
            unstarted: 0,
            in_flight: 0,
            io: FuturesUnordered::new(),
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
            paused_by_operator: false,
            progress: Progress {
                total: n as u64,
                pending: n as u64,
                ..Progress::default()
            },
            lateness_ms: Vec::new(),
            due_at: Vec::new(),
            held: Vec::new(),
            unstarted_held: false,
            freed_at: start,
        }
    }

    /// Journals the run in `store`: contacts beyond the stored ones are
    /// added, each attempt is written before its dial.
    pub fn store(mut self, store: &'a mut Store) -> Self {
        self.store = Some(store);
        self
    }

    /// What the first contacts of the list did in an earlier run (their
    /// ids are their places in the list).
    pub fn history(mut self, history: Vec<History>) -> Self {
        self.history = history;
        self
    }

    /// Numbers (E.164) never to dial, whatever the flow says.
    pub fn do_not_call(mut self, numbers: HashSet<String>) -> Self {
        self.do_not_call = numbers;
        self
    }

    /// Told each number that opts out (`opt out`) during the run.
    pub fn on_opt_out(mut self, f: impl FnMut(&str) + 'a) -> Self {
        self.on_opt_out = Some(Box::new(f));
        self
    }

    /// Told the counters as the run goes (on the wall clock, after every
    /// change; on a virtual clock, now and then).
    pub fn on_progress(mut self, f: impl FnMut(&Progress, DateTime<Utc>) + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Pauses the run when the value turns true: no new dial, calls under
    /// way finish, then `run` returns.
    pub fn pause_on(mut self, signal: tokio::sync::watch::Receiver<bool>) -> Self {
        self.pause = Some(signal);
        self
    }

    /// Stops the run when the value turns true, without waiting for the
    /// calls under way: they stay without an end (and resume as `unknown`).
    pub fn stop_on(mut self, signal: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stop = Some(signal);
        self
    }

    /// The history was made by another version of the flow (`--migrate`):
    /// its attempts are replayed without checking their steps.
    pub fn migrating(mut self, migrating: bool) -> Self {
        self.migrating = migrating;
        self
    }

    /// Retries wait exactly what their rule says (scenario tests).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    fn push(&mut self, at: DateTime<Utc>, i: usize, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, i, e)));
    }

    /// Hands the writes so far to the store's writer.
    fn flush(&mut self) -> Result<(), StoreError> {
        match self.store.as_deref_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }

    /// Waits until the writes so far are committed.
    fn sync(&mut self) -> Result<(), StoreError> {
        match self.store.as_deref_mut() {
            Some(s) => s.sync(),
            None => Ok(()),
        }
    }

    /// Runs the campaign until every contact has ended or the run pauses.
    pub async fn run(mut self) -> Result<Results, StoreError> {
        if let Some(store) = self.store.as_deref_mut() {
            for i in self.history.len()..self.list.len() {
                let arm = interpreter::assign_arm(self.flow, &self.list[i].phone);
                store.add_contact(i, &self.list[i], arm);
            }
        }
        self.flush()?;
        if !self.migrating {
            self.check_replay()?;
        }
        let mut ticks: u64 = 0;
        let mut cut_off = 0;
        loop {
            let now = self.clock.now();
            self.finish = self.finish.max(now);
            if self.stop.as_ref().is_some_and(|s| *s.borrow()) {
                cut_off = self.in_flight;
                self.paused_at.get_or_insert(now);
                self.paused_by_operator = true;
                break;
            }
            // Looked at before any dial: a pause asked for before the run
            // began (or while it was busy) places no call.
            if self.paused_at.is_none() && self.pause.as_ref().is_some_and(|p| *p.borrow()) {
                self.paused_at = Some(now);
                self.paused_by_operator = true;
            }
            while let Some(Reverse((at, _, i, event))) = self.queue.peek().copied() {
                if at > now {
                    break;
                }
                self.queue.pop();
                self.event(i, event, now);
            }
            self.dispatch(now)?;
            let virtual_clock = self.clock.is_virtual();
            if !virtual_clock
                || self
                    .store
                    .as_ref()
                    .is_some_and(|s| s.pending_writes() > 200_000)
            {
                self.flush()?;
            }
            ticks += 1;
            if !virtual_clock || ticks % 4096 == 0 {
                let progress = self.progress;
                if let Some(f) = self.on_progress.as_mut() {
                    f(&progress, now);
                }
            }
            let stopping = self.paused_at.is_some();
            if self.in_flight == 0
                && self.io.is_empty()
                && (stopping
                    || (self.queue.is_empty()
                        && self.ready.is_empty()
                        && self.unstarted >= self.list.len()))
            {
                break;
            }
            // Wait for what comes first: a dialer's answer, the next event.
            let next = self.queue.peek().map(|Reverse((at, ..))| *at);
            if virtual_clock {
                if !self.io.is_empty() {
                    if let Some((i, io)) = self.io.next().await {
                        self.io_done(i, io, self.clock.now());
                    }
                } else if let Some(at) = next {
                    self.clock.sleep_until(at).await;
                }
                continue;
            }
            let pause = self.pause.clone();
            let stop = self.stop.clone();
            tokio::select! {
                biased;
                _ = paused(stop) => {} // The loop's top stops.
                Some((i, io)) = self.io.next(), if !self.io.is_empty() => {
                    self.io_done(i, io, self.clock.now());
                }
                _ = paused(pause), if !stopping => {
                    self.paused_at = Some(self.clock.now());
                    self.paused_by_operator = true;
                }
                _ = self.clock.sleep_until(next.unwrap_or(now)), if next.is_some() => {}
            }
        }
        self.sync()?;
        let progress = self.progress;
        let finish = self.finish;
        if let Some(f) = self.on_progress.as_mut() {
            f(&progress, finish);
        }
        // Collected in place: the results are most of a large run's memory.
        let results = std::mem::take(&mut self.results);
        let contacts = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| self.unfinished(i)))
            .collect();
        Ok(Results {
            contacts,
            start: self.start,
            finish: self.finish,
            paused_at: self.paused_at,
            paused_by_operator: self.paused_by_operator,
            cut_off,
            lateness_ms: self.lateness_ms,
        })
    }

    fn event(&mut self, i: usize, event: Event, now: DateTime<Utc>) {
        match event {
            Event::Wake => {
                self.wake_pending = false;
                self.freed_at = now;
            }
            Event::CallEnded => self.connected(i, now),
            Event::Due => match self.pending[i].take() {
                Some(request) => self.handle(i, *request, now),
                // A parked contact: begin it again, now that its dial is due.
                None => {
                    if let Some(request) = self.begin(i) {
                        self.handle(i, request, now);
                    }
                }
            },
        }
    }

    /// Starts a contact's run and replays its stored history; `None` when
    /// it ended before any call (stored end, do-not-call, no consent).
    fn begin(&mut self, i: usize) -> Option<Request> {
        let c = &self.list[i];
        if let Some(attempts) = self.parked[i].take() {
            let arm = self
                .history
                .get(i)
                .map_or_else(|| interpreter::assign_arm(self.flow, &c.phone), |h| h.arm);
            let mut run = Run::new(self.flow, arm, c, self.start, &mut self.schedules);
            if !self.jitter {
                run = run.without_jitter();
            }
            let request = run.start();
            let request = replay(&mut run, request, attempts.iter().map(Replayed::from));
            self.runs[i] = Some(Box::new(run));
            return Some(request);
        }
        let history = self.history.get(i);
        // The arm comes first: a skipped contact still belongs to its arm.
        let arm = history.map_or_else(|| interpreter::assign_arm(self.flow, &c.phone), |h| h.arm);
        if let Some(end) = history.and_then(|h| h.end.clone()) {
            self.results[i] = Some(self.history[i].result(c, self.flow));
            self.count_end(&end);
            return None;
        }
        if self.do_not_call.contains(&c.phone) {
            self.finish_skipped(i, arm, "do_not_call");
            return None;
        }
        let consent_required = self
            .flow
            .compliance
            .policies
            .iter()
            .any(|p| p.require_consent);
        if consent_required && matches!(c.fields.get("consent"), Some(Value::Bool(false))) {
            self.finish_skipped(i, arm, "no_consent");
            return None;
        }
        let mut run = Run::new(self.flow, arm, c, self.start, &mut self.schedules);
        if !self.jitter {
            run = run.without_jitter();
        }
        let mut request = run.start();
        if let Some(h) = self.history.get(i) {
            request = replay(&mut run, request, h.attempts.iter().map(Replayed::from));
            self.in_call[i] = h
                .attempts
                .iter()
                .any(|a| !a.keys.is_empty() || !a.transfers.is_empty());
            // An attempt whose end was never recorded is `unknown` now.
            if let Some(store) = self.store.as_deref_mut() {
                for a in h.attempts.iter().filter(|a| a.ended_at.is_none()) {
                    store.attempt_ended(
                        i,
                        a.number,
                        CallEnd {
                            ended_at: a.started_at,
                            outcome: Outcome::Unknown,
                            keys: Vec::new(),
                            transfers: Vec::new(),
                            sip: None,
                        },
                    );
                }
            }
            self.progress.calls += h.attempts.len() as u64;
        }
        self.runs[i] = Some(Box::new(run));
        Some(request)
    }

    /// Proves that the flow replays the stored run: each stored attempt of
    /// each unfinished contact must be reached at the step it was made at.
    fn check_replay(&mut self) -> Result<(), StoreError> {
        for (i, h) in self.history.iter().enumerate() {
            if h.end.is_some() || h.attempts.is_empty() {
                continue;
            }
            let c = &self.list[i];
            let mut run = Run::new(self.flow, h.arm, c, self.start, &mut self.schedules);
            if !self.jitter {
                run = run.without_jitter();
            }
            let mut request = run.start();
            for a in &h.attempts {
                let reached = match &request {
                    Request::Dial { step, .. } => Some(self.flow.steps[*step].name.as_str()),
                    _ => None,
                };
                if reached != Some(a.step.as_str()) {
                    return Err(StoreError::Diverged {
                        line: c.line,
                        phone: c.phone.clone(),
                        attempt: a.number,
                        stored: a.step.clone(),
                        replayed: reached.map_or_else(
                            || "(no dial: the contact's run ends there)".to_string(),
                            str::to_string,
                        ),
                    });
                }
                request = replay(&mut run, request, std::iter::once(Replayed::from(a)));
            }
        }
        Ok(())
    }

    /// Follows a contact's requests until it waits for a dial or ends.
    fn handle(&mut self, i: usize, mut request: Request, now: DateTime<Utc>) {
        loop {
            self.count_reached(i, now);
            self.note_opt_out(i);
            let Some(run) = self.runs[i].as_mut() else {
                return;
            };
            request = match request {
                Request::Done(end) => {
                    self.finish_run(i, end);
                    return;
                }
                Request::Dial { at, .. } if at > now => {
                    if self.in_call[i] {
                        self.pending[i] = Some(Box::new(request));
                    } else {
                        // Park it: keep its attempts (none yet: nothing) and
                        // begin it again, by replay, when the dial is due.
                        let mut run = self.runs[i].take().expect("a run");
                        let attempts = std::mem::take(&mut run.journal.attempts);
                        if !attempts.is_empty() || self.history.get(i).is_some() {
                            self.parked[i] = Some(attempts.into_boxed_slice());
                        }
                    }
                    self.push(at, i, Event::Due);
                    return;
                }
                Request::Dial { .. } => {
                    self.pending[i] = Some(Box::new(request));
                    self.ready.push_back(i);
                    return;
                }
                // In-call requests outside a call (the checker forbids them):
                // nobody is there to answer.
                Request::Gather { .. } => run.reply(Reply::Keys(None)),
                Request::Transfer { .. } => run.reply(Reply::Transferred(TransferOutcome::Failed)),
            };
        }
    }

    /// Begins not-yet-begun contacts in list order until one has a dial due
    /// now; returns it.
    fn take_unstarted(&mut self, now: DateTime<Utc>) -> Option<usize> {
        while self.unstarted < self.list.len() {
            let i = self.unstarted;
            self.unstarted += 1;
            let Some(request) = self.begin(i) else {
                continue;
            };
            self.handle(i, request, now);
            if self.pending[i].is_some() && self.ready.back() == Some(&i) {
                self.ready.pop_back();
                return Some(i);
            }
        }
        None
    }

    /// Places the calls the limits allow now, first come first served: the
    /// attempts are journalled, flushed, then dialled. A paused campaign
    /// places none; calls under way finish.
    fn dispatch(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut calls: Vec<(usize, Call)> = Vec::new();
        let mut limited = false;
        while self.paused_at.is_none() {
            if self.concurrency.is_some_and(|c| self.in_flight >= c) {
                limited = true;
                break; // A call's end frees a line and dispatches again.
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
                    limited = true;
                    break;
                }
            }
            let (i, fresh) = match self.take_unstarted(now) {
                Some(i) => (i, true),
                None => match self.ready.pop_front() {
                    Some(i) => (i, false),
                    None => break,
                },
            };
            if let Some(call) = self.prepare_call(i, fresh, now) {
                self.in_flight += 1;
                self.recent_dials.push_back(now);
                calls.push((i, call));
            }
        }
        if limited && !self.clock.is_virtual() {
            self.held.resize(self.list.len(), false);
            for i in &self.ready {
                self.held[*i] = true;
            }
            self.unstarted_held = true;
        }
        if calls.is_empty() {
            return Ok(());
        }
        // Written before the dial: a crash from here on leaves the attempt
        // without an end, and the resumed run counts it `unknown`. Simulated
        // calls (a virtual clock) are written in large batches instead: a
        // lost one was never dialled, and a resumed simulation draws it again.
        if !self.clock.is_virtual() {
            self.sync()?;
        }
        let due_at = std::mem::take(&mut self.due_at);
        for (k, (i, call)) in calls.into_iter().enumerate() {
            if let Some(due) = due_at.get(k) {
                let late = (self.clock.now() - *due).num_microseconds().unwrap_or(0);
                self.lateness_ms.push(late as f64 / 1000.0);
                self.progress.lateness.record(late.max(0) as u64);
            }
            let dialer = self.dialer;
            self.start_io(i, async move { Io::Placed(dialer.place(call).await) }, now);
        }
        Ok(())
    }

    /// Plans a ready contact's dial again from now (waiting may have carried
    /// it out of callable time or into a limit) and, when it is due, takes a
    /// line for it and journals the attempt.
    fn prepare_call(&mut self, i: usize, fresh: bool, now: DateTime<Utc>) -> Option<Call> {
        let due = match self.pending[i].as_deref() {
            Some(Request::Dial { at, .. }) => *at,
            _ => now,
        };
        self.pending[i] = None;
        let run = self.runs[i].as_mut().expect("a ready contact has a run");
        let (step, number, timeout_seconds, detect_voicemail, from) = match run.reschedule(now) {
            Request::Dial {
                at,
                step,
                number,
                timeout_seconds,
                detect_voicemail,
                from,
            } if at <= now => (step, number, timeout_seconds, detect_voicemail, from),
            // Not due after all (or ended): back to waiting.
            other => {
                self.handle(i, other, now);
                return None;
            }
        };
        if self.do_not_call.contains(&number) {
            let arm = run.arm();
            self.runs[i] = None;
            self.finish_skipped(i, arm, "do_not_call");
            return None;
        }
        let attempt = run.journal.attempts.len() as u32 + 1;
        let arm = &self.flow.arms[run.arm()];
        // `from` on the dial, else the arm's caller ids in turn, one per attempt.
        let caller_id = from.or_else(|| arm.caller_id(attempt).map(str::to_string));
        let c = &self.list[i];
        let zone = c.zones.first().copied().unwrap_or(Tz::UTC);
        let id = CallId {
            contact: i,
            attempt,
        };
        if let Some(store) = self.store.as_deref_mut() {
            store.attempt_started(
                i,
                StoredAttempt {
                    number: attempt,
                    step: self.flow.steps[step].name.clone(),
                    started_at: now,
                    caller_id: caller_id.clone(),
                    ended_at: None,
                    outcome: None,
                    keys: Vec::new(),
                    transfers: Vec::new(),
                    sip: None,
                },
            );
        }
        if !self.clock.is_virtual() {
            let held =
                self.held.get_mut(i).is_some_and(std::mem::take) || (fresh && self.unstarted_held);
            // Measured when the dial is handed to the dialer (`dispatch`).
            self.due_at
                .push(if held { due.max(self.freed_at) } else { due });
        }
        self.lines[i] = Some(Box::new(Line {
            id,
            started_at: now,
            outcome: Outcome::Unknown,
            keys: Vec::new(),
            transfers: Vec::new(),
            sip: None,
            prompted: 0,
        }));
        self.progress.calls += 1;
        self.progress.in_progress += 1;
        self.progress.pending -= 1;
        Some(Call {
            id,
            number,
            caller_id,
            local: now.with_timezone(&zone).naive_local(),
            timeout_seconds,
            detect_voicemail,
        })
    }

    /// Starts a dialer request; one that is ready at once (the simulation)
    /// is taken without a round through the set of futures.
    fn start_io(&mut self, i: usize, io: impl Future<Output = Io> + 'a, now: DateTime<Utc>) {
        let mut fut: IoFuture<'a> = Box::pin(async move { (i, io.await) });
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready((i, io)) => self.io_done(i, io, now),
            Poll::Pending => self.io.push(fut),
        }
    }

    fn io_done(&mut self, i: usize, io: Io, now: DateTime<Utc>) {
        match io {
            Io::Placed(d) => {
                let line = self.lines[i].as_mut().expect("a placed call has a line");
                line.outcome = d.outcome;
                line.sip = d.sip;
                let end = line.started_at + d.duration;
                if end > now {
                    self.push(end, i, Event::CallEnded);
                } else {
                    self.connected(i, now);
                }
            }
            Io::Keys(keys) => {
                self.in_call[i] = true;
                let line = self.lines[i].as_mut().expect("a gather has a line");
                line.keys.push(keys.clone());
                let run = self.runs[i].as_mut().expect("a call has a run");
                let request = run.reply(Reply::Keys(keys));
                self.in_call(i, request, now);
            }
            Io::Transferred(t) => {
                self.in_call[i] = true;
                let line = self.lines[i].as_mut().expect("a transfer has a line");
                line.transfers.push(t);
                let run = self.runs[i].as_mut().expect("a call has a run");
                let request = run.reply(Reply::Transferred(t));
                self.in_call(i, request, now);
            }
            Io::HungUp => {}
        }
    }

    /// The call's outcome is known and its time has passed: the flow routes it.
    fn connected(&mut self, i: usize, now: DateTime<Utc>) {
        let line = self.lines[i].as_ref().expect("a call has a line");
        let reply = Reply::Dialled {
            outcome: line.outcome,
            started_at: line.started_at,
            ended_at: now,
            sip_status: line.sip.as_ref().map(|s| s.0),
        };
        let run = self.runs[i].as_mut().expect("a call has a run");
        let request = run.reply(reply);
        self.in_call(i, request, now);
    }

    /// Carries out in-call requests through the dialer until the flow is
    /// done with the call.
    fn in_call(&mut self, i: usize, request: Request, now: DateTime<Utc>) {
        let id = self.lines[i].as_ref().expect("a call has a line").id;
        let dialer = self.dialer;
        // What the flow said or played since the last request goes first.
        let prompts: Vec<Prompt> = {
            let line = self.lines[i].as_mut().expect("a call has a line");
            let run = self.runs[i].as_ref().expect("a call has a run");
            let all = &run.journal.prompts;
            let new = all.get(line.prompted..).unwrap_or_default().to_vec();
            line.prompted = all.len();
            new
        };
        let prompt = move || async move {
            for p in prompts {
                match p {
                    Prompt::Say(text) => dialer.say(id, text).await,
                    Prompt::Play(file) => dialer.play(id, file).await,
                    Prompt::Record { file, max_seconds } => {
                        dialer.record(id, file, max_seconds).await
                    }
                }
            }
        };
        match request {
            Request::Gather {
                digits,
                timeout_seconds,
                attempt,
                keys,
                ..
            } => {
                let ask = Ask {
                    digits,
                    timeout_seconds,
                    attempt,
                    keys,
                };
                self.start_io(
                    i,
                    async move {
                        prompt().await;
                        Io::Keys(dialer.gather(id, ask).await)
                    },
                    now,
                );
            }
            Request::Transfer {
                number,
                timeout_seconds,
            } => self.start_io(
                i,
                async move {
                    prompt().await;
                    Io::Transferred(dialer.transfer(id, number, timeout_seconds).await)
                },
                now,
            ),
            other => {
                let line = self.lines[i].take().expect("a call has a line");
                self.start_io(
                    i,
                    async move {
                        prompt().await;
                        dialer.hang_up(id).await;
                        Io::HungUp
                    },
                    now,
                );
                if let Some(store) = self.store.as_deref_mut() {
                    store.attempt_ended(
                        i,
                        line.id.attempt,
                        CallEnd {
                            ended_at: now,
                            outcome: line.outcome,
                            keys: line.keys,
                            transfers: line.transfers,
                            sip: line.sip,
                        },
                    );
                }
                self.in_flight -= 1;
                self.freed_at = now;
                self.progress.in_progress -= 1;
                self.progress.pending += 1;
                self.handle(i, other, now);
            }
        }
    }

    /// An `opt out` puts the contact's number on the do-not-call list at once.
    fn note_opt_out(&mut self, i: usize) {
        let Some(run) = self.runs[i].as_ref() else {
            return;
        };
        if !run.journal.opted_out || self.do_not_call.contains(&self.list[i].phone) {
            return;
        }
        let phone = self.list[i].phone.clone();
        if let Some(f) = self.on_opt_out.as_mut() {
            f(&phone);
        }
        if let Some(store) = self.store.as_deref_mut() {
            store.opted_out(i);
        }
        self.do_not_call.insert(phone);
    }

    /// Counts the steps a contact entered since last time, for `pause
    /// campaign when`; reaching the threshold pauses the campaign.
    fn count_reached(&mut self, i: usize, now: DateTime<Utc>) {
        let (Some((step, times)), Some(run)) = (self.pause_when, self.runs[i].as_ref()) else {
            return;
        };
        let path = &run.journal.path;
        let seen = (self.counted[i] as usize).min(path.len());
        self.reached += path[seen..].iter().filter(|s| **s == step).count() as u32;
        self.counted[i] = path.len() as u32;
        if self.reached >= times && self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
    }

    fn count_end(&mut self, end: &End) {
        self.progress.pending -= 1;
        if end.skipped {
            self.progress.skipped += 1;
        } else if end.completed {
            self.progress.completed += 1;
        } else {
            self.progress.failed += 1;
        }
    }

    fn finish_skipped(&mut self, i: usize, arm: ArmId, reason: &str) {
        let end = End {
            completed: false,
            reason: reason.into(),
            skipped: true,
        };
        let c = &self.list[i];
        let result = ContactResult {
            line: c.line,
            phone: c.phone.clone(),
            zone: c.zones.first().copied().unwrap_or(Tz::UTC),
            arm,
            end: Some(end.clone()),
            in_progress: false,
            attempts: Vec::new(),
            path: Vec::new(),
            messages: None,
        };
        self.record_end(i, result, &end);
    }

    fn finish_run(&mut self, i: usize, end: End) {
        let mut run = self.runs[i].take().expect("a finished contact had a run");
        let c = &self.list[i];
        let mut journal = std::mem::take(&mut run.journal);
        let result = ContactResult {
            line: c.line,
            phone: c.phone.clone(),
            zone: c.zones.first().copied().unwrap_or(Tz::UTC),
            arm: run.arm(),
            end: Some(end.clone()),
            in_progress: false,
            messages: Messages::of(&mut journal),
            attempts: journal.attempts,
            path: journal.path,
        };
        self.record_end(i, result, &end);
    }

    fn record_end(&mut self, i: usize, result: ContactResult, end: &End) {
        if let Some(store) = self.store.as_deref_mut() {
            let path: Vec<&str> = result
                .path
                .iter()
                .map(|s| self.flow.steps[*s].name.as_str())
                .collect();
            store.contact_ended(i, result.state(), &end.reason, &path);
            for m in result.messages.iter().flat_map(|m| &m.outbox) {
                store.message(i, m);
            }
        }
        self.count_end(end);
        self.results[i] = Some(result);
    }

    /// A contact the run left unfinished (paused), with what it did so far.
    fn unfinished(&mut self, i: usize) -> ContactResult {
        if self.parked[i].is_some() {
            // Its run, rebuilt, holds what it did.
            let _ = self.begin(i);
        }
        let c = &self.list[i];
        let (arm, mut journal) = match self.runs[i].as_mut() {
            Some(r) => (r.arm(), std::mem::take(&mut r.journal)),
            None => (
                self.history
                    .get(i)
                    .map_or_else(|| interpreter::assign_arm(self.flow, &c.phone), |h| h.arm),
                Default::default(),
            ),
        };
        ContactResult {
            line: c.line,
            phone: c.phone.clone(),
            zone: c.zones.first().copied().unwrap_or(Tz::UTC),
            arm,
            end: None,
            in_progress: self.lines[i].is_some(),
            messages: Messages::of(&mut journal),
            attempts: journal.attempts,
            path: journal.path,
        }
    }
}

/// Resolves when the pause signal turns true; never without a signal.
async fn paused(signal: Option<tokio::sync::watch::Receiver<bool>>) {
    match signal {
        Some(mut rx) => {
            // A signal whose sender is gone can no longer pause the run.
            if rx.wait_for(|p| *p).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// An attempt as the interpreter is told it again.
struct Replayed<'r> {
    outcome: Outcome,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
    keys: &'r [Option<String>],
    transfers: &'r [TransferOutcome],
    sip_status: Option<u16>,
}

impl<'r> From<&'r StoredAttempt> for Replayed<'r> {
    /// A stored attempt without an end is `unknown`.
    fn from(a: &'r StoredAttempt) -> Self {
        Replayed {
            outcome: a
                .outcome
                .filter(|_| a.ended_at.is_some())
                .unwrap_or(Outcome::Unknown),
            started_at: a.started_at,
            ended_at: a.ended_at.unwrap_or(a.started_at),
            keys: &a.keys,
            transfers: &a.transfers,
            sip_status: a.sip.as_ref().map(|s| s.0),
        }
    }
}

impl<'r> From<&'r Attempt> for Replayed<'r> {
    /// A parked contact's attempt (it had no in-call replies).
    fn from(a: &'r Attempt) -> Self {
        Replayed {
            outcome: a.outcome,
            started_at: a.started_at,
            ended_at: a.ended_at,
            keys: &[],
            transfers: &[],
            sip_status: a.sip_status,
        }
    }
}

/// Feeds a run the replies its contact got in an earlier run, in order: the
/// interpreter is deterministic, so it reaches the state it was in. An
/// attempt without an end is `unknown`. When the flow asks for something
/// the history does not hold (a migrated flow), the call's record is over:
/// a gather hears nothing, a transfer hangs up.
fn replay<'r>(
    run: &mut Run<'_>,
    mut request: Request,
    attempts: impl Iterator<Item = Replayed<'r>>,
) -> Request {
    for a in attempts {
        if !matches!(request, Request::Dial { .. }) {
            break;
        }
        request = run.reply(Reply::Dialled {
            outcome: a.outcome,
            started_at: a.started_at,
            ended_at: a.ended_at,
            sip_status: a.sip_status,
        });
        let mut keys = a.keys.iter();
        let mut transfers = a.transfers.iter();
        request = loop {
            request = match request {
                Request::Gather { .. } => run.reply(Reply::Keys(keys.next().cloned().flatten())),
                Request::Transfer { .. } => run.reply(Reply::Transferred(
                    transfers.next().copied().unwrap_or(TransferOutcome::Hangup),
                )),
                other => break other,
            };
        };
    }
    request
}
