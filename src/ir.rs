//! The IR: the checked, serialisable program the engine executes. IR values
//! are only built by `check`; nothing downstream re-validates them.
//! Names are resolved to indices, strategies to one rule per outcome,
//! calendars to minute windows per weekday, compliance to one merged policy,
//! and every expression carries its type.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

/// Bumped whenever the JSON shape changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

pub type StepId = usize;
pub type StrategyId = usize;
pub type CalendarId = usize;
pub type VarId = usize;
pub type ArmId = usize;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Program {
    pub format_version: u32,
    pub compiler_version: String,
    /// SHA-256 of every source file, in load order, with its path.
    pub source_hash: String,
    pub flow: Option<Flow>,
    pub tests: Vec<Test>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    Voicemail,
    Busy,
    NoAnswer,
    Rejected,
    InvalidNumber,
    NetworkError,
    Unknown,
    /// Routing only: a retry was due but a limit forbids it.
    Exhausted,
}

impl Outcome {
    /// What a dial can report, in the order messages list them.
    pub const DIAL: [Outcome; 8] = [
        Outcome::Answered,
        Outcome::Voicemail,
        Outcome::Busy,
        Outcome::NoAnswer,
        Outcome::Rejected,
        Outcome::InvalidNumber,
        Outcome::NetworkError,
        Outcome::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Voicemail => "voicemail",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Rejected => "rejected",
            Outcome::InvalidNumber => "invalid_number",
            Outcome::NetworkError => "network_error",
            Outcome::Unknown => "unknown",
            Outcome::Exhausted => "exhausted",
        }
    }

    /// The names of what a dial can report, in order.
    pub fn dial_names() -> Vec<&'static str> {
        Outcome::DIAL.iter().map(|o| o.name()).collect()
    }

    pub fn from_name(name: &str) -> Option<Outcome> {
        Outcome::DIAL
            .into_iter()
            .chain([Outcome::Exhausted])
            .find(|o| o.name() == name)
    }

    /// A connected call follows this outcome.
    pub fn connects(self) -> bool {
        matches!(self, Outcome::Answered | Outcome::Voicemail)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferOutcome {
    Answered,
    Failed,
    Hangup,
}

impl TransferOutcome {
    pub const ALL: [TransferOutcome; 3] = [
        TransferOutcome::Answered,
        TransferOutcome::Failed,
        TransferOutcome::Hangup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TransferOutcome::Answered => "answered",
            TransferOutcome::Failed => "failed",
            TransferOutcome::Hangup => "hangup",
        }
    }

    pub fn from_name(name: &str) -> Option<TransferOutcome> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "of", rename_all = "snake_case")]
pub enum Type {
    Text,
    Number,
    Bool,
    Date,
    Datetime,
    Duration,
    Time,
    Phone,
    Timezone,
    Enum(Vec<String>),
    Optional(Box<Type>),
    List(Box<Type>),
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Type::Text => f.write_str("text"),
            Type::Number => f.write_str("number"),
            Type::Bool => f.write_str("bool"),
            Type::Date => f.write_str("date"),
            Type::Datetime => f.write_str("datetime"),
            Type::Duration => f.write_str("duration"),
            Type::Time => f.write_str("time of day"),
            Type::Phone => f.write_str("phone"),
            Type::Timezone => f.write_str("timezone"),
            Type::Enum(values) => write!(f, "enum({})", values.join(", ")),
            Type::Optional(t) => write!(f, "{t}?"),
            Type::List(t) => write!(f, "list of {t}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    Text(String),
    Number(f64),
    Bool(bool),
    Date(NaiveDate),
    Datetime(LocalDateTime),
    /// Seconds.
    Duration(u64),
    /// Minutes since midnight.
    Time(u16),
}

/// A local date and time; without a zone it is read in the contact's zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalDateTime {
    pub local: NaiveDateTime,
    pub zone: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<Field>,
    /// The field dialled by default: the first of type `phone`.
    pub phone_field: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub ty: Type,
    pub optional: bool,
    pub default: Option<Value>,
}

/// `[start, end)` in minutes since local midnight; `end` may be 1440.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

/// Windows per weekday, Monday first, sorted and disjoint.
pub type Week = [Vec<Window>; 7];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calendar {
    pub name: String,
    /// When dialling may start: `hours` minus `pause`.
    pub weekly: Week,
    pub closed: Vec<Closed>,
    /// Dates whose public holidays do not close the calendar (`open`).
    #[serde(default)]
    pub open: Vec<NaiveDate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Closed {
    pub date: NaiveDate,
    /// The closed part of the day; the whole day when absent.
    pub window: Option<Window>,
    pub label: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Strategy {
    pub name: String,
    pub max_attempts: Option<u32>,
    pub min_gap_seconds: u64,
    pub jitter_percent: f64,
    /// At most one rule per outcome.
    pub rules: BTreeMap<Outcome, StrategyRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StrategyRule {
    Retry { form: RetryForm, max: Option<u32> },
    Stop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RetryForm {
    /// The n-th retry waits the n-th delay; past the list, the last.
    After {
        delays_seconds: Vec<u64>,
    },
    Backoff {
        first_seconds: u64,
        factor: f64,
        cap_seconds: Option<u64>,
    },
    At {
        times: Vec<u16>,
    },
    NextDayAt {
        times: Vec<u16>,
    },
    On {
        instants: Vec<LocalDateTime>,
    },
}

/// Every compliance policy in force. The engine enforces each one that
/// applies to a contact, so the strictest wins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Compliance {
    pub policies: Vec<Policy>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    /// A built-in policy standing for a rule (`tcpa`, `reg_f`, `france`…).
    pub preset: bool,
    /// Applies only to contacts of this US state (from a field or the area code).
    pub us_state: Option<String>,
    /// Local windows in which no dial may start; a window may wrap midnight.
    pub quiet_hours: Vec<Window>,
    pub rolling_limits: Vec<RollingLimit>,
    /// Texts count against the rolling limits too.
    pub limits_count_texts: bool,
    pub require_consent: bool,
    /// When set, dials may only start inside these local windows.
    pub allowed: Option<Week>,
    pub min_ring_seconds: Option<u64>,
    /// Regions whose public holidays are closed (`FR`).
    pub no_holidays: Vec<String>,
    /// Each contact's own country's (and state's) public holidays are
    /// closed (`no holidays from contact`).
    #[serde(default)]
    pub holidays_from_contact: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingLimit {
    pub max: u32,
    pub per_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ZoneSource {
    Field(String),
    Phone,
    Zone(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub name: String,
    pub title: Option<String>,
    pub contact: Schema,
    pub calendars: Vec<Calendar>,
    pub strategies: Vec<Strategy>,
    pub compliance: Compliance,
    pub timezone: Vec<ZoneSource>,
    pub region: Option<String>,
    pub concurrency: Option<u32>,
    pub rate: Option<Rate>,
    pub max_attempts_per_day: Option<u32>,
    pub start: Option<LocalDateTime>,
    pub stop: Option<LocalDateTime>,
    pub pause_when: Option<PauseWhen>,
    pub experiment: Option<String>,
    /// Always at least one; a flow without an experiment has the arm `default`.
    pub arms: Vec<Arm>,
    pub entry: StepId,
    pub steps: Vec<Step>,
    pub variables: Vec<Variable>,
}

impl Flow {
    /// Every action of every step, nested blocks included.
    pub fn actions(&self) -> Vec<&Action> {
        fn visit<'a>(actions: &'a [Action], out: &mut Vec<&'a Action>) {
            for a in actions {
                out.push(a);
                match a {
                    Action::Dial(d) => d.blocks.iter().for_each(|b| visit(b, out)),
                    Action::Gather(g) => {
                        g.keys.iter().for_each(|(_, b)| visit(b, out));
                        visit(&g.on_timeout, out);
                        visit(&g.on_invalid, out);
                    }
                    Action::Transfer(t) => {
                        visit(&t.answered, out);
                        visit(&t.failed, out);
                        visit(&t.hangup, out);
                    }
                    Action::If {
                        then, otherwise, ..
                    } => {
                        visit(then, out);
                        visit(otherwise, out);
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for step in &self.steps {
            visit(&step.actions, &mut out);
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub count: u32,
    pub per_seconds: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseWhen {
    pub step: StepId,
    pub times: u32,
}

/// One experiment arm with every setting it runs under resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub name: String,
    pub weight_percent: f64,
    pub strategy: Option<StrategyId>,
    pub calendar: Option<CalendarId>,
    pub caller_ids: Vec<String>,
}

impl Arm {
    /// The caller id of attempt `n` (1-based): the arm's list in turn, so a
    /// retry shows another number; `None` without a list.
    pub fn caller_id(&self, attempt: u32) -> Option<&str> {
        let ids = &self.caller_ids;
        (!ids.is_empty()).then(|| ids[(attempt.max(1) as usize - 1) % ids.len()].as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    pub ty: Type,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Dial(Dial),
    Say {
        text: Template,
    },
    Play {
        file: String,
    },
    Gather(Gather),
    Record {
        max_seconds: Option<u64>,
        var: VarId,
    },
    Transfer(Transfer),
    Set {
        var: VarId,
        value: Expr,
    },
    SendSms {
        text: Template,
    },
    SendEmail {
        body: Template,
        subject: Option<Template>,
    },
    Flag {
        label: String,
    },
    OptOut,
    Wait {
        seconds: u64,
    },
    If {
        cond: Expr,
        then: Vec<Action>,
        otherwise: Vec<Action>,
    },
    Goto {
        step: StepId,
    },
    /// Without a form: the active strategy's rule for the outcome being routed.
    Retry {
        form: Option<RetryForm>,
        max: Option<u32>,
    },
    End {
        completed: bool,
        reason: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dial {
    pub number: Expr,
    pub timeout_seconds: u64,
    pub detect_voicemail: bool,
    pub from: Option<String>,
    /// The bodies of the step's `on` lines.
    pub blocks: Vec<Vec<Action>>,
    /// Per arm (indexed like `Flow::arms`), what each outcome does.
    pub routing: Vec<BTreeMap<Outcome, Resolution>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", content = "index", rename_all = "snake_case")]
pub enum Resolution {
    /// `Dial::blocks[i]`.
    Block(usize),
    /// The arm's strategy rule for this outcome.
    Strategy,
    /// No route: `unknown` ends failed "unknown", `exhausted` ends failed
    /// "retries_exhausted".
    Default,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gather {
    pub digits: u32,
    pub timeout_seconds: u64,
    pub tries: u32,
    pub keys: Vec<(String, Vec<Action>)>,
    pub on_timeout: Vec<Action>,
    pub on_invalid: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub number: Expr,
    pub timeout_seconds: u64,
    pub answered: Vec<Action>,
    pub failed: Vec<Action>,
    pub hangup: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplatePart {
    Text(String),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    pub ty: Type,
    pub kind: ExprKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExprKind {
    Literal(Value),
    Field(String),
    Var(VarId),
    Builtin(Builtin),
    List(Vec<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    IsSet(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    Attempt,
    Outcome,
    Arm,
    Digits,
    LocalHour,
    LocalWeekday,
    LocalDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Coalesce,
    Add,
    Sub,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub name: String,
    pub contact: BTreeMap<String, Value>,
    pub now: Option<LocalDateTime>,
    /// The experiment arm the test puts its contact in (`arm NAME`).
    #[serde(default)]
    pub arm: Option<ArmId>,
    pub script: Vec<ScriptedDial>,
    pub expectations: Vec<Expectation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptedDial {
    pub outcome: Outcome,
    pub press: Option<String>,
    pub transfer: Option<TransferOutcome>,
    pub lasting_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "expect", rename_all = "snake_case")]
pub enum Expectation {
    AttemptAt {
        attempt: u32,
        at: LocalDateTime,
    },
    Attempts {
        count: u32,
    },
    End {
        completed: bool,
        reason: Option<String>,
    },
    Path {
        steps: Vec<StepId>,
    },
    Sms {
        text: Option<String>,
    },
    Email {
        text: Option<String>,
    },
    Flag {
        label: String,
    },
    Arm {
        arm: ArmId,
    },
    Skipped,
}
