//! What the engine tells a store as a campaign runs, and how long it waits
//! for it to last. The SQLite store implements [`Journal`]; the engine knows
//! nothing else of it.
//!
//! The rule that makes a crash safe is the same for every store: an attempt
//! is journalled *before* its dial (`attempt_started`, then `sync` under
//! [`Durability::BeforeEachDial`]) and completed after the call; an attempt
//! with a start and no end resumes as `unknown`, never dialled again.

use chrono::{DateTime, Utc};

use crate::contacts::{Contact, List};
use crate::ir::{self, ArmId};
use crate::record::{CallEnd, Campaign, CampaignState, Ending, Kind, Message, StoredAttempt};
use crate::store::StoreError;

/// A contact's place in the campaign: its id in the store, its index in
/// the engine's list (contacts are only ever appended, from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContactId(pub u32);

impl ContactId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id of the contact at `index` in the list.
    pub fn at(index: usize) -> ContactId {
        ContactId(u32::try_from(index).expect("a campaign holds fewer than 2^32 contacts"))
    }
}

impl std::fmt::Display for ContactId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The moment a journal's writes so far are committed (`Journal::sync_later`).
pub struct Committed(Option<tokio::sync::oneshot::Receiver<Result<(), String>>>);

impl Committed {
    /// Already committed.
    pub fn now() -> Committed {
        Committed(None)
    }

    /// Resolves when the writes are committed, with the store's error if
    /// they could not be. Cancel-safe: awaited again, it goes on waiting.
    pub async fn done(&mut self) -> Result<(), StoreError> {
        let Some(rx) = self.0.as_mut() else {
            return Ok(());
        };
        let result = rx
            .await
            .unwrap_or_else(|_| Err("the writer thread stopped".to_string()));
        self.0 = None;
        result.map_err(StoreError::Corrupt)
    }

    /// Waits, through `tell`, for the commit's answer.
    pub fn waiting(rx: tokio::sync::oneshot::Receiver<Result<(), String>>) -> Committed {
        Committed(Some(rx))
    }
}

/// How long the engine waits for what it journals to last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every attempt is committed, on disk, before its dial: a real run
    /// never dials a contact twice for one attempt, whatever crashes.
    BeforeEachDial,
    /// Writes go in large batches and survive a crash of the process, not
    /// of the machine: simulations, which dial nobody (a resumed
    /// simulation starts again and draws the same campaign).
    Batched,
}

/// A campaign's record, written as the engine goes. Writes are buffered
/// until `flush` hands them over and `sync` waits until they last.
pub trait Journal {
    /// Begins or resumes the campaign of `program`: what the store already
    /// holds comes back (contacts and each one's history), for the engine
    /// to replay. See `Store::begin` for the rules on another flow.
    fn begin(
        &mut self,
        program: &ir::Program,
        started_at: DateTime<Utc>,
        migrate: bool,
        kind: Kind,
    ) -> Result<Campaign, StoreError>;

    /// A contact joins the campaign.
    fn contact_added(&mut self, id: ContactId, contact: &Contact, arm: ArmId);

    /// The list the contacts given to `contact_added` come from: a journal
    /// that writes on a thread of its own may read them there rather than
    /// copy each one.
    fn share_list(&mut self, _list: &List) {}

    /// An attempt is about to be dialled (sync before the dial).
    fn attempt_started(&mut self, id: ContactId, attempt: StoredAttempt);

    /// An attempt's call is over.
    fn attempt_ended(&mut self, id: ContactId, number: u32, end: CallEnd);

    /// A contact's run ended, having visited `path`.
    fn contact_ended(&mut self, id: ContactId, ending: Ending, reason: &str, path: &[&str]);

    /// The contact's number asked never to be called again.
    fn opted_out(&mut self, id: ContactId);

    /// A message the run sent or a flag it raised.
    fn message(&mut self, id: ContactId, message: &Message);

    /// The contact has entered the step of `pause campaign when` `times`
    /// times in all. Kept where a campaign's parts run apart (many
    /// workers), so that each counts the others'; one process counts its
    /// own.
    fn reached(&mut self, _id: ContactId, _times: u32) {}

    /// How many writes wait for the next flush.
    fn pending_writes(&self) -> usize;

    /// Hands the writes so far over to be committed.
    fn flush(&mut self) -> Result<(), StoreError>;

    /// Flushes and waits until everything is committed: once it returns, a
    /// crash loses none of it.
    fn sync(&mut self) -> Result<(), StoreError>;

    /// Flushes, and returns what resolves once everything so far is
    /// committed: `sync` without waiting here, so that the engine goes on
    /// with its calls while the disk works (the dials wait, not the loop).
    fn sync_later(&mut self) -> Result<Committed, StoreError> {
        self.sync()?;
        Ok(Committed::now())
    }

    /// The campaign stopped (paused or finished) at `finish` on its clock.
    fn set_state(&mut self, state: CampaignState, finish: DateTime<Utc>) -> Result<(), StoreError>;
}
