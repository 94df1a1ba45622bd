//! What a campaign keeps of each contact: the records the engine produces,
//! the stores write and read back, and the reports read. The runtime and
//! every store share them; none of them knows SQL or clocks.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::contacts::Contact;
use crate::ir::{self, ArmId, Outcome, StepId, TransferOutcome};

/// How a contact's run ended, and why (`end completed "paid"`, `end
/// failed`, `no_callable_time`, …).
#[derive(Clone, Debug, PartialEq)]
pub struct End {
    pub ending: Ending,
    /// Shared by the contacts that ended for the same reason (the engine
    /// keeps one copy of each).
    pub reason: std::sync::Arc<str>,
}

impl End {
    pub fn new(ending: Ending, reason: impl Into<std::sync::Arc<str>>) -> End {
        End {
            ending,
            reason: reason.into(),
        }
    }
}

/// The three ways a contact ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ending {
    Completed,
    Failed,
    /// Ended without a call: no callable time before `stop`, no consent,
    /// on the do-not-call list, cancelled.
    Skipped,
}

impl Ending {
    pub fn status(self) -> Status {
        match self {
            Ending::Completed => Status::Completed,
            Ending::Failed => Status::Failed,
            Ending::Skipped => Status::Skipped,
        }
    }

    pub fn name(self) -> &'static str {
        self.status().name()
    }

    /// The ending a store wrote by its name.
    pub fn parse(name: &str) -> Option<Ending> {
        match name {
            "completed" => Some(Ending::Completed),
            "failed" => Some(Ending::Failed),
            "skipped" => Some(Ending::Skipped),
            _ => None,
        }
    }
}

/// Where a contact stands, as reports and the executions API show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Pending,
    InProgress,
    Completed,
    Failed,
    Skipped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub number: u32,
    /// The step's place in the flow (a `StepId`, kept in four bytes: a
    /// million contacts' attempts are held to the end of a campaign).
    pub step: u32,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: Outcome,
    /// The final SIP status of the call, when the dialer speaks SIP.
    pub sip_status: Option<u16>,
}

impl Attempt {
    /// The attempt's step.
    pub fn step_id(&self) -> StepId {
        self.step as StepId
    }

    /// A step's place as an attempt keeps it (a flow's source is at most
    /// 16 MiB: its steps number far fewer than 2^32).
    pub fn step_of(step: StepId) -> u32 {
        step as u32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Sms,
    Email,
    Flag,
}

impl MessageKind {
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Sms => "sms",
            MessageKind::Email => "email",
            MessageKind::Flag => "flag",
        }
    }
}

/// A message the flow sent, or a flag it raised for a human.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub kind: MessageKind,
    /// Attempts made when it was sent (0: before the first).
    pub attempt: u32,
    pub text: String,
    /// The number (SMS) or address (e-mail, the contact's `email` field);
    /// none for a flag.
    pub recipient: Option<String>,
    /// An e-mail's subject, when the flow gives one.
    pub subject: Option<String>,
}

/// What became of one contact.
#[derive(Clone, Debug)]
pub struct ContactResult {
    pub line: u32,
    /// Shared with the contact's entry in the list.
    pub phone: std::sync::Arc<str>,
    pub zone: Tz,
    pub arm: ArmId,
    /// How the contact ended; `None` while it has not (a paused campaign).
    pub end: Option<End>,
    /// A call of this contact was under way when the run stopped (read
    /// from a store while a run goes on, or after a crash).
    pub in_progress: bool,
    pub attempts: Box<[Attempt]>,
    pub path: Box<[StepId]>,
    /// What the run said and sent, when it did (most contacts of a large
    /// campaign send nothing, so this costs them a null pointer).
    pub messages: Option<Box<Messages>>,
}

/// What a contact's run said, sent and flagged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Messages {
    pub said: Vec<String>,
    pub sms: Vec<String>,
    pub emails: Vec<String>,
    pub flags: Vec<String>,
    /// The SMS, e-mails and flags, with recipients and attempts.
    pub outbox: Vec<Message>,
}

impl ContactResult {
    pub fn status(&self) -> Status {
        match &self.end {
            None if self.in_progress => Status::InProgress,
            None => Status::Pending,
            Some(e) => e.ending.status(),
        }
    }

    pub fn reason(&self) -> &str {
        self.end.as_ref().map_or("", |e| &*e.reason)
    }
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
                    step: Attempt::step_of(step(&a.step).unwrap_or(flow.entry)),
                    started_at: a.started_at,
                    ended_at: a.ended_at.unwrap_or(a.started_at),
                    outcome: a.outcome.unwrap_or(Outcome::Unknown),
                    sip_status: a.sip.as_ref().map(|s| s.0),
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
    pub sip: Option<(u16, String)>,
}

/// How a dialled call ended, as its attempt row keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEnd {
    pub ended_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub keys: Vec<Option<String>>,
    pub transfers: Vec<TransferOutcome>,
    pub sip: Option<(u16, String)>,
}

/// What a campaign is: real dials on the wall clock, or a simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Run,
    Simulation,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Simulation => "simulation",
        }
    }
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
    /// An unfinished simulation was cleared to run again from its start.
    pub restarted: bool,
    /// The campaign's last instant when it last stopped, on its own clock.
    pub finish: Option<DateTime<Utc>>,
}

/// Where a campaign stands, as its store keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignState {
    Running,
    /// Stopped by the operator or by `pause campaign when`; a run resumes it.
    Paused,
    Finished,
    /// Cancelled by the operator: every contact not ended was skipped.
    Cancelled,
}

impl CampaignState {
    pub fn name(self) -> &'static str {
        match self {
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Finished => "finished",
            CampaignState::Cancelled => "cancelled",
        }
    }

    /// The state a store wrote by its name.
    pub fn parse(name: &str) -> Option<CampaignState> {
        [
            CampaignState::Running,
            CampaignState::Paused,
            CampaignState::Finished,
            CampaignState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}
