//! What a first real campaign hit (runs, resumes, the store): each test
//! names the defect it holds fixed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::run::{Drill, FLOW};

fn flowc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits (at most 20 s) until the dialer's log has `n` calls.
fn wait_for_calls(drill: &Drill, n: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    while drill.dialled().len() < n {
        assert!(Instant::now() < until, "no {n} calls within 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn sqlite(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db).unwrap()
}

// ---------------------------------------------------------- 1. the flow's identity

#[test]
fn a_resume_does_not_depend_on_how_the_path_is_typed() {
    let drill = Drill::new("paths", 3, "* answered press 1\n");
    std::fs::create_dir_all(drill.dir.join("common")).unwrap();
    std::fs::write(
        drill.dir.join("common/always.flow"),
        "calendar always {\n  hours mon-sun 00:00-24:00\n}\n",
    )
    .unwrap();
    let flow = FLOW.replace(
        "calendar always {\n  hours mon-sun 00:00-24:00\n}\n",
        "use \"common/always.flow\"\n",
    );
    std::fs::write(drill.dir.join("paths.flow"), flow).unwrap();
    let script = format!("script:{}", drill.path("script.txt"));
    let db = drill.path("run.db");
    let list = drill.path("list.csv");
    // Typed as the folder's own name, from the folder.
    let first = flowc()
        .args([
            "run",
            "paths.flow",
            "--contacts",
            &list,
            "--dialer",
            &script,
        ])
        .args(["--db", &db])
        .current_dir(&drill.dir)
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    // Then `./`, an absolute path, and a path from another folder: the same run.
    for (flow, dir) in [
        ("./paths.flow".to_string(), drill.dir.clone()),
        (drill.path("paths.flow"), std::env::temp_dir()),
        (
            format!(
                "{}/paths.flow",
                drill.dir.file_name().unwrap().to_string_lossy()
            ),
            std::env::temp_dir(),
        ),
    ] {
        let again = flowc()
            .args(["run", &flow, "--contacts", &list, "--dialer", &script])
            .args(["--db", &db])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(0), "{flow}: {}", stderr(&again));
        assert!(
            stderr(&again).contains("has finished"),
            "{}",
            stderr(&again)
        );
    }
    assert_eq!(drill.dialled().len(), 3, "nobody was dialled twice");

    // A store of another IR format is refused with the way out.
    sqlite(&drill.dir.join("run.db"))
        .execute("UPDATE campaign SET format_version = 0", [])
        .unwrap();
    let refused = drill.run("paths.flow");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("IR format 0") && stderr(&refused).contains("another --db"),
        "{}",
        stderr(&refused)
    );
    std::fs::remove_dir_all(&drill.dir).ok();
}

// ---------------------------------------------------------- 2. replay proves the run

#[test]
fn a_replay_that_reaches_another_step_is_refused_unless_migrating() {
    let drill = Drill::new("replay", 3, "* busy; answered press 1\n");
    let first = drill.run("drill.flow");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    // Make the first contact unfinished with a history the flow cannot
    // have made: its first attempt at a step that does not exist.
    let conn = sqlite(&drill.dir.join("run.db"));
    conn.execute_batch(
        "DELETE FROM ends WHERE contact = 0;
         DELETE FROM attempts WHERE contact = 0 AND number = 2;
         UPDATE attempts SET step = 'greeting' WHERE contact = 0 AND number = 1;
         UPDATE campaign SET state = 'paused';",
    )
    .unwrap();
    drop(conn);
    let refused = drill.run("drill.flow");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("+12125550100")
            && said.contains("attempt 1")
            && said.contains("`greeting`")
            && said.contains("`call`")
            && said.contains("--migrate"),
        "{said}"
    );
    let calls = drill.dialled().len();
    assert_eq!(calls, 6, "the refused resume dialled no one");
    let migrated = drill
        .command("drill.flow")
        .arg("--migrate")
        .output()
        .unwrap();
    assert_eq!(migrated.status.code(), Some(0), "{}", stderr(&migrated));
    assert_eq!(
        drill.dialled().len(),
        7,
        "the migrated run dialled the contact's attempt 2"
    );
    std::fs::remove_dir_all(&drill.dir).ok();
}

// ---------------------------------------------------------- 3. stopping

#[test]
fn sigterm_pauses_lets_calls_finish_and_exits_143() {
    let drill = Drill::new("sigterm", 12, "* answered press 1 lasting 400ms\n");
    let child = drill.command("drill.flow").spawn().unwrap();
    wait_for_calls(&drill, 1);
    kill(child.id(), "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let stored = drill.stored();
    assert!(
        stored.values().all(Option::is_some),
        "calls finished: {stored:?}"
    );
    let store = flowc::store::Store::open_read_only(&drill.dir.join("run.db")).unwrap();
    assert_eq!(store.state().unwrap(), flowc::record::CampaignState::Paused);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("totalContacts"),
        "a report is printed"
    );
    std::fs::remove_dir_all(&drill.dir).ok();
}

#[test]
fn two_signals_within_a_second_are_one_pause() {
    let drill = Drill::new("twice", 12, "* answered press 1 lasting 600ms\n");
    let child = drill.command("drill.flow").spawn().unwrap();
    wait_for_calls(&drill, 1);
    // As `timeout -s INT` does: one to the process, one more at once.
    kill(child.id(), "-INT");
    std::thread::sleep(Duration::from_millis(50));
    kill(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let stored = drill.stored();
    assert!(
        stored.values().all(Option::is_some),
        "the calls under way finished, none is unknown: {stored:?}"
    );
    assert!(!stderr(&out).contains("cut off"), "{}", stderr(&out));
    std::fs::remove_dir_all(&drill.dir).ok();
}

#[test]
fn a_later_signal_or_the_grace_period_cuts_calls_off_and_the_store_says_paused() {
    for (name, second_signal) in [("later", true), ("grace", false)] {
        let drill = Drill::new(name, 12, "* answered press 1 lasting 20s\n");
        let started = Instant::now();
        let child = drill
            .command("drill.flow")
            .args(["--grace", "2s"])
            .spawn()
            .unwrap();
        wait_for_calls(&drill, 6);
        kill(child.id(), "-INT");
        if second_signal {
            std::thread::sleep(Duration::from_millis(1300));
            kill(child.id(), "-INT");
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "it stopped before the calls ended"
        );
        assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("6 call(s) under way were cut off"),
            "{}",
            stderr(&out)
        );
        let store = flowc::store::Store::open_read_only(&drill.dir.join("run.db")).unwrap();
        assert_eq!(store.state().unwrap(), flowc::record::CampaignState::Paused);
        let [total, .., in_progress] = store.counters().unwrap();
        assert_eq!(
            (total, in_progress),
            (12, 6),
            "the cut-off calls are kept without an end"
        );
        std::fs::remove_dir_all(&drill.dir).ok();
    }
}

/// A signal at any moment, from the start of the command to just after the
/// first placed call, pauses: exit 130, never death by the signal; before
/// the first dial, nobody is dialled and the store says paused.
#[test]
fn a_signal_at_any_moment_before_the_first_dial_pauses() {
    let moments = [0u64, 5, 20, 50, 100, 250];
    for (k, ms) in moments.iter().enumerate() {
        let drill = Drill::new(
            &format!("early{k}"),
            2000,
            "* answered press 1 lasting 2s\n",
        );
        let child = drill.command("drill.flow").spawn().unwrap();
        // The command's start: the moment its handlers are in place (its
        // first instructions), read from the kernel, so that a loaded
        // machine's slow process start does not count.
        wait_for_handlers(child.id());
        std::thread::sleep(Duration::from_millis(*ms));
        let before = drill.dialled().len();
        kill(child.id(), "-INT");
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "at {ms} ms: {}", stderr(&out));
        if before == 0 && drill.dialled().is_empty() {
            if let Ok(store) = flowc::store::Store::open_read_only(&drill.dir.join("run.db")) {
                assert_eq!(
                    store.state().unwrap(),
                    flowc::record::CampaignState::Paused,
                    "at {ms} ms"
                );
            }
        }
        std::fs::remove_dir_all(&drill.dir).ok();
    }
    // Just after the first placed call.
    let drill = Drill::new("early-dial", 2000, "* answered press 1 lasting 300ms\n");
    let child = drill.command("drill.flow").spawn().unwrap();
    wait_for_calls(&drill, 1);
    kill(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    std::fs::remove_dir_all(&drill.dir).ok();
}

/// Waits until the process catches SIGINT (`SigCgt` in /proc/PID/status).
fn wait_for_handlers(pid: u32) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGINT - 1)) != 0 {
            return;
        }
        assert!(Instant::now() < until, "process {pid} never caught SIGINT");
        std::thread::sleep(Duration::from_micros(200));
    }
}

// ---------------------------------------------------------- 4. durability

#[test]
fn real_runs_sync_every_commit_and_simulations_batch() {
    let dir = std::env::temp_dir().join(format!("flowc-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    use flowc::runtime::journal::Durability;
    use flowc::store::Store;
    let run = Store::open(&dir.join("run.db"), Durability::BeforeEachDial).unwrap();
    assert_eq!(run.synchronous().unwrap(), 2, "FULL");
    let sim = Store::open(&dir.join("sim.db"), Durability::Batched).unwrap();
    assert_eq!(sim.synchronous().unwrap(), 1, "NORMAL");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- 5. a resumed simulation

/// Simulates `flows/win_back.flow` over a generated list into `db`.
fn simulate_win_back(db: &Path, list: &Path, extra: &[&str]) -> std::process::Output {
    flowc()
        .args(["simulate", "flows/win_back.flow", "--contacts"])
        .arg(list)
        .arg("--db")
        .arg(db)
        .args(["--format", "json", "--seed", "7"])
        .args(extra)
        .current_dir(crate::root())
        .output()
        .unwrap()
}

fn win_back_list(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut list = String::from("phone,name,timezone,segment,consent,balance\n");
    for k in 0..n {
        list.push_str(&format!("+1212555{k:04},P{k},,standard,true,\n"));
    }
    let path = dir.join("list.csv");
    std::fs::write(&path, list).unwrap();
    path
}

#[test]
fn an_interrupted_simulation_gives_the_campaign_of_an_uninterrupted_one() {
    let dir = std::env::temp_dir().join(format!("flowc-simresume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let list = win_back_list(&dir, 400);
    let whole = simulate_win_back(&dir.join("whole.db"), &list, &[]);
    assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));
    // The same simulation, left as a crash leaves it: running, some calls
    // without an end, some contacts without one.
    let cut = simulate_win_back(&dir.join("cut.db"), &list, &[]);
    assert_eq!(cut.status.code(), Some(0));
    sqlite(&dir.join("cut.db"))
        .execute_batch(
            "UPDATE campaign SET state = 'running';
             DELETE FROM ends WHERE contact % 3 = 0;
             UPDATE attempts SET ended_at = NULL, outcome = NULL WHERE contact % 3 = 0 AND number = 2;
             DELETE FROM attempts WHERE contact % 3 = 0 AND number > 2;",
        )
        .unwrap();
    let resumed = simulate_win_back(&dir.join("cut.db"), &list, &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("runs again from its start"),
        "{}",
        stderr(&resumed)
    );
    assert_eq!(
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&whole.stdout),
        "the same seed, the same campaign"
    );
    // The flow's limits hold over the stored calls: at most 30 at once and
    // 2 dials a second.
    let conn = sqlite(&dir.join("cut.db"));
    let mut q = conn
        .prepare("SELECT started_at, ended_at FROM attempts ORDER BY started_at")
        .unwrap();
    let calls: Vec<(String, Option<String>)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        calls.iter().all(|(_, e)| e.is_some()),
        "no call is left unknown"
    );
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    let mut per_second: std::collections::HashMap<i64, usize> = Default::default();
    for (k, (s, _)) in calls.iter().enumerate() {
        let start = t(s);
        *per_second.entry(start.timestamp()).or_default() += 1;
        let under_way = calls[..k]
            .iter()
            .filter(|(_, e)| t(e.as_deref().unwrap()) > start)
            .count();
        assert!(under_way < 30, "{} calls under way at {s}", under_way + 1);
    }
    assert!(
        per_second.values().all(|n| *n <= 2),
        "more than 2 dials in a second"
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- 6. two processes

#[test]
fn a_second_runner_is_refused_with_who_holds_the_campaign() {
    // Calls long enough that the first run is still going, however loaded
    // the machine, when the second starts.
    let drill = Drill::new("twoproc", 12, "* answered press 1 lasting 3s\n");
    let first = drill.command("drill.flow").spawn().unwrap();
    wait_for_calls(&drill, 1);
    let second = drill.run("drill.flow");
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(
        stderr(&second).contains(&format!("being run by process {}", first.id())),
        "{}",
        stderr(&second)
    );
    // `report` needs no lock.
    let report = flowc()
        .args(["report", "--db", &drill.path("run.db")])
        .output()
        .unwrap();
    assert_eq!(report.status.code(), Some(0), "{}", stderr(&report));
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(drill.dialled().len(), 12, "each contact dialled once");
    let store = flowc::store::Store::open_read_only(&drill.dir.join("run.db")).unwrap();
    assert_eq!(store.lock_holder().unwrap(), None, "released at the end");
    std::fs::remove_dir_all(&drill.dir).ok();
}

// ---------------------------------------------------------- 7, 8. whose database

#[test]
fn another_programs_database_is_left_untouched() {
    let drill = Drill::new("foreign", 2, "* answered press 1\n");
    let db = drill.dir.join("run.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
        // A `user_version` that happens to be a store's.
        conn.pragma_update(None, "user_version", 4).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    for args in [vec!["run"], vec!["report"]] {
        let out = if args[0] == "run" {
            drill.run("drill.flow")
        } else {
            flowc()
                .args(["report", "--db", &drill.path("run.db")])
                .output()
                .unwrap()
        };
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("not a flowc database"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read(&db).unwrap(), before, "byte for byte");
        assert!(
            !drill.dir.join("run.db-wal").exists(),
            "not switched to WAL"
        );
    }
    std::fs::write(&db, "name,phone\n").unwrap();
    let out = drill.run("drill.flow");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not an SQLite database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&db).unwrap(), "name,phone\n");
    assert!(drill.dialled().is_empty());
    std::fs::remove_dir_all(&drill.dir).ok();
}

#[test]
fn the_database_folder_is_made_and_report_reads_a_read_only_database() {
    let drill = Drill::new("folder", 2, "* answered press 1\n");
    let db = drill.dir.join("new/deeper/run.db");
    let out = flowc()
        .args([
            "run",
            &drill.path("drill.flow"),
            "--contacts",
            &drill.path("list.csv"),
        ])
        .args(["--dialer", &format!("script:{}", drill.path("script.txt"))])
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(db.exists());
    // As a user who may only read the file and its folder.
    let setpriv = Path::new("/usr/bin/setpriv");
    if !setpriv.exists() {
        assert!(std::env::var_os("CI").is_none(), "setpriv is missing in CI");
        eprintln!("skipped: no setpriv to read as another user");
        return;
    }
    let before = std::fs::read(&db).unwrap();
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_flowc"))
        .args(["report", "--format", "json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["totalContacts"], 2);
    assert_eq!(std::fs::read(&db).unwrap(), before);
    std::fs::remove_dir_all(&drill.dir).ok();
}

// ---------------------------------------------------------- 15. a closed pipe

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let dir = std::env::temp_dir().join(format!("flowc-pipe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let list = win_back_list(&dir, 3000);
    let sim = simulate_win_back(&dir.join("run.db"), &list, &[]);
    assert_eq!(sim.status.code(), Some(0), "{}", stderr(&sim));
    let mut child = flowc()
        .args(["report", "--format", "csv", "--db"])
        .arg(dir.join("run.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("phone,"), "{first}");
    } // `head -1`: the pipe closes here.
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- a rerun reports the same

#[test]
fn a_finished_simulation_rerun_prints_the_same_table() {
    let dir = std::env::temp_dir().join(format!("flowc-rerun-table-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let list = win_back_list(&dir, 50);
    let table = |db: &Path| {
        flowc()
            .args(["simulate", "flows/win_back.flow", "--contacts"])
            .arg(&list)
            .arg("--db")
            .arg(db)
            .current_dir(crate::root())
            .output()
            .unwrap()
    };
    let first = table(&dir.join("run.db"));
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let again = table(&dir.join("run.db"));
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("has finished"),
        "{}",
        stderr(&again)
    );
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("simulated 2026-12-07"), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        text,
        "the table, span line included, is the same"
    );
    std::fs::remove_dir_all(&dir).ok();
}
