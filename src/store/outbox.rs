//! The outbox's side of the store: the SMS and e-mails a run wrote, taken
//! one by one through `unsent` → `sending` → `sent` | `failed`, each step
//! committed before the next. A message is marked `sending` before it is
//! handed to an adapter, so a crash can never send it twice: a message a
//! crash left `sending` becomes `unknown`. [`MessageStore`] is what an
//! outbox needs of a store; [`OutboxStore`] is the SQLite file's
//! (`synchronous=FULL`), `postgres_outbox::PgOutbox` a PostgreSQL
//! database's, shared by workers.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::file::connect;
use super::{parse_time, time, StoreError};
use crate::runtime::journal::Durability;

/// A message to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub id: i64,
    pub contact: usize,
    /// `sms` or `email`.
    pub kind: String,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub text: String,
    /// Deliveries tried before this one.
    pub tries: u32,
}

/// What an outbox needs of a store.
#[allow(async_fn_in_trait)]
pub trait MessageStore {
    /// Unsent messages of these kinds whose time has come, oldest first.
    async fn due(
        &mut self,
        kinds: &[&str],
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Outgoing>, StoreError>;
    /// Marks the message `sending` (one more try), durably, before it is
    /// handed over; false when it is no longer unsent and due at `now`
    /// (another outbox took it, and may have put it back for later).
    async fn take(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn sent(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        detail: Option<&str>,
    ) -> Result<(), StoreError>;
    async fn failed(&mut self, id: i64, reason: &str) -> Result<(), StoreError>;
    /// A temporary failure: back to `unsent`, not to be tried before `at`.
    async fn retry_at(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// Unsent messages of these kinds, due now or later.
    async fn unsent(&mut self, kinds: &[&str]) -> Result<usize, StoreError>;
    /// The earliest retry still waiting among unsent messages of these kinds.
    async fn next_retry(&mut self, kinds: &[&str]) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// What the outbox of a run's file does; the work of each method is in the
/// inherent one of the same name.
impl MessageStore for OutboxStore {
    async fn due(
        &mut self,
        kinds: &[&str],
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Outgoing>, StoreError> {
        OutboxStore::due(self, kinds, now, limit)
    }
    async fn take(&mut self, id: i64, _: DateTime<Utc>) -> Result<bool, StoreError> {
        // The run's only outbox: what it found due still is.
        self.sending(id)
    }
    async fn sent(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        OutboxStore::sent(self, id, at, detail)
    }
    async fn failed(&mut self, id: i64, reason: &str) -> Result<(), StoreError> {
        OutboxStore::failed(self, id, reason)
    }
    async fn retry_at(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        OutboxStore::retry_at(self, id, at, reason)
    }
    async fn unsent(&mut self, kinds: &[&str]) -> Result<usize, StoreError> {
        OutboxStore::unsent(self, kinds)
    }
    async fn next_retry(&mut self, kinds: &[&str]) -> Result<Option<DateTime<Utc>>, StoreError> {
        OutboxStore::next_retry(self, kinds)
    }
}

/// The store's messages, for the outbox. Its own connection to the store:
/// the engine's writer commits messages, the outbox moves them on.
pub struct OutboxStore {
    conn: Connection,
}

impl OutboxStore {
    /// Opens the outbox of the store at `path` (a store the run opened).
    /// Messages a crash left `sending` become `unknown`; returns how many.
    pub fn open(path: &Path) -> Result<(OutboxStore, usize), StoreError> {
        let conn = connect(path, Durability::BeforeEachDial)?;
        let interrupted = conn.execute(
            "UPDATE messages SET status = 'unknown', \
             detail = 'the run stopped while handing it over: it may have been sent, and is not sent again' \
             WHERE status = 'sending'",
            [],
        )?;
        Ok((OutboxStore { conn }, interrupted))
    }

    /// Unsent messages of these kinds whose time has come, oldest first.
    pub fn due(
        &self,
        kinds: &[&str],
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let mut out = Vec::new();
        for kind in kinds {
            let mut q = self.conn.prepare_cached(
                "SELECT rowid, contact, kind, recipient, subject, text, tries FROM messages \
                 WHERE status = 'unsent' AND kind = ?1 AND (next_try_at IS NULL OR next_try_at <= ?2) \
                 ORDER BY rowid LIMIT ?3",
            )?;
            let rows = q.query_map(params![kind, time(now), limit as i64], |r| {
                Ok(Outgoing {
                    id: r.get(0)?,
                    contact: r.get::<_, i64>(1)? as usize,
                    kind: r.get(2)?,
                    recipient: r.get(3)?,
                    subject: r.get(4)?,
                    text: r.get(5)?,
                    tries: r.get(6)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        out.sort_by_key(|m| m.id);
        out.truncate(limit);
        Ok(out)
    }

    /// The earliest retry still waiting among unsent messages of these kinds.
    pub fn next_retry(&self, kinds: &[&str]) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for kind in kinds {
            let at: Option<String> = self.conn.query_row(
                "SELECT min(next_try_at) FROM messages WHERE status = 'unsent' AND kind = ?1",
                params![kind],
                |r| r.get(0),
            )?;
            if let Some(at) = at.as_deref().map(parse_time).transpose()? {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        Ok(earliest)
    }

    /// Unsent messages of these kinds, due now or later.
    pub fn unsent(&self, kinds: &[&str]) -> Result<usize, StoreError> {
        let mut n = 0;
        for kind in kinds {
            n += self.conn.query_row(
                "SELECT count(*) FROM messages WHERE status = 'unsent' AND kind = ?1",
                params![kind],
                |r| r.get::<_, i64>(0),
            )? as usize;
        }
        Ok(n)
    }

    /// Written, and on disk, before the message is handed over; false
    /// when it is no longer unsent.
    pub fn sending(&self, id: i64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE messages SET status = 'sending', tries = tries + 1 WHERE rowid = ?1 AND status = 'unsent'",
            params![id],
        )?;
        Ok(n == 1)
    }

    pub fn sent(&self, id: i64, at: DateTime<Utc>, detail: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE messages SET status = 'sent', sent_at = ?2, detail = ?3, next_try_at = NULL WHERE rowid = ?1",
            params![id, time(at), detail],
        )?;
        Ok(())
    }

    pub fn failed(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE messages SET status = 'failed', detail = ?2, next_try_at = NULL WHERE rowid = ?1",
            params![id, reason],
        )?;
        Ok(())
    }

    /// A temporary failure: back to `unsent`, not to be tried before `at`.
    pub fn retry_at(&self, id: i64, at: DateTime<Utc>, reason: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE messages SET status = 'unsent', detail = ?2, next_try_at = ?3 WHERE rowid = ?1",
            params![id, reason, time(at)],
        )?;
        Ok(())
    }
}
