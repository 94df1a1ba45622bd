//! The store's writes: a batch of operations committed in one transaction,
//! on the writer thread.

use rusqlite::{params, Connection};

use super::ops::replies;
use super::{time, Op};
use chrono::Utc;

/// Commits a batch of writes in one transaction.
pub(super) fn write_ops(conn: &mut Connection, ops: Vec<Op>) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
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
                Op::Contact {
                    id,
                    line,
                    phone,
                    written,
                    zones,
                    fields,
                    arm,
                } => {
                    contact.execute(params![
                        id as i64,
                        line as i64,
                        &*phone,
                        zones,
                        fields,
                        arm as i64,
                        written.as_deref()
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
                        a.sip.as_ref().map(|s| s.0),
                        a.sip.as_ref().map(|s| s.1.as_str()),
                    ])?;
                }
                Op::Ended {
                    contact,
                    number,
                    end,
                } => {
                    let (keys, transfers) = replies(&end.keys, &end.transfers);
                    let (status, reason) = end.sip.unzip();
                    ended.execute(params![
                        contact as i64,
                        number,
                        time(end.ended_at),
                        end.outcome.name(),
                        keys,
                        transfers,
                        status,
                        reason
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
                // One process holds a file's whole campaign: it counts them itself.
                Op::Reached { .. } => {}
                Op::Message {
                    contact,
                    attempt,
                    kind,
                    text,
                    subject,
                    recipient,
                    status,
                } => {
                    message.execute(params![
                        contact as i64,
                        attempt,
                        kind,
                        text,
                        recipient,
                        status,
                        subject
                    ])?;
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
