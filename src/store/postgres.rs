//! A campaign in a PostgreSQL database (`--db postgres://…`): the same
//! records as the SQLite store, in tables shared by every campaign of the
//! database and keyed by campaign. States, endings and outcomes are
//! PostgreSQL enum types. The schema is versioned: each migration runs once,
//! forward only, in its own transaction, under an advisory lock so that
//! processes starting together do not race.
//!
//! Rows refer to their contact without a foreign key: the writer is the only
//! one to write them, in an order that keeps them whole, and a million
//! reference checks would double the cost of a batch.
//!
//! A campaign is named by the URL's fragment (`postgres://host/db#spring`),
//! else by its flow. While a process runs it, that process holds a session
//! advisory lock on it: a second one is refused, and a process that dies
//! loses the lock with its connection.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::ops::{fields_json, zones_text, Commits, Op, Ops, Replies, Task, Writer};
use super::{corrupt, time, Resumption, StoreError, StoredMessage};
use crate::contacts::Contact;
use crate::ir::{self, ArmId, Outcome, TransferOutcome};
use crate::record::{
    CallEnd, Campaign, CampaignState, ContactResult, End, Ending, History, Kind, Message,
    StoredAttempt,
};
use crate::runtime::journal::{Committed, ContactId, Journal};

/// The first key of every advisory lock flowc takes ("flow" in ASCII).
const LOCK_SPACE: i32 = 0x666c_6f77;
/// The second key of the lock held while migrating.
const MIGRATING: i32 = -1;

/// What turns a database of version N into N + 1; version 0 is a database
/// without flowc's tables.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: campaigns, contacts, attempts, ends, messages.
    "CREATE TYPE flowc_campaign_state AS ENUM ('running', 'paused', 'finished', 'cancelled');
     CREATE TYPE flowc_kind AS ENUM ('run', 'simulation');
     CREATE TYPE flowc_ending AS ENUM ('completed', 'failed', 'skipped');
     CREATE TYPE flowc_outcome AS ENUM ('answered', 'voicemail', 'busy', 'no_answer', 'rejected',
         'invalid_number', 'network_error', 'unknown');
     CREATE TABLE flowc_campaigns (
         id BIGSERIAL PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         flow TEXT NOT NULL,
         source_hash TEXT NOT NULL,
         format_version INTEGER NOT NULL,
         compiler_version TEXT NOT NULL,
         kind flowc_kind NOT NULL,
         ir TEXT NOT NULL,
         started_at TIMESTAMPTZ NOT NULL,
         state flowc_campaign_state NOT NULL DEFAULT 'running',
         updated_at TIMESTAMPTZ NOT NULL,
         finish TIMESTAMPTZ
     );
     CREATE TABLE flowc_contacts (
         campaign BIGINT NOT NULL REFERENCES flowc_campaigns(id),
         id INTEGER NOT NULL,
         line INTEGER NOT NULL,
         phone TEXT NOT NULL,
         written TEXT,
         zones TEXT NOT NULL,
         fields TEXT NOT NULL,
         arm INTEGER NOT NULL,
         opted_out BOOLEAN NOT NULL DEFAULT false,
         PRIMARY KEY (campaign, id),
         UNIQUE (campaign, phone)
     );
     CREATE TABLE flowc_attempts (
         campaign BIGINT NOT NULL,
         contact INTEGER NOT NULL,
         number INTEGER NOT NULL,
         step TEXT NOT NULL,
         started_at TIMESTAMPTZ NOT NULL,
         caller_id TEXT,
         ended_at TIMESTAMPTZ,
         outcome flowc_outcome,
         keys TEXT,
         transfers TEXT,
         sip_status INTEGER,
         sip_reason TEXT,
         PRIMARY KEY (campaign, contact, number)
     );
     CREATE TABLE flowc_ends (
         campaign BIGINT NOT NULL,
         contact INTEGER NOT NULL,
         state flowc_ending NOT NULL,
         reason TEXT,
         path TEXT NOT NULL,
         PRIMARY KEY (campaign, contact)
     );
     CREATE TABLE flowc_messages (
         id BIGSERIAL PRIMARY KEY,
         campaign BIGINT NOT NULL,
         contact INTEGER NOT NULL,
         attempt INTEGER NOT NULL,
         kind TEXT NOT NULL,
         text TEXT NOT NULL,
         recipient TEXT,
         status TEXT NOT NULL,
         subject TEXT
     );",
    // 1 → 2: workers lease parts of a campaign; each says it is alive. A
    // simulation keeps its seed, its model and how many parts it has.
    "-- A campaign's contacts in runs of ids [first, last), leased whole: a
     -- lease holds while its owner's heartbeat is younger than the owner's
     -- lease, so renewing is one row whatever the lease's size, and leasing
     -- never rewrites the contacts.
     CREATE TABLE flowc_parts (
         campaign BIGINT NOT NULL,
         first INTEGER NOT NULL,
         last INTEGER NOT NULL,
         owner TEXT,
         worked_by TEXT,                  -- the last worker to lease it
         done BOOLEAN NOT NULL DEFAULT false,
         PRIMARY KEY (campaign, first)
     );
     ALTER TABLE flowc_campaigns ADD COLUMN seed BIGINT, ADD COLUMN model TEXT,
         ADD COLUMN parts INTEGER NOT NULL DEFAULT 1,
         -- false while the process that begins the campaign adds its contacts
         ADD COLUMN contacts_in BOOLEAN NOT NULL DEFAULT true;
     CREATE TABLE flowc_workers (
         name TEXT PRIMARY KEY,
         heartbeat_at TIMESTAMPTZ NOT NULL,
         lease_seconds INTEGER NOT NULL   -- alive while its heartbeat is younger
     );
     -- The lines (concurrent calls) each worker holds of a campaign's
     -- concurrency; the live workers' sum never exceeds it.
     CREATE TABLE flowc_lines (
         campaign BIGINT NOT NULL,
         worker TEXT NOT NULL,
         lines INTEGER NOT NULL,
         updated_at TIMESTAMPTZ NOT NULL,
         PRIMARY KEY (campaign, worker)
     );",
    // 2 → 3: the outbox of a campaign's workers: a message's state is an
    // enum; its tries, next try, sending time, the service's words (or the
    // reason it failed), and the worker that took it.
    "CREATE TYPE flowc_message_state AS ENUM ('unsent', 'sending', 'sent', 'failed', 'unknown', 'open');
     ALTER TABLE flowc_messages
         ALTER COLUMN status TYPE flowc_message_state USING status::flowc_message_state,
         ADD COLUMN tries INTEGER NOT NULL DEFAULT 0,
         ADD COLUMN next_try_at TIMESTAMPTZ,
         ADD COLUMN sent_at TIMESTAMPTZ,
         ADD COLUMN detail TEXT,
         ADD COLUMN claimed_by TEXT;
     -- The outboxes look for unsent messages, and for those a dead worker left sending.
     CREATE INDEX flowc_messages_waiting ON flowc_messages (id) WHERE status IN ('unsent', 'sending');",
    // 3 → 4: the numbers never to dial that the campaign began with
    // (`--dnc`), for every worker, not only the process that read the file.
    "CREATE TABLE flowc_do_not_call (
         campaign BIGINT NOT NULL,
         phone TEXT NOT NULL,
         PRIMARY KEY (campaign, phone)
     );",
    // 4 → 5: how often each contact entered the step of `pause campaign
    // when`, so that each worker counts the whole campaign; and the audio
    // of the flow's `play` steps, for workers that dial through SIP.
    "CREATE TABLE flowc_reached (
         campaign BIGINT NOT NULL,
         contact INTEGER NOT NULL,
         times INTEGER NOT NULL,
         PRIMARY KEY (campaign, contact)
     );
     CREATE TABLE flowc_prompts (
         campaign BIGINT NOT NULL,
         name TEXT NOT NULL,
         samples BYTEA NOT NULL,   -- 8 kHz, 16-bit little-endian
         PRIMARY KEY (campaign, name)
     );",
];

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        // The server's own words, when it said something.
        StoreError::Postgres(match e.as_db_error() {
            Some(db) => match db.detail() {
                Some(detail) => format!("{}: {} ({detail})", db.severity(), db.message()),
                None => format!("{}: {}", db.severity(), db.message()),
            },
            None => e.to_string(),
        })
    }
}

/// Whether `--db` names a PostgreSQL database rather than a file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

pub struct PgStore {
    /// The connection string, without the campaign's name.
    url: String,
    /// The campaign's name as the URL gave it.
    name: Option<String>,
    client: Client,
    /// The campaign's id, once begun or found.
    campaign: Option<i64>,
    ops: Ops,
    writer: Option<Writer>,
    /// The programs of running campaigns read so far, by id, with the MD5
    /// of their stored text.
    programs: std::collections::HashMap<i64, (String, std::sync::Arc<ir::Program>)>,
}

impl PgStore {
    /// Connects to the database of `url` and brings its schema to this
    /// version. A database of a later version is refused, untouched.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let (url, name) = match url.split_once('#') {
            Some((url, name)) if !name.is_empty() => (url.to_string(), Some(name.to_string())),
            Some((url, _)) => (url.to_string(), None),
            None => (url.to_string(), None),
        };
        let mut client = connect(&url)?;
        migrate(&mut client)?;
        Ok(PgStore {
            url,
            name,
            client,
            campaign: None,
            ops: Ops::default(),
            writer: None,
            programs: std::collections::HashMap::new(),
        })
    }

    /// The schema version of the database.
    pub fn version(&mut self) -> Result<usize, StoreError> {
        version(&mut self.client)
    }

    /// The campaign of `flow`: the URL's name, else the flow's; found only
    /// when it exists.
    fn find(&mut self, flow: Option<&str>) -> Result<Option<i64>, StoreError> {
        let name = match (&self.name, flow) {
            (Some(n), _) => n.clone(),
            (None, Some(f)) => f.to_string(),
            (None, None) => {
                // A report of the database's only campaign.
                let rows = self
                    .client
                    .query("SELECT id, name FROM flowc_campaigns ORDER BY id", &[])?;
                return match rows.as_slice() {
                    [] => Err(StoreError::Corrupt("it holds no campaign".into())),
                    [one] => Ok(Some(one.get(0))),
                    more => Err(StoreError::Corrupt(format!(
                        "it holds {} campaigns ({}): name one after a `#` at the end of the URL",
                        more.len(),
                        more.iter()
                            .map(|r| r.get::<_, String>(1))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                };
            }
        };
        Ok(self
            .client
            .query_opt("SELECT id FROM flowc_campaigns WHERE name = $1", &[&name])?
            .map(|r| r.get(0)))
    }

    fn campaign(&self) -> Result<i64, StoreError> {
        self.campaign
            .ok_or_else(|| StoreError::Corrupt("no campaign was begun".into()))
    }

    /// Begins or resumes the campaign of `program`, with the rules of the
    /// SQLite store's `begin`.
    pub fn begin(
        &mut self,
        program: &ir::Program,
        started_at: DateTime<Utc>,
        migrate: bool,
        kind: Kind,
    ) -> Result<Campaign, StoreError> {
        let flow = program.flow.as_ref().map_or("", |f| f.name.as_str());
        let name = self.name.clone().unwrap_or_else(|| flow.to_string());
        let ir = serde_json::to_string(program).expect("the IR always serialises");
        let now = Utc::now();
        // Made when missing (a concurrent maker wins, and this one finds it).
        let fresh = !self.client.query(
            "INSERT INTO flowc_campaigns (name, flow, source_hash, format_version, compiler_version, kind, ir, started_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6::text::flowc_kind, $7, $8, $9) ON CONFLICT (name) DO NOTHING RETURNING id",
            &[
                &name,
                &flow,
                &program.source_hash,
                &(program.format_version as i32),
                &program.compiler_version,
                &kind.name(),
                &ir,
                &started_at,
                &now,
            ],
        )?
        .is_empty();
        let row = self.client.query_one(
            "SELECT id, source_hash, started_at, state::text, format_version, kind::text \
             FROM flowc_campaigns WHERE name = $1",
            &[&name],
        )?;
        let id: i64 = row.get(0);
        let locked: bool = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LOCK_SPACE, &(id as i32)],
            )?
            .get(0);
        if !locked {
            return Err(StoreError::Busy(format!(
                "another process runs the campaign \"{name}\" in this database: pause it first, or wait for it to end"
            )));
        }
        self.campaign = Some(id);
        // Workers keep off until the contacts are in (`open_to_workers`).
        self.client.execute(
            "UPDATE flowc_campaigns SET contacts_in = false WHERE id = $1",
            &[&id],
        )?;
        let (hash, stored_start, state, format, stored_kind): (
            String,
            DateTime<Utc>,
            String,
            i32,
            String,
        ) = (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        let state = CampaignState::parse(&state)
            .ok_or_else(|| corrupt(format!("the campaign is \"{state}\"")))?;
        let mut finished = false;
        let mut restarted = false;
        let resumption = match fresh {
            true => None,
            false => Some(super::resumption(
                &hash,
                state,
                i64::from(format),
                &stored_kind,
                program,
                migrate,
                kind,
            )?),
        };
        let (started_at, migrated) = match resumption {
            None => (started_at, false),
            Some(Resumption::Restart) => {
                let mut tx = self.client.transaction()?;
                for table in [
                    "flowc_do_not_call",
                    "flowc_messages",
                    "flowc_ends",
                    "flowc_attempts",
                    "flowc_contacts",
                    "flowc_parts",
                    "flowc_lines",
                ] {
                    tx.execute(&format!("DELETE FROM {table} WHERE campaign = $1"), &[&id])?;
                }
                tx.execute(
                    "UPDATE flowc_campaigns SET flow = $2, source_hash = $3, ir = $4, compiler_version = $5, \
                     started_at = $6, state = 'running', updated_at = $7, finish = NULL WHERE id = $1",
                    &[&id, &flow, &program.source_hash, &ir, &program.compiler_version, &started_at, &now],
                )?;
                tx.commit()?;
                restarted = true;
                (started_at, false)
            }
            Some(Resumption::Resume {
                finished: was,
                migrated,
            }) => {
                finished = was;
                if migrated {
                    self.client.execute(
                        "UPDATE flowc_campaigns SET flow = $2, source_hash = $3, ir = $4, compiler_version = $5 WHERE id = $1",
                        &[&id, &flow, &program.source_hash, &ir, &program.compiler_version],
                    )?;
                }
                self.client.execute(
                    "UPDATE flowc_campaigns SET state = 'running', updated_at = $2 WHERE id = $1",
                    &[&id, &now],
                )?;
                (stored_start, migrated)
            }
        };
        let (contacts, history) = self.load()?;
        let finish: Option<DateTime<Utc>> = self
            .client
            .query_one("SELECT finish FROM flowc_campaigns WHERE id = $1", &[&id])?
            .get(0);
        Ok(Campaign {
            started_at,
            contacts,
            history,
            migrated,
            finished,
            restarted,
            finish,
        })
    }

    /// The campaign's contacts and their histories, in id order.
    fn load(&mut self) -> Result<(Vec<Contact>, Vec<History>), StoreError> {
        let id = self.campaign()?;
        self.read(id, None)
    }

    /// Contacts of campaign `id` (all, or those with ids in `part`) with
    /// their ends and attempts, in id order.
    fn read(
        &mut self,
        id: i64,
        part: Option<(u32, u32)>,
    ) -> Result<(Vec<Contact>, Vec<History>), StoreError> {
        let (first, last) = part.map_or((0, i32::MAX), |(f, l)| (f as i32, l as i32));
        let filter = "AND c.id >= $2 AND c.id < $3";
        let leased_by = part;
        let mut contacts = Vec::new();
        let mut history = Vec::new();
        let mut place = std::collections::HashMap::new();
        // Streamed: a million rows are read as they come, not held first.
        let params: [&(dyn ToSql + Sync); 3] = [&id, &first, &last];
        let mut rows = self.client.query_raw(
            &format!(
                "SELECT c.id, c.line, c.phone, c.zones, c.fields, c.arm, e.state::text, e.reason, e.path, c.opted_out, c.written \
                 FROM flowc_contacts c LEFT JOIN flowc_ends e ON e.campaign = c.campaign AND e.contact = c.id \
                 WHERE c.campaign = $1 {filter} ORDER BY c.id"
            ),
            params,
        )?;
        while let Some(r) = rows.next()? {
            let at: i32 = r.get(0);
            if leased_by.is_none() && at as usize != contacts.len() {
                return Err(corrupt(format!(
                    "contact ids skip from {} to {at}",
                    contacts.len()
                )));
            }
            place.insert(at, contacts.len());
            let zones: String = r.get(3);
            let fields: String = r.get(4);
            contacts.push(Contact {
                line: r.get::<_, i32>(1) as u32,
                phone: r.get::<_, String>(2).into(),
                zones: zones
                    .split(' ')
                    .map(|z| z.parse().map_err(corrupt))
                    .collect::<Result<_, _>>()?,
                fields: serde_json::from_str(&fields).map_err(corrupt)?,
                written: r.get::<_, Option<String>>(10).map(Box::from),
            });
            let end = match r.get::<_, Option<String>>(6) {
                None => None,
                Some(name) => {
                    let ending = Ending::parse(&name)
                        .ok_or_else(|| corrupt(format!("a contact ended \"{name}\"")))?;
                    Some(End::new(
                        ending,
                        r.get::<_, Option<String>>(7).unwrap_or_default(),
                    ))
                }
            };
            let path: Option<String> = r.get(8);
            history.push(History {
                arm: r.get::<_, i32>(5) as usize,
                end,
                path: path
                    .map(|p| serde_json::from_str(&p).map_err(corrupt))
                    .transpose()?
                    .unwrap_or_default(),
                attempts: Vec::new(),
                opted_out: r.get(9),
            });
        }
        drop(rows);
        let mut rows = self.client.query_raw(
            &format!(
                "SELECT a.contact, a.number, a.step, a.started_at, a.caller_id, a.ended_at, a.outcome::text, a.keys, a.transfers, a.sip_status, a.sip_reason \
                 FROM flowc_attempts a JOIN flowc_contacts c ON c.campaign = a.campaign AND c.id = a.contact \
                 WHERE a.campaign = $1 {filter} ORDER BY a.contact, a.number"
            ),
            params,
        )?;
        while let Some(r) = rows.next()? {
            let contact: i32 = r.get(0);
            let Some(h) = place.get(&contact).and_then(|&k| history.get_mut(k)) else {
                return Err(corrupt(format!(
                    "an attempt of contact {contact}, which is not there"
                )));
            };
            let keys: Option<String> = r.get(7);
            let transfers: Option<String> = r.get(8);
            let transfers: Vec<String> = transfers
                .map(|t| serde_json::from_str(&t).map_err(corrupt))
                .transpose()?
                .unwrap_or_default();
            let sip_status: Option<i32> = r.get(9);
            let sip_reason: Option<String> = r.get(10);
            h.attempts.push(StoredAttempt {
                number: r.get::<_, i32>(1) as u32,
                step: r.get(2),
                started_at: r.get(3),
                caller_id: r.get(4),
                ended_at: r.get(5),
                outcome: r
                    .get::<_, Option<String>>(6)
                    .map(|o| {
                        Outcome::from_name(&o)
                            .ok_or_else(|| corrupt(format!("the outcome \"{o}\"")))
                    })
                    .transpose()?,
                keys: keys
                    .map(|k| serde_json::from_str(&k).map_err(corrupt))
                    .transpose()?
                    .unwrap_or_default(),
                transfers: transfers
                    .iter()
                    .map(|t| {
                        TransferOutcome::from_name(t)
                            .ok_or_else(|| corrupt(format!("the transfer outcome \"{t}\"")))
                    })
                    .collect::<Result<_, _>>()?,
                sip: sip_status.map(|s| (s as u16, sip_reason.unwrap_or_default())),
            });
        }
        Ok((contacts, history))
    }

    /// The stored program of the campaign the URL names (or the only one).
    pub fn program(&mut self) -> Result<ir::Program, StoreError> {
        let id = self.named()?;
        let ir: String = self
            .client
            .query_one("SELECT ir FROM flowc_campaigns WHERE id = $1", &[&id])?
            .get(0);
        serde_json::from_str(&ir).map_err(corrupt)
    }

    /// Every contact with its attempts, as a report reads them.
    pub fn results(
        &mut self,
        flow: &ir::Flow,
    ) -> Result<(Vec<Contact>, Vec<ContactResult>), StoreError> {
        if self.campaign.is_none() {
            self.program()?;
        }
        let (contacts, history) = self.load()?;
        let results = contacts
            .iter()
            .zip(&history)
            .map(|(c, h)| h.result(c, flow))
            .collect();
        Ok((contacts, results))
    }

    /// Every message and flag, with the contact it concerns.
    pub fn messages(&mut self) -> Result<Vec<StoredMessage>, StoreError> {
        let id = self.campaign()?;
        let rows = self.client.query(
            "SELECT contact, attempt, kind, text, recipient, status::text FROM flowc_messages \
             WHERE campaign = $1 ORDER BY contact, id",
            &[&id],
        )?;
        Ok(rows
            .iter()
            .map(|r| StoredMessage {
                contact: r.get::<_, i32>(0) as usize,
                attempt: r.get::<_, i32>(1) as u32,
                kind: r.get(2),
                text: r.get(3),
                recipient: r.get(4),
                status: r.get(5),
            })
            .collect())
    }

    /// The campaign's state.
    pub fn state(&mut self) -> Result<CampaignState, StoreError> {
        let id = self.campaign()?;
        let name: String = self
            .client
            .query_one(
                "SELECT state::text FROM flowc_campaigns WHERE id = $1",
                &[&id],
            )?
            .get(0);
        CampaignState::parse(&name).ok_or_else(|| corrupt(format!("the campaign is \"{name}\"")))
    }

    /// Pauses a running campaign or resumes a paused one: every worker
    /// sees it within a second (calls under way finish). Returns the state
    /// it was in.
    pub fn pause_or_resume(&mut self, pause: bool) -> Result<CampaignState, StoreError> {
        let id = self.named()?;
        let (from, to) = if pause {
            ("running", "paused")
        } else {
            ("paused", "running")
        };
        let was = self.state()?;
        self.client.execute(
            "UPDATE flowc_campaigns SET state = $3::text::flowc_campaign_state, updated_at = now() \
             WHERE id = $1 AND state = $2::text::flowc_campaign_state",
            &[&id, &from, &to],
        )?;
        Ok(was)
    }

    /// Cancels the campaign: every contact that has not ended ends
    /// `skipped "cancelled"` (its path the steps of its attempts) and the
    /// campaign is `cancelled`, in one transaction. Workers stop dialling
    /// it within a second; calls under way finish. A contact a worker ends
    /// while the cancel is made keeps the worker's end (the cancel's
    /// snapshot does not see it: without `ON CONFLICT` the cancel failed on
    /// the unique key). Returns the contacts ended.
    pub fn cancel(&mut self) -> Result<u64, StoreError> {
        let id = self.named()?;
        let mut tx = self.client.transaction()?;
        let ended = tx.execute(
            "INSERT INTO flowc_ends (campaign, contact, state, reason, path) \
             SELECT c.campaign, c.id, 'skipped', 'cancelled', \
                    coalesce((SELECT json_agg(a.step ORDER BY a.number)::text FROM flowc_attempts a \
                              WHERE a.campaign = c.campaign AND a.contact = c.id), '[]') \
             FROM flowc_contacts c WHERE c.campaign = $1 \
               AND NOT EXISTS (SELECT 1 FROM flowc_ends e WHERE e.campaign = c.campaign AND e.contact = c.id) \
             ON CONFLICT (campaign, contact) DO NOTHING",
            &[&id],
        )?;
        tx.execute(
            "UPDATE flowc_campaigns SET state = 'cancelled', updated_at = now() WHERE id = $1",
            &[&id],
        )?;
        tx.commit()?;
        Ok(ended)
    }

    /// The campaign's messages of `kind` still unsent.
    pub fn unsent(&mut self, kind: &str) -> Result<usize, StoreError> {
        let id = self.named()?;
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM flowc_messages WHERE campaign = $1 AND kind = $2 AND status = 'unsent'",
                &[&id, &kind],
            )?
            .get(0);
        Ok(n as usize)
    }

    /// The campaign the URL names (or the only one), found.
    fn named(&mut self) -> Result<i64, StoreError> {
        match self.campaign {
            Some(id) => Ok(id),
            None => {
                let id = self
                    .find(None)?
                    .ok_or_else(|| StoreError::Corrupt("it holds no such campaign".into()))?;
                self.campaign = Some(id);
                Ok(id)
            }
        }
    }

    /// The counters: total, completed, failed, skipped, pending, in progress.
    pub fn counters(&mut self) -> Result<[u64; 6], StoreError> {
        let id = self.campaign()?;
        let r = self.client.query_one(
            "SELECT \
               (SELECT count(*) FROM flowc_contacts WHERE campaign = $1), \
               (SELECT count(*) FROM flowc_ends WHERE campaign = $1 AND state = 'completed'), \
               (SELECT count(*) FROM flowc_ends WHERE campaign = $1 AND state = 'failed'), \
               (SELECT count(*) FROM flowc_ends WHERE campaign = $1 AND state = 'skipped'), \
               (SELECT count(DISTINCT a.contact) FROM flowc_attempts a WHERE a.campaign = $1 AND a.ended_at IS NULL \
                  AND NOT EXISTS (SELECT 1 FROM flowc_ends e WHERE e.campaign = $1 AND e.contact = a.contact))",
            &[&id],
        )?;
        let n = |k: usize| r.get::<_, i64>(k) as u64;
        let (total, completed, failed, skipped, in_progress) = (n(0), n(1), n(2), n(3), n(4));
        Ok([
            total,
            completed,
            failed,
            skipped,
            total - completed - failed - skipped - in_progress,
            in_progress,
        ])
    }

    fn writer(&mut self) -> Result<&Writer, StoreError> {
        if self.writer.is_none() {
            let campaign = self.campaign()?;
            let url = self.url.clone();
            // Connected on the writer's own thread: the blocking client
            // cannot start inside the engine's runtime.
            let mut client: Option<Client> = None;
            // Each batch is its own transaction (`write_ops` commits it).
            self.writer = Some(Writer::start(Commits::EachBatch, move |task| {
                let Task::Write(ops) = task else {
                    return Ok(());
                };
                let client = match &mut client {
                    Some(c) => c,
                    None => client.insert(writer_connection(&url).map_err(|e| e.to_string())?),
                };
                // The server's own words, not "db error".
                write_ops(client, campaign, ops).map_err(|e| StoreError::from(e).to_string())
            })?);
        }
        Ok(self.writer.as_ref().expect("just started"))
    }
}

/// The writer's connection, with the table its ends of attempts go through.
fn writer_connection(url: &str) -> Result<Client, StoreError> {
    let mut client = connect(url)?;
    client.batch_execute(
        "CREATE TEMP TABLE flowc_ended (contact INTEGER, number INTEGER, ended_at TIMESTAMPTZ, \
         outcome flowc_outcome, keys TEXT, transfers TEXT, sip_status INTEGER, sip_reason TEXT) \
         ON COMMIT DELETE ROWS;
         CREATE TEMP TABLE flowc_ended_contacts (campaign BIGINT, contact INTEGER, state flowc_ending, \
         reason TEXT, path TEXT) ON COMMIT DELETE ROWS",
    )?;
    Ok(client)
}

/// The connection settings of `url`; a URL without a password takes
/// `PGPASSWORD`'s, as libpq does, so that none need be written on a
/// command line.
pub(super) fn config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Postgres(format!("cannot read the URL: {e}")))?;
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
    }
    Ok(config)
}

fn connect(url: &str) -> Result<Client, StoreError> {
    postgres::Config::from(config(url)?)
        .connect(NoTls)
        .map_err(|e| StoreError::Postgres(format!("cannot connect to the database: {e}")))
}

fn version(client: &mut Client) -> Result<usize, StoreError> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS flowc_schema (version INTEGER NOT NULL)")?;
    let v: Option<i32> = client
        .query_opt("SELECT max(version) FROM flowc_schema", &[])?
        .and_then(|r| r.get(0));
    Ok(v.unwrap_or(0) as usize)
}

/// Brings the schema to this version, one migration a transaction, under
/// a lock that makes processes starting together wait for each other.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    migrate_to(client, MIGRATIONS.len())
}

/// The versions of the schema this flowc knows (the latest is its own).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Brings the database of `url` to `version` of the schema and no further:
/// how the tests make a database as an earlier flowc left it.
#[doc(hidden)]
pub fn migrate_url_to(url: &str, version: usize) -> Result<(), StoreError> {
    migrate_to(&mut connect(url)?, version)
}

fn migrate_to(client: &mut Client, version: usize) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_SPACE, &MIGRATING],
    )?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS flowc_schema (version INTEGER NOT NULL)")?;
    let at: Option<i32> = tx
        .query_one("SELECT max(version) FROM flowc_schema", &[])?
        .get(0);
    let at = at.unwrap_or(0) as usize;
    if at > MIGRATIONS.len() {
        return Err(StoreError::OtherVersion(format!(
            "the database holds flowc tables of version {at}, and this flowc knows version {} at most: \
             use the flowc that made them, or another database",
            MIGRATIONS.len()
        )));
    }
    for (k, step) in MIGRATIONS.iter().enumerate().take(version).skip(at) {
        tx.batch_execute(step)?;
        tx.execute(
            "INSERT INTO flowc_schema (version) VALUES ($1)",
            &[&(k as i32 + 1)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A field of a COPY row in CSV form: `\N` for null, else quoted.
fn field(row: &mut String, value: Option<&str>) {
    if !row.is_empty() && !row.ends_with('\n') {
        row.push(',');
    }
    match value {
        None => row.push_str("\\N"),
        Some(v) => {
            row.push('"');
            row.push_str(&v.replace('"', "\"\""));
            row.push('"');
        }
    }
}

fn copy_in(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    rows: &str,
) -> Result<(), postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut w = tx.copy_in(&format!("COPY {table} FROM STDIN (FORMAT csv, NULL '\\N')"))?;
    w.write_all(rows.as_bytes())
        .expect("a COPY takes what it is given; errors come at its end");
    w.finish()?;
    Ok(())
}

/// Commits a batch: each kind of row copied in at once, in the order the
/// foreign keys need (contacts, attempts, their ends, contacts' ends).
fn write_ops(client: &mut Client, campaign: i64, ops: Vec<Op>) -> Result<(), postgres::Error> {
    let c = campaign.to_string();
    let (mut contacts, mut attempts, mut ended, mut ends, mut messages) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let mut opted_out: Vec<i32> = Vec::new();
    let (mut reached_ids, mut reached_times): (Vec<i32>, Vec<i32>) = (Vec::new(), Vec::new());
    for op in ops {
        match op {
            Op::Contacts(new) => {
                for (id, n, arm) in new.iter() {
                    let row = &mut contacts;
                    field(row, Some(&c));
                    field(row, Some(&id.to_string()));
                    field(row, Some(&n.line.to_string()));
                    field(row, Some(&n.phone));
                    field(row, n.written.as_deref());
                    field(row, Some(&zones_text(&n.zones)));
                    field(row, Some(&fields_json(&n.fields)));
                    field(row, Some(&arm.to_string()));
                    row.push('\n');
                }
            }
            Op::Started(a) => {
                let (keys, transfers) = Replies::lists(&a.replies);
                let sip = Replies::sip(&a.replies);
                let row = &mut attempts;
                field(row, Some(&c));
                field(row, Some(&a.contact.to_string()));
                field(row, Some(&a.number.to_string()));
                field(row, Some(&a.step));
                field(row, Some(&time(a.started_at)));
                field(row, Replies::caller_id(&a.replies));
                field(row, a.ended_at.map(time).as_deref());
                field(row, a.outcome.map(|o| o.name()));
                field(row, keys.as_deref());
                field(row, transfers.as_deref());
                field(row, sip.map(|s| s.0.to_string()).as_deref());
                field(row, sip.map(|s| s.1.as_str()));
                row.push('\n');
            }
            Op::Ended {
                contact,
                number,
                ended_at,
                outcome,
                replies,
            } => {
                let (keys, transfers) = Replies::lists(&replies);
                let sip = Replies::sip(&replies);
                let row = &mut ended;
                field(row, Some(&contact.to_string()));
                field(row, Some(&number.to_string()));
                field(row, Some(&time(ended_at)));
                field(row, Some(outcome.name()));
                field(row, keys.as_deref());
                field(row, transfers.as_deref());
                field(row, sip.map(|s| s.0.to_string()).as_deref());
                field(row, sip.map(|s| s.1.as_str()));
                row.push('\n');
            }
            Op::ContactEnded {
                id,
                state,
                reason,
                path,
            } => {
                let row = &mut ends;
                field(row, Some(&c));
                field(row, Some(&id.to_string()));
                field(row, Some(state));
                field(row, Some(&reason));
                field(row, Some(&path));
                row.push('\n');
            }
            Op::OptedOut(id) => opted_out.push(id as i32),
            Op::Reached { contact, times } => {
                reached_ids.push(contact as i32);
                reached_times.push(times as i32);
            }
            Op::Message(m) => {
                let row = &mut messages;
                field(row, Some(&c));
                field(row, Some(&m.contact.to_string()));
                field(row, Some(&m.attempt.to_string()));
                field(row, Some(m.kind));
                field(row, Some(&m.text));
                field(row, m.recipient.as_deref());
                field(row, Some(m.status));
                field(row, m.subject.as_deref());
                row.push('\n');
            }
        }
    }
    let mut tx = client.transaction()?;
    copy_in(
        &mut tx,
        "flowc_contacts (campaign, id, line, phone, written, zones, fields, arm)",
        &contacts,
    )?;
    copy_in(
        &mut tx,
        "flowc_attempts (campaign, contact, number, step, started_at, caller_id, ended_at, outcome, keys, transfers, sip_status, sip_reason)",
        &attempts,
    )?;
    if !ended.is_empty() {
        copy_in(&mut tx, "flowc_ended", &ended)?;
        tx.execute(
            "UPDATE flowc_attempts a SET ended_at = e.ended_at, outcome = e.outcome, keys = e.keys, \
             transfers = e.transfers, sip_status = e.sip_status, sip_reason = e.sip_reason \
             FROM flowc_ended e WHERE a.campaign = $1 AND a.contact = e.contact AND a.number = e.number",
            &[&campaign],
        )?;
    }
    if !ends.is_empty() {
        // A contact a cancel ended meanwhile keeps that end.
        copy_in(&mut tx, "flowc_ended_contacts", &ends)?;
        tx.execute(
            "INSERT INTO flowc_ends (campaign, contact, state, reason, path) \
             SELECT campaign, contact, state, reason, path FROM flowc_ended_contacts \
             ON CONFLICT (campaign, contact) DO NOTHING",
            &[],
        )?;
    }
    if !opted_out.is_empty() {
        tx.execute(
            "UPDATE flowc_contacts SET opted_out = true WHERE campaign = $1 AND id = ANY($2)",
            &[&campaign, &opted_out],
        )?;
    }
    if !reached_ids.is_empty() {
        // A replay counts again what a worker that stopped had counted:
        // a contact's count only grows.
        tx.execute(
            "INSERT INTO flowc_reached (campaign, contact, times) \
             SELECT $1, c, t FROM unnest($2::int[], $3::int[]) AS r(c, t) \
             ON CONFLICT (campaign, contact) DO UPDATE SET times = greatest(flowc_reached.times, excluded.times)",
            &[&campaign, &reached_ids, &reached_times],
        )?;
    }
    copy_in(
        &mut tx,
        "flowc_messages (campaign, contact, attempt, kind, text, recipient, status, subject)",
        &messages,
    )?;
    tx.commit()
}

impl super::Reader for PgStore {
    fn program(&mut self) -> Result<ir::Program, StoreError> {
        PgStore::program(self)
    }

    fn results(
        &mut self,
        flow: &ir::Flow,
    ) -> Result<(Vec<Contact>, Vec<ContactResult>), StoreError> {
        PgStore::results(self, flow)
    }

    fn messages(&mut self) -> Result<Vec<StoredMessage>, StoreError> {
        PgStore::messages(self)
    }

    fn overview(&mut self) -> Result<super::Overview, StoreError> {
        PgStore::overview(self)
    }

    fn outcomes(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        PgStore::outcomes(self)
    }

    fn calls(
        &mut self,
        contact: Option<&str>,
        outcome: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<super::CallRow>), StoreError> {
        PgStore::calls(self, contact, outcome, offset, limit)
    }
}

impl Journal for PgStore {
    fn begin(
        &mut self,
        program: &ir::Program,
        started_at: DateTime<Utc>,
        migrate: bool,
        kind: Kind,
    ) -> Result<Campaign, StoreError> {
        PgStore::begin(self, program, started_at, migrate, kind)
    }

    fn contact_added(&mut self, id: ContactId, contact: &Contact, arm: ArmId) {
        self.ops.contact(id.index(), contact, arm, None);
    }

    fn attempt_started(&mut self, id: ContactId, attempt: StoredAttempt) {
        self.ops.started(id.index(), attempt);
    }

    fn attempt_ended(&mut self, id: ContactId, number: u32, end: CallEnd) {
        self.ops.ended(id.index(), number, end);
    }

    fn contact_ended(&mut self, id: ContactId, ending: Ending, reason: &str, path: &[&str]) {
        self.ops.contact_ended(id.index(), ending, reason, path);
    }

    fn opted_out(&mut self, id: ContactId) {
        self.ops.push(Op::OptedOut(id.index()));
    }

    fn reached(&mut self, id: ContactId, times: u32) {
        self.ops.push(Op::Reached {
            contact: id.index(),
            times,
        });
    }

    fn message(&mut self, id: ContactId, message: &Message) {
        self.ops.message(id.index(), message);
    }

    fn pending_writes(&self) -> usize {
        self.ops.len()
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let ops = self.ops.take();
        self.writer()?.send(ops)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Journal::flush(self)?;
        match self.writer.as_ref() {
            Some(w) => w.sync(),
            None => Ok(()),
        }
    }

    fn sync_later(&mut self) -> Result<Committed, StoreError> {
        Journal::flush(self)?;
        match self.writer.as_ref() {
            Some(w) => w.committed(),
            None => Ok(Committed::now()),
        }
    }

    fn set_state(&mut self, state: CampaignState, finish: DateTime<Utc>) -> Result<(), StoreError> {
        Journal::sync(self)?;
        let id = self.campaign()?;
        self.client.execute(
            "UPDATE flowc_campaigns SET state = $2::text::flowc_campaign_state, updated_at = $3, \
             finish = greatest(coalesce(finish, $4), $4) WHERE id = $1",
            &[&id, &state.name(), &Utc::now(), &finish],
        )?;
        self.client.execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&LOCK_SPACE, &(id as i32)],
        )?;
        Ok(())
    }
}

/// A running campaign a worker may join.
#[derive(Clone, Debug)]
pub struct Running {
    pub id: i64,
    pub name: String,
    pub program: std::sync::Arc<ir::Program>,
    pub started_at: DateTime<Utc>,
    /// A simulation's seed, model (TOML; none: the built-in one) and the
    /// parts workers split it into; `None` for a real run.
    pub simulation: Option<Simulation>,
}

/// How a simulation in the database is to be simulated, whoever does it.
#[derive(Clone, Debug, PartialEq)]
pub struct Simulation {
    pub seed: u64,
    pub model: Option<String>,
    pub parts: u32,
}

/// Parts of a campaign a worker leased (their first ids; none: nothing to
/// lease now), their contacts' ids in the store, and what they did.
pub struct Lease {
    pub parts: Vec<u32>,
    pub ids: Vec<u32>,
    pub contacts: Vec<Contact>,
    pub history: Vec<History>,
}

impl PgStore {
    /// Attaches to a running campaign (a worker: no lock, no begin).
    pub fn join(&mut self, campaign: i64) {
        self.campaign = Some(campaign);
        self.writer = None;
    }

    /// The numbers of the campaign's contacts who opted out, but for those
    /// already on its do-not-call list (the `--dnc` file it was run with).
    pub fn opted_out_numbers(&mut self) -> Result<Vec<String>, StoreError> {
        let id = self.named()?;
        let rows = self.client.query(
            "SELECT c.phone FROM flowc_contacts c WHERE c.campaign = $1 AND c.opted_out \
               AND NOT EXISTS (SELECT 1 FROM flowc_do_not_call d \
                               WHERE d.campaign = $1 AND d.phone = c.phone) \
             ORDER BY c.id",
            &[&id],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The campaigns workers wait for: paused (`true`), or being begun (a
    /// process is adding their contacts).
    pub fn waiting(&mut self) -> Result<Vec<(String, bool)>, StoreError> {
        let rows = self.client.query(
            "SELECT name, state = 'paused' FROM flowc_campaigns \
             WHERE state = 'paused' OR (state = 'running' AND NOT contacts_in) ORDER BY id",
            &[],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The campaigns running now. Their programs are read and parsed once
    /// (again only when the stored program changed, by a resume with
    /// `--migrate`): an idle worker asks five times a second.
    pub fn running(&mut self) -> Result<Vec<Running>, StoreError> {
        let rows = self.client.query(
            "SELECT id, name, md5(ir), started_at, kind::text, seed, model, parts \
             FROM flowc_campaigns WHERE state = 'running' AND contacts_in ORDER BY id",
            &[],
        )?;
        for r in &rows {
            let (id, hash): (i64, &str) = (r.get(0), r.get(2));
            if self.programs.get(&id).is_none_or(|(h, _)| h != hash) {
                let ir: String = self
                    .client
                    .query_one("SELECT ir FROM flowc_campaigns WHERE id = $1", &[&id])?
                    .get(0);
                let program = serde_json::from_str(&ir).map_err(corrupt)?;
                self.programs
                    .insert(id, (hash.to_string(), std::sync::Arc::new(program)));
            }
        }
        rows.iter()
            .map(|r| {
                Ok(Running {
                    id: r.get(0),
                    name: r.get(1),
                    program: self.programs[&r.get::<_, i64>(0)].1.clone(),
                    started_at: r.get(3),
                    simulation: (r.get::<_, &str>(4) == "simulation").then(|| Simulation {
                        seed: r.get::<_, Option<i64>>(5).unwrap_or(1) as u64,
                        model: r.get(6),
                        parts: r.get::<_, i32>(7).max(1) as u32,
                    }),
                })
            })
            .collect()
    }

    /// The campaign of `flow` (or the URL's) holds every contact it will:
    /// its contacts not yet in a part are cut into parts (a simulation's
    /// into its number of parts; a run's into parts of a 32nd of its
    /// contacts, 50 to 1,000 each), and workers may join it.
    pub fn open_to_workers(
        &mut self,
        flow: &str,
        simulation: Option<&Simulation>,
    ) -> Result<(), StoreError> {
        let id = self
            .find(Some(flow))?
            .ok_or_else(|| StoreError::Corrupt("the campaign was not begun".into()))?;
        if let Some(simulation) = simulation {
            self.client.execute(
                "UPDATE flowc_campaigns SET seed = $2, model = $3, parts = $4 WHERE id = $1",
                &[
                    &id,
                    &(simulation.seed as i64),
                    &simulation.model,
                    &(simulation.parts as i32),
                ],
            )?;
        }
        let row = self.client.query_one(
            "SELECT (SELECT count(*) FROM flowc_contacts WHERE campaign = $1), \
                    (SELECT coalesce(max(last), 0) FROM flowc_parts WHERE campaign = $1)",
            &[&id],
        )?;
        let (total, cut) = (row.get::<_, i64>(0) as u32, row.get::<_, i32>(1) as u32);
        let size = match simulation {
            Some(s) => total.div_ceil(s.parts.max(1)).max(1),
            None => (total / 32).clamp(50, 1000),
        };
        let mut tx = self.client.transaction()?;
        let mut first = cut;
        while first < total {
            let last = (first + size).min(total);
            tx.execute(
                "INSERT INTO flowc_parts (campaign, first, last) VALUES ($1, $2, $3)",
                &[&id, &(first as i32), &(last as i32)],
            )?;
            first = last;
        }
        tx.execute(
            "UPDATE flowc_campaigns SET contacts_in = true WHERE id = $1",
            &[&id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Adds numbers never to dial (E.164) to the campaign of `flow` (or
    /// the URL's): every worker reads them when it joins.
    pub fn add_do_not_call(
        &mut self,
        flow: &str,
        numbers: &std::collections::HashSet<String>,
    ) -> Result<(), StoreError> {
        let id = self
            .find(Some(flow))?
            .ok_or_else(|| StoreError::Corrupt("the campaign was not begun".into()))?;
        let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
        for chunk in numbers.chunks(10_000) {
            self.client.execute(
                "INSERT INTO flowc_do_not_call (campaign, phone) SELECT $1, unnest($2::TEXT[]) \
                 ON CONFLICT DO NOTHING",
                &[&id, &chunk],
            )?;
        }
        Ok(())
    }

    /// Keeps the audio of the files the campaign of `flow` plays (8 kHz
    /// samples by the name the flow gives), for workers that dial through
    /// SIP wherever the files are not; a file kept before is replaced.
    pub fn add_prompts(
        &mut self,
        flow: &str,
        files: &std::collections::HashMap<String, std::sync::Arc<Vec<i16>>>,
    ) -> Result<(), StoreError> {
        let id = self
            .find(Some(flow))?
            .ok_or_else(|| StoreError::Corrupt("the campaign was not begun".into()))?;
        for (name, samples) in files {
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.client.execute(
                "INSERT INTO flowc_prompts (campaign, name, samples) VALUES ($1, $2, $3) \
                 ON CONFLICT (campaign, name) DO UPDATE SET samples = excluded.samples",
                &[&id, name, &bytes],
            )?;
        }
        Ok(())
    }

    /// The audio the joined campaign's flow plays, as `add_prompts` kept it.
    pub fn prompts(
        &mut self,
    ) -> Result<std::collections::HashMap<String, std::sync::Arc<Vec<i16>>>, StoreError> {
        let id = self.campaign()?;
        let rows = self.client.query(
            "SELECT name, samples FROM flowc_prompts WHERE campaign = $1",
            &[&id],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let bytes: &[u8] = r.get(1);
                let samples = bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                (r.get::<_, String>(0), std::sync::Arc::new(samples))
            })
            .collect())
    }

    /// How many numbers never to dial the joined campaign holds.
    pub fn do_not_call_count(&mut self) -> Result<u64, StoreError> {
        let id = self.campaign()?;
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM flowc_do_not_call WHERE campaign = $1",
                &[&id],
            )?
            .get(0);
        Ok(n as u64)
    }

    /// The numbers never to dial of the joined campaign.
    pub fn do_not_call(&mut self) -> Result<std::collections::HashSet<String>, StoreError> {
        let id = self.campaign()?;
        let rows = self.client.query(
            "SELECT phone FROM flowc_do_not_call WHERE campaign = $1",
            &[&id],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Leases to `owner` up to `most` parts of the campaign that are not
    /// done and that no live worker holds (free, or held by a worker whose
    /// heartbeat is older than its lease), skipping parts other workers are
    /// leasing at this instant; their contacts with what they did. An empty
    /// lease: no part is left to lease now. It holds while `owner` renews.
    pub fn lease(&mut self, owner: &str, most: usize) -> Result<Lease, StoreError> {
        let mut lease = Lease {
            parts: Vec::new(),
            ids: Vec::new(),
            contacts: Vec::new(),
            history: Vec::new(),
        };
        while lease.parts.len() < most {
            let Some(part) = self.lease_part(owner)? else {
                break;
            };
            lease.parts.extend(part.parts);
            lease.ids.extend(part.ids);
            lease.contacts.extend(part.contacts);
            lease.history.extend(part.history);
        }
        Ok(lease)
    }

    fn lease_part(&mut self, owner: &str) -> Result<Option<Lease>, StoreError> {
        let id = self.campaign()?;
        let part = self.client.query_opt(
            // The owner's liveness in a subquery, not a join: a part another
            // worker leased since this statement's snapshot is checked again
            // (READ COMMITTED) with its new owner's heartbeat, where a join
            // would keep the row it joined before, the old owner's none,
            // and hand the part to two workers.
            "UPDATE flowc_parts SET owner = $2, worked_by = $2 \
             WHERE campaign = $1 AND first = ( \
                 SELECT p.first FROM flowc_parts p \
                 WHERE p.campaign = $1 AND NOT p.done \
                   AND (p.owner IS NULL OR NOT EXISTS ( \
                        SELECT 1 FROM flowc_workers w WHERE w.name = p.owner \
                          AND w.heartbeat_at >= now() - make_interval(secs => w.lease_seconds))) \
                 ORDER BY p.first LIMIT 1 FOR UPDATE OF p SKIP LOCKED) \
             RETURNING first, last",
            &[&id, &owner],
        )?;
        let Some(part) = part else {
            return Ok(None);
        };
        let (first, last) = (part.get::<_, i32>(0) as u32, part.get::<_, i32>(1) as u32);
        let (contacts, history) = self.read(id, Some((first, last)))?;
        if contacts.len() != (last - first) as usize {
            return Err(corrupt(format!(
                "contacts {first} to {last} are not all there"
            )));
        }
        Ok(Some(Lease {
            parts: vec![first],
            ids: (first..last).collect(),
            contacts,
            history,
        }))
    }

    /// Says `owner` is alive, holding its leases for `seconds` more.
    pub fn renew(&mut self, owner: &str, seconds: u32) -> Result<(), StoreError> {
        self.client.execute(
            "INSERT INTO flowc_workers (name, heartbeat_at, lease_seconds) VALUES ($1, now(), $2) \
             ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), lease_seconds = $2",
            &[&owner, &(seconds as i32)],
        )?;
        Ok(())
    }

    /// A worker starting under `owner`'s name holds nothing yet: leases an
    /// earlier process of that name left (it died) are given back.
    pub fn forget_leases(&mut self, owner: &str) -> Result<(), StoreError> {
        self.client.execute(
            "UPDATE flowc_parts SET owner = NULL WHERE owner = $1",
            &[&owner],
        )?;
        Ok(())
    }

    /// A part of the campaign ran until `finish` on its clock.
    pub fn reached(&mut self, finish: DateTime<Utc>) -> Result<(), StoreError> {
        let id = self.campaign()?;
        self.client.execute(
            "UPDATE flowc_campaigns SET finish = greatest(coalesce(finish, $2), $2), updated_at = now() WHERE id = $1",
            &[&id, &finish],
        )?;
        Ok(())
    }

    /// How often the contacts of the campaign that `owner` does not hold
    /// now entered the step of `pause campaign when`, as their workers
    /// last wrote it.
    pub fn reached_elsewhere(&mut self, owner: &str) -> Result<u32, StoreError> {
        let id = self.campaign()?;
        let row = self.client.query_one(
            "SELECT coalesce(sum(r.times), 0)::bigint FROM flowc_reached r \
             WHERE r.campaign = $1 AND NOT EXISTS (SELECT 1 FROM flowc_parts p \
                 WHERE p.campaign = $1 AND p.owner = $2 AND r.contact >= p.first AND r.contact < p.last)",
            &[&id, &owner],
        )?;
        Ok(u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX))
    }

    /// Gives back the part `owner` leased (its name stays in `worked_by`);
    /// `done` when every contact of it has ended.
    pub fn release(&mut self, owner: &str, part: u32, done: bool) -> Result<(), StoreError> {
        let id = self.campaign()?;
        self.client.execute(
            "UPDATE flowc_parts SET owner = NULL, done = done OR $4 \
             WHERE campaign = $1 AND first = $2 AND owner = $3",
            &[&id, &(part as i32), &owner, &done],
        )?;
        Ok(())
    }

    /// Gives `owner` its lines of the campaign's `limit` concurrent calls:
    /// an even share among the live workers (a worker is alive while its
    /// heartbeat is younger than its lease; the first to ask rounds up),
    /// never more than the others leave. It
    /// keeps holding the lines of its `holding` calls under way and of the
    /// figure it was last given (`given`, which its engine may not have
    /// applied yet), so the sum of what live workers hold never exceeds
    /// the limit; lines not renewed within their worker's lease (a dead
    /// worker's, or one that left) stop counting.
    /// Serialised on the campaign's row. Returns the lines to use now.
    pub fn lines(
        &mut self,
        owner: &str,
        limit: u32,
        holding: u32,
        given: u32,
    ) -> Result<u32, StoreError> {
        let id = self.campaign()?;
        let mut tx = self.client.transaction()?;
        tx.execute(
            "SELECT 1 FROM flowc_campaigns WHERE id = $1 FOR UPDATE",
            &[&id],
        )?;
        let row = tx.query_one(
            "SELECT (SELECT count(*) FROM flowc_workers w WHERE w.heartbeat_at > now() - make_interval(secs => w.lease_seconds)), \
                    (SELECT coalesce(sum(l.lines), 0)::bigint FROM flowc_lines l JOIN flowc_workers w ON w.name = l.worker \
                     WHERE l.campaign = $1 AND l.worker <> $2 \
                       AND w.heartbeat_at > now() - make_interval(secs => w.lease_seconds) \
                       AND l.updated_at > now() - make_interval(secs => w.lease_seconds))",
            &[&id, &owner],
        )?;
        let live = row.get::<_, i64>(0).max(1) as u32;
        let others = row.get::<_, i64>(1) as u32;
        let free = limit.saturating_sub(others);
        let lines = limit.div_ceil(live).min(free);
        let held = lines.max(holding).max(given).min(free.max(holding));
        tx.execute(
            "INSERT INTO flowc_lines (campaign, worker, lines, updated_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (campaign, worker) DO UPDATE SET lines = $3, updated_at = now()",
            &[&id, &owner, &(held as i32)],
        )?;
        tx.commit()?;
        Ok(lines)
    }

    /// `owner` holds no line of the campaign any more.
    pub fn drop_lines(&mut self, owner: &str) -> Result<(), StoreError> {
        let id = self.campaign()?;
        self.client.execute(
            "DELETE FROM flowc_lines WHERE campaign = $1 AND worker = $2",
            &[&id, &owner],
        )?;
        Ok(())
    }

    /// Workers alive: their heartbeat younger than their lease.
    pub fn live_workers(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM flowc_workers w \
                 WHERE w.heartbeat_at > now() - make_interval(secs => w.lease_seconds)",
                &[],
            )?
            .get(0);
        Ok(n as u64)
    }

    /// Marks the campaign finished once every contact has ended; whether it is.
    pub fn finish_if_done(&mut self) -> Result<bool, StoreError> {
        let id = self.campaign()?;
        let done = self.client.execute(
            "UPDATE flowc_campaigns SET state = 'finished', updated_at = now() \
             WHERE id = $1 AND state = 'running' AND contacts_in AND NOT EXISTS ( \
                 SELECT 1 FROM flowc_contacts c WHERE c.campaign = $1 \
                   AND NOT EXISTS (SELECT 1 FROM flowc_ends e WHERE e.campaign = $1 AND e.contact = c.id))",
            &[&id],
        )?;
        Ok(done == 1 || self.state()? == CampaignState::Finished)
    }
}

/// A worker's journal: the engine's contacts are the lease's, numbered from
/// 0; the store knows them by their ids.
pub struct Leased<'a> {
    pub store: &'a mut PgStore,
    pub ids: &'a [u32],
}

impl Leased<'_> {
    fn id(&self, id: ContactId) -> usize {
        self.ids[id.index()] as usize
    }
}

impl Journal for Leased<'_> {
    fn begin(
        &mut self,
        _: &ir::Program,
        _: DateTime<Utc>,
        _: bool,
        _: Kind,
    ) -> Result<Campaign, StoreError> {
        Err(corrupt("a worker joins a campaign; it does not begin one"))
    }

    fn contact_added(&mut self, id: ContactId, contact: &Contact, arm: ArmId) {
        let id = self.id(id);
        self.store.ops.contact(id, contact, arm, None);
    }

    fn attempt_started(&mut self, id: ContactId, attempt: StoredAttempt) {
        let id = self.id(id);
        self.store.ops.started(id, attempt);
    }

    fn attempt_ended(&mut self, id: ContactId, number: u32, end: CallEnd) {
        let id = self.id(id);
        self.store.ops.ended(id, number, end);
    }

    fn contact_ended(&mut self, id: ContactId, ending: Ending, reason: &str, path: &[&str]) {
        let id = self.id(id);
        self.store.ops.contact_ended(id, ending, reason, path);
    }

    fn opted_out(&mut self, id: ContactId) {
        let id = self.id(id);
        self.store.ops.push(Op::OptedOut(id));
    }

    fn reached(&mut self, id: ContactId, times: u32) {
        let contact = self.id(id);
        self.store.ops.push(Op::Reached { contact, times });
    }

    fn message(&mut self, id: ContactId, message: &Message) {
        let id = self.id(id);
        self.store.ops.message(id, message);
    }

    fn pending_writes(&self) -> usize {
        self.store.ops.len()
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Journal::flush(self.store)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Journal::sync(self.store)
    }

    fn sync_later(&mut self) -> Result<Committed, StoreError> {
        Journal::sync_later(self.store)
    }

    fn set_state(&mut self, _: CampaignState, _: DateTime<Utc>) -> Result<(), StoreError> {
        // A worker leaves the campaign's state to whoever runs it.
        Journal::sync(self.store)
    }
}

/// What `flowc serve` reads of the campaigns of a database.
impl PgStore {
    /// The names of the database's campaigns, oldest first.
    pub fn campaign_names(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client
            .query("SELECT name FROM flowc_campaigns ORDER BY id", &[])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Turns to the campaign called `name` (a connection kept for reading
    /// one campaign after another).
    pub fn select(&mut self, name: &str) -> Result<(), StoreError> {
        self.name = Some(name.to_string());
        self.campaign = None;
        self.writer = None;
        self.named().map(|_| ())
    }

    /// The connection was lost: the store is no use any more.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The campaign as the server shows it. Someone runs it while a
    /// process holds its lock (`flowc run`) or a live worker holds a part.
    pub fn overview(&mut self) -> Result<super::Overview, StoreError> {
        let id = self.named()?;
        let r = self.client.query_one(
            "SELECT flow, kind::text, state::text, started_at, updated_at, finish, \
               (SELECT count(*) FROM flowc_attempts WHERE campaign = $1), \
               EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                         AND classid::bigint = $2 AND objid::bigint = $3 AND objsubid = 2) \
               OR EXISTS (SELECT 1 FROM flowc_parts p JOIN flowc_workers w ON w.name = p.owner \
                         WHERE p.campaign = $1 AND NOT p.done \
                           AND w.heartbeat_at >= now() - make_interval(secs => w.lease_seconds)), \
               contacts_in \
             FROM flowc_campaigns WHERE id = $1",
            &[&id, &(LOCK_SPACE as i64), &(id as i32 as i64)],
        )?;
        let state: String = r.get(2);
        Ok(super::Overview {
            flow: r.get(0),
            simulation: r.get::<_, String>(1) == Kind::Simulation.name(),
            state: CampaignState::parse(&state)
                .ok_or_else(|| corrupt(format!("the campaign is \"{state}\"")))?,
            started_at: r.get(3),
            updated_at: r.get(4),
            finish: r.get(5),
            counters: self.counters()?,
            calls: r.get::<_, i64>(6) as u64,
            run_by_someone: r.get(7),
            ready: r.get(8),
        })
    }

    /// Attempts by outcome (`unknown`: started, never ended).
    pub fn outcomes(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        let id = self.named()?;
        let rows = self.client.query(
            "SELECT coalesce(outcome::text, 'unknown'), count(*) FROM flowc_attempts \
             WHERE campaign = $1 GROUP BY 1 ORDER BY 1",
            &[&id],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    /// A page of the attempts, in the order dialled, of one number or one
    /// outcome when asked; and how many there are in all.
    pub fn calls(
        &mut self,
        contact: Option<&str>,
        outcome: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<super::CallRow>), StoreError> {
        let id = self.named()?;
        let filter = "FROM flowc_attempts a \
             JOIN flowc_contacts c ON c.campaign = a.campaign AND c.id = a.contact \
             LEFT JOIN flowc_ends e ON e.campaign = a.campaign AND e.contact = a.contact \
             WHERE a.campaign = $1 AND ($2::text IS NULL OR c.phone = $2) \
               AND ($3::text IS NULL OR coalesce(a.outcome::text, 'unknown') = $3)";
        let total: i64 = self
            .client
            .query_one(
                &format!("SELECT count(*) {filter}"),
                &[&id, &contact, &outcome],
            )?
            .get(0);
        let rows = self.client.query(
            &format!(
                "SELECT c.phone, c.zones, a.number, a.step, a.started_at, a.ended_at, a.outcome::text, \
                 a.keys, a.transfers, a.sip_status, a.sip_reason, a.caller_id, e.state::text, e.reason, e.path \
                 {filter} ORDER BY a.started_at, a.contact, a.number LIMIT $4 OFFSET $5"
            ),
            &[&id, &contact, &outcome, &(limit as i64), &(offset as i64)],
        )?;
        let json = |t: Option<String>| -> Result<Option<serde_json::Value>, StoreError> {
            t.map(|t| serde_json::from_str(&t).map_err(corrupt))
                .transpose()
        };
        let mut page = Vec::with_capacity(rows.len());
        for r in &rows {
            let zones: String = r.get(1);
            page.push(super::CallRow {
                contact: r.get(0),
                zone: zones
                    .split(' ')
                    .next()
                    .unwrap_or("UTC")
                    .parse()
                    .map_err(corrupt)?,
                attempt: r.get::<_, i32>(2) as u32,
                step: r.get(3),
                started_at: r.get(4),
                ended_at: r.get(5),
                outcome: r.get(6),
                keys: json(r.get(7))?,
                transfers: json(r.get(8))?,
                sip_status: r.get::<_, Option<i32>>(9).map(|s| s as u16),
                sip_reason: r.get(10),
                caller_id: r.get(11),
                end: r.get(12),
                end_reason: r.get(13),
                path: json(r.get(14))?,
            });
        }
        Ok((total as u64, page))
    }
}
