//! The campaign engine: every contact's run of a flow, driven by one loop on
//! a `Clock`, calling through a `Dialer`, journalled in a `Journal`. The same
//! code runs `flowc run` (wall clock, real waits) and `flowc simulate`
//! (virtual clock: it jumps to the next event once no call is under way).
//!
//! Each contact is in one [`ContactState`]. Contacts wait in the event
//! queue until their dial is due, then in a first-come queue until the
//! [`Pacer`] allows a dial: the scheduler is fair by due time, and
//! concurrency and rate are hard limits. Contacts not yet begun are all due
//! at the campaign's start, so they are begun (in list order) before the
//! queue's later arrivals; one whose next dial is not due yet is parked with
//! its attempts alone and rebuilt by replay when due, so a large list costs
//! memory only for the contacts under way.
//!
//! Every attempt is journalled before its dial (under
//! `Durability::BeforeEachDial` the writes of one instant are committed
//! together, then the calls start) and completed after the call with what
//! the recipient did; a resumed run replays those replies through the
//! interpreter, so a contact continues exactly where it stopped.

mod events;
mod observer;
mod pacer;

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::clock::Clock;
use super::interpreter::{self, Prompt, Reply, Request, Run, Schedules};
use super::journal::{Committed, ContactId, Durability, Journal};
use crate::contacts::Contact;
use crate::dialer::{Ask, Call, CallId, Dialer, Dialled};
use crate::ir::{self, ArmId, Outcome, StepId, TransferOutcome, Value};
use crate::record::{Attempt, CallEnd, ContactResult, End, Ending, History, StoredAttempt};
use crate::store::StoreError;
use events::Events;
use observer::Observer;
pub use observer::{Lateness, Progress, LATENESS_BOUNDS_MS};
use pacer::{Pace, Pacer};

/// A virtual clock's writes are handed over once this many are waiting
/// (72 bytes each and what they hold while they wait, and as much again
/// while the store's writer commits them). Fewer, larger commits write
/// each page of the store's indexes less often: 100,000 took a million
/// contacts 2.1-2.8 s less than 50,000, with a lower peak (BENCHMARKS.md).
const BATCHED_WRITES: usize = 100_000;
/// At most this many distinct reasons are shared (`Engine::shared_reason`).
const SHARED_REASONS: usize = 1_000;
/// New contacts are handed over to the journal this many at a time.
const CONTACTS_BATCH: usize = 20_000;

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

/// Where a contact is in the campaign.
enum ContactState<'a> {
    /// Not begun yet: the list's contacts from `Engine::unstarted` on.
    Unstarted,
    /// Waiting for its next dial with only its attempts kept: its run is
    /// rebuilt by replaying them when the dial is due. `counted`: the
    /// entries of its path already counted for `pause campaign when`.
    Parked {
        attempts: Box<[Attempt]>,
        counted: u32,
    },
    /// Waiting in the heap for a dial due at `due`, its run kept.
    Waiting {
        live: Box<Live<'a>>,
        due: DateTime<Utc>,
    },
    /// Its dial is due: in the ready queue until a line and the pace allow it.
    Ready {
        live: Box<Live<'a>>,
        due: DateTime<Utc>,
    },
    /// A call under way.
    OnCall {
        live: Box<Live<'a>>,
        line: Box<Line>,
    },
    /// Ended; its result is in `Engine::results`. Also the placeholder
    /// while a state is being changed.
    Done,
}

/// A contact whose run is in memory.
struct Live<'a> {
    run: Run<'a>,
    /// Its calls had in-call replies (keys, transfers), which its attempts
    /// alone cannot replay: it is never parked.
    replies_in_call: bool,
    /// The entries of its path already counted for `pause campaign when`.
    counted: u32,
    /// It waited for a line or the pace (wall clock): its lateness counts
    /// from when one freed up.
    held: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// The contact's next dial is due.
    Due(ContactId),
    /// The contact's call has lasted as long as the dialer said.
    CallEnded(ContactId),
    /// The pace allows another dial.
    Wake,
}

/// What a dialer's future brought back.
enum Io {
    Placed(Dialled),
    Keys(Option<String>),
    Transferred(TransferOutcome),
    HungUp,
}

type OnOptOut<'a> = Box<dyn FnMut(&str) + 'a>;

type IoFuture<'a> = Pin<Box<dyn Future<Output = (ContactId, Io)> + 'a>>;

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
    journal: Option<&'a mut dyn Journal>,
    durability: Durability,
    history: Vec<History>,
    do_not_call: HashSet<String>,
    on_opt_out: Option<OnOptOut<'a>>,
    pause: Option<tokio::sync::watch::Receiver<bool>>,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// The contacts' ids in the store, when the engine runs a part of the
    /// campaign (a worker's lease); its own ids are places in `list`.
    store_ids: Option<&'a [u32]>,
    /// The lines this engine may use, when given from outside as it runs.
    lines: Option<tokio::sync::watch::Receiver<usize>>,
    /// Replaying a stored history need not reach the stored steps (`--migrate`).
    migrating: bool,
    jitter: bool,
    schedules: Schedules,
    start: DateTime<Utc>,
    /// Every contact's state, by id.
    contacts: Vec<ContactState<'a>>,
    /// What became of each ended contact, by id.
    results: Vec<Option<ContactResult>>,
    /// Events by instant; those of one instant in the order they were
    /// scheduled (fair by due time).
    queue: Events<Event>,
    /// Contacts whose dial is due, waiting for a line or for the pace.
    ready: VecDeque<ContactId>,
    /// The first contact not begun yet; all before it were.
    unstarted: usize,
    io: FuturesUnordered<IoFuture<'a>>,
    pacer: Pacer,
    observer: Observer<'a>,
    finish: DateTime<Utc>,
    /// The step and count that pause the campaign, and how often its
    /// contacts entered it here (stored ends included) and elsewhere (the
    /// parts other workers run).
    pause_when: Option<(StepId, u32)>,
    reached: u32,
    reached_elsewhere: Option<tokio::sync::watch::Receiver<u32>>,
    paused_at: Option<DateTime<Utc>>,
    paused_by_operator: bool,
    /// The reasons ended contacts share.
    reasons: HashSet<Arc<str>>,
    /// Calls journalled and waiting for their commit before their dial
    /// (on the wall clock), oldest first.
    committing: VecDeque<Committing>,
}

/// Calls whose attempts are being committed (or wait for the commit on
/// its way to end: `None`); dialled once they are.
struct Committing {
    committed: Option<Committed>,
    calls: Vec<(ContactId, Call)>,
    due: Vec<DateTime<Utc>>,
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
            journal: None,
            durability: Durability::BeforeEachDial,
            history: Vec::new(),
            do_not_call: HashSet::new(),
            on_opt_out: None,
            pause: None,
            stop: None,
            lines: None,
            store_ids: None,
            migrating: false,
            jitter: true,
            schedules: Schedules::default(),
            start,
            contacts: (0..n).map(|_| ContactState::Unstarted).collect(),
            results: vec![None; n],
            queue: Events::new(),
            ready: VecDeque::new(),
            unstarted: 0,
            io: FuturesUnordered::new(),
            pacer: Pacer::of(flow),
            observer: Observer::new(n, !clock.is_virtual(), start),
            finish: start,
            pause_when: flow.pause_when.map(|p| (p.step, p.times)),
            reached: 0,
            reached_elsewhere: None,
            paused_at: None,
            paused_by_operator: false,
            reasons: HashSet::new(),
            committing: VecDeque::new(),
        }
    }

    /// Journals the run: contacts beyond the stored ones are added, each
    /// attempt is written before its dial and lasts as `durability` says.
    pub fn journal(mut self, journal: &'a mut dyn Journal, durability: Durability) -> Self {
        self.journal = Some(journal);
        self.durability = durability;
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
        self.observer.listen(Box::new(f));
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

    /// The engine runs a part of the campaign: its contacts are known to
    /// the store by `ids` (one per contact of the list). Calls carry those
    /// ids, so a simulated call draws the same outcome whoever places it.
    pub fn store_ids(mut self, ids: &'a [u32]) -> Self {
        self.store_ids = Some(ids);
        self
    }

    /// Takes the number of lines (concurrent calls) from `lines` as it
    /// changes, instead of the flow's `concurrency`: a worker's share of a
    /// campaign that several run. Fewer lines than calls under way places
    /// no call until enough have ended; none places none.
    pub fn lines_from(mut self, lines: tokio::sync::watch::Receiver<usize>) -> Self {
        self.lines = Some(lines);
        self
    }

    /// How often the contacts of the campaign's other parts entered the
    /// step of `pause campaign when`, as it changes: the threshold counts
    /// the whole campaign, not this engine's part alone.
    pub fn reached_elsewhere(mut self, times: tokio::sync::watch::Receiver<u32>) -> Self {
        self.reached_elsewhere = Some(times);
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

    fn push(&mut self, at: DateTime<Utc>, event: Event) {
        self.queue.push(at, event);
    }

    /// Takes a contact's state out, leaving `Done` until it is put back.
    fn take(&mut self, id: ContactId) -> ContactState<'a> {
        std::mem::replace(&mut self.contacts[id.index()], ContactState::Done)
    }

    fn set(&mut self, id: ContactId, state: ContactState<'a>) {
        self.contacts[id.index()] = state;
    }

    /// The call of a contact that has one. An event about a call always
    /// finds it: only the call's own end leaves `OnCall`.
    fn on_call(&mut self, id: ContactId) -> (&mut Live<'a>, &mut Line) {
        match &mut self.contacts[id.index()] {
            ContactState::OnCall { live, line } => (live, line),
            _ => unreachable!("contact {id} has no call under way"),
        }
    }

    /// Hands the writes so far over to the journal.
    fn flush(&mut self) -> Result<(), StoreError> {
        match self.journal.as_deref_mut() {
            Some(j) => j.flush(),
            None => Ok(()),
        }
    }

    /// Hands the writes so far over; resolves once they are committed.
    fn sync_later(&mut self) -> Result<Committed, StoreError> {
        match self.journal.as_deref_mut() {
            Some(j) => j.sync_later(),
            None => Ok(Committed::now()),
        }
    }

    /// Waits until the writes so far are committed.
    fn sync(&mut self) -> Result<(), StoreError> {
        match self.journal.as_deref_mut() {
            Some(j) => j.sync(),
            None => Ok(()),
        }
    }

    /// Runs the campaign until every contact has ended or the run pauses.
    pub async fn run(mut self) -> Result<Results, StoreError> {
        if let Some(journal) = self.journal.as_deref_mut() {
            for i in self.history.len()..self.list.len() {
                let arm = interpreter::assign_arm(self.flow, &self.list[i].phone);
                journal.contact_added(ContactId::at(i), &self.list[i], arm);
                // Handed over as they come: a million rows copied at once
                // would double the campaign's memory until written (a
                // journal sharing the list copies none: they weigh nothing).
                if journal.pending_writes() >= CONTACTS_BATCH {
                    journal.flush()?;
                }
            }
        }
        self.flush()?;
        if !self.migrating {
            self.check_replay()?;
        }
        // Contacts that ended before count for `pause campaign when` too
        // (those still under way count as their runs are replayed).
        if let Some((step, _)) = self.pause_when {
            let name = self.flow.steps[step].name.as_str();
            let ended = self.history.iter().filter(|h| h.end.is_some());
            self.reached += ended
                .map(|h| h.path.iter().filter(|s| *s == name).count() as u32)
                .sum::<u32>();
        }
        let virtual_clock = self.clock.is_virtual();
        let mut ticks: u64 = 0;
        let mut cut_off = 0;
        loop {
            let now = self.clock.now();
            self.finish = self.finish.max(now);
            if self.stop.as_ref().is_some_and(|s| *s.borrow()) {
                cut_off = self.pacer.in_flight();
                self.paused_at.get_or_insert(now);
                self.paused_by_operator = true;
                break;
            }
            let applied = self.lines.as_ref().map(|l| *l.borrow());
            if let Some(n) = applied {
                self.pacer.set_concurrency(n);
            }
            let elsewhere = self.reached_elsewhere.as_ref().map(|r| *r.borrow());
            if self.paused_at.is_none() && self.threshold_reached() {
                self.paused_at = Some(now);
            }
            // Looked at before any dial: a pause asked for before the run
            // began (or while it was busy) places no call.
            if self.paused_at.is_none() && self.pause.as_ref().is_some_and(|p| *p.borrow()) {
                self.paused_at = Some(now);
                self.paused_by_operator = true;
            }
            while let Some(event) = self.queue.pop_due(now) {
                self.event(event, now);
            }
            let freed = self.dispatch(now)?;
            let batch_full = self
                .journal
                .as_deref()
                .is_some_and(|j| j.pending_writes() > BATCHED_WRITES);
            // While a commit is on its way, what came since waits for the
            // next one (group commit): one transaction at a time.
            if (self.durability == Durability::BeforeEachDial && self.committing.is_empty())
                || batch_full
            {
                self.flush()?;
            }
            ticks += 1;
            if !virtual_clock || ticks % 4096 == 0 {
                self.observer.report(now);
            }
            let stopping = self.paused_at.is_some();
            if self.pacer.in_flight() == 0
                && self.io.is_empty()
                && (stopping
                    || (self.queue.is_empty()
                        && self.ready.is_empty()
                        && self.unstarted >= self.list.len()))
            {
                break;
            }
            // Wait for what comes first: a dialer's answer, the next event.
            let next = self.queue.next_at();
            if freed && !virtual_clock {
                // Calls that ended as they were placed gave their lines
                // back: nothing would wake the loop to use them.
                continue;
            }
            if virtual_clock {
                if !self.io.is_empty() {
                    if let Some((id, io)) = self.io.next().await {
                        self.io_done(id, io, self.clock.now());
                    }
                } else if let Some(at) = next {
                    self.clock.sleep_until(at).await;
                }
                continue;
            }
            let pause = self.pause.clone();
            let stop = self.stop.clone();
            let lines = self.lines.clone();
            tokio::select! {
                biased;
                _ = paused(stop) => {} // The loop's top stops.
                done = next_commit(&mut self.committing) => {
                    done?;
                    let batch = self.committing.front_mut().expect("a commit was awaited");
                    // A few dozen calls at a time, the dialer's own work
                    // (reading the trunk's answers, its timers) let in
                    // between: a burst of a thousand INVITEs sent at once
                    // kept their answers unread past T1.
                    let take = batch.calls.len().min(PLACED_AT_ONCE);
                    let calls: Vec<_> = batch.calls.drain(..take).collect();
                    let due: Vec<_> = batch.due.drain(..take.min(batch.due.len())).collect();
                    if batch.calls.is_empty() {
                        self.committing.pop_front();
                        // The calls that waited behind it, and every write
                        // since, go in the next commit.
                        if self.committing.front().is_some_and(|c| c.committed.is_none()) {
                            let committed = self.sync_later()?;
                            if let Some(next) = self.committing.front_mut() {
                                next.committed = Some(committed);
                            }
                        }
                    }
                    // The loop's top places more on lines these freed.
                    self.place(calls, &due, self.clock.now());
                    if !self.committing.is_empty() {
                        tokio::task::yield_now().await;
                    }
                }
                _ = changed(lines, applied) => {} // The loop's top takes the new figure.
                _ = changed(self.reached_elsewhere.clone(), elsewhere) => {} // Counted at the top.
                Some((id, io)) = self.io.next(), if !self.io.is_empty() => {
                    self.io_done(id, io, self.clock.now());
                }
                _ = paused(pause), if !stopping => {
                    self.paused_at = Some(self.clock.now());
                    self.paused_by_operator = true;
                }
                _ = self.clock.sleep_until(next.unwrap_or(now)), if next.is_some() => {}
            }
        }
        // Every contact ended: their states are no longer needed while the
        // last writes are committed (a million of them, 24 MB).
        if self.results.iter().all(Option::is_some) {
            self.contacts = Vec::new();
        }
        self.sync()?;
        self.observer.report(self.finish);
        // Collected in place: the results are most of a large run's memory.
        let results = std::mem::take(&mut self.results);
        let contacts = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| self.unfinished(ContactId::at(i))))
            .collect();
        Ok(Results {
            contacts,
            start: self.start,
            finish: self.finish,
            paused_at: self.paused_at,
            paused_by_operator: self.paused_by_operator,
            cut_off,
            lateness_ms: std::mem::take(&mut self.observer.lateness_ms),
        })
    }

    fn event(&mut self, event: Event, now: DateTime<Utc>) {
        match event {
            Event::Wake => {
                self.pacer.woken();
                self.observer.freed(now);
            }
            Event::CallEnded(id) => self.connected(id, now),
            Event::Due(id) => match self.take(id) {
                ContactState::Waiting { live, due } => {
                    self.set(id, ContactState::Ready { live, due });
                    self.ready.push_back(id);
                }
                // A parked contact: rebuild its run, now that its dial is due.
                parked @ ContactState::Parked { .. } => {
                    self.set(id, parked);
                    if let Some((live, request)) = self.begin(id) {
                        self.handle(id, live, request, now);
                    }
                }
                _ => unreachable!("only a waiting or parked contact has a dial due"),
            },
        }
    }

    fn new_run(&mut self, arm: ArmId, c: &'a Contact) -> Run<'a> {
        let run = Run::new(self.flow, arm, c, self.start, &mut self.schedules);
        if self.jitter {
            run
        } else {
            run.without_jitter()
        }
    }

    /// The contact's arm: stored, else drawn from its number.
    fn arm(&self, id: ContactId) -> ArmId {
        self.history.get(id.index()).map_or_else(
            || interpreter::assign_arm(self.flow, &self.list[id.index()].phone),
            |h| h.arm,
        )
    }

    /// Starts (or rebuilds) a contact's run, replaying its stored history
    /// or its parked attempts; `None` when it ended before any call (stored
    /// end, do-not-call, no consent).
    fn begin(&mut self, id: ContactId) -> Option<(Box<Live<'a>>, Request)> {
        let i = id.index();
        let c = &self.list[i];
        let arm = self.arm(id);
        if let ContactState::Parked { attempts, counted } = self.take(id) {
            let mut run = self.new_run(arm, c);
            let request = run.start();
            let request = replay(&mut run, request, attempts.iter().map(Replayed::from));
            return Some((Box::new(Live::new(run, counted)), request));
        }
        // The arm comes first: a skipped contact still belongs to its arm.
        if let Some(end) = self.history.get(i).and_then(|h| h.end.clone()) {
            self.results[i] = Some(self.history[i].result(c, self.flow));
            self.observer.contact_ended(end.ending);
            return None;
        }
        if self.do_not_call.contains(&*c.phone) {
            self.finish_skipped(id, arm, "do_not_call");
            return None;
        }
        let consent_required = self
            .flow
            .compliance
            .policies
            .iter()
            .any(|p| p.require_consent);
        if consent_required && matches!(c.fields.get("consent"), Some(Value::Bool(false))) {
            self.finish_skipped(id, arm, "no_consent");
            return None;
        }
        let mut run = self.new_run(arm, c);
        let mut request = run.start();
        let mut live = Live::new(run, 0);
        if let Some(h) = self.history.get(i) {
            request = replay(
                &mut live.run,
                request,
                h.attempts.iter().map(Replayed::from),
            );
            live.replies_in_call = h
                .attempts
                .iter()
                .any(|a| !a.keys.is_empty() || !a.transfers.is_empty());
            // An attempt whose end was never recorded is `unknown` now.
            if let Some(journal) = self.journal.as_deref_mut() {
                for a in h.attempts.iter().filter(|a| a.ended_at.is_none()) {
                    journal.attempt_ended(
                        id,
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
            self.observer.calls_made_before(h.attempts.len());
        }
        Some((Box::new(live), request))
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
                        line: c.line as usize,
                        phone: c.phone.to_string(),
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

    /// Follows a contact's requests until it waits for a dial or ends, and
    /// puts it in the state it reached.
    fn handle(
        &mut self,
        id: ContactId,
        mut live: Box<Live<'a>>,
        mut request: Request,
        now: DateTime<Utc>,
    ) {
        loop {
            self.count_reached(id, &mut live, now);
            self.note_opt_out(id, &live.run);
            request = match request {
                Request::Done(end) => {
                    self.finish_run(id, live, end);
                    return;
                }
                Request::Dial { at, .. } if at > now => {
                    let state = if live.replies_in_call {
                        ContactState::Waiting { live, due: at }
                    } else {
                        // Park it: keep its attempts, rebuild it when due.
                        let Live {
                            mut run, counted, ..
                        } = *live;
                        let attempts = std::mem::take(&mut run.trail.attempts);
                        ContactState::Parked {
                            attempts: attempts.into_boxed_slice(),
                            counted,
                        }
                    };
                    self.set(id, state);
                    self.push(at, Event::Due(id));
                    return;
                }
                Request::Dial { at, .. } => {
                    self.set(id, ContactState::Ready { live, due: at });
                    self.ready.push_back(id);
                    return;
                }
                // In-call requests outside a call (the checker forbids them):
                // nobody is there to answer.
                Request::Gather { .. } => live.run.reply(Reply::Keys(None)),
                Request::Transfer { .. } => {
                    live.run.reply(Reply::Transferred(TransferOutcome::Failed))
                }
            };
        }
    }

    /// Begins not-yet-begun contacts in list order until one has a dial due
    /// now; returns it.
    fn take_unstarted(&mut self, now: DateTime<Utc>) -> Option<ContactId> {
        while self.unstarted < self.list.len() {
            let id = ContactId::at(self.unstarted);
            self.unstarted += 1;
            let Some((live, request)) = self.begin(id) else {
                continue;
            };
            self.handle(id, live, request, now);
            if matches!(self.contacts[id.index()], ContactState::Ready { .. })
                && self.ready.back() == Some(&id)
            {
                self.ready.pop_back();
                return Some(id);
            }
        }
        None
    }

    /// Places the calls the limits allow now, first come first served: the
    /// attempts are journalled (and, under `BeforeEachDial`, committed),
    /// then dialled. A paused campaign places none; calls under way finish.
    /// True when some of them ended as they were placed (a script's
    /// instant answer): their lines are free again.
    fn dispatch(&mut self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut calls: Vec<(ContactId, Call)> = Vec::new();
        let mut held_back = false;
        while self.paused_at.is_none() {
            match self.pacer.check(now) {
                Pace::Go => {}
                Pace::LinesBusy | Pace::Spent(None) => {
                    held_back = true;
                    break;
                }
                Pace::Spent(Some(at)) => {
                    self.push(at, Event::Wake);
                    held_back = true;
                    break;
                }
            }
            let (id, fresh) = match self.take_unstarted(now) {
                Some(id) => (id, true),
                None => match self.ready.pop_front() {
                    Some(id) => (id, false),
                    None => break,
                },
            };
            if let Some(call) = self.prepare_call(id, fresh, now) {
                self.pacer.dialled(now);
                calls.push((id, call));
            }
        }
        if held_back && self.observer.timed() {
            for id in &self.ready {
                if let ContactState::Ready { live, .. } = &mut self.contacts[id.index()] {
                    live.held = true;
                }
            }
            self.observer.held_back();
        }
        if calls.is_empty() {
            return Ok(false);
        }
        // Written before the dial: a crash from here on leaves the attempt
        // without an end, and the resumed run counts it `unknown`. Batched
        // writes (simulations) may be lost: a lost simulated call was never
        // dialled, and a resumed simulation draws it again.
        let due = self.observer.take_batch();
        if self.durability == Durability::BeforeEachDial {
            if !self.clock.is_virtual() {
                // The calls wait for their commit while the loop goes on
                // (calls under way, the next batch's writes): one commit
                // at a time on disk, each with whatever came meanwhile.
                // Behind a commit on its way, they join the next one.
                if let Some(next) = self.committing.back_mut().filter(|c| c.committed.is_none()) {
                    next.calls.extend(calls);
                    next.due.extend(due);
                    return Ok(false);
                }
                let committed = if self.committing.is_empty() {
                    Some(self.sync_later()?)
                } else {
                    None
                };
                self.committing.push_back(Committing {
                    committed,
                    calls,
                    due,
                });
                return Ok(false);
            }
            self.sync()?;
        }
        Ok(self.place(calls, &due, now))
    }

    /// Hands journalled calls to the dialer (they hold their lines
    /// already); true when some ended as they were placed.
    fn place(
        &mut self,
        calls: Vec<(ContactId, Call)>,
        due: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> bool {
        let in_flight = self.pacer.in_flight();
        for (k, (id, call)) in calls.into_iter().enumerate() {
            if let Some(due) = due.get(k) {
                self.observer.placed(*due, self.clock.now());
            }
            let dialer = self.dialer;
            self.start_io(id, async move { Io::Placed(dialer.place(call).await) }, now);
        }
        self.pacer.in_flight() < in_flight
    }

    /// Plans a ready contact's dial again from now (waiting may have carried
    /// it out of callable time or into a limit) and, when it is due, takes a
    /// line for it and journals the attempt.
    fn prepare_call(&mut self, id: ContactId, fresh: bool, now: DateTime<Utc>) -> Option<Call> {
        let ContactState::Ready { mut live, due } = self.take(id) else {
            unreachable!("contact {id} was dispatched without a due dial");
        };
        let (step, timeout_seconds, detect_voicemail) = match live.run.reschedule(now) {
            Request::Dial {
                at,
                step,
                timeout_seconds,
                detect_voicemail,
            } if at <= now => (step, timeout_seconds, detect_voicemail),
            // Not due after all (or ended): back to waiting.
            other => {
                self.handle(id, live, other, now);
                return None;
            }
        };
        let number = live.run.dial_number();
        let from = live.run.dial_from();
        if self.do_not_call.contains(&number) {
            let arm = live.run.arm();
            self.finish_skipped(id, arm, "do_not_call");
            return None;
        }
        let attempt = live.run.trail.attempts.len() as u32 + 1;
        let arm = &self.flow.arms[live.run.arm()];
        // `from` on the dial, else the arm's caller ids in turn, one per attempt.
        let caller_id = from.or_else(|| arm.caller_id(attempt).map(str::to_string));
        let c = &self.list[id.index()];
        let zone = c.zones.first().copied().unwrap_or(Tz::UTC);
        let call_id = CallId {
            contact: self
                .store_ids
                .map_or(id.index(), |ids| ids[id.index()] as usize),
            attempt,
        };
        if let Some(journal) = self.journal.as_deref_mut() {
            journal.attempt_started(
                id,
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
        // Measured when the dial is handed to the dialer (`dispatch`).
        self.observer
            .dial_due(due, std::mem::take(&mut live.held), fresh);
        let line = Box::new(Line {
            id: call_id,
            started_at: now,
            outcome: Outcome::Unknown,
            keys: Vec::new(),
            transfers: Vec::new(),
            sip: None,
            prompted: 0,
        });
        self.set(id, ContactState::OnCall { live, line });
        self.observer.call_started();
        Some(Call {
            id: call_id,
            number,
            caller_id,
            local: now.with_timezone(&zone).naive_local(),
            timeout_seconds,
            detect_voicemail,
            fields: self
                .dialer
                .wants_fields()
                .then(|| self.list[id.index()].fields.clone()),
        })
    }

    /// Starts a dialer request; one that is ready at once (the simulation)
    /// is taken without a round through the set of futures.
    fn start_io(&mut self, id: ContactId, io: impl Future<Output = Io> + 'a, now: DateTime<Utc>) {
        let mut fut: IoFuture<'a> = Box::pin(async move { (id, io.await) });
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready((id, io)) => self.io_done(id, io, now),
            Poll::Pending => self.io.push(fut),
        }
    }

    fn io_done(&mut self, id: ContactId, io: Io, now: DateTime<Utc>) {
        let request = match io {
            Io::Placed(d) => {
                let (_, line) = self.on_call(id);
                line.outcome = d.outcome;
                line.sip = d.sip;
                let end = line.started_at + d.duration;
                if end > now {
                    self.push(end, Event::CallEnded(id));
                } else {
                    self.connected(id, now);
                }
                return;
            }
            Io::Keys(keys) => {
                let (live, line) = self.on_call(id);
                live.replies_in_call = true;
                line.keys.push(keys.clone());
                live.run.reply(Reply::Keys(keys))
            }
            Io::Transferred(t) => {
                let (live, line) = self.on_call(id);
                live.replies_in_call = true;
                line.transfers.push(t);
                live.run.reply(Reply::Transferred(t))
            }
            Io::HungUp => return,
        };
        self.in_call(id, request, now);
    }

    /// The call's outcome is known and its time has passed: the flow routes it.
    fn connected(&mut self, id: ContactId, now: DateTime<Utc>) {
        let (live, line) = self.on_call(id);
        let reply = Reply::Dialled {
            outcome: line.outcome,
            started_at: line.started_at,
            ended_at: now,
            sip_status: line.sip.as_ref().map(|s| s.0),
        };
        let request = live.run.reply(reply);
        self.in_call(id, request, now);
    }

    /// Carries out in-call requests through the dialer until the flow is
    /// done with the call.
    fn in_call(&mut self, id: ContactId, request: Request, now: DateTime<Utc>) {
        let dialer = self.dialer;
        let (live, line) = self.on_call(id);
        let call = line.id;
        // What the flow said or played since the last request goes first.
        let all = &live.run.trail.prompts;
        let prompts: Vec<Prompt> = all.get(line.prompted..).unwrap_or_default().to_vec();
        line.prompted = all.len();
        let prompt = move || async move {
            for p in prompts {
                match p {
                    Prompt::Say(text) => dialer.say(call, text).await,
                    Prompt::Play(file) => dialer.play(call, file).await,
                    Prompt::Record { file, max_seconds } => {
                        dialer.record(call, file, max_seconds).await
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
                    id,
                    async move {
                        prompt().await;
                        Io::Keys(dialer.gather(call, ask).await)
                    },
                    now,
                );
            }
            Request::Transfer {
                number,
                timeout_seconds,
            } => self.start_io(
                id,
                async move {
                    prompt().await;
                    Io::Transferred(dialer.transfer(call, number, timeout_seconds).await)
                },
                now,
            ),
            other => {
                let ContactState::OnCall { live, line } = self.take(id) else {
                    unreachable!("contact {id} had a call a moment ago");
                };
                self.start_io(
                    id,
                    async move {
                        prompt().await;
                        dialer.hang_up(call).await;
                        Io::HungUp
                    },
                    now,
                );
                if let Some(journal) = self.journal.as_deref_mut() {
                    journal.attempt_ended(
                        id,
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
                self.pacer.hung_up();
                self.observer.freed(now);
                self.observer.call_ended();
                self.handle(id, live, other, now);
            }
        }
    }

    /// An `opt out` puts the contact's number on the do-not-call list at once.
    fn note_opt_out(&mut self, id: ContactId, run: &Run<'_>) {
        let phone = &self.list[id.index()].phone;
        if !run.trail.opted_out || self.do_not_call.contains(&**phone) {
            return;
        }
        if let Some(f) = self.on_opt_out.as_mut() {
            f(phone);
        }
        if let Some(journal) = self.journal.as_deref_mut() {
            journal.opted_out(id);
        }
        self.do_not_call.insert(phone.to_string());
    }

    /// Counts the steps a contact entered since last time, for `pause
    /// campaign when` (the journal keeps each contact's count, for the
    /// campaign's other workers); reaching the threshold pauses the campaign.
    fn count_reached(&mut self, id: ContactId, live: &mut Live<'_>, now: DateTime<Utc>) {
        let Some((step, _)) = self.pause_when else {
            return;
        };
        let path = &live.run.trail.path;
        let seen = (live.counted as usize).min(path.len());
        let new = path[seen..].iter().filter(|s| **s == step).count() as u32;
        live.counted = path.len() as u32;
        if new == 0 {
            return;
        }
        self.reached += new;
        if let Some(journal) = self.journal.as_deref_mut() {
            journal.reached(id, path.iter().filter(|s| **s == step).count() as u32);
        }
        if self.paused_at.is_none() && self.threshold_reached() {
            self.paused_at = Some(now);
        }
    }

    /// Whether the campaign's contacts, here and in its other parts,
    /// entered the step of `pause campaign when` as often as it says.
    fn threshold_reached(&self) -> bool {
        let Some((_, times)) = self.pause_when else {
            return false;
        };
        let elsewhere = self.reached_elsewhere.as_ref().map_or(0, |r| *r.borrow());
        self.reached.saturating_add(elsewhere) >= times
    }

    fn finish_skipped(&mut self, id: ContactId, arm: ArmId, reason: &str) {
        let c = &self.list[id.index()];
        let result = ContactResult {
            line: c.line,
            phone: c.phone.clone(),
            zone: c.zones.first().copied().unwrap_or(Tz::UTC),
            arm,
            end: Some(End::new(Ending::Skipped, reason)),
            in_progress: false,
            attempts: Box::default(),
            path: Box::default(),
            messages: None,
        };
        self.record_end(id, result);
    }

    fn finish_run(&mut self, id: ContactId, live: Box<Live<'a>>, end: End) {
        let mut run = live.run;
        let c = &self.list[id.index()];
        let result = ContactResult {
            line: c.line,
            phone: c.phone.clone(),
            zone: c.zones.first().copied().unwrap_or(Tz::UTC),
            arm: run.arm(),
            end: Some(end),
            in_progress: false,
            messages: run.trail.take_messages(),
            // A campaign keeps a million of these: boxed, no room to grow.
            attempts: std::mem::take(&mut run.trail.attempts).into_boxed_slice(),
            path: std::mem::take(&mut run.trail.path).into_boxed_slice(),
        };
        self.record_end(id, result);
    }

    /// The contact ended: its result is kept and journalled.
    fn record_end(&mut self, id: ContactId, mut result: ContactResult) {
        if let Some(end) = result.end.as_mut() {
            end.reason = self.shared_reason(std::mem::take(&mut end.reason));
        }
        let end = result.end.as_ref().expect("an ended contact has an end");
        if let Some(journal) = self.journal.as_deref_mut() {
            let path: Vec<&str> = result
                .path
                .iter()
                .map(|s| self.flow.steps[*s].name.as_str())
                .collect();
            journal.contact_ended(id, end.ending, &end.reason, &path);
            for m in result.messages.iter().flat_map(|m| &m.outbox) {
                journal.message(id, m);
            }
        }
        self.observer.contact_ended(end.ending);
        self.set(id, ContactState::Done);
        self.results[id.index()] = Some(result);
    }

    /// The one copy of a reason that the contacts ended for it share (a
    /// million results need not hold a million copies of "reached"); only
    /// the first reasons are kept, should a flow write a different one for
    /// every contact.
    fn shared_reason(&mut self, reason: Arc<str>) -> Arc<str> {
        if let Some(shared) = self.reasons.get(&*reason) {
            return shared.clone();
        }
        if self.reasons.len() < SHARED_REASONS {
            self.reasons.insert(reason.clone());
        }
        reason
    }

    /// A contact the run left unfinished (paused), with what it did so far.
    fn unfinished(&mut self, id: ContactId) -> ContactResult {
        let in_progress = matches!(self.contacts[id.index()], ContactState::OnCall { .. });
        let live = match self.take(id) {
            // Its run, rebuilt, holds what it did.
            parked @ ContactState::Parked { .. } => {
                self.set(id, parked);
                self.begin(id).map(|(live, _)| live)
            }
            ContactState::Waiting { live, .. }
            | ContactState::Ready { live, .. }
            | ContactState::OnCall { live, .. } => Some(live),
            ContactState::Unstarted | ContactState::Done => None,
        };
        let c = &self.list[id.index()];
        let (arm, mut trail) = match live {
            Some(live) => (live.run.arm(), live.run.trail),
            None => (self.arm(id), Default::default()),
        };
        ContactResult {
            line: c.line,
            phone: c.phone.clone(),
            zone: c.zones.first().copied().unwrap_or(Tz::UTC),
            arm,
            end: None,
            in_progress,
            messages: trail.take_messages(),
            attempts: trail.attempts.into_boxed_slice(),
            path: trail.path.into_boxed_slice(),
        }
    }
}

impl<'a> Live<'a> {
    fn new(run: Run<'a>, counted: u32) -> Live<'a> {
        Live {
            run,
            replies_in_call: false,
            counted,
            held: false,
        }
    }
}

/// How many committed calls are handed to the dialer before the loop lets
/// the dialer's own tasks run.
const PLACED_AT_ONCE: usize = 50;

/// Resolves when the oldest batch of calls is committed; never without one.
async fn next_commit(committing: &mut VecDeque<Committing>) -> Result<(), StoreError> {
    match committing.front_mut().and_then(|c| c.committed.as_mut()) {
        Some(c) => c.done().await,
        None => std::future::pending().await,
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

/// Resolves when the number of lines is other than `applied`; never
/// without a source.
async fn changed<T: PartialEq + Copy>(
    source: Option<tokio::sync::watch::Receiver<T>>,
    applied: Option<T>,
) {
    match source {
        Some(mut rx) => {
            // A source whose sender is gone changes no more.
            if rx.wait_for(|n| Some(*n) != applied).await.is_err() {
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
