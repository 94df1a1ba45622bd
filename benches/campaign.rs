//! `cargo bench --bench campaign`: `flowc simulate` of a large generated list
//! (1,000,000 rows by default) with per-contact zones, a four-attempt
//! strategy and the SQLite store, phase by phase, with the peak memory; then,
//! in the same run, SQLite alone inserting as many attempt rows in the same
//! batches, for comparison.
//!
//! The list is `gen-contacts ROWS --seed 5` (FLOWC_BENCH_ROWS, default
//! 1000000), written once under `target/bench-data/`; FLOWC_GEN_CONTACTS
//! names the generator (default `../shared/tools/gen-contacts`).

use std::path::{Path, PathBuf};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use flowc::contacts::{self, Rules};
use flowc::dialer::{Model, SimDialer};
use flowc::runtime::clock::VirtualClock;
use flowc::runtime::engine::Engine;
use flowc::runtime::interpreter::{flow_zone, local_instant};
use flowc::runtime::journal::{Durability, Journal};
use flowc::runtime::simulate::block_on;
use flowc::store::Store;

fn main() {
    flowc::allocator::return_freed_memory();
    let rows: usize = std::env::var("FLOWC_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let list = generated_list(rows);
    let dir = PathBuf::from("target/bench-data");

    let t = Instant::now();
    let c = flowc::check::check(
        Path::new("benches/data/million.flow"),
        &flowc::check::FsLoader,
    )
    .expect("the bench flow is readable");
    let program = c.program.expect("the bench flow checks");
    let flow = program.flow.as_ref().expect("it has a flow");
    let checked = t.elapsed();

    let t = Instant::now();
    let file = std::fs::File::open(&list).expect("the list is readable");
    let rules = Rules::new(
        &flow.contact,
        &flow.timezone,
        flowc::calendar::phone::region("US"),
    );
    // Streamed, as `flowc simulate` reads it.
    let mut import = contacts::read_csv(std::io::BufReader::with_capacity(1 << 20, file), &rules);
    drop(rules);
    let imported = t.elapsed();
    let after_import = memory_mib("VmRSS:");

    let db = dir.join("campaign.db");
    remove_db(&db);
    let t = Instant::now();
    let start = flow
        .start
        .as_ref()
        .and_then(|s| local_instant(s, flow_zone(flow)))
        .expect("the bench flow has a start");
    let mut store = Store::open(&db, Durability::Batched).expect("the store opens");
    store
        .begin(&program, start, false, flowc::record::Kind::Simulation)
        .expect("a fresh store");
    let dialer = SimDialer {
        model: Model::default_model(),
        seed: 1,
    };
    let clock = VirtualClock::new(start);
    // As `flowc simulate` does: the store's writer reads the contacts from
    // the engine's list.
    let contacts: flowc::contacts::List = std::mem::take(&mut import.contacts).into();
    store.share_list(&contacts);
    let results = block_on(
        Engine::new(flow, &contacts, &dialer, &clock, start)
            .journal(&mut store, Durability::Batched)
            .run(),
    )
    .expect("the run completes");
    store
        .set_state(flowc::record::CampaignState::Finished, results.finish)
        .expect("the store syncs");
    let ran = t.elapsed();
    let attempts: usize = results.contacts.iter().map(|c| c.attempts.len()).sum();
    drop(results);
    drop(store);
    let peak = memory_mib("VmHWM:");

    let baseline_db = dir.join("baseline.db");
    remove_db(&baseline_db);
    let t = Instant::now();
    Store::insert_baseline(&baseline_db, attempts).expect("the baseline inserts");
    let baseline = t.elapsed();
    remove_db(&baseline_db);
    remove_db(&db);

    let total = checked + imported + ran;
    println!(
        "flowc simulate, {rows} rows ({} contacts after merging duplicates, {} rejected)",
        contacts.len(),
        import.rejects.len()
    );
    println!("  check the flow          {:>8.2} s", checked.as_secs_f64());
    println!(
        "  import the list         {:>8.2} s   {after_import} MiB resident after it",
        imported.as_secs_f64()
    );
    println!(
        "  run (engine + store)    {:>8.2} s   {attempts} attempts, {:.0} attempts/s",
        ran.as_secs_f64(),
        attempts as f64 / ran.as_secs_f64()
    );
    println!(
        "  total                   {:>8.2} s   peak memory {peak} MiB",
        total.as_secs_f64()
    );
    println!(
        "SQLite alone: {attempts} attempt rows in {:.2} s ({:.0} rows/s)",
        baseline.as_secs_f64(),
        attempts as f64 / baseline.as_secs_f64()
    );
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn generated_list(rows: usize) -> PathBuf {
    let dir = PathBuf::from("target/bench-data");
    std::fs::create_dir_all(&dir).expect("target/ is writable");
    let path = dir.join(format!("contacts-{rows}.csv"));
    if !path.exists() {
        let tool = std::env::var("FLOWC_GEN_CONTACTS")
            .unwrap_or_else(|_| "../shared/tools/gen-contacts".into());
        let out = std::process::Command::new(&tool)
            .args([&rows.to_string(), "--seed", "5"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(out.status.success(), "{tool} failed");
        std::fs::write(&path, out.stdout).expect("the list is written");
    }
    path
}

/// A figure of /proc/self/status (`VmHWM:` the peak resident memory,
/// `VmRSS:` the current), in MiB.
fn memory_mib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
