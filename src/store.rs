//! The store: an embedded SQLite database (WAL) holding a run's IR and its
//! hash, its contacts, every attempt and how each contact ended. `flowc
//! report` reads it. The schema is the journal the wall-clock engine will
//! write as it goes: an attempt row is written before the dial (no end yet)
//! and completed after it, so a crash leaves an attempt without an end,
//! which resumes as `unknown`.

use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::{params, Connection, OptionalExtension};

use crate::ir::{self, Outcome};
use crate::runtime::interpreter::{Attempt, End};
use crate::runtime::simulate::ContactResult;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS campaign (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    flow TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    ir TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY,
    line INTEGER NOT NULL,
    phone TEXT NOT NULL UNIQUE,
    zone TEXT NOT NULL,
    arm INTEGER NOT NULL,
    state TEXT NOT NULL,          -- pending, completed, failed, skipped
    reason TEXT,
    path TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS attempts (
    contact INTEGER NOT NULL REFERENCES contacts(id),
    number INTEGER NOT NULL,
    step INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,                -- null: the dial started and nothing recorded its end
    outcome TEXT,
    PRIMARY KEY (contact, number)
);
";

pub struct Store {
    conn: Connection,
}

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
                "the database holds a run of another flow (source hash {}…, this one is {}…); use another --db",
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

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// Records the program a run executes; a database already holding
    /// another program is refused.
    pub fn begin(
        &mut self,
        program: &ir::Program,
        started_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let stored: Option<String> = self
            .conn
            .query_row("SELECT source_hash FROM campaign WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        match stored {
            Some(hash) if hash != program.source_hash => Err(StoreError::OtherFlow {
                stored: hash,
                given: program.source_hash.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                let flow = program.flow.as_ref().map_or("", |f| f.name.as_str());
                let ir = serde_json::to_string(program).expect("the IR always serialises");
                self.conn.execute(
                    "INSERT INTO campaign (id, flow, source_hash, ir, started_at) VALUES (1, ?1, ?2, ?3, ?4)",
                    params![flow, program.source_hash, ir, time(started_at)],
                )?;
                Ok(())
            }
        }
    }

    /// Writes the results of a finished simulation in one transaction.
    pub fn save_results(
        &mut self,
        flow: &ir::Flow,
        results: &[ContactResult],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut contact = tx.prepare(
                "INSERT OR REPLACE INTO contacts (id, line, phone, zone, arm, state, reason, path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut attempt = tx.prepare(
                "INSERT OR REPLACE INTO attempts (contact, number, step, started_at, ended_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (id, c) in results.iter().enumerate() {
                let state = c.state();
                let path: Vec<&str> = c
                    .path
                    .iter()
                    .map(|s| flow.steps[*s].name.as_str())
                    .collect();
                contact.execute(params![
                    id as i64,
                    c.line as i64,
                    c.phone,
                    c.zone.name(),
                    c.arm as i64,
                    state,
                    c.end.as_ref().map(|e| e.reason.clone()),
                    serde_json::to_string(&path).expect("names serialise")
                ])?;
                for a in &c.attempts {
                    attempt.execute(params![
                        id as i64,
                        a.number,
                        a.step as i64,
                        time(a.started_at),
                        time(a.ended_at),
                        a.outcome.name()
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored program.
    pub fn program(&self) -> Result<ir::Program, StoreError> {
        let ir: String = self
            .conn
            .query_row("SELECT ir FROM campaign WHERE id = 1", [], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt("it holds no run".into()))?;
        serde_json::from_str(&ir).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Every contact with its attempts, as a report reads them. An attempt
    /// with a start and no end counts as `unknown`.
    pub fn results(&self, flow: &ir::Flow) -> Result<Vec<ContactResult>, StoreError> {
        let mut attempts: Vec<Vec<Attempt>> = Vec::new();
        let mut q = self.conn.prepare("SELECT contact, number, step, started_at, ended_at, outcome FROM attempts ORDER BY contact, number")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        for row in rows {
            let (contact, number, step, started, ended, outcome) = row?;
            let started_at = parse_time(&started)?;
            let ended_at = ended
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or(started_at);
            let outcome = outcome
                .as_deref()
                .and_then(Outcome::from_name)
                .unwrap_or(Outcome::Unknown);
            let i = contact as usize;
            if attempts.len() <= i {
                attempts.resize_with(i + 1, Vec::new);
            }
            attempts[i].push(Attempt {
                number,
                step: step as usize,
                started_at,
                ended_at,
                outcome,
            });
        }
        let mut q = self.conn.prepare(
            "SELECT id, line, phone, zone, arm, state, reason, path FROM contacts ORDER BY id",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, line, phone, zone, arm, state, reason, path) = row?;
            let names: Vec<String> =
                serde_json::from_str(&path).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(ContactResult {
                line: line as usize,
                phone,
                zone: zone
                    .parse::<Tz>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                arm: arm as usize,
                end: (state != "pending").then(|| End {
                    completed: state == "completed",
                    reason: reason.unwrap_or_default(),
                    skipped: state == "skipped",
                }),
                attempts: attempts
                    .get_mut(id as usize)
                    .map(std::mem::take)
                    .unwrap_or_default(),
                path: names
                    .iter()
                    .filter_map(|n| flow.steps.iter().position(|s| &s.name == n))
                    .collect(),
            });
        }
        Ok(out)
    }
}
