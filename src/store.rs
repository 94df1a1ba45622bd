//! The store: an embedded SQLite database (WAL) holding a campaign's IR and
//! its hash, its contacts, every attempt, and how each contact ended. The
//! engine writes it as it runs: an attempt row is written *before* the dial
//! (no end yet) and completed after the call, with what the recipient did
//! (keys pressed, transfer outcomes), so a resumed run replays every stored
//! reply through the interpreter and continues where the crash left it. An
//! attempt with a start and no end resumes as `unknown`. `flowc report`
//! reads the same tables, also while a run goes on; the `counters` view sums
//! to `total` at every commit.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::{params, Connection, OptionalExtension};

use crate::contacts::Contact;
use crate::ir::{self, Outcome, TransferOutcome};
use crate::runtime::engine::ContactResult;
use crate::runtime::interpreter::{Attempt, End};

/// Bumped when the tables change; a database of another version is refused.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS campaign (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    flow TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    ir TEXT NOT NULL,
    started_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'running',   -- running, paused, finished
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY,
    line INTEGER NOT NULL,
    phone TEXT NOT NULL UNIQUE,
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
    UNIQUE (contact, number)
);
CREATE VIEW IF NOT EXISTS counters AS
SELECT
    count(*) AS total,
    coalesce(sum(state = 'completed'), 0) AS completed,
    coalesce(sum(state = 'failed'), 0) AS failed,
    coalesce(sum(state = 'skipped'), 0) AS skipped,
    coalesce(sum(state = 'pending' AND NOT calling), 0) AS pending,
    coalesce(sum(state = 'pending' AND calling), 0) AS in_progress
FROM (
    SELECT coalesce(e.state, 'pending') AS state, EXISTS (
        SELECT 1 FROM attempts a WHERE a.contact = c.id AND a.ended_at IS NULL
    ) AS calling
    FROM contacts c LEFT JOIN ends e ON e.contact = c.id
);
";

/// Why a store cannot be used.
#[derive(Debug)]
pub enum StoreError {
    Sqlite(rusqlite::Error),
    /// The database holds a run of another flow (or another version of it).
    OtherFlow {
        stored: String,
        given: String,
    },
    Corrupt(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(e) => write!(f, "{e}"),
            StoreError::OtherFlow { stored, given } => write!(
                f,
                "the database holds a run of another version of the flow (source hash {}…, this file is {}…): \
                 resume it with the flow it started with, use another --db, or add --migrate to continue \
                 the run with this flow (contacts keep their history; the new flow decides what comes next)",
                &stored[..12.min(stored.len())],
                &given[..12.min(given.len())]
            ),
            StoreError::Corrupt(what) => write!(f, "the database cannot be read: {what}"),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(corrupt)
}

/// What the store holds of a campaign when a run begins.
#[derive(Debug)]
pub struct Campaign {
    pub started_at: DateTime<Utc>,
    /// The stored contacts, in id order (a contact's id is its place).
    pub contacts: Vec<Contact>,
    /// What each stored contact did so far, by id.
    pub history: Vec<History>,
    /// The flow was migrated to a new version by this call.
    pub migrated: bool,
    /// The stored campaign had finished (before this call resumed it).
    pub finished: bool,
}

/// A stored contact's past: its arm, its end if it ended, its attempts with
/// the replies they got.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub arm: usize,
    pub end: Option<End>,
    pub path: Vec<String>,
    pub attempts: Vec<StoredAttempt>,
    pub opted_out: bool,
}

impl History {
    /// The contact's result as the store holds it. An attempt with a start
    /// and no end counts as `unknown`, and its contact as in progress.
    pub fn result(&self, c: &Contact, flow: &ir::Flow) -> ContactResult {
        let step = |name: &str| flow.steps.iter().position(|s| s.name == name);
        ContactResult {
            line: c.line,
            in_progress: self.end.is_none() && self.attempts.iter().any(|a| a.ended_at.is_none()),
            zone: c.zones.first().copied().unwrap_or(Tz::UTC),
            phone: c.phone.clone(),
            arm: self.arm,
            end: self.end.clone(),
            attempts: self
                .attempts
                .iter()
                .map(|a| Attempt {
                    number: a.number,
                    step: step(&a.step).unwrap_or(flow.entry),
                    started_at: a.started_at,
                    ended_at: a.ended_at.unwrap_or(a.started_at),
                    outcome: a.outcome.unwrap_or(Outcome::Unknown),
                })
                .collect(),
            path: self.path.iter().filter_map(|n| step(n)).collect(),
            messages: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredAttempt {
    pub number: u32,
    pub step: String,
    pub started_at: DateTime<Utc>,
    pub caller_id: Option<String>,
    /// `None`: the dial started and its end was never recorded.
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<Outcome>,
    pub keys: Vec<Option<String>>,
    pub transfers: Vec<TransferOutcome>,
}

/// A write the engine asked for, kept until the next `flush`.
enum Op {
    Contact {
        id: usize,
        line: usize,
        phone: String,
        zones: String,
        fields: String,
        arm: usize,
    },
    Started(StoredAttempt, usize),
    Ended {
        contact: usize,
        number: u32,
        ended_at: DateTime<Utc>,
        outcome: Outcome,
        keys: Vec<Option<String>>,
        transfers: Vec<TransferOutcome>,
    },
    ContactEnded {
        id: usize,
        state: &'static str,
        reason: String,
        path: String,
    },
    OptedOut(usize),
}

pub struct Store {
    path: std::path::PathBuf,
    conn: Connection,
    ops: Vec<Op>,
    /// Started attempts still in `ops`, so an end can complete them there.
    open: HashMap<(usize, u32), usize>,
    writer: Option<Writer>,
}

/// The thread that writes batches while the engine goes on: SQLite's work
/// on the second core. `sync` waits until everything sent is committed.
struct Writer {
    batches: std::sync::mpsc::SyncSender<Batch>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Batch {
    Ops(Vec<Op>),
    /// Answered once every batch before it is committed, with the first error.
    Sync(std::sync::mpsc::Sender<Result<(), String>>),
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written what it holds.
        let (closed, _) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.batches, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Larger pages: fewer of them for a campaign's rows (only a new database
    // takes it).
    conn.pragma_update(None, "page_size", 16384)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Fold the WAL back into the database every 64 MiB rather than every 4.
    conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
    // The engine only writes attempts and ends of contacts it added first;
    // checking each reference read the contacts' pages of a large campaign
    // from disk on every write (the references stay declared).
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 64 MiB of page cache: the indexes of a large campaign stay in memory.
    conn.pragma_update(None, "cache_size", -65536)?;
    Ok(conn)
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = connect(path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let empty: bool = conn.query_row(
            "SELECT count(*) = 0 FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if !empty && version != SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "it was written by another version of flowc (store version {version}, this one reads {SCHEMA_VERSION})"
            )));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Store {
            path: path.to_path_buf(),
            conn,
            ops: Vec::new(),
            open: HashMap::new(),
            writer: None,
        })
    }

    /// Begins or resumes the campaign of `program`. A database holding
    /// another version of the flow is refused unless `migrate` is set, in
    /// which case the new program replaces the stored one and the contacts
    /// keep their history.
    pub fn begin(
        &mut self,
        program: &ir::Program,
        started_at: DateTime<Utc>,
        migrate: bool,
    ) -> Result<Campaign, StoreError> {
        let stored: Option<(String, String, String)> = self
            .conn
            .query_row(
                "SELECT source_hash, started_at, state FROM campaign WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let finished = stored
            .as_ref()
            .is_some_and(|(_, _, state)| state == "finished");
        let flow = program.flow.as_ref().map_or("", |f| f.name.as_str());
        let ir = serde_json::to_string(program).expect("the IR always serialises");
        let now = time(Utc::now());
        let (started_at, migrated) = match stored {
            Some((hash, _, _)) if hash != program.source_hash && !migrate => {
                return Err(StoreError::OtherFlow {
                    stored: hash,
                    given: program.source_hash.clone(),
                })
            }
            Some((hash, started, _)) => {
                let migrated = hash != program.source_hash;
                if migrated {
                    self.conn.execute(
                        "UPDATE campaign SET flow = ?1, source_hash = ?2, ir = ?3 WHERE id = 1",
                        params![flow, program.source_hash, ir],
                    )?;
                }
                self.conn.execute(
                    "UPDATE campaign SET state = 'running', updated_at = ?1 WHERE id = 1",
                    params![now],
                )?;
                (parse_time(&started)?, migrated)
            }
            None => {
                self.conn.execute(
                    "INSERT INTO campaign (id, flow, source_hash, ir, started_at, updated_at) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                    params![flow, program.source_hash, ir, time(started_at), now],
                )?;
                (started_at, false)
            }
        };
        let (contacts, history) = self.load()?;
        Ok(Campaign {
            started_at,
            contacts,
            history,
            migrated,
            finished,
        })
    }

    /// The stored contacts and their histories, in id order.
    fn load(&self) -> Result<(Vec<Contact>, Vec<History>), StoreError> {
        let mut contacts = Vec::new();
        let mut history = Vec::new();
        let mut q = self.conn.prepare(
            "SELECT c.id, c.line, c.phone, c.zones, c.fields, c.arm, coalesce(e.state, 'pending'), e.reason, e.path, c.opted_out \
             FROM contacts c LEFT JOIN ends e ON e.contact = c.id ORDER BY c.id",
        )?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if id as usize != contacts.len() {
                return Err(corrupt(format!(
                    "contact ids skip from {} to {id}",
                    contacts.len()
                )));
            }
            let zones: String = r.get(3)?;
            let fields: String = r.get(4)?;
            let state: String = r.get(6)?;
            let path: Option<String> = r.get(8)?;
            contacts.push(Contact {
                line: r.get::<_, i64>(1)? as usize,
                phone: r.get(2)?,
                zones: zones
                    .split(' ')
                    .map(|z| z.parse::<Tz>().map_err(corrupt))
                    .collect::<Result<_, _>>()?,
                fields: serde_json::from_str::<crate::contacts::Fields>(&fields)
                    .map_err(corrupt)?,
            });
            history.push(History {
                arm: r.get::<_, i64>(5)? as usize,
                end: (state != "pending").then(|| End {
                    completed: state == "completed",
                    reason: r
                        .get::<_, Option<String>>(7)
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                    skipped: state == "skipped",
                }),
                path: path
                    .map(|p| serde_json::from_str(&p).map_err(corrupt))
                    .transpose()?
                    .unwrap_or_default(),
                attempts: Vec::new(),
                opted_out: r.get::<_, i64>(9)? != 0,
            });
        }
        let mut q = self.conn.prepare(
            "SELECT contact, number, step, started_at, caller_id, ended_at, outcome, keys, transfers FROM attempts ORDER BY contact, number",
        )?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let contact = r.get::<_, i64>(0)? as usize;
            let ended: Option<String> = r.get(5)?;
            let outcome: Option<String> = r.get(6)?;
            let keys: Option<String> = r.get(7)?;
            let transfers: Option<String> = r.get(8)?;
            let attempt = StoredAttempt {
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
            history
                .get_mut(contact)
                .ok_or_else(|| {
                    corrupt(format!(
                        "an attempt of contact {contact}, which is not stored"
                    ))
                })?
                .attempts
                .push(attempt);
        }
        Ok((contacts, history))
    }

    /// A contact joins the campaign (written at the next flush).
    pub fn add_contact(&mut self, id: usize, c: &Contact, arm: usize) {
        let zones: Vec<&str> = c.zones.iter().map(|z| z.name()).collect();
        self.ops.push(Op::Contact {
            id,
            line: c.line,
            phone: c.phone.clone(),
            zones: zones.join(" "),
            fields: serde_json::to_string(&c.fields).expect("values serialise"),
            arm,
        });
    }

    /// An attempt is about to be dialled. Flush before the dial.
    pub fn attempt_started(&mut self, contact: usize, attempt: StoredAttempt) {
        self.open.insert((contact, attempt.number), self.ops.len());
        self.ops.push(Op::Started(attempt, contact));
    }

    /// An attempt's call is over.
    pub fn attempt_ended(
        &mut self,
        contact: usize,
        number: u32,
        ended_at: DateTime<Utc>,
        outcome: Outcome,
        keys: Vec<Option<String>>,
        transfers: Vec<TransferOutcome>,
    ) {
        // Not flushed yet: complete the row before it is written.
        if let Some(i) = self.open.remove(&(contact, number)) {
            if let Op::Started(a, _) = &mut self.ops[i] {
                a.ended_at = Some(ended_at);
                a.outcome = Some(outcome);
                a.keys = keys;
                a.transfers = transfers;
                return;
            }
        }
        self.ops.push(Op::Ended {
            contact,
            number,
            ended_at,
            outcome,
            keys,
            transfers,
        });
    }

    pub fn contact_ended(&mut self, id: usize, state: &'static str, reason: &str, path: &[&str]) {
        self.ops.push(Op::ContactEnded {
            id,
            state,
            reason: reason.to_string(),
            path: serde_json::to_string(path).expect("names serialise"),
        });
    }

    pub fn opted_out(&mut self, id: usize) {
        self.ops.push(Op::OptedOut(id));
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
        self.open.clear();
        let ops = std::mem::take(&mut self.ops);
        self.writer()?
            .batches
            .send(Batch::Ops(ops))
            .map_err(|_| corrupt("the writer thread stopped"))
    }

    /// Flushes and waits until everything is committed: once it returns, a
    /// crash loses none of it.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        let Some(writer) = self.writer.as_ref() else {
            return Ok(());
        };
        let (tx, rx) = std::sync::mpsc::channel();
        writer
            .batches
            .send(Batch::Sync(tx))
            .map_err(|_| corrupt("the writer thread stopped"))?;
        rx.recv()
            .map_err(|_| corrupt("the writer thread stopped"))?
            .map_err(StoreError::Corrupt)
    }

    fn writer(&mut self) -> Result<&Writer, StoreError> {
        if self.writer.is_none() {
            let mut conn = connect(&self.path)?;
            // Two batches in the channel at most: the engine waits rather
            // than piling up memory when SQLite falls behind.
            let (batches, rx) = std::sync::mpsc::sync_channel::<Batch>(2);
            let thread = std::thread::Builder::new()
                .name("store".into())
                .spawn(move || {
                    let mut failed: Option<String> = None;
                    for batch in rx {
                        match batch {
                            Batch::Ops(ops) if failed.is_none() => {
                                if let Err(e) = write_ops(&mut conn, ops) {
                                    failed = Some(e.to_string());
                                }
                            }
                            Batch::Ops(_) => {}
                            Batch::Sync(reply) => {
                                let _ = reply.send(failed.clone().map_or(Ok(()), Err));
                            }
                        }
                    }
                })
                .map_err(|e| corrupt(format!("cannot start the writer thread: {e}")))?;
            self.writer = Some(Writer {
                batches,
                thread: Some(thread),
            });
        }
        Ok(self.writer.as_ref().expect("just started"))
    }

    /// Marks the campaign paused or finished (after a flush).
    pub fn set_state(&mut self, state: &str) -> Result<(), StoreError> {
        self.sync()?;
        self.conn.execute(
            "UPDATE campaign SET state = ?1, updated_at = ?2 WHERE id = 1",
            params![state, time(Utc::now())],
        )?;
        Ok(())
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

    /// The campaign's state: running, paused or finished.
    pub fn state(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT state FROM campaign WHERE id = 1", [], |r| r.get(0))?)
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
    pub fn results(&self, flow: &ir::Flow) -> Result<Vec<ContactResult>, StoreError> {
        let (contacts, history) = self.load()?;
        Ok(contacts
            .iter()
            .zip(history)
            .map(|(c, h)| h.result(c, flow))
            .collect())
    }

    /// SQLite alone: inserts `n` attempt rows, shaped like the engine's, into
    /// a bare `attempts` table of a fresh database, in transactions of
    /// 10,000, with the store's settings. The benchmark sets it beside a
    /// campaign.
    pub fn insert_baseline(path: &Path, n: usize) -> Result<(), StoreError> {
        let mut conn = connect(path)?;
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

/// The replies of a call as stored: JSON lists, or nothing when there were none.
fn replies(
    keys: &[Option<String>],
    transfers: &[TransferOutcome],
) -> (Option<String>, Option<String>) {
    let keys = (!keys.is_empty()).then(|| serde_json::to_string(keys).expect("keys serialise"));
    let transfers = (!transfers.is_empty()).then(|| {
        let names: Vec<&str> = transfers.iter().map(|t| t.name()).collect();
        serde_json::to_string(&names).expect("names serialise")
    });
    (keys, transfers)
}

/// Commits a batch of writes in one transaction.
fn write_ops(conn: &mut Connection, ops: Vec<Op>) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut contact = tx.prepare_cached(
            "INSERT INTO contacts (id, line, phone, zones, fields, arm) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut started = tx.prepare_cached(
            "INSERT INTO attempts (contact, number, step, started_at, caller_id, ended_at, outcome, keys, transfers) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut ended = tx.prepare_cached(
            "UPDATE attempts SET ended_at = ?3, outcome = ?4, keys = ?5, transfers = ?6 WHERE contact = ?1 AND number = ?2",
        )?;
        let mut contact_ended = tx.prepare_cached(
            "INSERT INTO ends (contact, state, reason, path) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut opted_out = tx.prepare_cached("UPDATE contacts SET opted_out = 1 WHERE id = ?1")?;
        for op in ops {
            match op {
                Op::Contact {
                    id,
                    line,
                    phone,
                    zones,
                    fields,
                    arm,
                } => {
                    contact.execute(params![
                        id as i64,
                        line as i64,
                        phone,
                        zones,
                        fields,
                        arm as i64
                    ])?;
                }
                Op::Started(a, c) => {
                    started.execute(params![
                        c as i64,
                        a.number,
                        a.step,
                        time(a.started_at),
                        a.caller_id,
                        a.ended_at.map(time),
                        a.outcome.map(|o| o.name()),
                        replies(&a.keys, &a.transfers).0,
                        replies(&a.keys, &a.transfers).1,
                    ])?;
                }
                Op::Ended {
                    contact,
                    number,
                    ended_at,
                    outcome,
                    keys,
                    transfers,
                } => {
                    let (keys, transfers) = replies(&keys, &transfers);
                    ended.execute(params![
                        contact as i64,
                        number,
                        time(ended_at),
                        outcome.name(),
                        keys,
                        transfers
                    ])?;
                }
                Op::ContactEnded {
                    id,
                    state,
                    reason,
                    path,
                } => {
                    contact_ended.execute(params![id as i64, state, reason, path])?;
                }
                Op::OptedOut(id) => {
                    opted_out.execute(params![id as i64])?;
                }
            }
        }
        tx.execute(
            "UPDATE campaign SET updated_at = ?1 WHERE id = 1",
            params![time(Utc::now())],
        )?;
    }
    tx.commit()?;
    Ok(())
}
