//! `flowc simulate` without the command line: a campaign on a virtual clock
//! with the `sim` dialer, through the same engine as a real run.

use std::collections::HashSet;
use std::future::Future;

use chrono::{DateTime, Utc};

use super::clock::VirtualClock;
use super::engine::{Engine, Results};
use crate::contacts;
use crate::dialer::SimDialer;
use crate::ir;

pub fn simulate(
    flow: &ir::Flow,
    list: &[contacts::Contact],
    dialer: &SimDialer,
    start: DateTime<Utc>,
) -> Results {
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
) -> Results {
    let clock = VirtualClock::new(start);
    let engine = Engine::new(flow, list, dialer, &clock, start).do_not_call(do_not_call.clone());
    block_on(engine.run()).expect("a run without a store cannot fail")
}

/// Runs the engine's future to its end on this thread.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts")
        .block_on(f)
}
