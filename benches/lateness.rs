//! `cargo bench --bench lateness`: `flowc run`'s engine on the wall clock
//! with 1,000 contacts all due at the same instant, concurrency 1,000 and a
//! scripted dialer (calls of 2 s, a retry 3 s later, three attempts): how
//! late each dial starts after its due instant (p50, p99, max), with the
//! store journalling every attempt before its dial.

use std::time::Instant;

use chrono::{Duration, Utc};
use flowc::contacts::{self, Rules};
use flowc::dialer::script::ScriptDialer;
use flowc::runtime::clock::WallClock;
use flowc::runtime::engine::Engine;
use flowc::runtime::journal::Durability;
use flowc::runtime::simulate::block_on;
use flowc::store::Store;

const FLOW: &str = r#"
contact {
  phone: phone
}

calendar always {
  hours mon-sun 00:00-24:00
}

strategy quick {
  max attempts 3
  on no_answer retry after 3s
}

flow lateness {
  region "US"
  timezone "UTC"
  calendar always
  strategy quick
  concurrency 1000
  step call {
    dial contact.phone timeout 20s
    on answered -> end completed
    on other -> end failed
  }
}
"#;

fn main() {
    let dir = std::path::PathBuf::from("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let flow_path = dir.join("lateness.flow");
    std::fs::write(&flow_path, FLOW).unwrap();
    let c = flowc::check::check(&flow_path, &flowc::check::FsLoader).unwrap();
    let program = c.program.expect("the flow checks");
    let flow = program.flow.as_ref().unwrap();
    let mut list = String::from("phone\n");
    for area in [
        "212", "213", "312", "415", "617", "713", "202", "305", "404", "503",
    ] {
        for k in 100..200 {
            list.push_str(&format!("+1{area}5550{k}\n"));
        }
    }
    let rules = Rules::new(
        &flow.contact,
        &flow.timezone,
        flowc::calendar::phone::region("US"),
    );
    let import = contacts::import_csv(&list, &rules);
    assert_eq!(import.contacts.len(), 1000);
    let dialer = ScriptDialer::parse("* no_answer lasting 2s", None).unwrap();
    let db = dir.join("lateness.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let mut store = Store::open(&db, Durability::BeforeEachDial).unwrap();
    let start = Utc::now() + Duration::seconds(1);
    store
        .begin(&program, start, false, flowc::record::Kind::Run)
        .unwrap();
    let t = Instant::now();
    let results = block_on(
        Engine::new(flow, &import.contacts, &dialer, &WallClock, start)
            .journal(&mut store, Durability::BeforeEachDial)
            .run(),
    )
    .unwrap();
    let took = t.elapsed();
    let mut l = results.lateness_ms.clone();
    l.sort_by(f64::total_cmp);
    let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
    println!(
        "{} dials of 1,000 contacts in {:.1} s: lateness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.len(),
        took.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
