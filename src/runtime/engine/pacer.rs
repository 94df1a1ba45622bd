//! The campaign's limits on dialling: `concurrency` (calls under way at
//! once) and `rate` (dials per period). Both are hard limits: a dial the
//! pace does not allow waits, first come first served.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use crate::ir;

pub(super) struct Pacer {
    concurrency: Option<usize>,
    rate: Option<(usize, Duration)>,
    /// Calls under way.
    in_flight: usize,
    /// When the dials of the last rate period started.
    recent: VecDeque<DateTime<Utc>>,
    /// A wake-up is scheduled for when the rate allows the next dial.
    wake_pending: bool,
}

/// May a call be placed now?
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pace {
    Go,
    /// Every line is busy: a call's end frees one.
    LinesBusy,
    /// The rate is spent until the instant given; `None` when a wake-up
    /// for it is already scheduled.
    Spent(Option<DateTime<Utc>>),
}

impl Pacer {
    pub(super) fn of(flow: &ir::Flow) -> Pacer {
        Pacer {
            concurrency: flow.concurrency.map(|c| c as usize),
            rate: flow.rate.map(|r| {
                (
                    r.count as usize,
                    Duration::seconds(i64::from(r.per_seconds)),
                )
            }),
            in_flight: 0,
            recent: VecDeque::new(),
            wake_pending: false,
        }
    }

    pub(super) fn check(&mut self, now: DateTime<Utc>) -> Pace {
        if self.concurrency.is_some_and(|c| self.in_flight >= c) {
            return Pace::LinesBusy;
        }
        if let Some((count, period)) = self.rate {
            while self.recent.front().is_some_and(|t| now - *t >= period) {
                self.recent.pop_front();
            }
            if self.recent.len() >= count {
                if self.wake_pending {
                    return Pace::Spent(None);
                }
                self.wake_pending = true;
                return Pace::Spent(Some(self.recent[0] + period));
            }
        }
        Pace::Go
    }

    /// Lines may be given and taken back while the campaign runs (a worker's
    /// share of a campaign run by several).
    pub(super) fn set_concurrency(&mut self, lines: usize) {
        self.concurrency = Some(lines);
    }

    /// A call was placed at `now`.
    pub(super) fn dialled(&mut self, now: DateTime<Utc>) {
        self.in_flight += 1;
        if self.rate.is_some() {
            self.recent.push_back(now);
        }
    }

    /// A call is over: its line is free.
    pub(super) fn hung_up(&mut self) {
        self.in_flight -= 1;
    }

    /// The wake-up `check` asked for came.
    pub(super) fn woken(&mut self) {
        self.wake_pending = false;
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }
}
