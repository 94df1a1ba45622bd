//! `cargo bench --bench sip`: the SIP dialer against sipp playing a trunk of
//! mixed outcomes (`tests/sip/mixed.xml`: the number's last digit decides
//! answered, busy, declined, not found, unavailable, service unavailable or
//! ringing until cancelled), on loopback:
//!
//! - 10,000 calls at concurrency 100 without loss, then 10,000 with sipp
//!   losing 5% of the packets it sends and receives: how many outcomes are
//!   wrong (each number's outcome is known from its digit);
//! - the process's resident memory before the first call, after each
//!   10,000, and once the stack's transaction timers have run out
//!   (64×T1 and T4 after the last call): whether memory comes back.
//!
//! Needs sipp (Debian's sip-tester). `FLOWC_BENCH_CALLS` changes the count.

use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use flowc::dialer::sip::{Prompts, SipDialer, Trunk};
use flowc::dialer::{Call, CallId, Dialer};
use flowc::ir::Outcome;

/// flowc's allocator, so memory is measured as `flowc run` holds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What mixed.xml answers a number ending in each digit.
const MIXED: [(Outcome, u16); 10] = [
    (Outcome::Answered, 200),
    (Outcome::Answered, 200),
    (Outcome::Answered, 200),
    (Outcome::Answered, 200),
    (Outcome::Busy, 486),
    (Outcome::Rejected, 603),
    (Outcome::InvalidNumber, 404),
    (Outcome::NoAnswer, 480),
    (Outcome::NetworkError, 503),
    (Outcome::NoAnswer, 487),
];
const CONCURRENCY: usize = 100;
const T1_MS: u64 = 100;

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Places `calls` calls numbered from `first` (hanging up the answered
/// ones at once). Returns, for each call, its wrong outcome if it is
/// wrong and whether a right outcome lacks its expected SIP status; and
/// the seconds taken.
async fn campaign(
    dialer: Rc<SipDialer>,
    first: usize,
    calls: usize,
) -> (Vec<(Option<String>, bool)>, f64) {
    let started = Instant::now();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for k in first..first + calls {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let dialer = dialer.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let id = CallId {
                contact: k,
                attempt: 1,
            };
            let number = format!("+3361{k:07}");
            let dialled = dialer
                .place(Call {
                    id,
                    number: number.clone(),
                    caller_id: None,
                    local: chrono::Utc::now().naive_utc(),
                    timeout_seconds: 2,
                    detect_voicemail: false,
                    fields: None,
                })
                .await;
            if dialled.outcome == Outcome::Answered {
                dialer.hang_up(id).await;
            }
            drop(permit);
            let (want, status) = MIXED[k % 10];
            let got = dialled.sip.as_ref().map(|s| s.0);
            let wrong = (dialled.outcome != want).then(|| {
                format!(
                    "{number}: {:?} {got:?}, not {want:?} {status}",
                    dialled.outcome
                )
            });
            (wrong, dialled.outcome == want && got != Some(status))
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    (results, started.elapsed().as_secs_f64())
}

fn main() {
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("sipp is missing: apt-get install sip-tester");
        std::process::exit(1);
    }
    let calls: usize = std::env::var("FLOWC_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sip/mixed.xml");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    println!("{calls} calls a round, concurrency {CONCURRENCY}, T1 {T1_MS} ms, loopback");
    for (name, lost) in [("no loss", None), ("5% loss", Some("5"))] {
        let port = free_port();
        let mut sipp = Command::new("sipp");
        sipp.arg("-sf")
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
            // More calls than placed: sipp ends at its count, and under loss it
            // counts the calls it aborted too.
            .args(["-m", &(10 * calls).to_string(), "-timeout", "600s"]);
        if let Some(l) = lost {
            sipp.args(["-lost", l]);
        }
        let mut sipp = sipp
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let trunk = Trunk::parse(&format!("t1_ms = {T1_MS}\nlocal = \"127.0.0.1:0\"\n")).unwrap();
        local.block_on(&runtime, async {
            let dialer = Rc::new(
                SipDialer::start(&format!("127.0.0.1:{port}"), trunk, Prompts::default())
                    .await
                    .unwrap(),
            );
            // The timers of the last calls' transactions: 64×T1 for the
            // INVITE and CANCEL, T4 (5 s) for the BYE, and a margin.
            let settle = Duration::from_millis(64 * T1_MS).max(Duration::from_secs(5))
                + Duration::from_secs(2);
            // The start: after 1,000 calls have made the runtime's, the
            // stack's and the allocator's pools, and their timers ran out.
            campaign(dialer.clone(), 10 * calls, 1_000).await;
            tokio::time::sleep(settle).await;
            let start = resident_mib();
            println!("{name}: memory at the start {start:.1} MiB");
            for round in 0..2 {
                let (results, secs) = campaign(dialer.clone(), round * calls, calls).await;
                let after = resident_mib();
                tokio::time::sleep(settle).await;
                let settled = resident_mib();
                let wrong: Vec<&String> = results.iter().filter_map(|r| r.0.as_ref()).collect();
                let statuses = results.iter().filter(|r| r.1).count();
                println!(
                    "  round {}: {calls} calls in {secs:.1} s ({:.0}/s), wrong outcomes {} ({:.2}%), \
                     right outcomes without the expected SIP status {statuses}; memory right after \
                     {after:.1} MiB, {:.1} s later {settled:.1} MiB ({:+.0}% of the start)",
                    round + 1,
                    calls as f64 / secs,
                    wrong.len(),
                    wrong.len() as f64 * 100.0 / calls as f64,
                    settle.as_secs_f64(),
                    (settled / start - 1.0) * 100.0,
                );
                for w in wrong.iter().take(5) {
                    println!("    {w}");
                }
            }
            dialer.shut_down().await;
        });
        let _ = sipp.kill();
        let _ = sipp.wait();
    }
}
