//! Clocks: the engine reads the time and waits through a `Clock`, so the same
//! code runs a campaign on the wall clock (`flowc run`) and on a virtual one
//! (`flowc simulate`, `flowc test`) that jumps to the next event at once.

use std::cell::Cell;
use std::future::Future;

use chrono::{DateTime, Utc};

pub trait Clock {
    fn now(&self) -> DateTime<Utc>;

    /// Waits until `at`. A virtual clock moves to `at` and returns at once.
    fn sleep_until(&self, at: DateTime<Utc>) -> impl Future<Output = ()>;

    /// A virtual clock may only move when nothing outside the engine is in
    /// progress: the engine waits for every call under way before it jumps.
    fn is_virtual(&self) -> bool;
}

/// The real time, for `flowc run`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn is_virtual(&self) -> bool {
        false
    }
}

/// Simulated time: starts where it is told and moves only forward, by the
/// engine's waits.
#[derive(Debug)]
pub struct VirtualClock {
    now: Cell<DateTime<Utc>>,
}

impl VirtualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        VirtualClock {
            now: Cell::new(start),
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.get()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        if at > self.now.get() {
            self.now.set(at);
        }
    }

    fn is_virtual(&self) -> bool {
        true
    }
}
