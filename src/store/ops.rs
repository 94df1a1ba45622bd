//! The writes a store was asked for since its last flush, in order: one
//! batch, committed in one transaction by the store's writer. Every store
//! buffers the same way; only the SQL differs.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{corrupt, StoreError};
use crate::contacts::{Contact, List};
use crate::ir::Outcome;
use crate::record::{CallEnd, Ending, Message, MessageKind, StoredAttempt};
use crate::runtime::journal::Committed;

/// A write the engine asked for, kept until the next `flush`. Kept small
/// (72 bytes): a simulation holds a few hundred thousand of them while
/// they wait for the writer; what most writes lack is boxed.
pub(super) enum Op {
    Contacts(Box<NewContacts>),
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

/// Contacts joining the campaign, one after another by id. Their zones
/// and fields are written out as text by the writer, on its own thread.
pub(super) struct NewContacts {
    rows: Rows,
    /// The first one's id.
    from: usize,
    /// Each one's arm.
    arms: Vec<u32>,
}

/// Where a write's contacts are read from.
enum Rows {
    /// The engine's list, shared with the store: the contacts from `from` on.
    Shared(List),
    /// Copies made for this write alone.
    Copies(Vec<Contact>),
}

impl NewContacts {
    /// Each contact with its id and arm.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Contact, usize)> {
        let rows = match &self.rows {
            Rows::Shared(list) => &list[self.from..],
            Rows::Copies(copies) => &copies[..],
        };
        rows.iter()
            .zip(&self.arms)
            .enumerate()
            .map(|(k, (c, arm))| (self.from + k, c, *arm as usize))
    }
}

/// Candidate zones, space-separated.
pub(super) fn zones_text(zones: &[chrono_tz::Tz]) -> String {
    let names: Vec<&str> = zones.iter().map(|z| z.name()).collect();
    names.join(" ")
}

/// The schema's fields, JSON.
pub(super) fn fields_json(fields: &crate::contacts::Fields) -> String {
    serde_json::to_string(fields).expect("values serialise")
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
    /// Contacts copied into a write beyond its first (`Op::weight`).
    more_copies: usize,
    /// Started attempts still in `ops`, so an end can complete them there.
    open: HashMap<(usize, u32), usize>,
}

impl Op {
    /// What a write costs to hold: one, and one per contact copied.
    fn weight(&self) -> usize {
        match self {
            Op::Contacts(new) if matches!(new.rows, Rows::Copies(_)) => new.arms.len(),
            _ => 1,
        }
    }
}

impl Ops {
    pub(super) fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// The writes gathered, by weight: contacts read from a shared list
    /// weigh nothing more than the write they join.
    pub(super) fn len(&self) -> usize {
        self.ops.len() + self.more_copies
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The batch, leaving this one empty, with room for as many: a
    /// simulation's batches of 200,000 writes no longer grow from nothing
    /// (copying the batch again at every doubling).
    pub(super) fn take(&mut self) -> Vec<Op> {
        self.open.clear();
        self.more_copies = 0;
        let room = Vec::with_capacity(self.ops.len());
        std::mem::replace(&mut self.ops, room)
    }

    /// Contact `id` joins, in `arm`; `shared` is the list it is read from
    /// (then `c` is `shared[id]`), else it is copied.
    pub(super) fn contact(&mut self, id: usize, c: &Contact, arm: usize, shared: Option<&List>) {
        let arm = arm as u32;
        // The next of the contacts just added: one write for all of them.
        if let Some(Op::Contacts(last)) = self.ops.last_mut() {
            if last.from + last.arms.len() == id {
                let next = match (&mut last.rows, shared) {
                    (Rows::Shared(rows), Some(list)) => Arc::ptr_eq(rows, list),
                    (Rows::Copies(copies), None) => {
                        copies.push(c.clone());
                        self.more_copies += 1;
                        true
                    }
                    _ => false,
                };
                if next {
                    last.arms.push(arm);
                    return;
                }
            }
        }
        let rows = match shared {
            Some(list) => Rows::Shared(list.clone()),
            None => Rows::Copies(vec![c.clone()]),
        };
        self.ops.push(Op::Contacts(Box::new(NewContacts {
            rows,
            from: id,
            arms: vec![arm],
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

/// What a writer's thread asks of its database.
pub(super) enum Task {
    /// Write a batch, in the transaction under way (begun if none is).
    Write(Vec<Op>),
    /// Commit the transaction under way, if there is one.
    Commit,
}

/// When a writer commits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Commits {
    /// As soon as nothing more waits to be written: a wall-clock run
    /// waits for its dials' commits, and every end is on disk at once.
    /// Batches that queued while the writer was busy (a commit's fsync)
    /// share the next commit.
    EachBatch,
    /// Batches join one transaction for this long, or until someone waits
    /// for them (`sync`): each commit writes every page it changed again,
    /// and a simulation's writes change the same index pages all along.
    Every(std::time::Duration),
}

/// Writes handed over and not yet written, at most `MAX_WAITING` (the
/// engine waits rather than piling up memory when the database falls
/// behind); a batch larger than that goes when nothing else waits.
#[derive(Default)]
struct Waiting {
    state: std::sync::Mutex<Queue>,
    written: std::sync::Condvar,
}

#[derive(Default)]
struct Queue {
    writes: usize,
    /// The writer thread is gone: nobody waits for it.
    stopped: bool,
}

/// 30-40 MB of writes (72 bytes each, and what they box): room for the
/// engine to go on while the writer writes a million contacts.
const MAX_WAITING: usize = 400_000;

impl Waiting {
    /// Whether `n` more writes must wait while `writes` wait.
    fn full(writes: usize, n: usize) -> bool {
        writes > 0 && writes + n > MAX_WAITING
    }

    fn add(&self, n: usize) {
        let mut queue = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !queue.stopped && Waiting::full(queue.writes, n) {
            queue = self.written.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        queue.writes += n;
    }

    fn done(&self, n: usize) {
        let mut queue = self.state.lock().unwrap_or_else(|e| e.into_inner());
        queue.writes -= n;
        self.written.notify_all();
    }
}

/// Set on the writer thread: when it ends, however it ends, no sender
/// waits for it any more (its send then fails).
struct Stops(std::sync::Arc<Waiting>);

impl Drop for Stops {
    fn drop(&mut self) {
        let mut queue = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        queue.stopped = true;
        self.0.written.notify_all();
    }
}

/// The thread that commits batches while the engine goes on: the store's
/// work on the second core. `sync` waits until everything sent is committed.
pub(super) struct Writer {
    batches: std::sync::mpsc::Sender<Batch>,
    waiting: std::sync::Arc<Waiting>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Batch {
    /// Writes, and their weight (`Op::weight`).
    Ops(Vec<Op>, usize),
    /// Answered once every batch before it is committed, with the first error.
    Committed(Waiter),
}

/// Who waits for a commit.
enum Waiter {
    Thread(std::sync::mpsc::Sender<Result<(), String>>),
    /// A waiter in an async runtime.
    Task(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl Writer {
    /// Starts the thread; `database` does each task. After a failure the
    /// thread writes nothing more, and every `sync` reports the failure.
    /// What it holds uncommitted when it stops is committed.
    pub(super) fn start(
        commits: Commits,
        mut database: impl FnMut(Task) -> Result<(), String> + Send + 'static,
    ) -> Result<Writer, StoreError> {
        let (batches, rx) = std::sync::mpsc::channel::<Batch>();
        let waiting = std::sync::Arc::new(Waiting::default());
        let stops = Stops(waiting.clone());
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                // Locals drop in reverse order, even as a panic unwinds:
                // the channel closes before the senders are let go, so a
                // sender that stops waiting finds it closed.
                let stops = stops;
                let rx = rx;
                let written = &stops.0;
                let mut failed: Option<String> = None;
                // When the first uncommitted batch was written.
                let mut open: Option<std::time::Instant> = None;
                // A batch taken while deciding to commit, handled next.
                let mut taken: Option<Batch> = None;
                while let Some(batch) = taken.take().or_else(|| rx.recv().ok()) {
                    match batch {
                        Batch::Ops(ops, n) => {
                            if failed.is_none() {
                                match database(Task::Write(ops)) {
                                    Ok(()) => {
                                        let since =
                                            *open.get_or_insert_with(std::time::Instant::now);
                                        let due = match commits {
                                            Commits::EachBatch => {
                                                taken = rx.try_recv().ok();
                                                taken.is_none()
                                            }
                                            Commits::Every(d) => since.elapsed() >= d,
                                        };
                                        if due {
                                            commit_open(&mut database, &mut open, &mut failed);
                                        }
                                    }
                                    Err(e) => failed = Some(e),
                                }
                            }
                            written.done(n);
                        }
                        Batch::Committed(waiter) => {
                            commit_open(&mut database, &mut open, &mut failed);
                            let result = failed.clone().map_or(Ok(()), Err);
                            match waiter {
                                Waiter::Thread(w) => drop(w.send(result)),
                                Waiter::Task(w) => drop(w.send(result)),
                            }
                        }
                    }
                }
                commit_open(&mut database, &mut open, &mut failed);
            })
            .map_err(|e| corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            batches,
            waiting,
            thread: Some(thread),
        })
    }

    /// Hands a batch over (waiting while too many writes wait).
    pub(super) fn send(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let weight = ops.iter().map(Op::weight).sum();
        self.waiting.add(weight);
        self.batches
            .send(Batch::Ops(ops, weight))
            .map_err(|_| corrupt("the writer thread stopped"))
    }

    /// Waits until every batch sent is committed.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.batches
            .send(Batch::Committed(Waiter::Thread(tx)))
            .map_err(|_| corrupt("the writer thread stopped"))?;
        rx.recv()
            .map_err(|_| corrupt("the writer thread stopped"))?
            .map_err(StoreError::Corrupt)
    }

    /// What resolves once every batch sent is committed.
    pub(super) fn committed(&self) -> Result<Committed, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.batches
            .send(Batch::Committed(Waiter::Task(tx)))
            .map_err(|_| corrupt("the writer thread stopped"))?;
        Ok(Committed::waiting(rx))
    }
}

/// Commits the transaction under way, if one is and nothing failed.
fn commit_open(
    database: &mut dyn FnMut(Task) -> Result<(), String>,
    open: &mut Option<std::time::Instant>,
    failed: &mut Option<String>,
) {
    if open.take().is_some() && failed.is_none() {
        if let Err(e) = database(Task::Commit) {
            *failed = Some(e);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written what it holds.
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.batches, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose database notes what it was asked.
    fn noting(commits: Commits) -> (Writer, Arc<Mutex<Vec<String>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let notes = asked.clone();
        let writer = Writer::start(commits, move |task| {
            notes.lock().unwrap().push(match task {
                Task::Write(ops) => format!("write {}", ops.len()),
                Task::Commit => "commit".to_string(),
            });
            Ok(())
        })
        .unwrap();
        (writer, asked)
    }

    fn ops(n: usize) -> Vec<Op> {
        (0..n).map(Op::OptedOut).collect()
    }

    #[test]
    fn a_simulation_s_batches_share_a_commit_until_someone_waits() {
        let (writer, asked) = noting(Commits::Every(std::time::Duration::from_secs(3600)));
        writer.send(ops(2)).unwrap();
        writer.send(ops(3)).unwrap();
        writer.sync().unwrap();
        assert_eq!(*asked.lock().unwrap(), ["write 2", "write 3", "commit"]);
        // Nothing written since: nothing to commit.
        writer.sync().unwrap();
        writer.send(ops(1)).unwrap();
        // Stopping commits what is left.
        drop(writer);
        assert_eq!(
            *asked.lock().unwrap(),
            ["write 2", "write 3", "commit", "write 1", "commit"]
        );
    }

    #[test]
    fn a_run_s_batch_is_committed_once_nothing_more_waits() {
        // The database holds its first write until three more batches wait.
        let (go, held) = std::sync::mpsc::channel::<()>();
        let held = Mutex::new(Some(held));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let notes = asked.clone();
        let writer = Writer::start(Commits::EachBatch, move |task| {
            if let Some(held) = held.lock().unwrap().take() {
                held.recv().unwrap();
            }
            notes.lock().unwrap().push(match task {
                Task::Write(ops) => format!("write {}", ops.len()),
                Task::Commit => "commit".to_string(),
            });
            Ok(())
        })
        .unwrap();
        writer.send(ops(2)).unwrap();
        writer.send(ops(1)).unwrap();
        writer.send(ops(3)).unwrap();
        writer.send(ops(4)).unwrap();
        go.send(()).unwrap();
        // A batch alone is committed without anyone waiting for it.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while asked.lock().unwrap().len() < 5 {
            assert!(
                std::time::Instant::now() < until,
                "{:?}",
                asked.lock().unwrap()
            );
            std::thread::yield_now();
        }
        // What queued meanwhile shares one commit.
        assert_eq!(
            *asked.lock().unwrap(),
            ["write 2", "write 1", "write 3", "write 4", "commit"]
        );
        writer.send(ops(5)).unwrap();
        writer.sync().unwrap();
        assert_eq!(asked.lock().unwrap()[5..], ["write 5", "commit"]);
    }

    fn contact(line: u32) -> Contact {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("line".to_string(), crate::ir::Value::Number(line as f64));
        Contact {
            line,
            phone: format!("+1212555{line:04}").into(),
            fields: fields.into(),
            zones: [chrono_tz::Tz::America__New_York].into(),
            written: None,
        }
    }

    /// A contact write: whether it reads from the list, and the (id, line,
    /// arm) of each of its contacts.
    type ContactWrite = (bool, Vec<(usize, u32, usize)>);

    fn contact_writes(ops: &Ops, list: &List) -> Vec<ContactWrite> {
        ops.ops
            .iter()
            .filter_map(|op| match op {
                Op::Contacts(new) => Some((
                    matches!(&new.rows, Rows::Shared(l) if Arc::ptr_eq(l, list)),
                    new.iter().map(|(id, c, arm)| (id, c.line, arm)).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn contacts_of_a_shared_list_are_one_write_that_reads_the_list() {
        let list: List = Arc::new((0..4).map(contact).collect());
        let mut ops = Ops::default();
        for id in 1..3 {
            ops.contact(id, &list[id], id % 2, Some(&list));
        }
        // Not the next one: a write of its own.
        ops.contact(0, &list[0], 0, Some(&list));
        assert_eq!(
            contact_writes(&ops, &list),
            [(true, vec![(1, 1, 1), (2, 2, 0)]), (true, vec![(0, 0, 0)])]
        );
        // The list is not copied, and its contacts weigh nothing more.
        assert_eq!(Arc::strong_count(&list), 3);
        assert_eq!(ops.len(), 2);
    }

    #[test]
    fn contacts_not_shared_are_copied_into_one_write() {
        let list: List = Arc::new((0..3).map(contact).collect());
        let mut ops = Ops::default();
        ops.contact(0, &list[0], 0, Some(&list));
        // Copies never join the shared list's write, nor the reverse.
        ops.contact(1, &list[1], 1, None);
        ops.contact(2, &list[2], 0, None);
        assert_eq!(
            contact_writes(&ops, &list),
            [(true, vec![(0, 0, 0)]), (false, vec![(1, 1, 1), (2, 2, 0)])]
        );
        // Copies weigh what they hold: the engine hands them over in batches.
        assert_eq!(ops.len(), 3);
    }

    #[test]
    fn a_writer_that_dies_holds_no_sender_back() {
        let writer = Writer::start(Commits::EachBatch, |task| match task {
            Task::Write(_) => panic!("the database went away"),
            Task::Commit => Ok(()),
        })
        .unwrap();
        // The queue is full, and the writer dies on it.
        writer.send(ops(MAX_WAITING)).unwrap();
        assert!(writer.send(ops(1)).is_err());
        assert!(writer.sync().is_err());
    }

    #[test]
    fn a_sender_waits_only_while_the_queue_is_full() {
        assert!(!Waiting::full(0, 1));
        assert!(!Waiting::full(MAX_WAITING - 1, 1));
        assert!(Waiting::full(MAX_WAITING, 1));
        assert!(Waiting::full(1, MAX_WAITING));
        // A batch larger than the queue goes when nothing else waits.
        assert!(!Waiting::full(0, 2 * MAX_WAITING));
    }

    #[test]
    fn a_write_waiting_for_the_writer_is_small() {
        assert!(std::mem::size_of::<super::Op>() <= 72);
    }
}
