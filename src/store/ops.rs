//! The writes a store was asked for since its last flush, in order: one
//! batch, committed in one transaction by the store's writer. Every store
//! buffers the same way; only the SQL differs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{corrupt, StoreError};
use crate::contacts::Contact;
use crate::ir::Outcome;
use crate::record::{CallEnd, Ending, Message, MessageKind, StoredAttempt};
use crate::runtime::journal::Committed;

/// A write the engine asked for, kept until the next `flush`. Kept small
/// (72 bytes): a simulation holds a few hundred thousand of them while
/// they wait for the writer; what most writes lack is boxed.
pub(super) enum Op {
    Contact(Box<NewContact>),
    Started(NewAttempt),
    Ended {
        contact: u32,
        number: u32,
        ended_at: DateTime<Utc>,
        outcome: Outcome,
        replies: Option<Box<Replies>>,
    },
    ContactEnded {
        id: u32,
        state: &'static str,
        reason: Box<str>,
        path: Box<str>,
    },
    OptedOut(usize),
    /// How often the contact entered the step of `pause campaign when`.
    Reached {
        contact: usize,
        times: u32,
    },
    Message(Box<NewMessage>),
}

/// A contact as it joins the campaign; its zones and fields are written
/// out as text by the writer, on its own thread.
pub(super) struct NewContact {
    pub id: usize,
    pub line: u32,
    pub phone: std::sync::Arc<str>,
    pub written: Option<Box<str>>,
    zones: Box<[chrono_tz::Tz]>,
    fields: crate::contacts::Fields,
    pub arm: usize,
}

impl NewContact {
    /// Candidate zones, space-separated.
    pub(super) fn zones(&self) -> String {
        let names: Vec<&str> = self.zones.iter().map(|z| z.name()).collect();
        names.join(" ")
    }

    /// The schema's fields, JSON.
    pub(super) fn fields(&self) -> String {
        serde_json::to_string(&self.fields).expect("values serialise")
    }
}

/// An attempt row: what every attempt has, and its replies when it had any.
pub(super) struct NewAttempt {
    pub contact: u32,
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<Outcome>,
    pub step: Box<str>,
    pub replies: Option<Box<Replies>>,
}

/// What few attempts have: a caller id, keys, transfers, a SIP status.
#[derive(Default)]
pub(super) struct Replies {
    pub caller_id: Option<String>,
    pub keys: Vec<Option<String>>,
    pub transfers: Vec<crate::ir::TransferOutcome>,
    pub sip: Option<(u16, String)>,
}

impl Replies {
    /// `None` when there is nothing to keep.
    fn boxed(self) -> Option<Box<Replies>> {
        let empty = self.caller_id.is_none()
            && self.keys.is_empty()
            && self.transfers.is_empty()
            && self.sip.is_none();
        (!empty).then(|| Box::new(self))
    }

    pub(super) fn caller_id(r: &Option<Box<Replies>>) -> Option<&str> {
        r.as_ref().and_then(|r| r.caller_id.as_deref())
    }

    pub(super) fn sip(r: &Option<Box<Replies>>) -> Option<&(u16, String)> {
        r.as_ref().and_then(|r| r.sip.as_ref())
    }

    /// Keys and transfers as stored: JSON lists, or nothing.
    pub(super) fn lists(r: &Option<Box<Replies>>) -> (Option<String>, Option<String>) {
        r.as_ref()
            .map_or((None, None), |r| replies(&r.keys, &r.transfers))
    }
}

pub(super) struct NewMessage {
    pub contact: usize,
    pub attempt: u32,
    pub kind: &'static str,
    pub text: String,
    pub subject: Option<String>,
    pub recipient: Option<String>,
    pub status: &'static str,
}

/// The replies of a call as stored: JSON lists, or nothing when there were none.
fn replies(
    keys: &[Option<String>],
    transfers: &[crate::ir::TransferOutcome],
) -> (Option<String>, Option<String>) {
    let keys = (!keys.is_empty()).then(|| serde_json::to_string(keys).expect("keys serialise"));
    let transfers = (!transfers.is_empty()).then(|| {
        let names: Vec<&str> = transfers.iter().map(|t| t.name()).collect();
        serde_json::to_string(&names).expect("names serialise")
    });
    (keys, transfers)
}

/// The batch being gathered.
#[derive(Default)]
pub(super) struct Ops {
    ops: Vec<Op>,
    /// Started attempts still in `ops`, so an end can complete them there.
    open: HashMap<(usize, u32), usize>,
}

impl Ops {
    pub(super) fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub(super) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The batch, leaving this one empty, with room for as many: a
    /// simulation's batches of 200,000 writes no longer grow from nothing
    /// (copying the batch again at every doubling).
    pub(super) fn take(&mut self) -> Vec<Op> {
        self.open.clear();
        let room = Vec::with_capacity(self.ops.len());
        std::mem::replace(&mut self.ops, room)
    }

    pub(super) fn contact(&mut self, id: usize, c: &Contact, arm: usize) {
        self.ops.push(Op::Contact(Box::new(NewContact {
            id,
            line: c.line,
            phone: c.phone.clone(),
            written: c.written.clone(),
            zones: c.zones.clone(),
            fields: c.fields.clone(),
            arm,
        })));
    }

    pub(super) fn started(&mut self, contact: usize, a: StoredAttempt) {
        self.open.insert((contact, a.number), self.ops.len());
        self.ops.push(Op::Started(NewAttempt {
            contact: contact as u32,
            number: a.number,
            started_at: a.started_at,
            ended_at: a.ended_at,
            outcome: a.outcome,
            step: a.step.into_boxed_str(),
            replies: Replies {
                caller_id: a.caller_id,
                keys: a.keys,
                transfers: a.transfers,
                sip: a.sip,
            }
            .boxed(),
        }));
    }

    pub(super) fn ended(&mut self, contact: usize, number: u32, end: CallEnd) {
        // Not flushed yet: complete the row before it is written.
        if let Some(i) = self.open.remove(&(contact, number)) {
            if let Op::Started(a) = &mut self.ops[i] {
                a.ended_at = Some(end.ended_at);
                a.outcome = Some(end.outcome);
                let mut replies = a.replies.take().map_or_else(Replies::default, |r| *r);
                replies.keys = end.keys;
                replies.transfers = end.transfers;
                replies.sip = end.sip;
                a.replies = replies.boxed();
                return;
            }
        }
        self.ops.push(Op::Ended {
            contact: contact as u32,
            number,
            ended_at: end.ended_at,
            outcome: end.outcome,
            replies: Replies {
                caller_id: None,
                keys: end.keys,
                transfers: end.transfers,
                sip: end.sip,
            }
            .boxed(),
        });
    }

    pub(super) fn contact_ended(&mut self, id: usize, ending: Ending, reason: &str, path: &[&str]) {
        self.ops.push(Op::ContactEnded {
            id: id as u32,
            state: ending.name(),
            reason: reason.into(),
            path: serde_json::to_string(path)
                .expect("names serialise")
                .into_boxed_str(),
        });
    }

    pub(super) fn message(&mut self, contact: usize, message: &Message) {
        self.ops.push(Op::Message(Box::new(NewMessage {
            contact,
            attempt: message.attempt,
            kind: message.kind.name(),
            text: message.text.clone(),
            subject: message.subject.clone(),
            recipient: message.recipient.clone(),
            status: match message.kind {
                MessageKind::Flag => "open",
                _ => "unsent",
            },
        })));
    }
}

/// The thread that commits batches while the engine goes on: the store's
/// work on the second core. `sync` waits until everything sent is committed.
pub(super) struct Writer {
    batches: std::sync::mpsc::SyncSender<Batch>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Batch {
    Ops(Vec<Op>),
    /// Answered once every batch before it is committed, with the first error.
    Sync(std::sync::mpsc::Sender<Result<(), String>>),
    /// The same, for a waiter in an async runtime.
    Tell(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl Writer {
    /// Starts the thread; `write` commits one batch. After a failure the
    /// thread writes nothing more, and every `sync` reports the failure.
    pub(super) fn start(
        mut write: impl FnMut(Vec<Op>) -> Result<(), String> + Send + 'static,
    ) -> Result<Writer, StoreError> {
        // Two batches in the channel at most: the engine waits rather than
        // piling up memory when the database falls behind.
        let (batches, rx) = std::sync::mpsc::sync_channel::<Batch>(2);
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let mut failed: Option<String> = None;
                for batch in rx {
                    match batch {
                        Batch::Ops(ops) if failed.is_none() => {
                            if let Err(e) = write(ops) {
                                failed = Some(e);
                            }
                        }
                        Batch::Ops(_) => {}
                        Batch::Sync(reply) => {
                            let _ = reply.send(failed.clone().map_or(Ok(()), Err));
                        }
                        Batch::Tell(reply) => {
                            let _ = reply.send(failed.clone().map_or(Ok(()), Err));
                        }
                    }
                }
            })
            .map_err(|e| corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            batches,
            thread: Some(thread),
        })
    }

    /// Hands a batch over (waiting while two are queued).
    pub(super) fn send(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.batches
            .send(Batch::Ops(ops))
            .map_err(|_| corrupt("the writer thread stopped"))
    }

    /// Waits until every batch sent is committed.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.batches
            .send(Batch::Sync(tx))
            .map_err(|_| corrupt("the writer thread stopped"))?;
        rx.recv()
            .map_err(|_| corrupt("the writer thread stopped"))?
            .map_err(StoreError::Corrupt)
    }
}

impl Writer {
    /// What resolves once every batch sent is committed.
    pub(super) fn committed(&self) -> Result<Committed, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.batches
            .send(Batch::Tell(tx))
            .map_err(|_| corrupt("the writer thread stopped"))?;
        Ok(Committed::waiting(rx))
    }
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

#[cfg(test)]
mod tests {
    /// A batch of a few hundred thousand writes waits for the writer: each
    /// must stay small.
    #[test]
    fn a_write_waiting_for_the_writer_is_small() {
        assert!(std::mem::size_of::<super::Op>() <= 72);
    }
}
