//! `flowc serve` over real HTTP on 127.0.0.1: keys, every route and its
//! status codes, executions paused, resumed and cancelled with counters
//! that add up, the server killed (SIGKILL) and started again, SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::run::FLOW;

struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

struct Site {
    dir: PathBuf,
    data: PathBuf,
    agent: ureq::Agent,
}

impl Site {
    fn new(name: &str, contacts: usize, script: &str) -> Site {
        let dir = std::env::temp_dir().join(format!("flowc-serve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut list = String::from("phone,name\n");
        for k in 0..contacts {
            list.push_str(&format!("+1212555{:04},C{k}\n", 100 + k));
        }
        std::fs::write(data.join("list.csv"), list).unwrap();
        let script = format!("log {}\n{script}", dir.join("calls.log").display());
        std::fs::write(data.join("script.txt"), script).unwrap();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Site { dir, data, agent }
    }

    fn db(&self) -> String {
        self.dir.join("executions").display().to_string()
    }

    fn key(&self, name: &str, read_only: bool) -> String {
        self.key_in(&self.db(), name, read_only)
    }

    fn key_in(&self, folder: &str, name: &str, read_only: bool) -> String {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flowc"));
        c.args(["keys", "create", "--db", folder, "--name", name]);
        if read_only {
            c.arg("--read-only");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    fn start(&self) -> Server {
        self.start_on(&self.db(), &[])
    }

    /// A server of `db`, with more arguments.
    fn start_on(&self, db: &str, more: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["serve", "--db", db, "--listen", "127.0.0.1:0"])
            .args([
                "--data-dir",
                &self.data.display().to_string(),
                "--grace",
                "10s",
            ])
            .args(more)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split(" on http://").nth(1) {
                    let _ = tx.send(rest.trim_end_matches('/').to_string());
                }
                let mut l = kept.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
        Server {
            child,
            base: format!("http://{address}"),
            log,
        }
    }

    fn call(
        &self,
        server: &Server,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let url = format!("{}{path}", server.base);
        let auth = key.map(|k| format!("Bearer {k}"));
        let response = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("POST", body) => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                match body {
                    Some(b) => r.send_json(b),
                    None => r.send_empty(),
                }
            }
            _ => unreachable!(),
        }
        .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// `POST /program-executions/ID/ACTION` with `key`.
    fn act(&self, server: &Server, key: &str, id: &str, action: &str) -> Answer {
        let path = format!("/program-executions/{id}/{action}");
        self.call(server, "POST", &path, Some(key), None)
    }

    /// `(number, attempt)` of every call the script dialer placed.
    fn dialled(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every attempt of execution `id` (one page of up to 1,000).
    fn all_calls(&self, server: &Server, key: &str, id: &str) -> Value {
        let calls = self.call(
            server,
            "GET",
            &format!("/program-executions/{id}/calls?pageSize=1000"),
            Some(key),
            None,
        );
        assert_eq!(calls.status, 200, "{}", calls.body);
        calls.json()
    }

    /// Starts the drill's execution with `key`; its answer, a 201.
    fn started(&self, server: &Server, key: &str) -> Answer {
        let made = self.call(
            server,
            "POST",
            "/program-executions",
            Some(key),
            Some(self.new_execution()),
        );
        assert_eq!(made.status, 201, "{}", made.body);
        made
    }

    fn new_execution(&self) -> Value {
        json!({
            "flow": FLOW,
            "contactsPath": "list.csv",
            "dialer": "script:script.txt",
        })
    }
}

fn counters_add_up(e: &Value) {
    let n = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} in {e}"));
    assert_eq!(
        n("totalContacts"),
        n("contactsCompleted")
            + n("contactsFailed")
            + n("contactsSkipped")
            + n("contactsPending")
            + n("contactsInProgress"),
        "the counters do not add up: {e}"
    );
}

/// Polls the execution until `until` holds (30 s at most), checking at
/// every sample that its counters add up.
fn watch(
    site: &Site,
    server: &Server,
    key: &str,
    id: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let a = site.call(
            server,
            "GET",
            &format!("/program-executions/{id}"),
            Some(key),
            None,
        );
        assert_eq!(a.status, 200, "{}", a.body);
        let e = a.json();
        counters_add_up(&e);
        if until(&e) {
            return e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the execution never got there: {e}\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn keys_guard_every_route_but_health_and_the_page() {
    let site = Site::new("keys", 3, "* answered press 1 lasting 100ms\n");
    let control = site.key("ops", false);
    let viewer = site.key("viewer", true);
    let revoked = site.key("gone", false);
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["keys", "revoke", "gone", "--db", &site.db()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let listed = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["keys", "list", "--db", &site.db()])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("ops") && listed.contains("viewer") && listed.contains("read"),
        "{listed}"
    );
    assert!(
        !listed.contains(&control[6..]),
        "a key is never shown again"
    );
    let server = site.start();

    assert_eq!(
        site.call(&server, "GET", "/healthz", None, None).status,
        200
    );
    let page = site.call(&server, "GET", "/", None, None);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html") && page.body.contains("flowc"));
    for key in [None, Some("flowc_nonsense"), Some(revoked.as_str())] {
        let a = site.call(&server, "GET", "/program-executions", key, None);
        assert_eq!(a.status, 401, "{key:?}: {}", a.body);
        assert_eq!(a.content_type, "application/problem+json");
        assert!(a.json()["detail"].as_str().unwrap().contains("key"));
    }
    // A read-only key reads, and is refused every control action.
    assert_eq!(
        site.call(&server, "GET", "/program-executions", Some(&viewer), None)
            .status,
        200
    );
    let refused = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&viewer),
        Some(site.new_execution()),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.json()["detail"]
        .as_str()
        .unwrap()
        .contains("read-only"));
    assert!(site.dialled().is_empty(), "a refused creation dials nobody");
    let made = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&control),
        Some(site.new_execution()),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()["id"].as_str().unwrap().to_string();
    for action in ["pause", "resume", "cancel"] {
        let a = site.call(
            &server,
            "POST",
            &format!("/program-executions/{id}/{action}"),
            Some(&viewer),
            None,
        );
        assert_eq!(a.status, 403, "{action}: {}", a.body);
    }
    // Every control action is in the audit, with who asked and what they got.
    let audit = flowc::server::keys::Keys::open(std::path::Path::new(&site.db()))
        .unwrap()
        .audit_rows()
        .unwrap();
    let seen: Vec<(String, String, u16)> = audit
        .into_iter()
        .map(|a| (a.key, a.action, a.status))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("viewer".into(), "create".into(), 403),
            ("ops".into(), "create".into(), 201),
            ("viewer".into(), "pause".into(), 403),
            ("viewer".into(), "resume".into(), 403),
            ("viewer".into(), "cancel".into(), 403),
        ]
    );
}

#[test]
fn an_execution_is_paused_resumed_and_cancelled_with_counters_that_add_up() {
    // Every contact is busy twice, then answers and presses 1: slow enough
    // to act on while it runs.
    let site = Site::new(
        "life",
        60,
        "* busy lasting 400ms; busy lasting 400ms; answered press 1 lasting 400ms\n",
    );
    let key = site.key("ops", false);
    let server = site.start();
    let made = site.started(&server, &key);
    let e = made.json();
    counters_add_up(&e);
    assert_eq!(
        (e["totalContacts"].as_u64(), e["flow"].as_str()),
        (Some(60), Some("drill"))
    );
    let id = e["id"].as_str().unwrap().to_string();

    watch(&site, &server, &key, &id, |e| {
        e["callsUsed"].as_u64() > Some(10)
    });
    let paused = site.act(&server, &key, &id, "pause");
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.json()["status"], "paused");
    // Calls under way finish; then nobody is dialled while it is paused.
    let settled = watch(&site, &server, &key, &id, |e| e["contactsInProgress"] == 0);
    let dialled = site.dialled().len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(site.dialled().len(), dialled, "a paused execution dialled");
    assert_eq!(
        watch(&site, &server, &key, &id, |_| true)["callsUsed"],
        settled["callsUsed"]
    );
    let again = site.act(&server, &key, &id, "pause");
    assert_eq!(again.status, 409, "{}", again.body);

    let resumed = site.act(&server, &key, &id, "resume");
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    watch(&site, &server, &key, &id, |e| {
        e["status"] == "running" && e["callsUsed"].as_u64() > settled["callsUsed"].as_u64()
    });
    let cancelled = site.act(&server, &key, &id, "cancel");
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json()["status"], "cancelled");
    let end = watch(&site, &server, &key, &id, |e| {
        e["contactsPending"] == 0 && e["contactsInProgress"] == 0 && e["status"] == "cancelled"
    });
    assert!(end["contactsSkipped"].as_u64().unwrap() > 0, "{end}");
    assert!(end["endedAt"].is_string());
    // The cancelled contacts end `skipped "cancelled"` in the report.
    let csv = site.call(
        &server,
        "GET",
        &format!("/program-executions/{id}/report.csv"),
        Some(&key),
        None,
    );
    assert_eq!(csv.status, 200);
    assert!(csv.content_type.starts_with("text/csv"));
    assert_eq!(
        csv.body.lines().filter(|l| l.contains("cancelled")).count() as u64,
        end["contactsSkipped"].as_u64().unwrap()
    );
    for action in ["pause", "resume", "cancel"] {
        let a = site.call(
            &server,
            "POST",
            &format!("/program-executions/{id}/{action}"),
            Some(&key),
            None,
        );
        assert_eq!(a.status, 409, "{action} after cancel: {}", a.body);
    }
    // Nothing was dialled twice for one attempt, and the calls route has
    // every dial.
    let dialled = site.dialled();
    let distinct: std::collections::HashSet<&String> = dialled.iter().collect();
    assert_eq!(
        distinct.len(),
        dialled.len(),
        "a number was dialled twice for one attempt"
    );
    let calls = site.call(
        &server,
        "GET",
        &format!("/program-executions/{id}/calls?pageSize=1000"),
        Some(&key),
        None,
    );
    assert_eq!(calls.status, 200);
    assert_eq!(calls.json()["total"].as_u64(), Some(dialled.len() as u64));
    let listed = site
        .call(
            &server,
            "GET",
            "/program-executions?status=cancelled",
            Some(&key),
            None,
        )
        .json();
    assert_eq!(listed["total"], 1);
    assert_eq!(
        site.call(
            &server,
            "GET",
            "/program-executions?status=running",
            Some(&key),
            None
        )
        .json()["total"],
        0
    );
}

#[test]
fn routes_answer_with_the_runs_data_and_problems() {
    let site = Site::new(
        "routes",
        8,
        "+12125550100 busy lasting 50ms; answered press 1 lasting 50ms\n* answered press 2 lasting 50ms\n",
    );
    let key = site.key("ops", false);
    let server = site.start();
    let made = site.started(&server, &key);
    let id = made.json()["id"].as_str().unwrap().to_string();
    let done = watch(&site, &server, &key, &id, |e| e["status"] == "completed");
    assert_eq!(
        (
            done["contactsCompleted"].as_u64(),
            done["contactsFailed"].as_u64()
        ),
        (Some(1), Some(7))
    );
    assert_eq!(done["callsUsed"], 9);
    assert_eq!(done["connectionRate"], 12.5);

    // Calls: filters, local time, the contact's path and keys.
    let calls = site
        .call(
            &server,
            "GET",
            &format!("/program-executions/{id}/calls?contact=%2B12125550100"),
            Some(&key),
            None,
        )
        .json();
    assert_eq!(calls["total"], 2, "{calls}");
    let second = &calls["items"][1];
    assert_eq!(
        (second["attempt"].as_u64(), second["outcome"].as_str()),
        (Some(2), Some("answered"))
    );
    assert_eq!(second["keys"], json!(["1"]));
    assert_eq!(second["contactState"], "completed");
    assert_eq!(second["path"], json!(["call", "call"]));
    assert_eq!(second["zone"], "UTC");
    let busy = site
        .call(
            &server,
            "GET",
            &format!("/program-executions/{id}/calls?outcome=busy"),
            Some(&key),
            None,
        )
        .json();
    assert_eq!(busy["total"], 1);
    let paged = site
        .call(
            &server,
            "GET",
            &format!("/program-executions/{id}/calls?page=2&pageSize=4"),
            Some(&key),
            None,
        )
        .json();
    assert_eq!(
        (
            paged["items"].as_array().unwrap().len(),
            paged["page"].as_u64()
        ),
        (4, Some(2))
    );

    // Reports in three forms.
    let report = site.call(
        &server,
        "GET",
        &format!("/program-executions/{id}/report"),
        Some(&key),
        None,
    );
    assert_eq!(report.status, 200);
    let report = report.json();
    assert_eq!(report["totalContacts"], 8, "{report}");
    assert!(report["failurePatterns"].is_array(), "{report}");
    let html = site.call(
        &server,
        "GET",
        &format!("/program-executions/{id}/report.html"),
        Some(&key),
        None,
    );
    assert!(html.content_type.starts_with("text/html") && html.body.contains("<svg"));

    // Server-Sent Events: the state, then counters.
    let events = site
        .agent
        .get(format!("{}/program-executions/{id}/events", server.base))
        .header("Authorization", format!("Bearer {key}"))
        .call()
        .unwrap();
    assert_eq!(
        events.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut lines = BufReader::new(events.into_body().into_reader()).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = lines.next().unwrap().unwrap();
        if let Some(name) = line.strip_prefix("event: ") {
            seen.push(name.to_string());
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let e: Value = serde_json::from_str(data).unwrap();
            assert_eq!(e["status"], "completed");
            counters_add_up(&e);
        }
    }
    assert_eq!(seen, ["state", "counters", "counters"]);

    // Metrics in Prometheus' text format.
    let m = site.call(&server, "GET", "/metrics", Some(&key), None);
    assert!(m.content_type.starts_with("text/plain"));
    for line in [
        "flowc_executions{status=\"completed\"} 1",
        "flowc_calls_total{outcome=\"answered\"} 8",
        "flowc_calls_total{outcome=\"busy\"} 1",
        "flowc_contacts{state=\"failed\"} 7",
        "flowc_dials_in_flight 0",
        "flowc_dial_lateness_seconds_count 9",
        "flowc_dial_lateness_seconds_bucket{le=\"+Inf\"} 9",
    ] {
        assert!(
            m.body.lines().any(|l| l == line),
            "{line} not in\n{}",
            m.body
        );
    }
    // An ended execution's attempts are counted once, not at every scrape:
    // a row added behind the server's back is not seen.
    let store =
        rusqlite::Connection::open(site.dir.join("executions").join(format!("{id}.db"))).unwrap();
    store
        .execute(
            "INSERT INTO attempts (contact, number, step, started_at, ended_at, outcome) \
             SELECT contact, 99, step, started_at, ended_at, 'busy' FROM attempts LIMIT 1",
            [],
        )
        .unwrap();
    let again = site.call(&server, "GET", "/metrics", Some(&key), None);
    assert!(
        again
            .body
            .lines()
            .any(|l| l == "flowc_calls_total{outcome=\"busy\"} 1"),
        "{}",
        again.body
    );

    // Problems: unknown execution and route, bad bodies, a flow with
    // errors (the checker's diagnostics), too many rejected rows.
    let missing = site.call(&server, "GET", "/program-executions/nope", Some(&key), None);
    assert_eq!(
        (missing.status, missing.content_type.as_str()),
        (404, "application/problem+json")
    );
    assert_eq!(
        site.call(
            &server,
            "POST",
            "/program-executions/nope/pause",
            Some(&key),
            None
        )
        .status,
        404
    );
    assert_eq!(
        site.call(&server, "GET", "/nowhere", Some(&key), None)
            .status,
        404
    );
    let no_list = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"flow": FLOW})),
    );
    assert_eq!(no_list.status, 400, "{}", no_list.body);
    assert!(no_list.json()["detail"]
        .as_str()
        .unwrap()
        .contains("contacts"));
    let typo = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"flow": FLOW, "contacts": "phone\n", "dialr": "sim"})),
    );
    assert_eq!(typo.status, 400, "{}", typo.body);
    assert!(typo.json()["detail"].as_str().unwrap().contains("dialr"));
    let escape = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"flow": FLOW, "contactsPath": "../../etc/passwd"})),
    );
    assert_eq!(escape.status, 400);
    let exec = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"flow": FLOW, "contactsPath": "list.csv", "dialer": "exec:/bin/sh"})),
    );
    assert_eq!(
        exec.status, 400,
        "an adapter the server does not allow is refused"
    );
    let broken = FLOW.replace(
        "strategy quick\n  compliance",
        "strategy quik\n  compliance",
    );
    let wrong = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"flow": broken, "contactsPath": "list.csv"})),
    );
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    let wrong = wrong.json();
    let diagnostics = wrong["errors"]["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics.iter().any(|d| d.to_string().contains("quik")),
        "{wrong}"
    );
    let rows = "phone,name\n+12125550100,A\nnot a number,B\n12,C\n";
    let rejected = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"flow": FLOW, "contacts": rows, "maxRejects": "1"})),
    );
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    let lines: Vec<u64> = rejected.json()["errors"]["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4]);
    let both = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"flow": FLOW, "ir": {}, "contactsPath": "list.csv"})),
    );
    assert_eq!(both.status, 400, "{}", both.body);
    let not_ir = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"ir": {"format_version": 99}, "contactsPath": "list.csv"})),
    );
    assert_eq!(not_ir.status, 422, "{}", not_ir.body);
    assert!(not_ir.json()["detail"]
        .as_str()
        .unwrap()
        .contains("format 99"));
    assert_eq!(
        site.call(&server, "GET", "/program-executions", Some(&key), None)
            .json()["total"],
        1,
        "refused executions leave nothing behind"
    );
    // A flow compiled by `flowc compile` runs as its source does.
    std::fs::write(site.dir.join("drill.flow"), FLOW).unwrap();
    let compiled = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args([
            "compile",
            &site.dir.join("drill.flow").display().to_string(),
            "-o",
            "-",
        ])
        .output()
        .unwrap();
    let ir: Value = serde_json::from_slice(&compiled.stdout).unwrap();
    let made = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(json!({"ir": ir, "contactsPath": "list.csv", "dialer": "script:script.txt"})),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let twin = made.json()["id"].as_str().unwrap().to_string();
    let twin = watch(&site, &server, &key, &twin, |e| e["status"] == "completed");
    assert_eq!(
        (
            twin["contactsCompleted"].as_u64(),
            twin["callsUsed"].as_u64()
        ),
        (Some(1), Some(9))
    );
}

#[test]
fn the_openapi_document_is_valid_and_names_every_route() {
    let site = Site::new("openapi", 1, "* answered lasting 10ms\n");
    let key = site.key("ops", true);
    let server = site.start();
    let a = site.call(&server, "GET", "/openapi.json", Some(&key), None);
    assert_eq!(a.status, 200);
    let doc = a.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().unwrap();
    let mut named = 0;
    for (path, operations) in paths {
        assert!(path.starts_with('/'));
        for (method, op) in operations.as_object().unwrap() {
            assert!(
                ["get", "post"].contains(&method.as_str()),
                "{method} {path}"
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            named += 1;
        }
    }
    for (method, path) in flowc::server::api::ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is not in the document"
        );
        // And the server really answers it (not the 404 of an unknown route).
        let a = site.call(
            &server,
            &method.to_uppercase(),
            &path.replace("{id}", "none"),
            Some(&key),
            None,
        );
        assert!(
            a.status != 404
                || a.json()["detail"]
                    .as_str()
                    .unwrap()
                    .contains("no execution"),
            "{method} {path}: {}",
            a.body
        );
    }
    assert_eq!(
        named,
        flowc::server::api::ROUTES.len(),
        "the document names a route the list does not"
    );
    // Every schema a path refers to is defined.
    let text = a.body;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "{name} is referred to and not defined"
        );
    }
    assert!(doc["components"]["securitySchemes"]["key"]["scheme"] == "bearer");
}

#[test]
fn a_server_killed_mid_run_picks_its_executions_up_and_sigterm_pauses_them() {
    let site = Site::new(
        "kill",
        40,
        "* busy lasting 300ms; answered press 1 lasting 300ms\n",
    );
    let key = site.key("ops", false);
    let server = site.start();
    let made = site.started(&server, &key);
    let id = made.json()["id"].as_str().unwrap().to_string();
    watch(&site, &server, &key, &id, |e| {
        e["callsUsed"].as_u64() > Some(12)
    });
    drop(server); // SIGKILL
    let server = site.start();
    assert!(
        server.log.lock().unwrap().contains("picking up"),
        "{}",
        server.log.lock().unwrap()
    );
    watch(&site, &server, &key, &id, |e| {
        e["status"] == "running" && e["callsUsed"].as_u64() > Some(20)
    });

    // SIGTERM: the run pauses, its calls finish, the server exits.
    let pid = server.child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut server = server;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{}", server.log.lock().unwrap());
    let store =
        flowc::store::Store::open_read_only(&site.dir.join("executions").join(format!("{id}.db")))
            .unwrap();
    assert_eq!(store.state().unwrap(), flowc::record::CampaignState::Paused);
    let [total, completed, failed, skipped, pending, in_progress] = store.counters().unwrap();
    assert_eq!(in_progress, 0, "the calls under way finished");
    assert_eq!(total, completed + failed + skipped + pending);
    drop(store);

    // Started again, a paused execution stays paused until resumed; then it ends.
    let server = site.start();
    let e = watch(&site, &server, &key, &id, |_| true);
    assert_eq!(e["status"], "paused");
    assert_eq!(site.act(&server, &key, &id, "resume").status, 200);
    let end = watch(&site, &server, &key, &id, |e| e["status"] == "completed");
    // A call the kill cut off is `unknown` (never dialled again), and the
    // flow ends its contact failed; every other contact answered.
    let unknown = site
        .call(
            &server,
            "GET",
            &format!("/program-executions/{id}/calls?outcome=unknown"),
            Some(&key),
            None,
        )
        .json()["total"]
        .as_u64()
        .unwrap();
    assert_eq!(end["contactsFailed"].as_u64(), Some(unknown), "{end}");
    assert_eq!(end["contactsCompleted"].as_u64(), Some(40 - unknown));
    let dialled = site.dialled();
    let distinct: std::collections::HashSet<&String> = dialled.iter().collect();
    assert_eq!(
        distinct.len(),
        dialled.len(),
        "a number was dialled twice for one attempt: {dialled:?}"
    );
    // Every dial is an attempt of the store; an attempt never dialled is
    // one the kill cut off between its commit and its dial: `unknown`.
    let calls = site.all_calls(&server, &key, &id);
    let attempts: std::collections::HashMap<String, String> = calls["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                format!("{} {}", c["contact"].as_str().unwrap(), c["attempt"]),
                c["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(end["callsUsed"].as_u64(), Some(attempts.len() as u64));
    for d in &dialled {
        assert!(
            attempts.contains_key(d),
            "{d} was dialled and has no attempt"
        );
    }
    for (attempt, outcome) in &attempts {
        assert!(
            distinct.contains(attempt) || outcome == "unknown",
            "{attempt} was never dialled and ended {outcome}"
        );
    }
}

/// Chrome DevTools protocol over a WebSocket: commands answered by id,
/// events kept for later.
struct Devtools {
    socket: tungstenite::WebSocket<std::net::TcpStream>,
    next: u64,
    events: Vec<Value>,
}

impl Devtools {
    fn send(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(tungstenite::Message::text(message))
            .unwrap();
        loop {
            let m = self.socket.read().unwrap();
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.send(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits (20 s at most) until the expression is true in the page.
    fn wait_for(&mut self, expression: &str) {
        let started = Instant::now();
        while self.eval(expression) != json!(true) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never true in the page: {expression}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The dashboard in a real browser (headless chromium driven over the
/// DevTools protocol): it lists the execution, its counters move with the
/// event stream, its pause button pauses the execution, no console message
/// or exception appears, and a screenshot is kept under target/screenshots/.
#[test]
fn the_dashboard_in_a_browser_shows_live_counters_and_pauses() {
    let Some(browser) = super::real::chromium() else {
        return;
    };
    let site = Site::new(
        "browser",
        50,
        "* busy lasting 300ms; answered press 1 lasting 300ms\n",
    );
    let key = site.key("ops", false);
    let server = site.start();
    let made = site.started(&server, &key);
    let id = made.json()["id"].as_str().unwrap().to_string();

    let profile = site.dir.join("chromium");
    let mut chrome = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(["--remote-debugging-port=0", "--window-size=1500,400"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = chrome.stderr.take().unwrap();
    let chrome = Kill(chrome);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let browser_url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium's DevTools address");
    let port = browser_url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let targets: Value = site
        .agent
        .get(format!("http://127.0.0.1:{port}/json/list"))
        .call()
        .unwrap()
        .into_body()
        .read_json()
        .unwrap();
    let page = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .expect("a page target");
    let page_url = page["webSocketDebuggerUrl"].as_str().unwrap();
    let stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (socket, _) = tungstenite::client(page_url, stream).unwrap();
    let mut tools = Devtools {
        socket,
        next: 0,
        events: Vec::new(),
    };
    tools.send("Runtime.enable", json!({}));
    tools.send("Log.enable", json!({}));
    tools.send("Page.enable", json!({}));
    tools.send(
        "Page.navigate",
        json!({"url": format!("{}/#key={key}", server.base)}),
    );

    let row = format!("document.getElementById('x-{id}')");
    tools.wait_for(&format!("{row} !== null"));
    assert_eq!(
        tools.eval("location.hash"),
        json!(""),
        "the key is taken out of the address"
    );
    let calls = |tools: &mut Devtools| -> u64 {
        let text = tools.eval(&format!("{row}.children[10].textContent"));
        text.as_str().unwrap().replace(',', "").parse().unwrap()
    };
    let first = calls(&mut tools);
    tools.wait_for(&format!(
        "Number({row}.children[10].textContent.replace(/,/g, '')) > {first}"
    ));
    assert_eq!(
        tools.eval(&format!("{row}.children[2].textContent")),
        json!("running")
    );
    tools.eval(&format!(
        "{row}.querySelector('button[data-action=pause]').click()"
    ));
    tools.wait_for(&format!("{row}.dataset.status === 'paused'"));
    let e = watch(&site, &server, &key, &id, |e| {
        e["status"] == "paused" && e["contactsInProgress"] == 0
    });
    assert_eq!(e["status"], "paused");
    tools.wait_for(&format!(
        "{row}.querySelector('button[data-action=resume]').disabled === false"
    ));

    // The page follows the calls that finish after the pause.
    tools.wait_for(&format!("{row}.children[9].textContent === '0'"));
    let shot = tools.send("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().unwrap(),
    )
    .unwrap();
    let shots = super::root().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("dashboard.png"), &png).unwrap();
    assert!(
        png.len() > 10_000,
        "a screenshot of {} bytes shows nothing",
        png.len()
    );

    let noise: Vec<&Value> = tools
        .events
        .iter()
        .filter(|e| {
            e["method"] == "Runtime.exceptionThrown"
                || e["method"] == "Runtime.consoleAPICalled"
                || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] != "verbose")
        })
        .collect();
    assert!(noise.is_empty(), "the page said: {noise:?}");
    drop(chrome);
}

#[test]
fn a_bad_grace_is_refused_before_the_server_starts() {
    let dir = std::env::temp_dir().join(format!("flowc-serve-grace-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["serve", "--db", &dir.display().to_string()])
        .args(["--listen", "127.0.0.1:0", "--grace", "soon"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with --grace soon");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("\"soon\" is not a duration"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `flowc serve --db postgres://…`: the campaigns of the database, begun
/// by `flowc run` and run by its worker, or begun through the server and
/// run by it, are the executions; the server shows them, lists their
/// calls, reports them, and pauses, resumes and cancels them through the
/// database.
#[test]
fn a_server_on_postgres_shows_and_controls_the_databases_campaigns() {
    let _heavy = crate::one_heavy_test_at_a_time();
    let Some(pg) = super::stores::Postgres::start("serve") else {
        return;
    };
    let base = pg.database("served");
    let site = Site::new(
        "pg",
        60,
        "* busy lasting 400ms; busy lasting 400ms; answered press 1 lasting 400ms\n",
    );
    let flow = site.dir.join("drill.flow");
    std::fs::write(&flow, FLOW).unwrap();
    let flowc = || Command::new(env!("CARGO_BIN_EXE_flowc"));
    let keys = site.dir.join("keys").display().to_string();

    // Keys live in a folder of the server's own, never in the database.
    let refused = flowc()
        .args(["keys", "create", "--db", &base, "--name", "ops"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--keys DIR"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = flowc()
        .args(["serve", "--db", &base, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("give it with `--keys DIR`"));
    let key = site.key_in(&keys, "ops", false);
    let reader = site.key_in(&keys, "watcher", true);

    let mut run = flowc()
        .arg("run")
        .arg(&flow)
        .args([
            "--contacts",
            &site.data.join("list.csv").display().to_string(),
        ])
        .args(["--db", &format!("{base}#spring")])
        .args([
            "--dialer",
            &format!("script:{}", site.data.join("script.txt").display()),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(site.dir.join("run.err")).unwrap())
        .spawn()
        .unwrap();
    let server = site.start_on(&base, &["--keys", &keys]);
    let id = "spring";
    // The execution appears once the campaign is begun.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let a = site.call(
            &server,
            "GET",
            &format!("/program-executions/{id}"),
            Some(&reader),
            None,
        );
        if a.status == 200 && a.json()["totalContacts"] == 60 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the campaign never showed: {} {}",
            a.body,
            std::fs::read_to_string(site.dir.join("run.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let e = watch(&site, &server, &reader, id, |e| {
        e["status"] == "running" && e["callsUsed"].as_u64() > Some(10)
    });
    assert_eq!(e["flow"], "drill");

    // A read-only key cannot pause; the other can, and the worker obeys.
    let denied = site.act(&server, &reader, id, "pause");
    assert_eq!(denied.status, 403, "{}", denied.body);
    let paused = site.act(&server, &key, id, "pause");
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.json()["status"], "paused");
    let settled = watch(&site, &server, &key, id, |e| e["contactsInProgress"] == 0);
    let dialled = site.dialled().len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(site.dialled().len(), dialled, "a paused campaign dialled");
    assert_eq!(
        watch(&site, &server, &key, id, |_| true)["callsUsed"],
        settled["callsUsed"]
    );
    let again = site.act(&server, &key, id, "pause");
    assert_eq!(again.status, 409, "{}", again.body);
    let resumed = site.act(&server, &key, id, "resume");
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    watch(&site, &server, &key, id, |e| {
        e["status"] == "running" && e["callsUsed"].as_u64() > settled["callsUsed"].as_u64()
    });

    // The calls route reads the database's attempts (answered: the third).
    watch(&site, &server, &key, id, |e| {
        e["contactsCompleted"].as_u64() > Some(0)
    });
    let answered = site
        .call(
            &server,
            "GET",
            &format!("/program-executions/{id}/calls?outcome=answered&pageSize=1000"),
            Some(&key),
            None,
        )
        .json();
    assert!(answered["total"].as_u64() > Some(0), "{answered}");
    for call in answered["items"].as_array().unwrap() {
        assert_eq!(call["outcome"], "answered");
        assert_eq!(call["attempt"], 3, "{call}");
        assert_eq!(call["zone"], "UTC", "the flow's zone: {call}");
        assert_eq!(call["keys"], json!(["1"]), "{call}");
    }

    let cancelled = site.act(&server, &key, id, "cancel");
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json()["status"], "cancelled");
    // The run's worker stops and `flowc run` ends.
    let until = Instant::now() + Duration::from_secs(30);
    while run.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "flowc run went on after the cancel");
        std::thread::sleep(Duration::from_millis(50));
    }
    let end = watch(&site, &server, &key, id, |e| {
        e["contactsPending"] == 0 && e["contactsInProgress"] == 0
    });
    assert_eq!(end["status"], "cancelled");
    assert!(end["contactsSkipped"].as_u64().unwrap() > 0, "{end}");

    // Every dial is in the calls route, once; the report reads the database.
    let dialled = site.dialled();
    let distinct: std::collections::HashSet<&String> = dialled.iter().collect();
    assert_eq!(
        distinct.len(),
        dialled.len(),
        "a number was dialled twice for one attempt"
    );
    let calls = site.all_calls(&server, &key, id);
    assert_eq!(calls["total"].as_u64(), Some(dialled.len() as u64));
    let report = site.call(
        &server,
        "GET",
        &format!("/program-executions/{id}/report"),
        Some(&key),
        None,
    );
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.json()["totalContacts"], 60);
    let csv = site.call(
        &server,
        "GET",
        &format!("/program-executions/{id}/report.csv"),
        Some(&key),
        None,
    );
    assert_eq!(
        csv.body.lines().filter(|l| l.contains("cancelled")).count() as u64,
        end["contactsSkipped"].as_u64().unwrap()
    );
    let listed = site
        .call(&server, "GET", "/program-executions", Some(&key), None)
        .json();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["id"], id);
    let metrics = site.call(&server, "GET", "/metrics", Some(&key), None);
    assert!(
        metrics
            .body
            .contains("flowc_executions{status=\"cancelled\"} 1"),
        "{}",
        metrics.body
    );

    // A campaign begun through this server is run by it, in the database.
    let made = site.started(&server, &key).json();
    let begun = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["totalContacts"], 60, "{made}");
    counters_add_up(&made);
    watch(&site, &server, &key, &begun, |e| {
        e["callsUsed"].as_u64() > Some(6)
    });
    // Killed, the server started again picks it up (its worker's name is
    // the execution's: the dead one's contacts are taken back at once).
    drop(server);
    let server = site.start_on(&base, &["--keys", &keys]);
    let calls_then = watch(&site, &server, &key, &begun, |_| true)["callsUsed"].clone();
    watch(&site, &server, &key, &begun, |e| {
        e["status"] == "running" && e["callsUsed"].as_u64() > calls_then.as_u64()
    });
    let paused = site.act(&server, &key, &begun, "pause");
    assert_eq!(paused.status, 200, "{}", paused.body);
    let state = |c: &mut postgres::Client| -> String {
        c.query_one(
            "SELECT state::text FROM flowc_campaigns WHERE name = $1",
            &[&begun],
        )
        .unwrap()
        .get(0)
    };
    let mut client = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    assert_eq!(state(&mut client), "paused");
    assert_eq!(
        watch(&site, &server, &key, &begun, |e| e["contactsInProgress"]
            == 0)["status"],
        "paused"
    );
    let resumed = site.act(&server, &key, &begun, "resume");
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    let done = watch(&site, &server, &key, &begun, |e| e["status"] == "completed");
    // Calls cut off by the kill are `unknown`, never dialled again: at most
    // the flow's six lines.
    let unknown = site
        .call(
            &server,
            "GET",
            &format!("/program-executions/{begun}/calls?outcome=unknown"),
            Some(&key),
            None,
        )
        .json()["total"]
        .as_u64()
        .unwrap();
    assert!(unknown <= 6, "{unknown} calls cut off");
    assert_eq!(
        done["contactsCompleted"].as_u64().unwrap() + done["contactsFailed"].as_u64().unwrap(),
        60,
        "{done}"
    );
    assert_eq!(state(&mut client), "finished");
    let listed = site
        .call(&server, "GET", "/program-executions", Some(&key), None)
        .json();
    assert_eq!(listed["total"], 2, "{listed}");
    // A dialer the server was not told to allow is refused, as with files.
    let mut sip = site.new_execution();
    sip["dialer"] = json!("sip:127.0.0.1");
    let refused = site.call(
        &server,
        "POST",
        "/program-executions",
        Some(&key),
        Some(sip),
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("is not allowed here"),
        "{}",
        refused.body
    );
}
