//! SIGINT and SIGTERM for `flowc run`, noted from the command's first
//! instant (before the list is read), so that a signal at any moment
//! pauses the run instead of killing it. The handler only counts signals
//! and keeps the first one's number (all it may safely do); a watcher task
//! on the run's loop turns them into a pause, then a stop.
//!
//! The first signal pauses: no new dial, calls under way finish. A second
//! signal within a second of the first is the same request (`timeout` and
//! terminals deliver one to the process and one to its group); a later one,
//! or the end of the grace period, stops at once: the calls under way are
//! cut off and resume as `unknown`.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNT: AtomicUsize = AtomicUsize::new(0);
static FIRST: AtomicI32 = AtomicI32::new(0);

/// Installs the handlers; done once, at the start of the command.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the action only touches atomics, which is async-signal-safe.
        let registered = unsafe {
            signal_hook_registry::register(signal, move || {
                let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                COUNT.fetch_add(1, Ordering::SeqCst);
            })
        };
        if let Err(e) = registered {
            eprintln!(
                "warning: cannot catch signal {signal}: {e}; Ctrl-C will stop the run at once"
            );
        }
    }
}

/// Whether a signal has arrived.
pub fn received() -> bool {
    COUNT.load(Ordering::SeqCst) > 0
}

/// The exit status for the signal that paused the run: 130 for SIGINT,
/// 143 for SIGTERM.
pub fn exit_status() -> u8 {
    match FIRST.load(Ordering::SeqCst) {
        libc::SIGTERM => 143,
        _ => 130,
    }
}

/// Watches the signals: the first sends `pause`, a later one (more than a
/// second after the first) or the end of `grace` sends `stop`. `announce`
/// is told each step, for the operator.
pub async fn watch(
    pause: tokio::sync::watch::Sender<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    grace: Duration,
    mut announce: impl FnMut(&str),
) {
    let mut seen = 0;
    let mut first: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let count = COUNT.load(Ordering::SeqCst);
        let now = Instant::now();
        if count > seen {
            match first {
                None => {
                    first = Some(now);
                    announce(&format!(
                        "pausing: no new dials; the calls under way may finish within {} s \
                         (signal again to stop now)",
                        grace.as_secs()
                    ));
                    let _ = pause.send(true);
                }
                Some(at) if now - at > Duration::from_secs(1) => {
                    announce(
                        "stopping now: the calls under way are cut off and resume as `unknown`",
                    );
                    let _ = stop.send(true);
                    return;
                }
                Some(_) => {}
            }
            seen = count;
        }
        if first.is_some_and(|at| now - at >= grace) {
            announce("the grace period is over: the calls still under way are cut off and resume as `unknown`");
            let _ = stop.send(true);
            return;
        }
    }
}
