//! The outbox's side of a PostgreSQL campaign: the messages of
//! `flowc_messages`, shared by every worker whose outbox has a courier for
//! their kind. A worker takes a message by marking it `sending` under its
//! own name (committed before it is handed over; of workers racing for one
//! message, the first update wins); a message left `sending` by a worker
//! that is dead (its heartbeat older than its lease), or by an earlier
//! process of this worker's name, becomes `unknown` and is never sent again.
//!
//! Messages of a paused or cancelled campaign wait; a running or finished
//! campaign's are sent.
//!
//! Async, on `tokio-postgres`: it runs inside the worker's runtime, beside
//! the engine and the bridge that carries the SMS (the blocking client
//! cannot run there).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};

use super::outbox::{MessageStore, Outgoing};
use super::postgres::config;
use super::StoreError;

/// How often dead workers' `sending` messages are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// What a message left `sending` says.
const INTERRUPTED: &str =
    "the worker stopped while handing it over: it may have been sent, and is not sent again";

pub struct PgOutbox {
    client: Client,
    /// The worker's name, written on the messages it takes.
    owner: String,
    /// The name of the one campaign whose messages this outbox sends
    /// (`flowc run`); none: every campaign's.
    campaign: Option<String>,
    swept: Instant,
}

impl PgOutbox {
    /// Connects (inside the running tokio runtime, which drives the
    /// connection) to a database `PgStore::open` brought up to date. The
    /// messages `owner`'s earlier process or a dead worker left `sending`
    /// become `unknown`; returns how many.
    pub async fn connect(
        url: &str,
        owner: &str,
        campaign: Option<&str>,
    ) -> Result<(PgOutbox, usize), StoreError> {
        let url = url.split_once('#').map_or(url, |(u, _)| u);
        let (client, connection) = config(url)?
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::Postgres(format!("cannot connect to the database: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut outbox = PgOutbox {
            client,
            owner: owner.to_string(),
            campaign: campaign.map(str::to_string),
            swept: Instant::now(),
        };
        let interrupted = outbox.sweep(true).await?;
        Ok((outbox, interrupted))
    }

    /// Messages left `sending` by a dead worker (and, with `own`, by this
    /// worker's name: an earlier process of it) become `unknown`.
    async fn sweep(&mut self, own: bool) -> Result<usize, StoreError> {
        self.swept = Instant::now();
        let n = self
            .client
            .execute(
                "UPDATE flowc_messages m SET status = 'unknown', detail = $3 \
                 WHERE m.status = 'sending' AND (m.claimed_by IS NULL OR (m.claimed_by = $1 AND $2) \
                   OR NOT EXISTS (SELECT 1 FROM flowc_workers w WHERE w.name = m.claimed_by \
                     AND w.heartbeat_at > now() - make_interval(secs => w.lease_seconds)))",
                &[&self.owner, &own, &INTERRUPTED],
            )
            .await?;
        Ok(n as usize)
    }
}

/// The campaigns whose messages go out: running or finished ones, the
/// outbox's own when it has one (`$1`).
const SENDABLE: &str = "m.campaign IN (SELECT c.id FROM flowc_campaigns c \
     WHERE c.state IN ('running', 'finished') AND ($1::TEXT IS NULL OR c.name = $1))";

impl MessageStore for PgOutbox {
    async fn due(
        &mut self,
        kinds: &[&str],
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Outgoing>, StoreError> {
        if self.swept.elapsed() >= SWEEP_EVERY {
            self.sweep(false).await?;
        }
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT m.id, m.contact, m.kind, m.recipient, m.subject, m.text, m.tries \
                     FROM flowc_messages m WHERE m.status = 'unsent' AND m.kind = ANY($2) \
                       AND (m.next_try_at IS NULL OR m.next_try_at <= $3) AND {SENDABLE} \
                     ORDER BY m.id LIMIT $4"
                ),
                &[&self.campaign, &kinds, &now, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Outgoing {
                id: r.get(0),
                contact: r.get::<_, i32>(1) as usize,
                kind: r.get(2),
                recipient: r.get(3),
                subject: r.get(4),
                text: r.get(5),
                tries: r.get::<_, i32>(6) as u32,
            })
            .collect())
    }

    async fn take(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = self
            .client
            .execute(
                "UPDATE flowc_messages SET status = 'sending', tries = tries + 1, claimed_by = $2 \
                 WHERE id = $1 AND status = 'unsent' AND (next_try_at IS NULL OR next_try_at <= $3)",
                &[&id, &self.owner, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn sent(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "UPDATE flowc_messages SET status = 'sent', sent_at = $2, detail = $3, next_try_at = NULL \
                 WHERE id = $1",
                &[&id, &at, &detail],
            )
            .await?;
        Ok(())
    }

    async fn failed(&mut self, id: i64, reason: &str) -> Result<(), StoreError> {
        self.client
            .execute(
                "UPDATE flowc_messages SET status = 'failed', detail = $2, next_try_at = NULL WHERE id = $1",
                &[&id, &reason],
            )
            .await?;
        Ok(())
    }

    async fn retry_at(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "UPDATE flowc_messages SET status = 'unsent', detail = $2, next_try_at = $3, claimed_by = NULL \
                 WHERE id = $1",
                &[&id, &reason, &at],
            )
            .await?;
        Ok(())
    }

    async fn unsent(&mut self, kinds: &[&str]) -> Result<usize, StoreError> {
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*) FROM flowc_messages m \
                     WHERE m.status = 'unsent' AND m.kind = ANY($2) AND {SENDABLE}"
                ),
                &[&self.campaign, &kinds],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as usize)
    }

    async fn next_retry(&mut self, kinds: &[&str]) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT min(m.next_try_at) FROM flowc_messages m \
                     WHERE m.status = 'unsent' AND m.kind = ANY($2) AND {SENDABLE}"
                ),
                &[&self.campaign, &kinds],
            )
            .await?;
        Ok(row.get(0))
    }
}
