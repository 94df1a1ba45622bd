//! What the engine reports as it goes: the live counters and how late each
//! dial started after its due instant.

use chrono::{DateTime, Utc};

use crate::record::Ending;

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

pub(super) type OnProgress<'a> = Box<dyn FnMut(&Progress, DateTime<Utc>) + 'a>;

/// Keeps the counters and the lateness of dials, and tells whoever listens.
pub(super) struct Observer<'a> {
    pub(super) progress: Progress,
    listener: Option<OnProgress<'a>>,
    /// Lateness is measured on the wall clock only: a virtual clock is
    /// never late.
    timed: bool,
    pub(super) lateness_ms: Vec<f64>,
    /// When each dial of the batch being placed was due.
    due_at: Vec<DateTime<Utc>>,
    /// The contacts not begun yet waited for a line or the pace.
    unstarted_held: bool,
    /// When a line or the pace last freed up: a dial that waited for one is
    /// late from then, not from its due instant.
    freed_at: DateTime<Utc>,
}

impl<'a> Observer<'a> {
    pub(super) fn new(total: usize, timed: bool, start: DateTime<Utc>) -> Observer<'a> {
        Observer {
            progress: Progress {
                total: total as u64,
                pending: total as u64,
                ..Progress::default()
            },
            listener: None,
            timed,
            lateness_ms: Vec::new(),
            due_at: Vec::new(),
            unstarted_held: false,
            freed_at: start,
        }
    }

    pub(super) fn listen(&mut self, f: OnProgress<'a>) {
        self.listener = Some(f);
    }

    /// Tells the listener the counters at `now`.
    pub(super) fn report(&mut self, now: DateTime<Utc>) {
        let progress = self.progress;
        if let Some(f) = self.listener.as_mut() {
            f(&progress, now);
        }
    }

    /// Whether lateness is measured (the wall clock).
    pub(super) fn timed(&self) -> bool {
        self.timed
    }

    /// The dials waiting now wait for a line or the pace.
    pub(super) fn held_back(&mut self) {
        self.unstarted_held = true;
    }

    /// A line or the pace freed up at `now`.
    pub(super) fn freed(&mut self, now: DateTime<Utc>) {
        self.freed_at = now;
    }

    /// A dial due at `due` goes into the batch; `held` when it waited for a
    /// line or the pace (`fresh`: a contact not begun before).
    pub(super) fn dial_due(&mut self, due: DateTime<Utc>, held: bool, fresh: bool) {
        if !self.timed {
            return;
        }
        let held = held || (fresh && self.unstarted_held);
        self.due_at
            .push(if held { due.max(self.freed_at) } else { due });
    }

    /// When the batch's dials were due, in order (none on a virtual clock).
    pub(super) fn take_batch(&mut self) -> Vec<DateTime<Utc>> {
        std::mem::take(&mut self.due_at)
    }

    /// A dial due at `due` is handed to the dialer at `now`.
    pub(super) fn placed(&mut self, due: DateTime<Utc>, now: DateTime<Utc>) {
        let late = (now - due).num_microseconds().unwrap_or(0);
        self.lateness_ms.push(late as f64 / 1000.0);
        self.progress.lateness.record(late.max(0) as u64);
    }

    pub(super) fn call_started(&mut self) {
        self.progress.calls += 1;
        self.progress.in_progress += 1;
        self.progress.pending -= 1;
    }

    pub(super) fn call_ended(&mut self) {
        self.progress.in_progress -= 1;
        self.progress.pending += 1;
    }

    /// Calls an earlier run made (a resumed contact's history).
    pub(super) fn calls_made_before(&mut self, calls: usize) {
        self.progress.calls += calls as u64;
    }

    pub(super) fn contact_ended(&mut self, ending: Ending) {
        self.progress.pending -= 1;
        match ending {
            Ending::Completed => self.progress.completed += 1,
            Ending::Failed => self.progress.failed += 1,
            Ending::Skipped => self.progress.skipped += 1,
        }
    }
}
