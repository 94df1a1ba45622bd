//! `flowc run` on the wall clock: the store as the journal, resume after a
//! crash or a pause, and the refusal of another flow.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub(crate) const FLOW: &str = r#"
contact {
  phone: phone
  name: text
}

calendar always {
  hours mon-sun 00:00-24:00
}

strategy quick {
  max attempts 3
  on busy retry after 1s
  on no_answer retry after 1s
}

compliance drill {
  max attempts 10 per 24h
}

flow drill {
  region "US"
  timezone "UTC"
  calendar always
  strategy quick
  compliance drill
  concurrency 6
  step call {
    dial contact.phone timeout 20s
    on answered -> gather 1 digit timeout 5s {
      "1" -> end completed "confirmed"
      timeout -> end failed "no_key"
      invalid -> end failed "bad_key"
    }
    on other -> end failed
  }
}
"#;

pub(crate) struct Drill {
    pub(crate) dir: PathBuf,
}

impl Drill {
    pub(crate) fn new(name: &str, contacts: usize, script: &str) -> Drill {
        let dir = std::env::temp_dir().join(format!("flowc-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("drill.flow"), FLOW).unwrap();
        let mut list = String::from("phone,name\n");
        for k in 0..contacts {
            list.push_str(&format!("+1212555{:04},C{k}\n", 100 + k));
        }
        std::fs::write(dir.join("list.csv"), list).unwrap();
        let script = format!("log {}\n{script}", dir.join("calls.log").display());
        std::fs::write(dir.join("script.txt"), script).unwrap();
        Drill { dir }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub(crate) fn command(&self, flow: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flowc"));
        c.args([
            "run",
            &self.path(flow),
            "--contacts",
            &self.path("list.csv"),
        ])
        .args(["--dialer", &format!("script:{}", self.path("script.txt"))])
        .args(["--db", &self.path("run.db"), "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    }

    pub(crate) fn run(&self, flow: &str) -> Output {
        self.command(flow).output().unwrap()
    }

    /// `(number, attempt)` of every call the dialer placed, in order.
    pub(crate) fn dialled(&self) -> Vec<(String, u32)> {
        std::fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (n, a) = l.split_once(' ').unwrap();
                (n.to_string(), a.parse().unwrap())
            })
            .collect()
    }

    /// The store's attempts: (number, attempt) → outcome (None: no end).
    pub(crate) fn stored(&self) -> HashMap<(String, u32), Option<String>> {
        let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["report", "--db", &self.path("run.db"), "--format", "json"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        sqlite_attempts(&self.dir.join("run.db"))
    }
}

/// Reads the attempts table with the library's own store reader.
fn sqlite_attempts(db: &Path) -> HashMap<(String, u32), Option<String>> {
    let store = flowc::store::Store::open_read_only(db).unwrap();
    store
        .attempt_rows()
        .unwrap()
        .into_iter()
        .map(|(n, a, o)| ((n, a), o))
        .collect()
}

/// How many times the crash test kills the run: 12 in the suite;
/// `FLOWC_CRASH_KILLS` sets more for the soak (BENCHMARKS.md).
fn kills() -> usize {
    std::env::var("FLOWC_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// The store's counters, and the same states counted independently from
/// the contacts, ends and attempts tables, read in one transaction:
/// (view, counted), each `[total, completed, failed, skipped, pending, in progress]`.
fn counters_and_count(db: &Path) -> Option<([u64; 6], [u64; 6])> {
    let mut conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    let tx = conn.transaction().ok()?;
    let view: [u64; 6] = tx
        .query_row(
            "SELECT total, completed, failed, skipped, pending, in_progress FROM counters",
            [],
            |r| {
                Ok([
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)? as u64,
                    r.get::<_, i64>(5)? as u64,
                ])
            },
        )
        .ok()?;
    let ids: Vec<i64> = tx
        .prepare("SELECT id FROM contacts")
        .ok()?
        .query_map([], |r| r.get(0))
        .ok()?
        .map(Result::unwrap)
        .collect();
    let ends: HashMap<i64, String> = tx
        .prepare("SELECT contact, state FROM ends")
        .ok()?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .ok()?
        .map(Result::unwrap)
        .collect();
    let open: HashSet<i64> = tx
        .prepare("SELECT contact FROM attempts WHERE ended_at IS NULL")
        .ok()?
        .query_map([], |r| r.get(0))
        .ok()?
        .map(Result::unwrap)
        .collect();
    let mut counted = [ids.len() as u64, 0, 0, 0, 0, 0];
    for id in &ids {
        let k = match ends.get(id).map(String::as_str) {
            Some("completed") => 1,
            Some("failed") => 2,
            Some("skipped") => 3,
            Some(other) => panic!("contact {id} ended as {other}"),
            None if open.contains(id) => 5,
            None => 4,
        };
        counted[k] += 1;
    }
    Some((view, counted))
}

/// Kills a run (SIGKILL) after the k-th placed call, for k spread over the
/// whole campaign, resumes each time, and checks the store against the
/// dialer's own log: no attempt is dialled twice, every dial is recorded,
/// every contact ends. Every kill hits a live run that dialled since the
/// last one; the counters are sampled while it runs.
#[test]
fn a_run_killed_at_random_points_resumes_without_double_dials() {
    let kills = kills();
    let contacts = 14 * kills;
    let drill = Drill::new(
        "crash",
        contacts,
        "+12125550100 answered press 1 lasting 50ms\n* busy lasting 30ms; no_answer lasting 30ms; answered press 1 lasting 40ms\n",
    );
    let db = drill.dir.join("run.db");
    // About three calls a contact; a kill every 20 calls leaves room.
    let step = 20;
    let mut sampled = 0;
    for k in 0..kills {
        let target = drill.dialled().len() + step;
        let mut child = drill.command("drill.flow").spawn().unwrap();
        loop {
            if drill.dialled().len() >= target {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "kill {k}: the run ended ({status}) before its {target}th call: \
                     the campaign is too short for {kills} kills"
                );
            }
            // Sampled while the run goes: the view and an independent count agree.
            if let Some((view, counted)) = counters_and_count(&db) {
                assert_eq!(
                    view, counted,
                    "kill {k}: the counters view disagrees with the tables"
                );
                assert_eq!(view[1..].iter().sum::<u64>(), view[0]);
                sampled += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "kill {k} hit a finished run"
        );
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let (view, counted) = counters_and_count(&db).expect("the store reads after a crash");
        assert_eq!(view, counted, "after kill {k}");
        assert_eq!(view[0], contacts as u64);
    }
    assert!(
        sampled >= kills,
        "the counters were sampled {sampled} times"
    );
    let last = drill.run("drill.flow");
    assert_eq!(
        last.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&last.stdout).unwrap();
    assert_eq!(report["totalContacts"], contacts);
    assert_eq!(report["contactsPending"], 0, "{report}");
    assert_eq!(report["contactsInProgress"], 0, "{report}");
    // The report's counters are the tables' own counts.
    let (view, counted) = counters_and_count(&db).unwrap();
    assert_eq!(view, counted);
    let reported = [
        "totalContacts",
        "contactsCompleted",
        "contactsFailed",
        "contactsSkipped",
        "contactsPending",
        "contactsInProgress",
    ]
    .map(|k| report[k].as_u64().unwrap());
    assert_eq!(reported, counted);

    let dialled = drill.dialled();
    let mut seen = HashSet::new();
    for d in &dialled {
        assert!(seen.insert(d.clone()), "{d:?} was dialled twice");
    }
    let stored = drill.stored();
    for d in &dialled {
        assert!(stored.contains_key(d), "{d:?} was dialled and not recorded");
    }
    // Every stored attempt ended; a crashed call is `unknown`, never retried
    // (the flow routes unknown nowhere, so it fails the contact).
    for (k, outcome) in &stored {
        assert!(outcome.is_some(), "{k:?} has no end");
    }
    // Attempt numbers run 1, 2, … per contact, with no gap.
    let mut by_number: HashMap<&str, Vec<u32>> = HashMap::new();
    for (n, a) in stored.keys() {
        by_number.entry(n).or_default().push(*a);
    }
    for (n, mut attempts) in by_number {
        attempts.sort();
        let expected: Vec<u32> = (1..=attempts.len() as u32).collect();
        assert_eq!(attempts, expected, "{n}");
    }
    assert_eq!(report["callsUsed"], stored.len() as u64);
    eprintln!(
        "crash test: {kills} kills, {} calls placed, {} counter samples",
        dialled.len(),
        sampled
    );
    std::fs::remove_dir_all(&drill.dir).ok();
}

#[test]
fn a_finished_run_dials_no_one_again_and_another_flow_needs_migrate() {
    let drill = Drill::new("rerun", 4, "* busy lasting 10ms; answered press 1\n");
    let first = drill.run("drill.flow");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let calls = drill.dialled().len();
    assert_eq!(calls, 8, "two attempts each");
    let again = drill.run("drill.flow");
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        drill.dialled().len(),
        calls,
        "a finished campaign dials no one"
    );
    assert_eq!(again.stdout, first.stdout, "and reports the same");

    // A changed flow is refused, then accepted with --migrate.
    std::fs::write(
        drill.dir.join("changed.flow"),
        FLOW.replace("max attempts 3", "max attempts 4"),
    )
    .unwrap();
    let refused = drill.run("changed.flow");
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--migrate"), "{said}");
    let migrated = drill
        .command("changed.flow")
        .arg("--migrate")
        .output()
        .unwrap();
    assert_eq!(
        migrated.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(String::from_utf8_lossy(&migrated.stderr).contains("changed flow"));
    assert_eq!(
        drill.dialled().len(),
        calls,
        "the migrated run had nothing left to do"
    );
    std::fs::remove_dir_all(&drill.dir).ok();
}

#[test]
fn ctrl_c_pauses_after_the_calls_under_way_and_the_run_resumes() {
    let drill = Drill::new("pause", 12, "* answered press 1 lasting 400ms\n");
    let child = drill.command("drill.flow").spawn().unwrap();
    // Wait until the first calls are placed, then interrupt.
    for _ in 0..1000 {
        if !drill.dialled().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("pausing: no new dials") && said.contains("run the same command to resume"),
        "{said}"
    );
    let paused_calls = drill.dialled().len();
    assert!(
        paused_calls < 12,
        "the pause stopped new dials ({paused_calls})"
    );
    // The calls under way finished: none is left without an end.
    let stored = drill.stored();
    assert_eq!(stored.len(), paused_calls);
    let store = flowc::store::Store::open_read_only(&drill.dir.join("run.db")).unwrap();
    assert_eq!(store.state().unwrap(), flowc::record::CampaignState::Paused);
    let [total, .., in_progress] = store.counters().unwrap();
    assert_eq!((total, in_progress), (12, 0));
    drop(store);
    assert!(stored.values().all(Option::is_some), "{stored:?}");
    let resumed = drill.run("drill.flow");
    assert_eq!(resumed.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(report["contactsCompleted"], 12, "{report}");
    assert_eq!(
        drill.dialled().len(),
        12,
        "each contact dialled once in all"
    );
    std::fs::remove_dir_all(&drill.dir).ok();
}

/// The README's example of `flowc run`: the rehearsal campaign, scripted.
#[test]
fn the_rehearsal_campaign_runs_as_the_readme_says() {
    let dir = std::env::temp_dir().join(format!("flowc-rehearsal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dnc = dir.join("dnc.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["run", "tests/fixtures/rehearsal.flow"])
        .args(["--contacts", "tests/fixtures/rehearsal.csv"])
        .args(["--dialer", "script:tests/fixtures/rehearsal.script"])
        .args(["--db", dir.join("run.db").to_str().unwrap()])
        .args(["--dnc", dnc.to_str().unwrap(), "--format", "json"])
        .current_dir(crate::root())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["totalContacts"], 6);
    assert_eq!(report["contactsCompleted"], 2, "{report}");
    assert_eq!(report["endReasons"]["failed: opted_out"], 1, "{report}");
    // Omar: busy, no answer, then answered and confirmed on the third attempt.
    assert_eq!(report["perAttempt"][2]["answered"], 1, "{report}");
    // The opt-out went to the do-not-call file.
    let listed = std::fs::read_to_string(&dnc).unwrap();
    assert!(listed.starts_with("+12125550103"), "{listed}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Calls the script answers and ends at once give their lines back while
/// they are being placed: the run goes on with the contacts that waited
/// for a line, rather than waiting for nothing (it used to stop after the
/// first six of twenty, forever).
#[test]
fn calls_that_end_as_they_are_placed_free_their_lines_for_the_next_contacts() {
    let drill = Drill::new("instant", 20, "* busy\n");
    let mut child = drill.command("drill.flow").spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the run still waits after 60 s; it needs a few seconds");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every contact busy three times (retried after 1 s): 60 calls, none twice.
    let dialled = drill.dialled();
    assert_eq!(dialled.len(), 60);
    assert_eq!(dialled.iter().collect::<HashSet<_>>().len(), 60);
}

/// `pause campaign when` on a resumed run counts the contacts that ended
/// before it too: a campaign paused at its threshold and run again pauses
/// again at once, dialling nobody.
#[test]
fn a_run_paused_at_its_threshold_pauses_again_when_resumed() {
    let drill = Drill::new("threshold", 12, "* answered press 1 lasting 20ms\n");
    let flow = FLOW
        .replace(
            "concurrency 6",
            "concurrency 1\n  pause campaign when step call reached 4 times",
        )
        .replace("flow drill {", "flow capped {");
    std::fs::write(drill.dir.join("capped.flow"), flow).unwrap();
    let first = drill.run("capped.flow");
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{said}");
    assert_eq!(drill.dialled().len(), 4, "{said}");
    let store = flowc::store::Store::open_read_only(&drill.dir.join("run.db")).unwrap();
    assert_eq!(store.state().unwrap(), flowc::record::CampaignState::Paused);
    drop(store);
    let again = drill.run("capped.flow");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        drill.dialled().len(),
        4,
        "the resumed run dialled past the threshold its ended contacts had reached"
    );
    std::fs::remove_dir_all(&drill.dir).ok();
}
