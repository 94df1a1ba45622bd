//! The store's writes: a batch of operations committed in one transaction,
//! on the writer thread.

use rusqlite::{params, Connection};

use super::ops::{fields_json, zones_text, Replies};
use super::{time, Op};
use chrono::Utc;

/// Writes a batch in the transaction under way, begun if there is none
/// (the writer thread commits it), and renews the campaign's lock when this
/// process holds it (`lock`, its token).
pub(super) fn write_ops(
    conn: &mut Connection,
    ops: Vec<Op>,
    lock: Option<&str>,
) -> Result<(), rusqlite::Error> {
    if conn.is_autocommit() {
        conn.execute_batch("BEGIN")?;
    }
    let tx = &*conn;
    {
        let mut contact = tx.prepare_cached(
            "INSERT INTO contacts (id, line, phone, zones, fields, arm, written) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut started = tx.prepare_cached(
            "INSERT INTO attempts (contact, number, step, started_at, caller_id, ended_at, outcome, keys, transfers, sip_status, sip_reason) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut ended = tx.prepare_cached(
            "UPDATE attempts SET ended_at = ?3, outcome = ?4, keys = ?5, transfers = ?6, sip_status = ?7, sip_reason = ?8 \
             WHERE contact = ?1 AND number = ?2",
        )?;
        let mut contact_ended = tx.prepare_cached(
            "INSERT INTO ends (contact, state, reason, path) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut opted_out = tx.prepare_cached("UPDATE contacts SET opted_out = 1 WHERE id = ?1")?;
        let mut message = tx.prepare_cached(
            "INSERT INTO messages (contact, attempt, kind, text, recipient, status, subject) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for op in ops {
            match op {
                Op::Contacts(new) => {
                    for (id, c, arm) in new.iter() {
                        contact.execute(params![
                            id as i64,
                            c.line as i64,
                            &*c.phone,
                            zones_text(&c.zones),
                            fields_json(&c.fields),
                            arm as i64,
                            c.written.as_deref()
                        ])?;
                    }
                }
                Op::Started(a) => {
                    let (keys, transfers) = Replies::lists(&a.replies);
                    let sip = Replies::sip(&a.replies);
                    started.execute(params![
                        a.contact,
                        a.number,
                        &*a.step,
                        time(a.started_at),
                        Replies::caller_id(&a.replies),
                        a.ended_at.map(time),
                        a.outcome.map(|o| o.name()),
                        keys,
                        transfers,
                        sip.map(|s| s.0),
                        sip.map(|s| s.1.as_str()),
                    ])?;
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
                    ended.execute(params![
                        contact,
                        number,
                        time(ended_at),
                        outcome.name(),
                        keys,
                        transfers,
                        sip.map(|s| s.0),
                        sip.map(|s| s.1.as_str()),
                    ])?;
                }
                Op::ContactEnded {
                    id,
                    state,
                    reason,
                    path,
                } => {
                    contact_ended.execute(params![id, state, &*reason, &*path])?;
                }
                Op::OptedOut(id) => {
                    opted_out.execute(params![id as i64])?;
                }
                // One process holds a file's whole campaign: it counts them itself.
                Op::Reached { .. } => {}
                Op::Message(m) => {
                    message.execute(params![
                        m.contact as i64,
                        m.attempt,
                        m.kind,
                        m.text,
                        m.recipient,
                        m.status,
                        m.subject
                    ])?;
                }
            }
        }
        let now = time(Utc::now());
        tx.execute(
            "UPDATE campaign SET updated_at = ?1 WHERE id = 1",
            params![now],
        )?;
        // The heartbeat thread's own renewals wait while the writer holds
        // the database, which a simulation's writer does nearly all along:
        // its batches renew the lock themselves.
        if let Some(token) = lock {
            tx.execute(
                "UPDATE lock SET heartbeat_at = ?1 WHERE id = 1 AND token = ?2",
                params![now, token],
            )?;
        }
    }
    Ok(())
}
