//! The store: an embedded SQLite database (WAL) holding a campaign's IR and
//! its hash, its contacts, every attempt, and how each contact ended. The
//! engine writes it as it runs: an attempt row is written *before* the dial
//! (no end yet) and completed after the call, with what the recipient did
//! (keys pressed, transfer outcomes), so a resumed run replays every stored
//! reply through the interpreter and continues where the crash left it. An
//! attempt with a start and no end resumes as `unknown`. `flowc report`
//! reads the same tables, also while a run goes on; the `counters` view sums
//! to `total` at every commit.

mod file;
pub(crate) use file::host_name;
mod ops;
pub mod outbox;
pub mod postgres;
pub mod postgres_outbox;
mod writer;

use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::{params, Connection, OptionalExtension};

use crate::contacts::{Contact, List};
use crate::ir::ArmId;
use crate::ir::{self, Outcome, TransferOutcome};
use crate::record::{
    CallEnd, Campaign, CampaignState, ContactResult, End, Ending, History, Kind, Message,
    StoredAttempt,
};
use crate::runtime::journal::{Committed, ContactId, Durability, Journal};
use file::{connect, create, recognise, uri_path, Found, Lock};
use ops::{Commits, Op, Ops, Task, Writer};
use writer::write_ops;

/// Bumped when the tables change; a database of another version is refused.
const SCHEMA_VERSION: i64 = 5;
/// The oldest store version a run upgrades in place (`MIGRATIONS`).
const OLDEST_UPGRADABLE: i64 = 4;

/// What turns a store of version N into N + 1, from `OLDEST_UPGRADABLE` on.
const MIGRATIONS: &[&str] = &[
    // 4 → 5: SIP status on attempts; the outbox's tries, times and details.
    "ALTER TABLE attempts ADD COLUMN sip_status INTEGER;
     ALTER TABLE attempts ADD COLUMN sip_reason TEXT;
     ALTER TABLE messages ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE messages ADD COLUMN next_try_at TEXT;
     ALTER TABLE messages ADD COLUMN sent_at TEXT;
     ALTER TABLE messages ADD COLUMN detail TEXT;
     ALTER TABLE messages ADD COLUMN subject TEXT;",
];

/// Written into every store's header at creation (`PRAGMA application_id`,
/// "flow" in ASCII): a file without it is not a flowc store and is left as
/// it is, byte for byte.
const APPLICATION_ID: i64 = 0x666c_6f77;

/// A lock whose holder has not renewed it for this long is taken over (a
/// holder on this machine whose process is gone loses it at once).
const LOCK_STALE_SECONDS: i64 = 15;
/// How often the holder of a campaign's lock renews it.
const HEARTBEAT_SECONDS: u64 = 3;
/// A simulation's writes are committed this often: each commit writes
/// the pages it changed into the WAL again, and its writes change the
/// same index pages all along. A million contacts: 3.0 GB written with a
/// commit per batch of 100,000 writes, 1.7 GB with one every 2 s, and
/// `flowc simulate` 14.3-14.7 s instead of 15.7-15.9 s (BENCHMARKS.md).
const BATCHED_COMMITS: std::time::Duration = std::time::Duration::from_secs(2);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS campaign (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    flow TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    format_version INTEGER NOT NULL,  -- the IR's FORMAT_VERSION
    compiler_version TEXT NOT NULL,
    kind TEXT NOT NULL,               -- run (wall clock) or simulation
    ir TEXT NOT NULL,
    started_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'running',   -- running, paused, finished
    updated_at TEXT NOT NULL,
    finish TEXT                       -- the campaign's last instant (its clock) when it stopped
);
-- Who runs the campaign now: one row while a process holds it.
CREATE TABLE IF NOT EXISTS lock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    token TEXT NOT NULL,
    taken_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY,
    line INTEGER NOT NULL,
    -- One row per number: the import merges a list's repeated numbers.
    -- Not indexed (stores made before 2026-12-07 evening have a unique index): a
    -- million random numbers cost the writer three seconds to index, and
    -- no query looks a number up by it.
    phone TEXT NOT NULL,
    written TEXT,                 -- the number as the list wrote it, when not E.164
    zones TEXT NOT NULL,          -- candidate zones, space-separated
    fields TEXT NOT NULL,         -- the schema's fields, JSON
    arm INTEGER NOT NULL,
    opted_out INTEGER NOT NULL DEFAULT 0
);
-- How contacts ended: a row of its own, small, so a large campaign's ends
-- are written without touching the contacts' rows. No row: pending.
CREATE TABLE IF NOT EXISTS ends (
    contact INTEGER PRIMARY KEY REFERENCES contacts(id),
    state TEXT NOT NULL,          -- completed, failed, skipped
    reason TEXT,
    path TEXT NOT NULL            -- steps visited, JSON
);
-- Attempts are appended in the order they are dialled; the unique index
-- is what makes one scheduled attempt one row, whatever happens.
CREATE TABLE IF NOT EXISTS attempts (
    contact INTEGER NOT NULL REFERENCES contacts(id),
    number INTEGER NOT NULL,
    step TEXT NOT NULL,
    started_at TEXT NOT NULL,
    caller_id TEXT,
    ended_at TEXT,                -- null: the dial started and nothing recorded its end
    outcome TEXT,
    keys TEXT,                    -- what gathers heard, JSON: [\"1\", null]
    transfers TEXT,               -- transfer outcomes, JSON
    sip_status INTEGER,           -- the final SIP status, when the dialer knows it
    sip_reason TEXT,              -- and its reason phrase
    UNIQUE (contact, number)
);
-- What runs sent or asked for: SMS, e-mails and flags for a human, written
-- with the contact's end. The outbox sends SMS and e-mails: `unsent`, then
-- `sending` (written before it is handed over), then `sent` or `failed`; a
-- message left `sending` by a crash becomes `unknown`, never sent twice.
-- A flag is `open`.
CREATE TABLE IF NOT EXISTS messages (
    contact INTEGER NOT NULL REFERENCES contacts(id),
    attempt INTEGER NOT NULL,     -- attempts made when the flow sent it (0: before any)
    kind TEXT NOT NULL,           -- sms, email, flag
    text TEXT NOT NULL,
    recipient TEXT,
    status TEXT NOT NULL,         -- unsent, sending, sent, failed, unknown; open (a flag)
    tries INTEGER NOT NULL DEFAULT 0,
    next_try_at TEXT,             -- after a temporary failure: not before then
    sent_at TEXT,
    detail TEXT,                  -- why it failed, or what the adapter said
    subject TEXT                  -- an e-mail's subject
);
-- Each state counted from its own rows: ends for completed, failed and
-- skipped; attempts without an end for in progress; neither for pending.
CREATE VIEW IF NOT EXISTS counters AS
SELECT
    (SELECT count(*) FROM contacts) AS total,
    (SELECT count(*) FROM ends WHERE state = 'completed') AS completed,
    (SELECT count(*) FROM ends WHERE state = 'failed') AS failed,
    (SELECT count(*) FROM ends WHERE state = 'skipped') AS skipped,
    (SELECT count(*) FROM contacts c WHERE NOT EXISTS (SELECT 1 FROM ends e WHERE e.contact = c.id)
        AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.contact = c.id AND a.ended_at IS NULL)) AS pending,
    (SELECT count(DISTINCT a.contact) FROM attempts a WHERE a.ended_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM ends e WHERE e.contact = a.contact)) AS in_progress;
";

/// Why a store cannot be used.
#[derive(Debug)]
pub enum StoreError {
    Sqlite(rusqlite::Error),
    Postgres(String),
    /// Another process runs the campaign (a PostgreSQL database).
    Busy(String),
    /// The database holds a run of another flow (or another version of it).
    OtherFlow {
        stored: String,
        given: String,
    },
    /// The file is not a flowc store; it was not touched.
    NotAStore(String),
    /// A flowc store of another schema or IR format.
    OtherVersion(String),
    /// Another process runs the campaign.
    Locked {
        pid: i64,
        host: String,
        seconds_ago: i64,
    },
    /// A simulation's store given to a real run, or the other way round.
    OtherKind {
        stored: &'static str,
        given: &'static str,
    },
    /// Replaying a contact's stored attempts reached another step than the
    /// one stored: the flow is not the one that made the history.
    Diverged {
        line: usize,
        phone: String,
        attempt: u32,
        stored: String,
        replayed: String,
    },
    Corrupt(String),
    /// The campaign was cancelled: nobody is dialled again.
    Cancelled,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(e) => write!(f, "{e}"),
            StoreError::Postgres(e) => write!(f, "PostgreSQL: {e}"),
            StoreError::Busy(why) => write!(f, "{why}"),
            StoreError::OtherFlow { stored, given } => write!(
                f,
                "the database holds a run of another version of the flow (source hash {}…, this file is {}…): \
                 resume it with the flow it started with, use another --db, or add --migrate to continue \
                 the run with this flow (contacts keep their history; the new flow decides what comes next)",
                &stored[..12.min(stored.len())],
                &given[..12.min(given.len())]
            ),
            StoreError::NotAStore(why) => write!(
                f,
                "this file is not a flowc database ({why}); it was left untouched: give --db a new file"
            ),
            StoreError::OtherVersion(why) => write!(f, "{why}"),
            StoreError::Locked {
                pid,
                host,
                seconds_ago,
            } => write!(
                f,
                "the campaign is being run by process {pid} on {host} (last seen {seconds_ago} s ago): \
                 pause that run first (Ctrl-C, or `kill -INT {pid}` on {host}), or wait for it to end"
            ),
            StoreError::OtherKind { stored, given } => write!(
                f,
                "the database holds a {stored}, and this command makes a {given}: use another --db \
                 (a simulation never continues a real run, nor a real run a simulation)"
            ),
            StoreError::Diverged {
                line,
                phone,
                attempt,
                stored,
                replayed,
            } => write!(
                f,
                "the flow does not replay the stored run: contact {phone} (line {line}) made attempt {attempt} \
                 at step `{stored}`, and the flow now reaches step `{replayed}` there; resume with the flow \
                 the run started with, or add --migrate to continue with this one"
            ),
            StoreError::Corrupt(what) => write!(f, "the database cannot be read: {what}"),
            StoreError::Cancelled => write!(
                f,
                "the campaign was cancelled: nobody is dialled again; read its report with `flowc report`, or start afresh with another --db"
            ),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// What `begin` does with a campaign a store already holds.
pub(crate) enum Resumption {
    /// An unfinished simulation starts again from its beginning.
    Restart,
    /// The campaign goes on (`migrated`: with the given flow, not the
    /// stored one); `finished`: it had ended before.
    Resume { finished: bool, migrated: bool },
}

/// The rules every store's `begin` follows with a stored campaign (its
/// flow's hash, state, IR format and kind): a campaign of the other kind,
/// of another IR format or cancelled is refused; one of another flow is
/// refused unless `migrate` (or it is an unfinished simulation, which
/// starts again anyway).
pub(crate) fn resumption(
    hash: &str,
    state: CampaignState,
    format: i64,
    stored_kind: &str,
    program: &ir::Program,
    migrate: bool,
    kind: Kind,
) -> Result<Resumption, StoreError> {
    let unfinished_simulation = kind == Kind::Simulation && state != CampaignState::Finished;
    if stored_kind != kind.name() {
        return Err(StoreError::OtherKind {
            stored: if stored_kind == "run" {
                "real run"
            } else {
                "simulation"
            },
            given: if kind == Kind::Run {
                "real run"
            } else {
                "simulation"
            },
        });
    }
    if format != i64::from(ir::FORMAT_VERSION) {
        return Err(StoreError::OtherVersion(format!(
            "the run was compiled to IR format {format}, and this flowc runs format {}: finish it \
             with the flowc that started it, or start afresh with another --db",
            ir::FORMAT_VERSION
        )));
    }
    let migrated = hash != program.source_hash;
    if migrated && !migrate && !unfinished_simulation {
        return Err(StoreError::OtherFlow {
            stored: hash.to_string(),
            given: program.source_hash.clone(),
        });
    }
    match state {
        _ if unfinished_simulation => Ok(Resumption::Restart),
        CampaignState::Cancelled => Err(StoreError::Cancelled),
        state => Ok(Resumption::Resume {
            finished: state == CampaignState::Finished,
            migrated,
        }),
    }
}

/// A campaign state as the store wrote it.
fn campaign_state(name: &str) -> Result<CampaignState, StoreError> {
    CampaignState::parse(name).ok_or_else(|| corrupt(format!("the campaign is \"{name}\"")))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    // What `time` writes, `2026-12-07T13:00:25.000Z`, read directly: a
    // large report reads millions of them.
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    if b.len() == 24 && &b[4..5] == b"-" && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z' {
        let date = num(0..4)
            .zip(num(5..7))
            .zip(num(8..10))
            .and_then(|((y, m), d)| chrono::NaiveDate::from_ymd_opt(y as i32, m, d));
        let clock = num(11..13)
            .zip(num(14..16))
            .zip(num(17..19))
            .zip(num(20..23))
            .filter(|_| b[7] == b'-' && b[13] == b':' && b[16] == b':')
            .and_then(|(((h, m), s), ms)| chrono::NaiveTime::from_hms_milli_opt(h, m, s, ms));
        if let (Some(d), Some(t)) = (date, clock) {
            return Ok(d.and_time(t).and_utc());
        }
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(corrupt)
}

/// A message or flag as the store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub contact: usize,
    pub attempt: u32,
    /// sms, email or flag.
    pub kind: String,
    pub text: String,
    pub recipient: Option<String>,
    /// unsent (no adapter sends yet), or open for a flag.
    pub status: String,
}

/// A campaign at a glance (`Store::overview`).
#[derive(Clone, Debug)]
pub struct Overview {
    pub flow: String,
    pub simulation: bool,
    /// As the last run left it.
    pub state: CampaignState,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finish: Option<DateTime<Utc>>,
    /// total, completed, failed, skipped, pending, in progress.
    pub counters: [u64; 6],
    pub calls: u64,
    /// A process holds the campaign's lock and renewed it lately.
    pub run_by_someone: bool,
    /// Every contact is in: a campaign in a database is not while the
    /// process that begins it adds them.
    pub ready: bool,
}

/// One attempt with its contact (`Store::calls`).
#[derive(Clone, Debug)]
pub struct CallRow {
    pub contact: String,
    pub zone: Tz,
    pub attempt: u32,
    pub step: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `None`: the dial started and nothing recorded its end.
    pub outcome: Option<String>,
    pub keys: Option<serde_json::Value>,
    pub transfers: Option<serde_json::Value>,
    pub sip_status: Option<u16>,
    pub sip_reason: Option<String>,
    pub caller_id: Option<String>,
    /// The contact's end (completed, failed, skipped), reason and path.
    pub end: Option<String>,
    pub end_reason: Option<String>,
    pub path: Option<serde_json::Value>,
}

pub struct Store {
    path: std::path::PathBuf,
    conn: Connection,
    durability: Durability,
    ops: Ops,
    writer: Option<Writer>,
    lock: Option<Lock>,
    /// The engine's list, when shared (`Journal::share_list`).
    shared: Option<List>,
}

/// Brings a store of an older version to this one, in one transaction.
fn upgrade(conn: &mut Connection, from: i64) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for step in &MIGRATIONS[(from - OLDEST_UPGRADABLE) as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Opens the store at `path` for a run, making it (and its folder)
    /// when there is none. A file that is not a flowc store of this version
    /// is refused before anything is written to it.
    pub fn open(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        let found = recognise(path)?;
        if found == Found::Nothing {
            create(path)?;
        }
        let mut conn = connect(path, durability)?;
        if let Found::Older(version) = found {
            upgrade(&mut conn, version)?;
        }
        Ok(Store {
            path: path.to_path_buf(),
            conn,
            durability,
            ops: Ops::default(),
            writer: None,
            lock: None,
            shared: None,
        })
    }

    /// Opens an existing store to read it, writing nothing: it may be
    /// read-only, on a full disk, or in use by a run.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        if recognise(path)? == Found::Nothing {
            // (An older store is read as it stands: reports read what every version has.)
            return Err(StoreError::Corrupt("there is no database there".into()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let readable = |conn: &Connection| {
            conn.query_row("SELECT count(*) FROM campaign", [], |r| r.get::<_, i64>(0))
        };
        let conn = match Connection::open_with_flags(path, flags) {
            Ok(conn) if readable(&conn).is_ok() => conn,
            // A WAL database whose shared-memory file cannot be made (a
            // read-only folder or file): read the file as it stands.
            _ => {
                let uri = format!("file:{}?immutable=1", uri_path(path));
                let conn = Connection::open_with_flags(uri, flags)?;
                readable(&conn)?;
                conn
            }
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Pages mapped rather than copied in: a large report reads them all.
        conn.pragma_update(None, "mmap_size", 1i64 << 32)?;
        Ok(Store {
            path: path.to_path_buf(),
            conn,
            durability: Durability::Batched,
            ops: Ops::default(),
            writer: None,
            lock: None,
            shared: None,
        })
    }

    /// Takes the campaign's lock for this process, or says who holds it.
    fn take_lock(&mut self) -> Result<(), StoreError> {
        self.lock = Some(file::Lock::take(
            &mut self.conn,
            &self.path,
            self.durability,
        )?);
        Ok(())
    }
    /// Begins or resumes the campaign of `program`, taking its lock (a
    /// second process is refused with who holds it). A database holding
    /// another version of the flow is refused unless `migrate` is set, in
    /// which case the new program replaces the stored one and the contacts
    /// keep their history. An unfinished simulation starts again from its
    /// beginning: it dialled nobody, and the same seed draws the same
    /// campaign, so the result is the one an uninterrupted run gives.
    pub fn begin(
        &mut self,
        program: &ir::Program,
        started_at: DateTime<Utc>,
        migrate: bool,
        kind: Kind,
    ) -> Result<Campaign, StoreError> {
        self.take_lock()?;
        let stored: Option<(String, String, String, i64, String)> = self
            .conn
            .query_row(
                "SELECT source_hash, started_at, state, format_version, kind FROM campaign WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let stored = match stored {
            Some((hash, started, state, format, kind)) => {
                Some((hash, started, campaign_state(&state)?, format, kind))
            }
            None => None,
        };
        let flow = program.flow.as_ref().map_or("", |f| f.name.as_str());
        let ir = serde_json::to_string(program).expect("the IR always serialises");
        let now = time(Utc::now());
        let mut finished = false;
        let mut restarted = false;
        let stored = match &stored {
            Some((hash, started, state, format, stored_kind)) => Some((
                resumption(hash, *state, *format, stored_kind, program, migrate, kind)?,
                started,
            )),
            None => None,
        };
        let (started_at, migrated) = match stored {
            Some((Resumption::Restart, _)) => {
                let tx = self.conn.transaction()?;
                tx.execute_batch(
                    "DELETE FROM messages; DELETE FROM ends; DELETE FROM attempts; DELETE FROM contacts;",
                )?;
                tx.execute(
                    "UPDATE campaign SET flow = ?1, source_hash = ?2, ir = ?3, compiler_version = ?4, \
                     started_at = ?5, state = 'running', updated_at = ?6, finish = NULL WHERE id = 1",
                    params![flow, program.source_hash, ir, program.compiler_version, time(started_at), now],
                )?;
                tx.commit()?;
                restarted = true;
                (started_at, false)
            }
            Some((
                Resumption::Resume {
                    finished: was,
                    migrated,
                },
                started,
            )) => {
                finished = was;
                if migrated {
                    self.conn.execute(
                        "UPDATE campaign SET flow = ?1, source_hash = ?2, ir = ?3, compiler_version = ?4 WHERE id = 1",
                        params![flow, program.source_hash, ir, program.compiler_version],
                    )?;
                }
                self.conn.execute(
                    "UPDATE campaign SET state = 'running', updated_at = ?1 WHERE id = 1",
                    params![now],
                )?;
                (parse_time(started)?, migrated)
            }
            None => {
                self.conn.execute(
                    "INSERT INTO campaign (id, flow, source_hash, format_version, compiler_version, kind, ir, started_at, updated_at) \
                     VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        flow,
                        program.source_hash,
                        program.format_version,
                        program.compiler_version,
                        kind.name(),
                        ir,
                        time(started_at),
                        now
                    ],
                )?;
                (started_at, false)
            }
        };
        let (contacts, history) = self.load()?;
        let finish: Option<String> =
            self.conn
                .query_row("SELECT finish FROM campaign WHERE id = 1", [], |r| r.get(0))?;
        Ok(Campaign {
            finish: finish.as_deref().map(parse_time).transpose()?,
            started_at,
            contacts,
            history,
            migrated,
            finished,
            restarted,
        })
    }

    /// The stored contacts and their histories, in id order. Contacts are
    /// only ever appended, with ids from 0, so every read stops at the last
    /// contact there when it began (attempts of contacts added meanwhile
    /// are left out).
    fn load(&self) -> Result<(Vec<Contact>, Vec<History>), StoreError> {
        let last: i64 =
            self.conn
                .query_row("SELECT coalesce(max(id), -1) FROM contacts", [], |r| {
                    r.get(0)
                })?;
        // Three reads at once, on connections of their own: the attempts,
        // and each half of the contacts (a store of a file outside a
        // transaction; otherwise all on this connection).
        let half = last / 2;
        let path = &self.path;
        let parallel = self.conn.is_autocommit();
        let other = || Store::open_read_only(path).ok();
        fn joined<T>(t: Option<std::thread::ScopedJoinHandle<'_, Option<T>>>) -> Option<T> {
            t.and_then(|t| t.join().expect("reading the store does not panic"))
        }
        let (first, second, attempts) = std::thread::scope(|s| {
            let attempts =
                parallel.then(|| s.spawn(move || other().map(|o| read_attempts(&o.conn, last))));
            let second = parallel
                .then(|| s.spawn(move || other().map(|o| read_contacts(&o.conn, half + 1, last))));
            let first = read_contacts(&self.conn, 0, half);
            (first, joined(second), joined(attempts))
        });
        let (mut contacts, mut history) = first?;
        let (more, more_history) = match second {
            Some(read) => read?,
            None => read_contacts(&self.conn, half + 1, last)?,
        };
        contacts.extend(more);
        history.extend(more_history);
        let attempts = match attempts {
            Some(a) => a?,
            None => read_attempts(&self.conn, last)?,
        };
        for (h, mut a) in history.iter_mut().zip(attempts) {
            // A contact's attempts are dialled in their order; sort any
            // that a resume wrote otherwise.
            if !a.is_sorted_by_key(|a| a.number) {
                a.sort_by_key(|a| a.number);
            }
            h.attempts = a;
        }
        Ok((contacts, history))
    }

    /// A contact joins the campaign (written at the next flush); one of
    /// the shared list is read from it by the writer, not copied.
    pub fn add_contact(&mut self, id: usize, c: &Contact, arm: usize) {
        let shared = self
            .shared
            .as_ref()
            .filter(|list| list.get(id).is_some_and(|l| std::ptr::eq(l, c)));
        self.ops.contact(id, c, arm, shared);
    }

    /// An attempt is about to be dialled. Flush before the dial.
    pub fn attempt_started(&mut self, contact: usize, attempt: StoredAttempt) {
        self.ops.started(contact, attempt);
    }

    /// An attempt's call is over.
    pub fn attempt_ended(&mut self, contact: usize, number: u32, end: CallEnd) {
        self.ops.ended(contact, number, end);
    }

    pub fn contact_ended(&mut self, id: usize, ending: Ending, reason: &str, path: &[&str]) {
        self.ops.contact_ended(id, ending, reason, path);
    }

    pub fn opted_out(&mut self, id: usize) {
        self.ops.push(Op::OptedOut(id));
    }

    /// A message the run sent or a flag it raised (written with the
    /// contact's end, in the same commit).
    pub fn message(&mut self, contact: usize, message: &Message) {
        self.ops.message(contact, message);
    }

    /// Every message and flag, with the contact it concerns.
    pub fn messages(&self) -> Result<Vec<StoredMessage>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT contact, attempt, kind, text, recipient, status FROM messages ORDER BY contact, rowid",
        )?;
        let rows = q.query_map([], |r| {
            Ok(StoredMessage {
                contact: r.get::<_, i64>(0)? as usize,
                attempt: r.get(1)?,
                kind: r.get(2)?,
                text: r.get(3)?,
                recipient: r.get(4)?,
                status: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many writes wait for the next flush.
    pub fn pending_writes(&self) -> usize {
        self.ops.len()
    }

    /// Hands every change asked for since the last flush to the writer
    /// thread, which commits it in one transaction. `sync` waits for it.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let ops = self.ops.take();
        self.writer()?.send(ops)
    }

    /// Flushes and waits until everything is committed: once it returns, a
    /// crash loses none of it.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        match self.writer.as_ref() {
            Some(writer) => writer.sync(),
            None => Ok(()),
        }
    }

    fn writer(&mut self) -> Result<&Writer, StoreError> {
        if self.writer.is_none() {
            let mut conn = connect(&self.path, self.durability)?;
            let commits = match self.durability {
                Durability::BeforeEachDial => Commits::EachBatch,
                Durability::Batched => Commits::Every(BATCHED_COMMITS),
            };
            let lock = self.lock.as_ref().map(|l| l.token.clone());
            self.writer = Some(Writer::start(commits, move |task| {
                match task {
                    Task::Write(ops) => write_ops(&mut conn, ops, lock.as_deref()),
                    Task::Commit => conn.execute_batch("COMMIT"),
                }
                .map_err(|e| e.to_string())
            })?);
        }
        Ok(self.writer.as_ref().expect("just started"))
    }

    /// Marks the campaign paused or finished (after a flush) and releases
    /// its lock.
    pub fn set_state(
        &mut self,
        state: CampaignState,
        finish: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.sync()?;
        self.conn.execute(
            "UPDATE campaign SET state = ?1, updated_at = ?2, \
             finish = max(coalesce(finish, ?3), ?3) WHERE id = 1",
            params![state.name(), time(Utc::now()), time(finish)],
        )?;
        self.release();
        Ok(())
    }

    /// SQLite's `synchronous` setting of the store's connections: 2 (FULL)
    /// for real runs, 1 (NORMAL) for simulations.
    pub fn synchronous(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))?)
    }

    /// Gives up the campaign's lock (also done when the store is dropped).
    pub fn release(&mut self) {
        if let Some(lock) = self.lock.take() {
            let token = lock.token.clone();
            drop(lock);
            let _ = self.conn.execute(
                "DELETE FROM lock WHERE id = 1 AND token = ?1",
                params![token],
            );
        }
    }

    /// Who holds the campaign's lock: process id and host.
    pub fn lock_holder(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT pid, host FROM lock WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// The stored program.
    pub fn program(&self) -> Result<ir::Program, StoreError> {
        let ir: String = self
            .conn
            .query_row("SELECT ir FROM campaign WHERE id = 1", [], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt("it holds no run".into()))?;
        serde_json::from_str(&ir).map_err(corrupt)
    }

    /// Cancels the campaign: every contact that has not ended ends
    /// `skipped "cancelled"` (its path the steps of its attempts), and the
    /// campaign is `cancelled`, in one transaction, under the campaign's
    /// lock (a process running it is refused). Returns the contacts ended.
    pub fn cancel(&mut self) -> Result<u64, StoreError> {
        self.take_lock()?;
        let tx = self.conn.transaction()?;
        let ended = tx.execute(
            "INSERT INTO ends (contact, state, reason, path) \
             SELECT c.id, 'skipped', 'cancelled', \
                    (SELECT json_group_array(step) FROM (SELECT step FROM attempts a WHERE a.contact = c.id ORDER BY a.number)) \
             FROM contacts c WHERE NOT EXISTS (SELECT 1 FROM ends e WHERE e.contact = c.id)",
            [],
        )?;
        tx.execute(
            "UPDATE campaign SET state = 'cancelled', updated_at = ?1 WHERE id = 1",
            params![time(Utc::now())],
        )?;
        tx.commit()?;
        self.release();
        Ok(ended as u64)
    }

    /// The campaign at a glance, as the executions API shows it.
    pub fn overview(&self) -> Result<Overview, StoreError> {
        let (flow, kind, state, started, updated, finish): (String, String, String, String, String, Option<String>) =
            self.conn
                .query_row(
                    "SELECT flow, kind, state, started_at, updated_at, finish FROM campaign WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?
                .ok_or_else(|| StoreError::Corrupt("it holds no run".into()))?;
        let holder: Option<(i64, String, String)> = self
            .conn
            .query_row(
                "SELECT pid, host, heartbeat_at FROM lock WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let calls: i64 = self
            .conn
            .query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))?;
        // As taking the lock judges it: renewed lately, by a process that
        // is alive when it is on this machine.
        let run_by_someone = match holder {
            Some((pid, host, beat)) => {
                (Utc::now() - parse_time(&beat)?).num_seconds() < LOCK_STALE_SECONDS
                    && (host != file::host_name() || file::process_alive(pid))
            }
            None => false,
        };
        Ok(Overview {
            flow,
            simulation: kind == "simulation",
            state: campaign_state(&state)?,
            started_at: parse_time(&started)?,
            updated_at: parse_time(&updated)?,
            finish: finish.as_deref().map(parse_time).transpose()?,
            counters: self.counters()?,
            calls: calls as u64,
            run_by_someone,
            ready: true,
        })
    }

    /// A page of attempts, in the order they were dialled, with their
    /// contact's end: those of one number and of one outcome when asked
    /// (`unknown`: attempts without an end). Returns the matching count
    /// and the page.
    pub fn calls(
        &self,
        contact: Option<&str>,
        outcome: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<CallRow>), StoreError> {
        let filter = "FROM attempts a JOIN contacts c ON c.id = a.contact LEFT JOIN ends e ON e.contact = c.id \
             WHERE (?1 IS NULL OR c.phone = ?1) AND (?2 IS NULL OR coalesce(a.outcome, 'unknown') = ?2)";
        let total: i64 = self.conn.query_row(
            &format!("SELECT count(*) {filter}"),
            params![contact, outcome],
            |r| r.get(0),
        )?;
        let mut q = self.conn.prepare(&format!(
            "SELECT c.phone, c.zones, a.number, a.step, a.started_at, a.ended_at, a.outcome, a.keys, a.transfers, \
             a.sip_status, a.sip_reason, a.caller_id, e.state, e.reason, e.path {filter} \
             ORDER BY a.rowid LIMIT ?3 OFFSET ?4"
        ))?;
        let mut rows = q.query(params![contact, outcome, limit as i64, offset as i64])?;
        let mut page = Vec::new();
        let json = |t: Option<String>| -> Result<Option<serde_json::Value>, StoreError> {
            t.map(|t| serde_json::from_str(&t).map_err(corrupt))
                .transpose()
        };
        while let Some(r) = rows.next()? {
            let zones: String = r.get(1)?;
            let zone = zones
                .split(' ')
                .next()
                .unwrap_or("UTC")
                .parse::<Tz>()
                .map_err(corrupt)?;
            page.push(CallRow {
                contact: r.get(0)?,
                zone,
                attempt: r.get(2)?,
                step: r.get(3)?,
                started_at: parse_time(&r.get::<_, String>(4)?)?,
                ended_at: r
                    .get::<_, Option<String>>(5)?
                    .as_deref()
                    .map(parse_time)
                    .transpose()?,
                outcome: r.get(6)?,
                keys: json(r.get(7)?)?,
                transfers: json(r.get(8)?)?,
                sip_status: r.get(9)?,
                sip_reason: r.get(10)?,
                caller_id: r.get(11)?,
                end: r.get(12)?,
                end_reason: r.get(13)?,
                path: json(r.get(14)?)?,
            });
        }
        Ok((total as u64, page))
    }

    /// Attempts by outcome (`unknown`: started, never ended).
    pub fn outcomes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT coalesce(outcome, 'unknown'), count(*) FROM attempts GROUP BY 1 ORDER BY 1",
        )?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The campaign's state.
    pub fn state(&self) -> Result<CampaignState, StoreError> {
        let name: String =
            self.conn
                .query_row("SELECT state FROM campaign WHERE id = 1", [], |r| r.get(0))?;
        campaign_state(&name)
    }

    /// Every attempt as (number dialled, attempt, outcome; `None` without an end).
    pub fn attempt_rows(&self) -> Result<Vec<(String, u32, Option<String>)>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT c.phone, a.number, a.outcome FROM attempts a JOIN contacts c ON c.id = a.contact ORDER BY a.contact, a.number",
        )?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The counters view: total, completed, failed, skipped, pending, in progress.
    pub fn counters(&self) -> Result<[u64; 6], StoreError> {
        Ok(self.conn.query_row(
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
        )?)
    }

    /// Every contact with its attempts, as a report reads them. An attempt
    /// with a start and no end counts as `unknown`, and its contact as in
    /// progress.
    pub fn results(
        &self,
        flow: &ir::Flow,
    ) -> Result<(Vec<Contact>, Vec<ContactResult>), StoreError> {
        let (contacts, history) = self.load()?;
        // A million contacts take half a second: on both cores.
        let results = crate::on_two_threads(&contacts, |at, part| {
            part.iter()
                .zip(&history[at..])
                .map(|(c, h)| h.result(c, flow))
                .collect()
        });
        // Freeing a million histories takes a few tenths of a second that
        // nobody waits for.
        std::thread::spawn(move || drop(history));
        Ok((contacts, results))
    }

    /// SQLite alone: inserts `n` attempt rows, shaped like the engine's, into
    /// a bare `attempts` table of a fresh database, in transactions of
    /// 10,000, with the store's settings. The benchmark sets it beside a
    /// campaign.
    pub fn insert_baseline(path: &Path, n: usize) -> Result<(), StoreError> {
        Connection::open(path)?.pragma_update(None, "page_size", 16384)?;
        let mut conn = connect(path, Durability::Batched)?;
        conn.execute_batch(
            "CREATE TABLE attempts (contact INTEGER NOT NULL, number INTEGER NOT NULL, step TEXT NOT NULL, \
             started_at TEXT NOT NULL, caller_id TEXT, ended_at TEXT, outcome TEXT, keys TEXT, transfers TEXT, \
             PRIMARY KEY (contact, number)) WITHOUT ROWID",
        )?;
        let t = Utc::now();
        let mut done = 0;
        while done < n {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO attempts (contact, number, step, started_at, ended_at, outcome) VALUES (?1, 1, 'call', ?2, ?3, 'no_answer')",
                )?;
                for k in done..(done + 10_000).min(n) {
                    insert.execute(params![k as i64, time(t), time(t)])?;
                }
            }
            tx.commit()?;
            done = (done + 10_000).min(n);
        }
        Ok(())
    }
}

/// The attempts of contacts `0..=last`, each contact's in the order they
/// were written.
fn read_attempts(conn: &Connection, last: i64) -> Result<Vec<Vec<StoredAttempt>>, StoreError> {
    let mut attempts: Vec<Vec<StoredAttempt>> = Vec::new();
    attempts.resize_with(usize::try_from(last + 1).unwrap_or(0), Vec::new);
    // A store of version 4, read as it stands, has no SIP columns.
    let sip = conn
        .prepare("SELECT 1 FROM pragma_table_info('attempts') WHERE name = 'sip_status'")?
        .exists([])?;
    let mut q = conn.prepare(if sip {
            // In the order they were written (dial order), not by contact:
            // the (contact, number) index would visit the table at random.
            "SELECT contact, number, step, started_at, caller_id, ended_at, outcome, keys, transfers, sip_status, sip_reason FROM attempts"
        } else {
            "SELECT contact, number, step, started_at, caller_id, ended_at, outcome, keys, transfers, NULL, NULL FROM attempts"
        })?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        // (Filtered here: a WHERE on the contact would read by the index.)
        let contact = r.get::<_, i64>(0)?;
        if contact > last {
            continue;
        }
        let contact = contact as usize;
        let ended: Option<String> = r.get(5)?;
        let outcome: Option<String> = r.get(6)?;
        let keys: Option<String> = r.get(7)?;
        let transfers: Option<String> = r.get(8)?;
        let sip_status: Option<u16> = r.get(9)?;
        let sip_reason: Option<String> = r.get(10)?;
        let attempt = StoredAttempt {
            sip: sip_status.map(|s| (s, sip_reason.unwrap_or_default())),
            number: r.get(1)?,
            step: r.get(2)?,
            started_at: parse_time(&r.get::<_, String>(3)?)?,
            caller_id: r.get(4)?,
            ended_at: ended.as_deref().map(parse_time).transpose()?,
            outcome: outcome.as_deref().and_then(Outcome::from_name),
            keys: keys
                .map(|k| serde_json::from_str(&k).map_err(corrupt))
                .transpose()?
                .unwrap_or_default(),
            transfers: transfers
                .map(|t| serde_json::from_str::<Vec<String>>(&t).map_err(corrupt))
                .transpose()?
                .unwrap_or_default()
                .iter()
                .filter_map(|t| TransferOutcome::from_name(t))
                .collect(),
        };
        attempts
            .get_mut(contact)
            .ok_or_else(|| {
                corrupt(format!(
                    "an attempt of contact {contact}, which is not stored"
                ))
            })?
            .push(attempt);
    }
    Ok(attempts)
}

/// Contacts `from..=to` with their ends (their attempts apart).
fn read_contacts(
    conn: &Connection,
    from: i64,
    to: i64,
) -> Result<(Vec<Contact>, Vec<History>), StoreError> {
    let mut contacts = Vec::new();
    let mut history = Vec::new();
    let mut q = conn.prepare(
        "SELECT c.id, c.line, c.phone, c.zones, c.fields, c.arm, coalesce(e.state, 'pending'), e.reason, e.path, c.opted_out, c.written \
         FROM contacts c LEFT JOIN ends e ON e.contact = c.id WHERE c.id BETWEEN ?1 AND ?2 ORDER BY c.id",
    )?;
    let mut rows = q.query([from, to])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let expected = from + contacts.len() as i64;
        if id != expected {
            return Err(corrupt(format!("contact ids skip from {expected} to {id}")));
        }
        let zones: String = r.get(3)?;
        let fields: String = r.get(4)?;
        let state: String = r.get(6)?;
        let path: Option<String> = r.get(8)?;
        contacts.push(Contact {
            line: r.get::<_, i64>(1)? as u32,
            phone: r.get(2)?,
            zones: zones
                .split(' ')
                .map(|z| z.parse::<Tz>().map_err(corrupt))
                .collect::<Result<_, _>>()?,
            fields: serde_json::from_str::<crate::contacts::Fields>(&fields).map_err(corrupt)?,
            written: r.get::<_, Option<String>>(10)?.map(Box::from),
        });
        history.push(History {
            arm: r.get::<_, i64>(5)? as usize,
            end: match state.as_str() {
                "pending" => None,
                name => {
                    let ending = Ending::parse(name)
                        .ok_or_else(|| corrupt(format!("a contact ended \"{name}\"")))?;
                    let reason: Option<String> = r.get(7)?;
                    Some(End::new(ending, reason.unwrap_or_default()))
                }
            },
            path: path
                .map(|p| serde_json::from_str(&p).map_err(corrupt))
                .transpose()?
                .unwrap_or_default(),
            attempts: Vec::new(),
            opted_out: r.get::<_, i64>(9)? != 0,
        });
    }
    Ok((contacts, history))
}

/// What a report (`flowc report`) and a viewer (`flowc serve`) read of a
/// stored campaign, whichever the store.
pub trait Reader {
    /// The stored program.
    fn program(&mut self) -> Result<ir::Program, StoreError>;
    /// Every contact with its attempts, as a report reads them.
    fn results(
        &mut self,
        flow: &ir::Flow,
    ) -> Result<(Vec<Contact>, Vec<ContactResult>), StoreError>;
    /// Every message and flag, with the contact it concerns.
    fn messages(&mut self) -> Result<Vec<StoredMessage>, StoreError>;
    fn overview(&mut self) -> Result<Overview, StoreError>;
    /// Attempts by outcome (`unknown`: started, never ended).
    fn outcomes(&mut self) -> Result<Vec<(String, u64)>, StoreError>;
    /// A page of the attempts in the order dialled, of one number or one
    /// outcome when asked, and how many there are in all.
    fn calls(
        &mut self,
        contact: Option<&str>,
        outcome: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<CallRow>), StoreError>;
}

impl Reader for Store {
    fn program(&mut self) -> Result<ir::Program, StoreError> {
        Store::program(self)
    }

    fn results(
        &mut self,
        flow: &ir::Flow,
    ) -> Result<(Vec<Contact>, Vec<ContactResult>), StoreError> {
        Store::results(self, flow)
    }

    fn messages(&mut self) -> Result<Vec<StoredMessage>, StoreError> {
        Store::messages(self)
    }

    fn overview(&mut self) -> Result<Overview, StoreError> {
        Store::overview(self)
    }

    fn outcomes(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        Store::outcomes(self)
    }

    fn calls(
        &mut self,
        contact: Option<&str>,
        outcome: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<CallRow>), StoreError> {
        Store::calls(self, contact, outcome, offset, limit)
    }
}

impl Journal for Store {
    fn begin(
        &mut self,
        program: &ir::Program,
        started_at: DateTime<Utc>,
        migrate: bool,
        kind: Kind,
    ) -> Result<Campaign, StoreError> {
        Store::begin(self, program, started_at, migrate, kind)
    }

    fn contact_added(&mut self, id: ContactId, contact: &Contact, arm: ArmId) {
        self.add_contact(id.index(), contact, arm);
    }

    fn share_list(&mut self, list: &List) {
        self.shared = Some(list.clone());
    }

    fn attempt_started(&mut self, id: ContactId, attempt: StoredAttempt) {
        Store::attempt_started(self, id.index(), attempt);
    }

    fn attempt_ended(&mut self, id: ContactId, number: u32, end: CallEnd) {
        Store::attempt_ended(self, id.index(), number, end);
    }

    fn contact_ended(&mut self, id: ContactId, ending: Ending, reason: &str, path: &[&str]) {
        Store::contact_ended(self, id.index(), ending, reason, path);
    }

    fn opted_out(&mut self, id: ContactId) {
        Store::opted_out(self, id.index());
    }

    fn message(&mut self, id: ContactId, message: &Message) {
        Store::message(self, id.index(), message);
    }

    fn pending_writes(&self) -> usize {
        Store::pending_writes(self)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Store::flush(self)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Store::sync(self)
    }

    fn sync_later(&mut self) -> Result<Committed, StoreError> {
        self.flush()?;
        match self.writer.as_ref() {
            Some(writer) => writer.committed(),
            None => Ok(Committed::now()),
        }
    }

    fn set_state(&mut self, state: CampaignState, finish: DateTime<Utc>) -> Result<(), StoreError> {
        Store::set_state(self, state, finish)
    }
}
