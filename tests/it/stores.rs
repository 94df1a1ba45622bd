//! The same campaign on both stores: SQLite (a file) and PostgreSQL (a real
//! server started here, in a temporary folder, on 127.0.0.1, stopped by PID
//! at the end). Each test body runs against both and compares.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use flowc::contacts::{read_csv, Rules};
use flowc::dialer::{Model, SimDialer};
use flowc::record::{CampaignState, Kind, Status};
use flowc::runtime::clock::VirtualClock;
use flowc::runtime::engine::{Engine, Results};
use flowc::runtime::journal::{Durability, Journal};
use flowc::runtime::simulate::block_on;
use flowc::store::postgres::PgStore;
use flowc::store::{Store, StoreError};

/// A PostgreSQL server of its own, stopped (and its folder removed) when dropped.
pub struct Postgres {
    dir: PathBuf,
    port: u16,
}

impl Postgres {
    /// Starts a server, or says why not: `None` locally when PostgreSQL is
    /// not installed; in CI (`CI` set) a missing server fails the test.
    pub fn start(name: &str) -> Option<Postgres> {
        let Some(bin) = postgres_bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL is missing: .ci/run installs Debian's postgresql"
            );
            eprintln!("skipped: no PostgreSQL server (apt-get install postgresql)");
            return None;
        };
        let dir = scratch(&format!("flowc-pg-{name}"));
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            // The server refuses to run as root: it runs as `postgres`.
            let status = Command::new("chown")
                .args(["postgres:"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "cannot give {} to postgres",
                dir.display()
            );
        }
        let port = free_port();
        let as_server = |program: &str| {
            let mut c = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            };
            c.stdout(Stdio::null()).stderr(Stdio::piped());
            c
        };
        let out = as_server("initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "flowc", "--auth=trust", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = as_server("pg_ctl")
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.display()
            ))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        Some(Postgres { dir, port })
    }

    /// The URL of a new database of this server (one per test body).
    pub fn database(&self, name: &str) -> String {
        let url = |db: &str| format!("postgres://flowc@127.0.0.1:{}/{db}", self.port);
        postgres_client(&url("postgres"))
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        url(name)
    }

    /// The server process's id (the first line of its pid file).
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SIGQUIT: the server's immediate shutdown.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            for _ in 0..200 {
                if unsafe { libc::kill(pid, 0) } != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The folder of `initdb` and `pg_ctl`: on the PATH, else Debian's.
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"));
    on_path.chain(debian).find(|d| {
        d.join("initdb").is_file() && d.join("pg_ctl").is_file() && d.join("createdb").is_file()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const FLOW: &str = r#"
contact {
  phone: phone
  name: text
}

calendar open {
  hours mon-sun 08:00-21:00
}

strategy patient {
  max attempts 4
  on busy retry after 30m
  on no_answer retry after 1h
  on voicemail retry after 2h
  on network_error retry after 10m max 2
  on rejected stop
}

flow both {
  calendar open
  timezone "Europe/Paris"
  strategy patient

  step call {
    dial contact.phone
    on answered       -> end completed "reached"
    on invalid_number -> { flag "check_number"; end failed "invalid_number" }
    on exhausted      -> { send sms "We tried to reach you, {contact.name}."; end failed "unreachable" }
  }
}
"#;

fn compile(source: &str) -> flowc::ir::Program {
    let c = flowc::check::check_source("both.flow", source);
    c.program
        .unwrap_or_else(|| panic!("the flow checks: {:?}", c.diagnostics))
}

fn list(n: usize) -> String {
    let mut s = String::from("phone,name\n");
    for k in 0..n {
        s.push_str(&format!("+3361{k:07},P{k}\n"));
    }
    s
}

/// Writes a list of `n` numbers (`+33610000000` on), the shared flow's schema.
fn write_numbers(path: &std::path::Path, n: usize) {
    let mut list = String::from("phone\n");
    for k in 0..n {
        list.push_str(&format!("+3361{k:07}\n"));
    }
    std::fs::write(path, list).unwrap();
}

/// Runs the campaign of `source` over the first `n` rows on `store`,
/// resuming what it holds; the store's state and the run's results.
fn campaign(store: &mut dyn Journal, source: &str, n: usize) -> Result<Results, StoreError> {
    let program = compile(source);
    let flow = program.flow.clone().expect("a flow");
    let start: DateTime<Utc> = "2026-12-01T08:00:00Z".parse().unwrap();
    let rules = Rules::new(&flow.contact, &flow.timezone, None);
    let import = read_csv(std::io::Cursor::new(list(n)), &rules);
    let stored = store.begin(&program, start, false, Kind::Run)?;
    let mut contacts = stored.contacts;
    let known: std::collections::HashSet<String> =
        contacts.iter().map(|c| c.phone.to_string()).collect();
    contacts.extend(
        import
            .contacts
            .into_iter()
            .filter(|c| !known.contains(&*c.phone)),
    );
    let dialer = SimDialer {
        model: Model::default_model(),
        seed: 11,
    };
    let clock = VirtualClock::new(stored.started_at);
    let results = block_on(
        Engine::new(&flow, &contacts, &dialer, &clock, stored.started_at)
            .history(stored.history)
            .journal(&mut *store, Durability::BeforeEachDial)
            .run(),
    )?;
    store.set_state(CampaignState::Finished, results.finish)?;
    Ok(results)
}

/// What a report shows of each contact, in list order.
fn summary(results: &Results) -> Vec<(String, Status, String, Vec<&'static str>)> {
    results
        .contacts
        .iter()
        .map(|c| {
            (
                c.phone.to_string(),
                c.status(),
                c.reason().to_string(),
                c.attempts.iter().map(|a| a.outcome.name()).collect(),
            )
        })
        .collect()
}

/// The same steps on a store: 300 contacts, then the list grown to 500 (a
/// resume of the finished campaign with new contacts), then a changed flow
/// (refused), then the store read back as a report reads it.
fn same_steps(
    store: &mut dyn Journal,
    read_back: impl FnOnce() -> Vec<(String, Status, String, Vec<&'static str>)>,
) -> Vec<String> {
    let first = campaign(store, FLOW, 300).unwrap();
    assert_eq!(first.contacts.len(), 300);
    let second = campaign(store, FLOW, 500).unwrap();
    assert_eq!(second.contacts.len(), 500);
    // The first 300 ended in the first run: the second replays them as they were.
    assert_eq!(summary(&first)[..], summary(&second)[..300]);
    let changed = FLOW.replace("\"reached\"", "\"answered\"");
    assert_ne!(changed, FLOW);
    let Err(refused) = campaign(store, &changed, 500) else {
        panic!("a changed flow resumed the campaign");
    };
    assert!(matches!(refused, StoreError::OtherFlow { .. }), "{refused}");
    let stored = read_back();
    assert_eq!(stored, summary(&second), "the store holds what the run did");
    stored
        .iter()
        .map(|(phone, status, reason, outcomes)| {
            format!("{phone} {status} {reason} {}", outcomes.join(" "))
        })
        .collect()
}

#[test]
fn a_campaign_runs_resumes_and_reads_back_the_same_on_sqlite_and_postgresql() {
    let Some(server) = Postgres::start("same") else {
        return;
    };
    let dir = scratch("flowc-stores");
    let flow = compile(FLOW).flow.unwrap();
    let read = |results: (
        Vec<flowc::contacts::Contact>,
        Vec<flowc::record::ContactResult>,
    )| {
        results
            .1
            .iter()
            .map(|c| {
                (
                    c.phone.to_string(),
                    c.status(),
                    c.reason().to_string(),
                    c.attempts.iter().map(|a| a.outcome.name()).collect(),
                )
            })
            .collect::<Vec<_>>()
    };

    let db = dir.join("both.db");
    let mut sqlite = Store::open(&db, Durability::BeforeEachDial).unwrap();
    let on_sqlite = same_steps(&mut sqlite, || {
        read(Store::open_read_only(&db).unwrap().results(&flow).unwrap())
    });
    drop(sqlite);

    let url = server.database("same");
    let mut pg = PgStore::open(&url).unwrap();
    let on_postgres = same_steps(&mut pg, || {
        read(PgStore::open(&url).unwrap().results(&flow).unwrap())
    });
    assert_eq!(on_sqlite, on_postgres, "both stores hold the same campaign");
    // The campaign did something worth comparing: every way of ending.
    for status in ["completed", "failed"] {
        assert!(
            on_sqlite.iter().any(|l| l.contains(status)),
            "no contact {status}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// While a process runs a campaign in PostgreSQL, another is refused (its
/// session holds the campaign's advisory lock); once it stops, the other
/// may go on. (The SQLite store's lock is tested in `trust`.)
#[test]
fn a_second_process_is_refused_while_one_runs_the_campaign() {
    let Some(server) = Postgres::start("busy") else {
        return;
    };
    let program = compile(FLOW);
    let start: DateTime<Utc> = "2026-12-01T08:00:00Z".parse().unwrap();
    let url = server.database("busy");
    let mut first = PgStore::open(&url).unwrap();
    first.begin(&program, start, false, Kind::Run).unwrap();
    let mut second = PgStore::open(&url).unwrap();
    let Err(refused) = second.begin(&program, start, false, Kind::Run) else {
        panic!("two processes run one campaign");
    };
    assert!(matches!(refused, StoreError::Busy(_)), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("another process runs the campaign"),
        "{refused}"
    );
    first.set_state(CampaignState::Paused, start).unwrap();
    second.begin(&program, start, false, Kind::Run).unwrap();
    // A process that dies loses the lock with its connection.
    drop(second);
    let mut third = PgStore::open(&url).unwrap();
    third.begin(&program, start, false, Kind::Run).unwrap();
}

/// A database left at each earlier version of the schema, holding a
/// campaign, is brought to this one: the campaign reads back whole and its
/// contacts can be leased by a worker.
/// A simulation's writer holds the database nearly all along, and the
/// heartbeat thread's renewals of the campaign's lock wait behind it: the
/// writer's own batches renew the lock.
#[test]
fn the_writer_s_batches_renew_the_campaign_s_lock() {
    let dir = scratch("lock-renewed");
    let path = dir.join("sim.db");
    let mut store = Store::open(&path, Durability::Batched).unwrap();
    let start: DateTime<Utc> = "2026-12-01T08:00:00Z".parse().unwrap();
    store
        .begin(&compile(FLOW), start, false, Kind::Simulation)
        .unwrap();
    let old = "2000-01-01T00:00:00.000Z";
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute("UPDATE lock SET heartbeat_at = ?1", [old])
        .unwrap();
    Journal::opted_out(&mut store, flowc::runtime::journal::ContactId::at(0));
    Journal::sync(&mut store).unwrap();
    let beat: String = other
        .query_row("SELECT heartbeat_at FROM lock", [], |r| r.get(0))
        .unwrap();
    assert!(beat.as_str() > old, "the lock was not renewed: {beat}");
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_database_of_every_earlier_schema_is_brought_up_to_date() {
    let Some(server) = Postgres::start("versions") else {
        return;
    };
    use flowc::store::postgres::{migrate_url_to, SCHEMA_VERSION};
    let program = compile(FLOW);
    let flow = program.flow.clone().unwrap();
    for version in 0..SCHEMA_VERSION {
        let url = server.database(&format!("v{version}"));
        migrate_url_to(&url, version).unwrap();
        let mut client = postgres_client(&url);
        if version >= 1 {
            // A campaign with one contact and one attempt, as version 1 wrote it.
            let ir = serde_json::to_string(&program).unwrap();
            client
                .batch_execute(&format!(
                    "INSERT INTO flowc_campaigns (name, flow, source_hash, format_version, compiler_version, kind, ir, started_at, updated_at) \
                     VALUES ('old', 'both', '{}', {}, 'old', 'run', $${ir}$$, now(), now());
                     INSERT INTO flowc_contacts (campaign, id, line, phone, zones, fields, arm) \
                     SELECT id, 0, 2, '+33610000000', 'Europe/Paris', '{{\"phone\":{{\"type\":\"text\",\"value\":\"+33610000000\"}},\"name\":{{\"type\":\"text\",\"value\":\"Ana\"}}}}', 0 FROM flowc_campaigns;
                     INSERT INTO flowc_attempts (campaign, contact, number, step, started_at, ended_at, outcome) \
                     SELECT id, 0, 1, 'call', now(), now(), 'busy' FROM flowc_campaigns;
                     INSERT INTO flowc_messages (campaign, contact, attempt, kind, text, recipient, status) \
                     SELECT id, 0, 1, 'sms', 'We missed you', '+33610000000', 'unsent' FROM flowc_campaigns;",
                    program.source_hash, program.format_version
                ))
                .unwrap();
        }
        let mut store = PgStore::open(&format!("{url}#old")).unwrap();
        assert_eq!(
            store.version().unwrap(),
            SCHEMA_VERSION,
            "from version {version}"
        );
        if version >= 1 {
            let (contacts, results) = store.results(&flow).unwrap();
            assert_eq!(
                &*contacts[0].phone, "+33610000000",
                "from version {version}"
            );
            assert_eq!(results[0].attempts.len(), 1, "from version {version}");
            // Its unsent SMS is still unsent, for the outbox to send.
            let messages = store.messages().unwrap();
            assert_eq!(messages.len(), 1, "from version {version}");
            assert_eq!(messages[0].status, "unsent", "from version {version}");
            // Resumed by `flowc run`, it is cut into parts for workers.
            store.open_to_workers("both", None).unwrap();
            let mut worker = PgStore::open(&url).unwrap();
            let running = worker.running().unwrap();
            worker.join(running[0].id);
            let lease = worker.lease("w", 1).unwrap();
            assert_eq!(lease.ids, [0], "from version {version}");
            assert_eq!(lease.history[0].attempts.len(), 1);
        }
    }
}

#[test]
fn the_postgresql_schema_is_made_once_and_a_later_one_is_refused() {
    let Some(server) = Postgres::start("schema") else {
        return;
    };
    let url = server.database("schema");
    // From version 0 (no flowc tables) to this one; again: nothing to do.
    let mut first = PgStore::open(&url).unwrap();
    let version = first.version().unwrap();
    assert!(version >= 1);
    let mut again = PgStore::open(&url).unwrap();
    assert_eq!(again.version().unwrap(), version);
    // Two processes starting together: one migrates, the other waits.
    let url2 = server.database("together");
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let url = url2.clone();
            std::thread::spawn(move || PgStore::open(&url).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    // A database made by a later flowc is left alone.
    let mut client = postgres_client(&url);
    client
        .execute(
            "INSERT INTO flowc_schema (version) VALUES ($1)",
            &[&(version as i32 + 1)],
        )
        .unwrap();
    let refused = PgStore::open(&url)
        .err()
        .expect("a later schema is refused");
    assert!(
        refused.to_string().contains("use the flowc that made them"),
        "{refused}"
    );
}

/// An empty folder of this test process's own, made anew.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn postgres_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// `flowc simulate` and `flowc report` take a PostgreSQL URL for `--db`,
/// and give what they give with a file.
#[test]
fn simulate_and_report_take_a_postgresql_url() {
    let Some(server) = Postgres::start("cli") else {
        return;
    };
    let dir = scratch("flowc-pgcli");
    let flow = dir.join("both.flow");
    std::fs::write(&flow, FLOW).unwrap();
    let contacts = dir.join("list.csv");
    std::fs::write(&contacts, list(200)).unwrap();
    let url = format!("{}#spring", server.database("cli"));
    let run = |args: &[&str], db: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(args)
            .args(["--db", db, "--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let simulate = |db: &str| {
        run(
            &[
                "simulate",
                flow.to_str().unwrap(),
                "--contacts",
                contacts.to_str().unwrap(),
            ],
            db,
        )
    };
    let file = dir.join("both.db");
    let file = file.to_str().unwrap();
    assert_eq!(simulate(&url), simulate(file));
    assert_eq!(run(&["report"], &url), run(&["report"], file));
    // A second simulation of a finished one: its report, nobody dialled.
    let finished = simulate(file);
    assert_eq!(simulate(&url), finished);
    // An unfinished one (as a crash leaves it) starts again from its
    // beginning, and gives the same report.
    postgres_client(url.split_once('#').unwrap().0)
        .execute("UPDATE flowc_campaigns SET state = 'running'", &[])
        .unwrap();
    assert_eq!(simulate(&url), finished);
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- workers

const WORKED: &str = r#"
contact {
  phone: phone
}

calendar always {
  hours mon-sun 00:00-24:00
}

strategy quick {
  max attempts 3
  on no_answer retry after 1s
  on busy retry after 1s
}

flow shared {
  calendar always
  timezone "UTC"
  strategy quick
  concurrency 150

  step call {
    dial contact.phone
    on answered  -> end completed "reached"
    on exhausted -> end failed "unreachable"
    on other     -> end failed "other"
  }
}
"#;

/// Three workers on one campaign of 3,000 contacts (`flowc run` begins it
/// and works; two `flowc worker`s join); one worker is killed mid-run, then
/// the second. The campaign finishes: no number dialled twice for one
/// attempt (the dialer's own log), no attempt lost, the counters adding up
/// at every moment sampled.
#[test]
fn three_workers_one_killed_then_another_and_the_campaign_finishes() {
    let _heavy = crate::one_heavy_test_at_a_time();
    let Some(server) = Postgres::start("workers") else {
        return;
    };
    let dir = scratch("flowc-workers");
    let flow = dir.join("shared.flow");
    std::fs::write(&flow, WORKED).unwrap();
    let contacts = dir.join("list.csv");
    write_numbers(&contacts, 3000);
    let log = dir.join("calls.log");
    let script = dir.join("script.txt");
    std::fs::write(
        &script,
        format!(
            "log {}\n* no_answer lasting 200ms; busy lasting 100ms; answered lasting 300ms\n",
            log.display()
        ),
    )
    .unwrap();
    let base = server.database("workers");
    let url = format!("{base}#drill");
    let flowc = || Command::new(env!("CARGO_BIN_EXE_flowc"));
    let mut starter = flowc()
        .args([
            "run",
            flow.to_str().unwrap(),
            "--contacts",
            contacts.to_str().unwrap(),
        ])
        .args([
            "--db",
            &url,
            "--dialer",
            &format!("script:{}", script.display()),
        ])
        .args(["--format", "json"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("a.err")).unwrap())
        .spawn()
        .unwrap();
    let worker = |name: &str| {
        flowc()
            .args(["worker", "--db", &base, "--name", name, "--lease", "3"])
            .args([
                "--until-done",
                "--dialer",
                &format!("script:{}", script.display()),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap()
    };
    let said =
        |name: &str| std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default();
    let mut client = postgres_client(&base);
    let calls = |c: &mut postgres::Client| -> i64 {
        c.query_one("SELECT count(*) FROM flowc_attempts", &[])
            .unwrap()
            .get(0)
    };
    // The workers join once the campaign holds its contacts.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client
        .query_one("SELECT count(*) FROM flowc_contacts", &[])
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
        < 3000
    {
        assert!(
            std::time::Instant::now() < until,
            "the campaign never began"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut b = worker("b");
    let mut c = worker("c");
    let mut samples = 0;
    let mut sample = |client: &mut postgres::Client| {
        let r = client
            .query_one(
                "SELECT (SELECT count(*) FROM flowc_contacts), \
                        (SELECT count(*) FROM flowc_ends), \
                        (SELECT count(DISTINCT contact) FROM flowc_attempts a WHERE a.ended_at IS NULL \
                           AND NOT EXISTS (SELECT 1 FROM flowc_ends e WHERE e.contact = a.contact)), \
                        (SELECT count(*) FROM flowc_contacts c WHERE NOT EXISTS (SELECT 1 FROM flowc_ends e WHERE e.contact = c.id) \
                           AND NOT EXISTS (SELECT 1 FROM flowc_attempts a WHERE a.contact = c.id AND a.ended_at IS NULL))",
                &[],
            )
            .unwrap();
        let (total, ended, in_progress, pending): (i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_eq!(ended + in_progress + pending, total, "the counters add up");
        samples += 1;
    };
    let wait_calls =
        |client: &mut postgres::Client, n: i64, sample: &mut dyn FnMut(&mut postgres::Client)| {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(90);
            while calls(client) < n {
                assert!(
                    std::time::Instant::now() < until,
                    "the campaign stalled before {n} calls"
                );
                sample(client);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
    let owned = |client: &mut postgres::Client, name: &str| -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM flowc_parts WHERE owner = $1 AND NOT done",
                &[&name],
            )
            .unwrap()
            .get(0)
    };
    let kill = |child: &mut std::process::Child| {
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
    };
    // Each death: how long until its contacts were leased by the others.
    // The first comes after 1,500 of about 7,000 calls; the second as soon
    // as the first's contacts are taken over (a fixed count later could
    // find the last parts all held by the others, and nothing to kill).
    let mut takeovers = Vec::new();
    for (victim, at) in [(&mut b, 1500), (&mut c, 0)] {
        wait_calls(&mut client, at, &mut sample);
        let name = if at == 1500 { "b" } else { "c" };
        // Killed while it holds a part (not between two).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while owned(&mut client, name) == 0 {
            assert!(
                std::time::Instant::now() < until,
                "worker {name} never held a contact; it said: {}",
                said(name)
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        kill(victim);
        let killed = std::time::Instant::now();
        while owned(&mut client, name) > 0 {
            assert!(
                killed.elapsed().as_secs() < 60,
                "nobody took worker {name}'s contacts over; the others said: {} {}",
                said("a"),
                said("b")
            );
            sample(&mut client);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        takeovers.push(killed.elapsed());
    }
    let out = {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Some(_status) = starter.try_wait().unwrap() {
                break starter.wait_with_output().unwrap();
            }
            assert!(
                std::time::Instant::now() < until,
                "the campaign never finished"
            );
            sample(&mut client);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    assert!(out.status.success(), "{}", said("a"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["totalContacts"], 3000, "{report}");

    // The dialer's log: each (number, attempt) dialled once.
    let logged = std::fs::read_to_string(&log).unwrap();
    let mut seen = std::collections::HashSet::new();
    for line in logged.lines() {
        assert!(
            seen.insert(line.to_string()),
            "dialled twice for one attempt: {line}"
        );
    }
    // Every dial recorded, every recorded attempt ended, numbers without gaps.
    let rows = client
        .query(
            "SELECT c.phone, a.number, a.ended_at IS NOT NULL, a.outcome::text \
             FROM flowc_attempts a JOIN flowc_contacts c ON c.campaign = a.campaign AND c.id = a.contact \
             ORDER BY c.phone, a.number",
            &[],
        )
        .unwrap();
    let stored: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, i32>(1)))
        .collect();
    for line in &seen {
        assert!(stored.contains(line), "a dial the store lost: {line}");
    }
    assert!(
        rows.iter().all(|r| r.get::<_, bool>(2)),
        "an attempt without an end"
    );
    let unknown = rows
        .iter()
        .filter(|r| r.get::<_, Option<String>>(3).as_deref() == Some("unknown"))
        .count();
    let mut last: Option<(String, i32)> = None;
    for r in &rows {
        let (phone, n): (String, i32) = (r.get(0), r.get(1));
        let expected = match &last {
            Some((p, k)) if *p == phone => k + 1,
            _ => 1,
        };
        assert_eq!(n, expected, "attempt numbers of {phone} skip");
        last = Some((phone, n));
    }
    let ends: i64 = client
        .query_one("SELECT count(*) FROM flowc_ends", &[])
        .unwrap()
        .get(0);
    assert_eq!(ends, 3000, "every contact ended");
    // The flow's concurrency held across the workers: at no instant were
    // more than 150 calls under way (calls cut off by a kill had no end of
    // their own, and are left out).
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for r in client
        .query(
            "SELECT started_at, ended_at FROM flowc_attempts WHERE outcome <> 'unknown'",
            &[],
        )
        .unwrap()
    {
        edges.push((r.get(0), 1));
        edges.push((r.get(1), -1));
    }
    // At one instant, ends before starts.
    edges.sort();
    let (mut under_way, mut most) = (0, 0);
    for (_, step) in edges {
        under_way += step;
        most = most.max(under_way);
    }
    assert!(
        most <= 150,
        "{most} calls at once, over the flow's concurrency 150"
    );
    assert!(
        most >= 100,
        "the workers used the lines: at most {most} calls at once"
    );
    let _ = c.wait();
    eprintln!(
        "3 workers, 3,000 contacts: {} calls, {} cut off by the kills (unknown), {samples} samples; \
         at most {most} calls at once; lease 3 s; takeover after {:?} and {:?}",
        seen.len(),
        unknown,
        takeovers[0],
        takeovers[1]
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `flowc campaign pause` reaches every worker within a second (no call
/// starts after that; calls under way finish), `resume` sets them dialling
/// again, and `cancel` ends every contact left, skipped.
#[test]
fn pause_resume_and_cancel_reach_every_worker_within_a_second() {
    let Some(server) = Postgres::start("control") else {
        return;
    };
    let dir = scratch("flowc-control");
    let flow = dir.join("shared.flow");
    std::fs::write(&flow, WORKED.replace("concurrency 150", "concurrency 30")).unwrap();
    let contacts = dir.join("list.csv");
    write_numbers(&contacts, 1500);
    let script = dir.join("script.txt");
    std::fs::write(&script, "* answered lasting 300ms\n").unwrap();
    let base = server.database("control");
    let url = format!("{base}#held");
    let flowc = || Command::new(env!("CARGO_BIN_EXE_flowc"));
    let dialer = format!("script:{}", script.display());
    let mut starter = spawn_run(&flow, &contacts, &url, &dialer);
    let mut workers = spawn_workers(&base, &dialer, &["b", "c"]);
    let mut client = postgres_client(&base);
    let count =
        |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    let wait = |c: &mut postgres::Client, sql: &str, n: i64| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while c
            .query_one(sql, &[])
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
            < n
        {
            assert!(
                std::time::Instant::now() < until,
                "never reached {n}: {sql}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let control = |action: &str| {
        let out = flowc()
            .args(["campaign", action, "--db", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    };
    // Every worker is dialling.
    wait(
        &mut client,
        "SELECT count(DISTINCT worked_by) FROM flowc_parts WHERE worked_by IS NOT NULL",
        3,
    );
    wait(&mut client, "SELECT count(*) FROM flowc_attempts", 200);
    let said = control("pause");
    assert!(said.contains("paused"), "{said}");
    let paused_at = Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let late: i64 = client
        .query_one(
            "SELECT count(*) FROM flowc_attempts WHERE started_at > $1",
            &[&(paused_at + chrono::Duration::seconds(1))],
        )
        .unwrap()
        .get(0);
    assert_eq!(late, 0, "calls started more than a second after the pause");
    let open = count(
        &mut client,
        "SELECT count(*) FROM flowc_attempts WHERE ended_at IS NULL",
    );
    assert_eq!(open, 0, "the calls under way finished");
    let before = count(&mut client, "SELECT count(*) FROM flowc_attempts");
    assert!(
        before < 1500,
        "the pause came too late to hold anything back"
    );
    // `flowc run`, one worker among the others, waits for the resume.
    assert!(
        starter.try_wait().unwrap().is_none(),
        "flowc run left its paused campaign"
    );

    let said = control("resume");
    assert!(said.contains("running again"), "{said}");
    wait(
        &mut client,
        "SELECT count(*) FROM flowc_attempts",
        before + 100,
    );
    let said = control("cancel");
    assert!(said.contains("cancelled"), "{said}");
    let cancelled_at = Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM flowc_ends"),
        1500,
        "every contact ended"
    );
    let skipped = count(
        &mut client,
        "SELECT count(*) FROM flowc_ends WHERE state = 'skipped' AND reason = 'cancelled'",
    );
    assert!(skipped > 0, "nothing was left to cancel");
    let late: i64 = client
        .query_one(
            "SELECT count(*) FROM flowc_attempts WHERE started_at > $1",
            &[&(cancelled_at + chrono::Duration::seconds(1))],
        )
        .unwrap()
        .get(0);
    assert_eq!(late, 0, "calls started more than a second after the cancel");
    // Cancelled, the campaign is over: `flowc run` ends.
    let status = starter.wait().unwrap();
    assert!(status.success(), "{status}");
    kill_all(&mut workers);
    std::fs::remove_dir_all(&dir).ok();
}

/// `flowc run` beginning the campaign `url` of `flow` over `contacts` and
/// working on it through `dialer`, its output dropped.
fn spawn_run(
    flow: &std::path::Path,
    contacts: &std::path::Path,
    url: &str,
    dialer: &str,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["run", flow.to_str().unwrap()])
        .args(["--contacts", contacts.to_str().unwrap()])
        .args(["--db", url, "--dialer", dialer])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `flowc worker`s of the database `base`, one per name, with a lease of
/// 3 s, dialling through `dialer`, their output dropped.
fn spawn_workers(base: &str, dialer: &str, names: &[&str]) -> Vec<std::process::Child> {
    names
        .iter()
        .map(|name| {
            Command::new(env!("CARGO_BIN_EXE_flowc"))
                .args(["worker", "--db", base, "--name", name, "--lease", "3"])
                .args(["--dialer", dialer])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// Kills workers (SIGKILL) and reaps them.
fn kill_all(workers: &mut [std::process::Child]) {
    for w in workers {
        unsafe { libc::kill(w.id() as i32, libc::SIGKILL) };
        w.wait().unwrap();
    }
}

/// A simulation split into parts (`--parts 3`) gives the same report
/// whether `flowc simulate` simulates every part or two workers take some:
/// each part draws its calls by the contacts' ids and the campaign's seed.
#[test]
fn a_simulation_in_parts_gives_the_same_report_whoever_simulates_them() {
    let Some(server) = Postgres::start("parts") else {
        return;
    };
    let dir = scratch("flowc-parts");
    let flow = dir.join("both.flow");
    std::fs::write(
        &flow,
        FLOW.replace("strategy patient\n", "strategy patient\n  concurrency 60\n"),
    )
    .unwrap();
    let contacts = dir.join("list.csv");
    std::fs::write(&contacts, list(9000)).unwrap();
    let flowc = || Command::new(env!("CARGO_BIN_EXE_flowc"));
    let simulate = |db: &str| {
        flowc()
            .args([
                "simulate",
                flow.to_str().unwrap(),
                "--contacts",
                contacts.to_str().unwrap(),
            ])
            .args([
                "--db", db, "--format", "json", "--parts", "3", "--seed", "4",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let alone = simulate(&format!("{}#alone", server.database("alone")))
        .wait_with_output()
        .unwrap();
    assert!(
        alone.status.success(),
        "{}",
        String::from_utf8_lossy(&alone.stderr)
    );
    // Two workers wait for work; the simulation begins, and they join in.
    let base = server.database("shared");
    let mut workers: Vec<_> = ["w1", "w2"]
        .iter()
        .map(|name| {
            flowc()
                .args(["worker", "--db", &base, "--name", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let shared = simulate(&format!("{base}#shared"))
        .wait_with_output()
        .unwrap();
    assert!(
        shared.status.success(),
        "{}",
        String::from_utf8_lossy(&shared.stderr)
    );
    kill_all(&mut workers);
    let report = |out: &[u8]| -> serde_json::Value { serde_json::from_slice(out).unwrap() };
    assert_eq!(report(&alone.stdout), report(&shared.stdout));
    assert_eq!(report(&alone.stdout)["totalContacts"], 9000);
    // Who simulated what: the workers took parts.
    let mut client = postgres_client(&base);
    let owners: i64 = client
        .query_one(
            "SELECT count(DISTINCT worked_by) FROM flowc_parts WHERE worked_by IN ('w1', 'w2')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(owners >= 1, "no worker took a part");
    std::fs::remove_dir_all(&dir).ok();
}

const BRIDGED: &str = r#"
contact {
  phone: phone
}

calendar always {
  hours mon-sun 00:00-24:00
}

flow bridged {
  calendar always
  timezone "UTC"
  concurrency 4

  step call {
    dial contact.phone timeout 20s
    on answered -> end completed "reached"
    on other -> end failed "not_reached"
  }
}
"#;

/// Workers dial through the exec bridge: `flowc run --db postgres://…`
/// with a bridge that crashes after 5 dials stops, says why and gives its
/// parts back; a worker with a sound bridge finishes the campaign. Every
/// outcome is the bridge's, the calls cut off are `unknown`, and no number
/// is dialled twice for one attempt (the bridges' own log).
#[test]
fn workers_dial_through_the_bridge_and_a_crashed_bridge_hands_its_contacts_over() {
    let _heavy = crate::one_heavy_test_at_a_time();
    let Some(server) = Postgres::start("bridged") else {
        return;
    };
    let dir = scratch("flowc-bridged");
    let flow = dir.join("bridged.flow");
    std::fs::write(&flow, BRIDGED).unwrap();
    let contacts = dir.join("list.csv");
    let mut list = String::from("phone\n");
    for k in 0..40 {
        // The bridge answers by the last digit: 0 answered … 6 voicemail.
        list.push_str(&format!("+3361234{k:03}{}\n", k % 7));
    }
    std::fs::write(&contacts, list).unwrap();
    // The last five are on the do-not-call list `flowc run` reads: the
    // worker that finishes the campaign never dials them either.
    let dnc = dir.join("dnc.txt");
    let never: Vec<String> = (35..40)
        .map(|k| format!("+3361234{k:03}{}", k % 7))
        .collect();
    std::fs::write(&dnc, never.join("\n") + "\n").unwrap();
    let log = dir.join("bridge.log");
    let bridge = crate::root().join("tests/bridge/bridge.py");
    let base = server.database("bridged");
    let flowc = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flowc"));
        c.env("FLOWC_BRIDGE_LOG", &log);
        c
    };
    let crashed = flowc()
        .args([
            "run",
            flow.to_str().unwrap(),
            "--contacts",
            contacts.to_str().unwrap(),
        ])
        .args(["--db", &format!("{base}#bridged")])
        .args(["--dnc", dnc.to_str().unwrap()])
        .args([
            "--dialer",
            &format!("exec:python3 {} crash 5", bridge.display()),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&crashed.stderr);
    assert_eq!(crashed.status.code(), Some(1), "{err}");
    assert!(err.contains("the bridge `python3` failed"), "{err}");
    assert!(
        err.contains("lost the provider's connection (simulated)"),
        "{err}"
    );
    assert!(
        err.contains("its contacts go to the other workers"),
        "{err}"
    );

    let worker = flowc()
        .args(["worker", "--db", &base, "--until-done", "--lease", "2"])
        .args([
            "--dialer",
            &format!("exec:python3 {} normal", bridge.display()),
        ])
        .output()
        .unwrap();
    assert!(
        worker.status.success(),
        "{}",
        String::from_utf8_lossy(&worker.stderr)
    );

    let mut client = postgres_client(&base);
    let state: String = client
        .query_one("SELECT state::text FROM flowc_campaigns", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, "finished");
    let ends: i64 = client
        .query_one("SELECT count(*) FROM flowc_ends", &[])
        .unwrap()
        .get(0);
    assert_eq!(ends, 40, "every contact ended");
    let rows = client
        .query(
            "SELECT c.phone, a.number, a.outcome::text FROM flowc_attempts a \
             JOIN flowc_contacts c ON c.campaign = a.campaign AND c.id = a.contact",
            &[],
        )
        .unwrap();
    assert_eq!(
        rows.len(),
        35,
        "one attempt per contact not on the list (no retries)"
    );
    let skipped: Vec<String> = client
        .query(
            "SELECT c.phone FROM flowc_ends e JOIN flowc_contacts c ON c.campaign = e.campaign AND c.id = e.contact \
             WHERE e.state = 'skipped' AND e.reason = 'do_not_call' ORDER BY c.phone",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(skipped, never);
    let outcomes = [
        "answered",
        "busy",
        "no_answer",
        "rejected",
        "invalid_number",
        "network_error",
        "voicemail",
    ];
    let mut unknown = 0;
    for r in &rows {
        let (phone, number, outcome): (String, i32, Option<String>) =
            (r.get(0), r.get(1), r.get(2));
        assert_eq!(number, 1);
        let digit = phone.as_bytes()[phone.len() - 1] - b'0';
        match outcome.as_deref() {
            Some("unknown") => unknown += 1,
            o => assert_eq!(o, Some(outcomes[digit as usize]), "{phone}"),
        }
    }
    assert!((1..=4).contains(&unknown), "{unknown} calls cut off");
    let mut dials: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["op"] == "dial")
        .map(|r| r["to"].as_str().unwrap().to_string())
        .collect();
    let n = dials.len();
    dials.sort();
    dials.dedup();
    assert_eq!(dials.len(), n, "a number was dialled twice");
    assert!(dials.iter().all(|d| !never.contains(d)), "{dials:?}");
    // A dial written to the bridge as it died may never have been read.
    assert!(n <= 35 && n + unknown >= 35, "{n} dials logged");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The opt-outs of a campaign in PostgreSQL, whichever worker heard them,
/// join the `--dnc` file of the `flowc run` that began it when it ends,
/// once each, after what the file held.
#[test]
fn opt_outs_in_postgresql_reach_the_do_not_call_file() {
    let Some(server) = Postgres::start("optout") else {
        return;
    };
    let dir = scratch("flowc-optout");
    let dnc = dir.join("dnc.txt");
    std::fs::write(&dnc, "+12125550199\n").unwrap();
    let url = format!("{}#rehearsal", server.database("optout"));
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["run", "tests/fixtures/rehearsal.flow"])
            .args(["--contacts", "tests/fixtures/rehearsal.csv"])
            .args(["--dialer", "script:tests/fixtures/rehearsal.script"])
            .args(["--db", &url, "--dnc", dnc.to_str().unwrap()])
            .args(["--format", "json"])
            .current_dir(crate::root())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["endReasons"]["failed: opted_out"], 1, "{report}");
    let listed = std::fs::read_to_string(&dnc).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert_eq!(lines[0], "+12125550199");
    assert!(
        lines[1].starts_with("+12125550103  # opted out"),
        "{listed}"
    );
    // Run again (the campaign has ended): the number is not written twice.
    let again = run();
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(&dnc).unwrap(), listed);
    std::fs::remove_dir_all(&dir).ok();
}

/// `flowc worker --until-done` started while `flowc run` still adds the
/// campaign's contacts waits for them, rather than finding nothing open
/// and leaving.
#[test]
fn a_worker_until_done_waits_for_a_campaign_being_begun() {
    let Some(server) = Postgres::start("early") else {
        return;
    };
    let dir = scratch("flowc-early");
    let flow = dir.join("shared.flow");
    std::fs::write(&flow, WORKED).unwrap();
    let contacts = dir.join("list.csv");
    std::fs::write(&contacts, "phone\n+33612345678\n+33612345679\n").unwrap();
    let script = dir.join("script.txt");
    std::fs::write(&script, "* answered\n").unwrap();
    let base = server.database("early");
    let flowc = || Command::new(env!("CARGO_BIN_EXE_flowc"));
    let dialer = format!("script:{}", script.display());
    let begun = flowc()
        .args(["run", flow.to_str().unwrap()])
        .args(["--contacts", contacts.to_str().unwrap()])
        .args(["--db", &format!("{base}#early"), "--dialer", &dialer])
        .output()
        .unwrap();
    assert!(begun.status.success());
    // As `flowc run` leaves it while it adds the contacts: nothing dialled
    // yet, its parts cut, not yet open to workers.
    let mut client = postgres_client(&base);
    client
        .batch_execute(
            "DELETE FROM flowc_ends; DELETE FROM flowc_attempts; \
             UPDATE flowc_parts SET done = false, owner = NULL; \
             UPDATE flowc_campaigns SET state = 'running', contacts_in = false",
        )
        .unwrap();
    let mut worker = flowc()
        .args(["worker", "--db", &base, "--until-done", "--dialer", &dialer])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker left a campaign being begun"
    );
    client
        .execute("UPDATE flowc_campaigns SET contacts_in = true", &[])
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while worker.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < until, "the worker never ended");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(worker.wait().unwrap().success());
    let ended: i64 = client
        .query_one("SELECT count(*) FROM flowc_ends", &[])
        .unwrap()
        .get(0);
    assert_eq!(ended, 2, "the worker worked the campaign once it opened");
    std::fs::remove_dir_all(&dir).ok();
}

/// `pause campaign when` counts the whole campaign, whichever worker's
/// contacts entered the step: three workers (`flowc run` and two `flowc
/// worker`) on 900 contacts, pausing when the dial step is reached 250
/// times. Each lease holds at most 200 contacts (four parts of 50), so a
/// count kept per lease never reaches 250 and the campaign would run to
/// its end. A resume of a campaign past its threshold pauses it again at
/// once, before any dial.
#[test]
fn pause_campaign_when_counts_every_workers_contacts() {
    let Some(server) = Postgres::start("threshold") else {
        return;
    };
    let dir = scratch("flowc-threshold");
    let flow = dir.join("shared.flow");
    std::fs::write(
        &flow,
        WORKED.replace(
            "concurrency 150",
            "concurrency 30\n  pause campaign when step call reached 250 times",
        ),
    )
    .unwrap();
    let contacts = dir.join("list.csv");
    write_numbers(&contacts, 900);
    let script = dir.join("script.txt");
    std::fs::write(&script, "* answered lasting 300ms\n").unwrap();
    let base = server.database("threshold");
    let url = format!("{base}#capped");
    let flowc = || Command::new(env!("CARGO_BIN_EXE_flowc"));
    let dialer = format!("script:{}", script.display());
    let mut starter = spawn_run(&flow, &contacts, &url, &dialer);
    let mut workers = spawn_workers(&base, &dialer, &["b", "c"]);
    let mut client = postgres_client(&base);
    let state = |c: &mut postgres::Client| -> String {
        c.query_one("SELECT state::text FROM flowc_campaigns", &[])
            .map(|r| r.get(0))
            .unwrap_or_default()
    };
    let count =
        |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while state(&mut client) != "paused" {
        assert!(
            std::time::Instant::now() < until,
            "the campaign never paused: {} calls placed",
            count(&mut client, "SELECT count(*) FROM flowc_attempts")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Calls under way finish; the workers learn of the pause within a second.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let dialled = count(&mut client, "SELECT count(*) FROM flowc_attempts");
    let workers_dialling = count(
        &mut client,
        "SELECT count(DISTINCT worked_by) FROM flowc_parts WHERE worked_by IS NOT NULL",
    );
    assert!(
        (250..450).contains(&dialled),
        "{dialled} contacts entered the step before the pause (threshold 250)"
    );
    assert_eq!(workers_dialling, 3, "every worker took part");
    assert_eq!(
        count(
            &mut client,
            "SELECT coalesce(sum(times), 0)::bigint FROM flowc_reached"
        ),
        dialled,
        "each contact's count is kept"
    );
    assert!(
        starter.try_wait().unwrap().is_none(),
        "flowc run left its paused campaign"
    );
    // Resumed, it is still past its threshold: paused again, no new dial.
    let resumed = flowc()
        .args(["campaign", "resume", "--db", &url])
        .output()
        .unwrap();
    assert!(resumed.status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state(&mut client) != "paused" {
        assert!(std::time::Instant::now() < until, "not paused again");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM flowc_attempts"),
        dialled,
        "a resume past the threshold dialled"
    );
    let cancelled = flowc()
        .args(["campaign", "cancel", "--db", &url])
        .output()
        .unwrap();
    assert!(cancelled.status.success());
    assert!(starter.wait().unwrap().success());
    kill_all(&mut workers);
    std::fs::remove_dir_all(&dir).ok();
}

/// The opt-outs of a campaign in PostgreSQL reach the `--dnc` file of the
/// `flowc run` that began it as they come, not only when it ends.
#[test]
fn opt_outs_reach_the_do_not_call_file_while_the_run_goes_on() {
    let Some(server) = Postgres::start("optlive") else {
        return;
    };
    let dir = scratch("flowc-optlive");
    let flow = dir.join("shared.flow");
    std::fs::write(
        &flow,
        WORKED.replace("concurrency 150", "concurrency 1").replace(
            "on answered  -> end completed \"reached\"",
            "on answered  -> gather 1 digit timeout 1s {\n      \"9\" -> { opt out; end failed \"opted_out\" }\n      timeout -> end completed \"reached\"\n      invalid -> end completed \"reached\"\n    }",
        ),
    )
    .unwrap();
    let contacts = dir.join("list.csv");
    write_numbers(&contacts, 6);
    let script = dir.join("script.txt");
    std::fs::write(
        &script,
        "+33610000000 answered press 9 lasting 100ms\n* answered press 1 lasting 2s\n",
    )
    .unwrap();
    let dnc = dir.join("dnc.txt");
    let base = server.database("optlive");
    let mut run = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["run", flow.to_str().unwrap()])
        .args(["--contacts", contacts.to_str().unwrap()])
        .args(["--db", &format!("{base}#live")])
        .args(["--dialer", &format!("script:{}", script.display())])
        .args(["--dnc", dnc.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&dnc)
        .unwrap_or_default()
        .contains("+33610000000")
    {
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before the opt-out reached the file"
        );
        assert!(std::time::Instant::now() < until, "never written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ended: i64 = postgres_client(&base)
        .query_one("SELECT count(*) FROM flowc_ends", &[])
        .unwrap()
        .get(0);
    assert!(ended < 6, "written only once every contact had ended");
    assert!(run.wait().unwrap().success());
    let listed = std::fs::read_to_string(&dnc).unwrap();
    assert_eq!(listed.lines().count(), 1, "written once: {listed}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A cancel made while a worker ends a contact keeps the worker's end and
/// skips the rest: the worker's end is committed after the cancel's
/// snapshot was taken (held open here until the cancel waits on it), and
/// the cancel's insert must not fail on it.
#[test]
fn a_cancel_keeps_an_end_a_worker_commits_meanwhile() {
    let Some(server) = Postgres::start("cancel-race") else {
        return;
    };
    let url = server.database("cancel_race");
    let program = compile(FLOW);
    let flow = program.flow.clone().unwrap();
    let rules = Rules::new(&flow.contact, &flow.timezone, None);
    let import = read_csv(std::io::Cursor::new(list(5)), &rules);
    let mut store = PgStore::open(&url).unwrap();
    let start: DateTime<Utc> = "2026-12-01T08:00:00Z".parse().unwrap();
    store.begin(&program, start, false, Kind::Run).unwrap();
    for (i, c) in import.contacts.iter().enumerate() {
        store.contact_added(flowc::runtime::journal::ContactId::at(i), c, 0);
    }
    store.sync().unwrap();
    drop(store);

    // The worker's end of contact 0, written and not yet committed.
    let mut worker = postgres_client(&url);
    let campaign: i64 = worker
        .query_one("SELECT id FROM flowc_campaigns", &[])
        .unwrap()
        .get(0);
    let mut ending = worker.transaction().unwrap();
    ending
        .execute(
            "INSERT INTO flowc_ends (campaign, contact, state, reason, path) \
             VALUES ($1, 0, 'completed', 'answered', '[\"call\"]')",
            &[&campaign],
        )
        .unwrap();
    let cancel = {
        let url = url.clone();
        std::thread::spawn(move || PgStore::open(&url).unwrap().cancel())
    };
    // The cancel waits on the worker's row before the worker commits.
    let mut watcher = postgres_client(&url);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: i64 = watcher
            .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[])
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the cancel never waited on the worker's end"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ending.commit().unwrap();
    let ended = cancel.join().unwrap().expect("the cancel goes through");
    assert_eq!(ended, 4, "the four contacts the worker did not end");
    let ends: Vec<(i32, String)> = watcher
        .query(
            "SELECT contact, state::text FROM flowc_ends WHERE campaign = $1 ORDER BY contact",
            &[&campaign],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        ends,
        [
            (0, "completed".to_string()),
            (1, "skipped".to_string()),
            (2, "skipped".to_string()),
            (3, "skipped".to_string()),
            (4, "skipped".to_string()),
        ]
    );
}
