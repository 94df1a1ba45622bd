//! Real calls and messages: the exec bridge (`--dialer exec:PROGRAM`) with
//! the test bridge `tests/bridge/bridge.py`, the outbox that sends SMS
//! through it and e-mail through SMTP (a real server from Debian's
//! python3-aiosmtpd), and what happens when a bridge crashes, hangs or
//! prints garbage.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration as StdDuration;

use crate::root;

const FLOW: &str = r#"
contact {
  phone: phone
  email: text?
}

calendar always {
  hours mon-sun 00:00-24:00
}

flow bridged {
  timezone "UTC"
  calendar always
  concurrency 4
  step call {
    dial contact.phone timeout 20s
    on answered -> greet
    on other -> end failed "not_reached"
  }
  step greet {
    say "Hello {contact.phone}, press 1 to confirm."
    gather 1 digit timeout 5s tries 1 {
      "1" -> {
        record max 10s as note
        send sms "Thanks, confirmed"
        send email "Your appointment is confirmed." subject "Confirmed"
        end completed "confirmed"
      }
      other -> end failed "no_key"
    }
  }
}
"#;

struct Case {
    dir: PathBuf,
}

impl Case {
    fn new(name: &str, rows: &[(&str, &str)]) -> Case {
        let dir = std::env::temp_dir().join(format!("flowc-real-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("flow.flow"), FLOW).unwrap();
        let mut list = String::from("phone,email\n");
        for (phone, email) in rows {
            list.push_str(&format!("{phone},{email}\n"));
        }
        std::fs::write(dir.join("list.csv"), list).unwrap();
        Case { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn run(&self, mode: &str, extra: &[&str]) -> Output {
        self.run_on(&self.path("run.db"), mode, extra)
    }

    /// A run whose store is `db` (a file or a PostgreSQL URL).
    fn run_on(&self, db: &str, mode: &str, extra: &[&str]) -> Output {
        let bridge = root().join("tests/bridge/bridge.py");
        Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args([
                "run",
                &self.path("flow.flow"),
                "--contacts",
                &self.path("list.csv"),
            ])
            .args([
                "--dialer",
                &format!("exec:python3 {} {mode}", bridge.display()),
            ])
            .args(["--db", db, "--format", "json"])
            .args(extra)
            .env("FLOWC_BRIDGE_LOG", self.path("bridge.log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// The requests the bridge received, in order.
    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("bridge.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.join("run.db")).unwrap()
    }

    /// (phone, attempt, outcome, SIP status) of every attempt.
    fn attempts(&self) -> Vec<(String, u32, Option<String>, Option<u16>)> {
        let db = self.db();
        let mut q = db
            .prepare(
                "SELECT c.phone, a.number, a.outcome, a.sip_status FROM attempts a \
                 JOIN contacts c ON c.id = a.contact ORDER BY c.phone, a.number",
            )
            .unwrap();
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// (kind, recipient, status, detail) of every message.
    fn messages(&self) -> Vec<(String, Option<String>, String, Option<String>)> {
        let db = self.db();
        let mut q = db
            .prepare("SELECT kind, recipient, status, detail FROM messages ORDER BY contact, rowid")
            .unwrap();
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn state(&self) -> String {
        self.db()
            .query_row("SELECT state FROM campaign", [], |r| r.get(0))
            .unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn a_bridge_places_calls_carries_their_actions_and_sends_sms() {
    let case = Case::new(
        "calls",
        &[
            ("+33612345670", "ann@example.com"),
            ("+33612345671", ""),
            ("+33612345672", ""),
            ("+33612345673", ""),
            ("+33612345674", ""),
            ("+33612345675", ""),
            ("+33612345680", ""),
        ],
    );
    let o = case.run("normal", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["contactsCompleted"], 2, "{report}");
    assert_eq!(report["contactsFailed"], 5);
    // Each number's outcome and SIP status, as the bridge gave them (its
    // replies come back out of order: they are matched by id).
    let got: Vec<(String, Option<String>, Option<u16>)> = case
        .attempts()
        .into_iter()
        .map(|(p, n, o, s)| {
            assert_eq!(n, 1);
            (p, o, s)
        })
        .collect();
    let want = [
        ("+33612345670", "answered", 200),
        ("+33612345671", "busy", 486),
        ("+33612345672", "no_answer", 480),
        ("+33612345673", "rejected", 603),
        ("+33612345674", "invalid_number", 404),
        ("+33612345675", "network_error", 503),
        ("+33612345680", "answered", 200),
    ];
    assert_eq!(
        got,
        want.map(|(p, o, s)| (p.to_string(), Some(o.to_string()), Some(s)))
    );
    // On each answered call: the prompt, then the gather, then the hang-up.
    let requests = case.requests();
    for call in ["0-1", "6-1"] {
        let ops: Vec<&str> = requests
            .iter()
            .filter(|r| r["call"] == call)
            .map(|r| r["op"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["dial", "say", "gather", "record", "hangup"], "{call}");
    }
    // Every request has exactly the fields docs/bridge.schema.json requires of its op.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/bridge.schema.json")).unwrap(),
    )
    .unwrap();
    let defs = &schema["$defs"];
    let mut ops_seen = std::collections::BTreeSet::new();
    for r in &requests {
        let op = r["op"].as_str().unwrap();
        ops_seen.insert(op.to_string());
        let def = defs
            .as_object()
            .unwrap()
            .values()
            .find(|d| d["properties"]["op"]["const"] == op)
            .unwrap_or_else(|| panic!("no schema for `{op}`"));
        let mut required: Vec<&str> = def["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        required.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, required, "{r}");
    }
    assert_eq!(
        ops_seen.into_iter().collect::<Vec<_>>(),
        ["dial", "gather", "hangup", "record", "say", "sms"]
    );
    // The recording's name: the number and the attempt.
    let record = requests
        .iter()
        .find(|r| r["op"] == "record" && r["call"] == "0-1")
        .unwrap();
    assert_eq!(record["file"], "33612345670-1.wav");
    assert_eq!(record["maxSeconds"], 10);
    let say = requests.iter().find(|r| r["op"] == "say").unwrap();
    assert!(say["text"].as_str().unwrap().starts_with("Hello +336"));
    // The SMS of the two confirmed contacts went through the bridge, once each.
    let sms: Vec<&serde_json::Value> = requests.iter().filter(|r| r["op"] == "sms").collect();
    assert_eq!(sms.len(), 2);
    let messages = case.messages();
    let sent_sms = messages
        .iter()
        .filter(|m| m.0 == "sms" && m.2 == "sent")
        .count();
    assert_eq!(sent_sms, 2, "{messages:?}");
    // No --smtp: the e-mails wait in the store, and the run says so.
    assert!(messages.iter().any(|m| m.0 == "email" && m.2 == "unsent"));
    assert!(stderr(&o).contains("e-mail(s) wait unsent in the store: no --smtp was given"));
    assert_eq!(case.state(), "finished");
}

#[test]
fn a_bridge_that_crashes_pauses_the_run_and_the_run_resumes() {
    let rows: Vec<(String, &str)> = (0..8).map(|k| (format!("+336123450{k}2"), "")).collect();
    let rows: Vec<(&str, &str)> = rows.iter().map(|(p, e)| (p.as_str(), *e)).collect();
    let case = Case::new("crash", &rows);
    let o = case.run("crash 3", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("(it exited or crashed)"), "{err}");
    assert!(
        err.contains("lost the provider's connection (simulated)"),
        "{err}"
    );
    assert!(err.contains("run the same command to resume it"), "{err}");
    assert_eq!(case.state(), "paused");
    // Calls under way when it crashed are `unknown`: maybe placed, never placed again.
    let attempts = case.attempts();
    let unknown = attempts
        .iter()
        .filter(|a| a.2.as_deref() == Some("unknown"))
        .count();
    assert!(unknown >= 1, "{attempts:?}");
    let before: Vec<(String, u32)> = attempts.iter().map(|a| (a.0.clone(), a.1)).collect();

    let o = case.run("normal", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(case.state(), "finished");
    let after = case.attempts();
    // Every contact ended; no attempt was placed twice.
    let db = case.db();
    let ends: i64 = db
        .query_row("SELECT count(*) FROM ends", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ends, 8);
    let mut dials: Vec<(String, String)> = case
        .requests()
        .iter()
        .filter(|r| r["op"] == "dial")
        .map(|r| {
            (
                r["to"].as_str().unwrap().to_string(),
                r["call"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let n = dials.len();
    dials.sort();
    dials.dedup();
    assert_eq!(dials.len(), n, "an attempt was dialled twice");
    for (phone, number) in before {
        assert!(after.iter().any(|a| a.0 == phone && a.1 == number));
    }
}

#[test]
fn a_bridge_that_prints_garbage_is_quoted_and_the_run_pauses() {
    let case = Case::new("garbage", &[("+33612345670", "")]);
    let o = case.run("garbage", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("it printed a line that is not a reply (not JSON")
            && err.contains("`hello there, this is not JSON`"),
        "{err}"
    );
    assert_eq!(case.state(), "paused");
    assert_eq!(case.attempts()[0].2.as_deref(), Some("unknown"));
}

#[test]
fn an_adapter_that_cannot_start_is_a_usage_error() {
    let case = Case::new("nostart", &[("+33612345670", "")]);
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args([
            "run",
            &case.path("flow.flow"),
            "--contacts",
            &case.path("list.csv"),
        ])
        .args([
            "--dialer",
            "exec:/nonexistent/bridge",
            "--db",
            &case.path("run.db"),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot start the bridge `/nonexistent/bridge`"));
}

/// A bridge that never answers meets each operation's deadline: the dial is
/// `unknown` (nobody knows whether it was placed), on virtual time.
#[tokio::test(start_paused = true)]
async fn a_bridge_that_hangs_meets_the_deadline() {
    use flowc::dialer::bridge::Bridge;
    use flowc::dialer::{Call, CallId, Dialer};
    let bridge = root().join("tests/bridge/bridge.py");
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = failed.clone();
    let b = Bridge::start(
        &format!("python3 {} hang", bridge.display()),
        StdDuration::from_secs(30),
        move |why| *seen.lock().unwrap() = Some(why),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let d = b
        .place(Call {
            id: CallId {
                contact: 0,
                attempt: 1,
            },
            number: "+33612345670".into(),
            caller_id: None,
            local: chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
                .unwrap()
                .and_hms_opt(10, 0, 0)
                .unwrap(),
            timeout_seconds: 20,
            detect_voicemail: false,
            fields: None,
        })
        .await;
    assert_eq!(d.outcome, flowc::ir::Outcome::Unknown);
    // The ring timeout and the deadline: 50 s of virtual time.
    assert_eq!(started.elapsed().as_secs(), 50);
    // A hang is no failure of the bridge: later calls are still tried.
    assert!(failed.lock().unwrap().is_none());
    assert!(b.failure().is_none());
    b.shut_down().await;
}

/// The Python that has Debian's aiosmtpd, if any.
fn smtp_python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

struct SmtpServer {
    child: std::process::Child,
    port: u16,
    out: PathBuf,
}

impl SmtpServer {
    fn start(dir: &Path) -> Option<SmtpServer> {
        let Some(python) = smtp_python() else {
            assert!(
                std::env::var("CI").is_err(),
                "python3-aiosmtpd is missing: .ci/run installs it"
            );
            eprintln!("skipped: no python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = dir.join("mail.jsonl");
        let mut child = Command::new(python)
            .arg(root().join("tests/smtp/server.py"))
            .args([port.to_string(), out.display().to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        Some(SmtpServer { child, port, out })
    }

    fn mail(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
fn e_mails_go_through_a_real_smtp_server() {
    let case = Case::new(
        "smtp",
        &[
            ("+33612345670", "ann@example.com"),
            ("+33612345680", "reject-bob@example.com"),
            ("+33612345690", ""),
        ],
    );
    let Some(server) = SmtpServer::start(&case.dir) else {
        return;
    };
    let o = case.run(
        "normal",
        &[
            "--smtp",
            &format!("smtp://127.0.0.1:{}", server.port),
            "--mail-from",
            "Campaigns <campaigns@example.com>",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mail = server.mail();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["to"][0], "ann@example.com");
    assert_eq!(mail[0]["from"], "campaigns@example.com");
    let data = mail[0]["data"].as_str().unwrap();
    assert!(data.contains("Subject: Confirmed") && data.contains("Your appointment is confirmed."));
    let emails: Vec<_> = case
        .messages()
        .into_iter()
        .filter(|m| m.0 == "email")
        .collect();
    assert_eq!(emails.len(), 3, "{emails:?}");
    assert_eq!(emails[0].2, "sent");
    // Refused for good by the server: failed, with its words.
    assert_eq!(emails[1].2, "failed");
    assert!(
        emails[1].3.as_deref().unwrap().contains("no such mailbox"),
        "{emails:?}"
    );
    // No address: failed without trying.
    assert_eq!(emails[2].2, "failed");
    assert!(emails[2].3.as_deref().unwrap().contains("no `email` field"));
    assert!(stderr(&o).contains("messages:"));
}

/// The outbox on a virtual clock: a temporary failure is tried again after
/// 5 s, then 10 s; a permanent one fails at once; a message a crash left
/// `sending` is `unknown` and never handed over again.
#[tokio::test(start_paused = true)]
async fn the_outbox_retries_with_backoff_and_never_sends_twice() {
    use flowc::messaging::{Courier, DynCourier, Outbox, Undelivered};
    use flowc::runtime::clock::{Clock, VirtualClock};
    use flowc::store::outbox::Outgoing;

    // A finished run whose messages nobody sent (no courier).
    let case = Case::new(
        "outbox",
        &[
            ("+33612345670", ""),
            ("+33612345680", ""),
            ("+33612345690", ""),
        ],
    );
    std::fs::write(case.dir.join("script.txt"), "* answered press 1\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args([
            "run",
            &case.path("flow.flow"),
            "--contacts",
            &case.path("list.csv"),
        ])
        .args(["--dialer", &format!("script:{}", case.path("script.txt"))])
        .args(["--db", &case.path("run.db"), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("3 SMS wait unsent in the store"),
        "{}",
        stderr(&o)
    );
    // A crash while the third SMS was handed over.
    case.db()
        .execute(
            "UPDATE messages SET status = 'sending' WHERE kind = 'sms' AND recipient = '+33612345690'",
            [],
        )
        .unwrap();

    struct Flaky {
        tries: std::cell::RefCell<Vec<String>>,
    }
    impl Courier for Flaky {
        fn kind(&self) -> &'static str {
            "sms"
        }
        async fn deliver(&self, m: &Outgoing) -> Result<Option<String>, Undelivered> {
            let to = m.recipient.clone().unwrap();
            self.tries.borrow_mut().push(to.clone());
            let so_far = self.tries.borrow().iter().filter(|t| **t == to).count();
            match to.as_str() {
                "+33612345670" if so_far < 3 => Err(Undelivered {
                    reason: "provider busy".into(),
                    temporary: true,
                }),
                "+33612345680" => Err(Undelivered {
                    reason: "not a mobile number".into(),
                    temporary: false,
                }),
                _ => Ok(Some("queued".into())),
            }
        }
    }
    // Whole seconds: the store keeps times to the millisecond.
    let start = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0);
    let clock = VirtualClock::new(start);
    let courier = Flaky {
        tries: Default::default(),
    };
    let couriers: Vec<&dyn DynCourier> = vec![&courier];
    let mut outbox = Outbox::open(&case.dir.join("run.db"), couriers, &clock).unwrap();
    assert_eq!(outbox.delivered.interrupted, 1);
    let (_done_tx, done) = tokio::sync::watch::channel(true);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    outbox.run(done, stop).await.unwrap();
    assert_eq!(outbox.delivered.sent, 1);
    assert_eq!(outbox.delivered.failed, 1);
    assert_eq!(outbox.delivered.retried, 2);
    assert_eq!(
        *courier.tries.borrow(),
        [
            "+33612345670",
            "+33612345680",
            "+33612345670",
            "+33612345670"
        ]
    );
    // Sent on the third try, 5 s + 10 s after the first.
    assert_eq!(clock.now() - start, chrono::Duration::seconds(15));
    let db = case.db();
    let row = |to: &str| -> (String, u32, Option<String>) {
        db.query_row(
            "SELECT status, tries, detail FROM messages WHERE kind = 'sms' AND recipient = ?1",
            [to],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(
        row("+33612345670"),
        ("sent".into(), 3, Some("queued".into()))
    );
    assert_eq!(
        row("+33612345680"),
        ("failed".into(), 1, Some("not a mobile number".into()))
    );
    let (status, tries, detail) = row("+33612345690");
    assert_eq!((status.as_str(), tries), ("unknown", 0));
    assert!(detail.unwrap().contains("not sent again"));
}

/// A store of the version before (no SIP status, no outbox columns) is
/// read as it stands by `report`, and upgraded in place by a run.
#[test]
fn a_store_of_the_version_before_is_upgraded_by_a_run() {
    let case = Case::new("upgrade", &[("+33612345670", "")]);
    std::fs::write(case.dir.join("script.txt"), "* busy\n").unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args([
                "run",
                &case.path("flow.flow"),
                "--contacts",
                &case.path("list.csv"),
            ])
            .args(["--dialer", &format!("script:{}", case.path("script.txt"))])
            .args(["--db", &case.path("run.db"), "--format", "json"])
            .output()
            .unwrap()
    };
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    {
        let db = case.db();
        db.execute_batch(
            "PRAGMA legacy_alter_table = ON;
             CREATE TABLE a4 AS SELECT contact, number, step, started_at, caller_id, ended_at, outcome, keys, transfers FROM attempts;
             DROP TABLE attempts; ALTER TABLE a4 RENAME TO attempts;
             CREATE TABLE m4 AS SELECT contact, attempt, kind, text, recipient, status FROM messages;
             DROP TABLE messages; ALTER TABLE m4 RENAME TO messages;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let report = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["report", "--db", &case.path("run.db"), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(report.status.code(), Some(0), "{}", stderr(&report));
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let db = case.db();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
    let status: Option<u16> = db
        .query_row("SELECT sip_status FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, None);
}

/// Failure patterns: in a campaign where every number of one area code
/// fails (a scripted dialer) and a third of the others do, the report
/// names that area code first, in JSON and in the table.
#[test]
fn the_report_names_the_area_code_that_fails() {
    let dir = std::env::temp_dir().join(format!("flowc-patterns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(
        dir.join("flow.flow"),
        r#"
contact {
  phone: phone
  segment: enum(gold, silver)
}

calendar always {
  hours mon-sun 00:00-24:00
}

compliance house {
  max attempts 10 per 24h
}

flow patterns {
  timezone "UTC"
  region "US"
  calendar always
  compliance house
  concurrency 20
  step call {
    dial contact.phone
    on answered -> end completed
    on other -> end failed
  }
}
"#,
    )
    .unwrap();
    let areas = ["212", "305", "415", "617", "713"];
    let mut list = String::from("phone,segment\n");
    let mut script = String::new();
    for k in 0..400 {
        let area = areas[k % areas.len()];
        let number = format!("+1{area}555{:04}", 1000 + k);
        // Half the 305 numbers are written nationally, with punctuation.
        let written = if area == "305" && k % 2 == 0 {
            format!("({area}) 555-{:04}", 1000 + k)
        } else {
            number.clone()
        };
        let segment = if k % 2 == 0 { "gold" } else { "silver" };
        list.push_str(&format!("\"{written}\",{segment}\n"));
        let outcome = if area == "212" || k % 3 == 0 {
            "busy"
        } else {
            "answered"
        };
        script.push_str(&format!("{number} {outcome} lasting 1ms\n"));
    }
    std::fs::write(dir.join("list.csv"), list).unwrap();
    std::fs::write(dir.join("script.txt"), script).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["run", &p("flow.flow"), "--contacts", &p("list.csv")])
        .args([
            "--dialer",
            &format!("script:{}", p("script.txt")),
            "--db",
            &p("run.db"),
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["report", "--db", &p("run.db"), "--format", "json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let patterns = doc["failurePatterns"].as_array().unwrap();
    let area = patterns
        .iter()
        .find(|p| p["dimension"] == "areaCode")
        .unwrap();
    let first = &area["groups"][0];
    assert_eq!(first["key"], "+1 212", "{area}");
    assert_eq!(first["flagged"], true);
    assert_eq!(first["failureRate"], 100.0);
    assert_eq!(first["failed"], 80);
    // Nothing else is flagged: the segment and the number format fail alike.
    let flagged: Vec<String> = patterns
        .iter()
        .flat_map(|p| {
            p["groups"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|g| g["flagged"] == true && g["difference"].as_f64().unwrap() > 0.0)
                .map(move |g| {
                    format!(
                        "{} {}",
                        p["dimension"].as_str().unwrap(),
                        g["key"].as_str().unwrap()
                    )
                })
        })
        .collect();
    assert_eq!(flagged, ["areaCode +1 212"], "{patterns:?}");
    let formats = patterns
        .iter()
        .find(|p| p["dimension"] == "numberFormat")
        .unwrap();
    assert!(formats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["key"] == "national, with punctuation" && g["total"] == 40));
    assert!(patterns.iter().any(|p| p["dimension"] == "field:segment"));
    // The table says it in words, first.
    let table = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["report", "--db", &p("run.db")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    let at = text
        .find("failure patterns")
        .expect("a failure patterns section");
    assert!(
        text[at..]
            .lines()
            .nth(1)
            .unwrap()
            .contains("area code +1 212: 100.0% failed (80/80)"),
        "{text}"
    );
    // The HTML report: one file, charts drawn in SVG, nothing fetched, no script.
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args([
            "report",
            "--db",
            &p("run.db"),
            "--format",
            "html",
            "-o",
            &p("report.html"),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    assert!(html.matches("<svg").count() >= 3, "three charts");
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("Connection rate per attempt"));
    // The attempt's bar carries its number: 213 of 400 answered.
    assert!(
        html.contains("#1 (213/400)") && html.contains(">53.2%<"),
        "{html}"
    );
    assert!(html.contains("<li class=\"flag\">area code +1 212: 100.0% (80/80)"));
}

/// The chromium that reads HTML reports headless, if any.
pub(crate) fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "chromium is missing: .ci/run installs it"
        );
        eprintln!("skipped: no chromium (apt-get install chromium)");
    }
    found
}

/// The HTML report in a real browser: chromium (headless) reads it without
/// a console message, its DOM holds the charts and the flagged pattern, and
/// a screenshot is saved under target/screenshots/ for a person to look at.
#[test]
fn the_html_report_reads_in_a_browser() {
    let Some(browser) = chromium() else {
        return;
    };
    let case = Case::new(
        "browser",
        &[
            ("+33612345670", ""),
            ("+33612345671", ""),
            ("+33612345680", ""),
        ],
    );
    std::fs::write(
        case.dir.join("script.txt"),
        "+33612345671 busy lasting 1ms\n* answered press 1 lasting 1ms\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args([
            "run",
            &case.path("flow.flow"),
            "--contacts",
            &case.path("list.csv"),
        ])
        .args(["--dialer", &format!("script:{}", case.path("script.txt"))])
        .args(["--db", &case.path("run.db"), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["report", "--db", &case.path("run.db"), "--format", "html"])
        .args(["-o", &case.path("report.html")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let url = format!("file://{}", case.path("report.html"));
    let headless = |extra: &[&str]| {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args([
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1100,1800",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = headless(&["--dump-dom"]);
    assert!(dom.status.success(), "{}", stderr(&dom));
    let text = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(text.matches("<svg").count(), 3, "{text}");
    assert!(text.contains("Connection rate per attempt") && text.contains("2/3"));
    let console: Vec<String> = stderr(&dom)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let shots = root().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("report.png");
    let _ = std::fs::remove_file(&png);
    let shot = headless(&[&format!("--screenshot={}", png.display())]);
    assert!(shot.status.success(), "{}", stderr(&shot));
    let size = std::fs::metadata(&png).unwrap().len();
    assert!(size > 20_000, "a screenshot of {size} bytes shows nothing");
}

/// A campaign in PostgreSQL sends its messages like a run's file: the
/// SMS through the worker's bridge, the e-mails through a real SMTP server,
/// each once, their states in the database.
#[test]
fn a_postgresql_campaign_sends_its_sms_and_e_mails() {
    let case = Case::new(
        "pg-mail",
        &[
            ("+33612345670", "ann@example.com"),
            ("+33612345680", "reject-bob@example.com"),
            ("+33612345690", ""),
        ],
    );
    let Some(server) = SmtpServer::start(&case.dir) else {
        return;
    };
    let Some(pg) = crate::stores::Postgres::start("mail") else {
        return;
    };
    let url = pg.database("mail");
    let o = case.run_on(
        &format!("{url}#mail"),
        "normal",
        &[
            "--smtp",
            &format!("smtp://127.0.0.1:{}", server.port),
            "--mail-from",
            "Campaigns <campaigns@example.com>",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("messages: 4 sent, 2 failed"),
        "{}",
        stderr(&o)
    );
    let mail = server.mail();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["to"][0], "ann@example.com");
    let sms = case
        .requests()
        .into_iter()
        .filter(|r| r["op"] == "sms")
        .count();
    assert_eq!(sms, 3);
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows: Vec<(String, String, String, i32, Option<String>, bool)> = db
        .query(
            "SELECT kind, coalesce(recipient, ''), status::text, tries, detail, claimed_by IS NOT NULL \
             FROM flowc_messages ORDER BY kind, contact",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let short: Vec<(&str, &str, &str, i32)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str(), r.3))
        .collect();
    assert_eq!(
        short,
        [
            ("email", "ann@example.com", "sent", 1),
            ("email", "reject-bob@example.com", "failed", 1),
            ("email", "", "failed", 0),
            ("sms", "+33612345670", "sent", 1),
            ("sms", "+33612345680", "sent", 1),
            ("sms", "+33612345690", "sent", 1),
        ]
    );
    assert!(rows[1].4.as_deref().unwrap().contains("no such mailbox"));
    assert!(rows[2].4.as_deref().unwrap().contains("no `email` field"));
    // Each message handed over was taken by the run's worker, by name.
    assert!(rows.iter().all(|r| r.5 == (r.3 > 0)), "{rows:?}");
}

/// Two workers' outboxes on one PostgreSQL campaign: every message is
/// handed over once, by one of them; a temporary failure is tried again
/// after 5 s, then 10 s (a virtual clock); a message a dead worker left
/// `sending` is `unknown` and never handed over again.
#[test]
fn two_workers_outboxes_share_a_campaigns_messages_and_send_each_once() {
    use flowc::messaging::{Courier, DynCourier, Outbox, Undelivered};
    use flowc::runtime::clock::{Clock, VirtualClock};
    use flowc::store::outbox::Outgoing;
    use flowc::store::postgres_outbox::PgOutbox;
    use std::cell::RefCell;

    let rows: Vec<(String, &str)> = (0..8).map(|k| (format!("+336123451{k}0"), "")).collect();
    let rows: Vec<(&str, &str)> = rows.iter().map(|(p, e)| (p.as_str(), *e)).collect();
    let case = Case::new("pg-outbox", &rows);
    let Some(pg) = crate::stores::Postgres::start("outbox") else {
        return;
    };
    let url = pg.database("outbox");
    // The campaign, dialled through a script: nothing carries its SMS.
    std::fs::write(case.dir.join("script.txt"), "* answered press 1\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args([
            "run",
            &case.path("flow.flow"),
            "--contacts",
            &case.path("list.csv"),
        ])
        .args(["--dialer", &format!("script:{}", case.path("script.txt"))])
        .args(["--db", &format!("{url}#shared"), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 SMS wait unsent in the store"),
        "{}",
        stderr(&o)
    );
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // A worker died handing one over; the two outboxes' workers are alive.
    db.batch_execute(
        "UPDATE flowc_messages SET status = 'sending', claimed_by = 'gone' \
         WHERE kind = 'sms' AND recipient = '+33612345170';
         INSERT INTO flowc_workers (name, heartbeat_at, lease_seconds) \
         VALUES ('w1', now(), 600), ('w2', now(), 600)",
    )
    .unwrap();

    /// Delivers after a pause (so that the two outboxes interleave): the
    /// number ending 110 is busy twice, the one ending 120 refused for good.
    struct Flaky<'a> {
        log: &'a RefCell<Vec<(&'static str, String, bool)>>,
        worker: &'static str,
    }
    impl Courier for Flaky<'_> {
        fn kind(&self) -> &'static str {
            "sms"
        }
        async fn deliver(&self, m: &Outgoing) -> Result<Option<String>, Undelivered> {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
            let to = m.recipient.clone().unwrap();
            let tries = self.log.borrow().iter().filter(|t| t.1 == to).count();
            let result = match to.as_str() {
                "+33612345110" if tries < 2 => Err(Undelivered {
                    reason: "provider busy".into(),
                    temporary: true,
                }),
                "+33612345120" => Err(Undelivered {
                    reason: "not a mobile number".into(),
                    temporary: false,
                }),
                _ => Ok(None),
            };
            self.log
                .borrow_mut()
                .push((self.worker, to, result.is_ok()));
            result
        }
    }
    let log = RefCell::new(Vec::new());
    let start = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0);
    let clock = VirtualClock::new(start);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (one, two) = (
        Flaky {
            log: &log,
            worker: "w1",
        },
        Flaky {
            log: &log,
            worker: "w2",
        },
    );
    let (first, second) = runtime.block_on(async {
        let (s1, gone1) = PgOutbox::connect(&url, "w1", Some("shared")).await.unwrap();
        let (s2, gone2) = PgOutbox::connect(&url, "w2", None).await.unwrap();
        assert_eq!((gone1, gone2), (1, 0));
        let mut o1 = Outbox::over(s1, vec![&one as &dyn DynCourier], &clock, gone1);
        let mut o2 = Outbox::over(s2, vec![&two as &dyn DynCourier], &clock, gone2);
        let (_done_tx, done) = tokio::sync::watch::channel(true);
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let (r1, r2) = tokio::join!(
            o1.run(done.clone(), stop.clone()),
            o2.run(done.clone(), stop.clone())
        );
        r1.unwrap();
        r2.unwrap();
        (o1.delivered, o2.delivered)
    });
    let log = log.into_inner();
    // Both took part, and each message was handed over until it was done,
    // never again after.
    assert!(
        log.iter().any(|t| t.0 == "w1") && log.iter().any(|t| t.0 == "w2"),
        "{log:?}"
    );
    let mut sent: Vec<&str> = log.iter().filter(|t| t.2).map(|t| t.1.as_str()).collect();
    sent.sort_unstable();
    let mut expected: Vec<String> = (0..7)
        .filter(|k| *k != 2)
        .map(|k| format!("+336123451{k}0"))
        .collect();
    expected.sort_unstable();
    assert_eq!(sent, expected, "{log:?}");
    assert_eq!(log.iter().filter(|t| t.1 == "+33612345110").count(), 3);
    assert_eq!(log.iter().filter(|t| t.1 == "+33612345120").count(), 1);
    assert!(log.iter().all(|t| t.1 != "+33612345170"));
    assert_eq!(first.sent + second.sent, 6);
    assert_eq!(first.failed + second.failed, 1);
    assert_eq!(first.retried + second.retried, 2);
    // The third try, 5 s + 10 s after the first.
    assert_eq!(clock.now() - start, chrono::Duration::seconds(15));
    let mut status = |to: &str| -> (String, i32, Option<String>) {
        let r = db
            .query_one(
                "SELECT status::text, tries, detail FROM flowc_messages WHERE kind = 'sms' AND recipient = $1",
                &[&to],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(status("+33612345110"), ("sent".into(), 3, None));
    assert_eq!(
        status("+33612345120"),
        ("failed".into(), 1, Some("not a mobile number".into()))
    );
    let (state, tries, detail) = status("+33612345170");
    assert_eq!((state.as_str(), tries), ("unknown", 0));
    assert!(detail.unwrap().contains("not sent again"));
}
