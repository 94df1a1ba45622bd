//! The syntax tree: what the author wrote, with spans, before any checking.
//! It owns its data and its spans; nothing here refers to pest.

use crate::source::{Span, Spanned};

pub type Ident = Spanned<String>;

#[derive(Clone, Debug, Default)]
pub struct File {
    pub items: Vec<Item>,
    /// Names of items that could not be parsed: references to them stay quiet.
    pub broken: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Item {
    Use(Spanned<String>),
    Contact(Schema),
    Calendar(Calendar),
    Strategy(Strategy),
    Compliance(Compliance),
    Flow(Flow),
    Test(Test),
}

#[derive(Clone, Debug)]
pub struct Schema {
    pub span: Span,
    pub fields: Vec<FieldDecl>,
}

#[derive(Clone, Debug)]
pub struct FieldDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub optional: bool,
    pub default: Option<Expr>,
}

#[derive(Clone, Debug)]
pub enum TypeExpr {
    Named(Ident),
    Enum(Span, Vec<Ident>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Minutes(pub u16);

#[derive(Clone, Debug)]
pub struct Window {
    pub span: Span,
    pub start: Spanned<u16>,
    pub end: Spanned<u16>,
}

/// A set of weekdays, Monday = bit 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaySet(pub u8);

impl DaySet {
    pub const ALL: DaySet = DaySet(0x7f);
    pub fn contains(self, weekday: usize) -> bool {
        self.0 & (1 << weekday) != 0
    }
}

#[derive(Clone, Debug)]
pub struct Calendar {
    pub name: Ident,
    /// `calendar NAME from "file.ics"`: closed days from an iCalendar file,
    /// added to `entries` as `Closed` lines when the file is loaded.
    pub from: Option<Spanned<String>>,
    pub entries: Vec<CalendarEntry>,
}

#[derive(Clone, Debug)]
pub enum CalendarEntry {
    Hours {
        span: Span,
        days: Spanned<DaySet>,
        windows: Vec<Window>,
    },
    Pause {
        span: Span,
        days: Spanned<DaySet>,
        window: Window,
        label: Option<String>,
    },
    Closed {
        span: Span,
        dates: Vec<Spanned<chrono::NaiveDate>>,
        window: Option<Window>,
        label: Option<String>,
    },
    /// `open DATE…`: a public holiday the calendar works anyway (an
    /// estimated lunar date that was announced otherwise).
    Open {
        span: Span,
        dates: Vec<Spanned<chrono::NaiveDate>>,
    },
}

#[derive(Clone, Debug)]
pub struct Strategy {
    pub name: Ident,
    pub max_attempts: Option<Spanned<u32>>,
    pub min_gap: Option<Spanned<u64>>,
    pub jitter: Option<Spanned<f64>>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub span: Span,
    pub outcomes: Vec<Ident>,
    pub action: RuleAction,
}

#[derive(Clone, Debug)]
pub enum RuleAction {
    Retry {
        form: Spanned<RetryForm>,
        max: Option<Spanned<u32>>,
    },
    Stop,
}

/// Durations are whole seconds.
#[derive(Clone, Debug, PartialEq)]
pub enum RetryForm {
    After(Vec<Spanned<u64>>),
    Backoff {
        first: Spanned<u64>,
        factor: Spanned<f64>,
        cap: Option<Spanned<u64>>,
    },
    At(Vec<Spanned<u16>>),
    NextDayAt(Vec<Spanned<u16>>),
    On(Vec<Spanned<DateTime>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct DateTime {
    pub local: chrono::NaiveDateTime,
    pub zone: Option<Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct Compliance {
    pub name: Ident,
    pub entries: Vec<ComplianceEntry>,
}

#[derive(Clone, Debug)]
pub enum ComplianceEntry {
    QuietHours(Window),
    Rolling {
        span: Span,
        max: Spanned<u32>,
        per: Spanned<u64>,
    },
    RequireConsent(Span),
    Allowed {
        span: Span,
        days: Spanned<DaySet>,
        windows: Vec<Window>,
    },
    MinRing(Spanned<u64>),
    NoHolidays(Spanned<String>),
    /// `no holidays from contact`: each contact's country (and state).
    NoHolidaysFromContact(Span),
}

#[derive(Clone, Debug)]
pub struct Flow {
    pub name: Ident,
    pub settings: Vec<Setting>,
    pub experiments: Vec<Experiment>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug)]
pub struct Setting {
    pub span: Span,
    pub kind: SettingKind,
}

#[derive(Clone, Debug)]
pub enum SettingKind {
    Title(Spanned<String>),
    Calendar(Ident),
    Timezone(Vec<ZoneSource>),
    Region(Spanned<String>),
    Strategy(Ident),
    Compliance(Vec<Ident>),
    CallerId(Vec<Spanned<String>>),
    Concurrency(Spanned<u32>),
    Rate {
        count: Spanned<u32>,
        per_seconds: u32,
    },
    MaxPerDay(Spanned<u32>),
    StartStep(Ident),
    Start(Spanned<DateTime>),
    Stop(Spanned<DateTime>),
    PauseWhen {
        step: Ident,
        times: Spanned<u32>,
    },
}

impl SettingKind {
    /// The words that introduce the setting, for "given twice" messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            SettingKind::Title(_) => "title",
            SettingKind::Calendar(_) => "calendar",
            SettingKind::Timezone(_) => "timezone",
            SettingKind::Region(_) => "region",
            SettingKind::Strategy(_) => "strategy",
            SettingKind::Compliance(_) => "compliance",
            SettingKind::CallerId(_) => "caller id",
            SettingKind::Concurrency(_) => "concurrency",
            SettingKind::Rate { .. } => "rate",
            SettingKind::MaxPerDay(_) => "max attempts per day",
            SettingKind::StartStep(_) => "start step",
            SettingKind::Start(_) => "start",
            SettingKind::Stop(_) => "stop",
            SettingKind::PauseWhen { .. } => "pause campaign when",
        }
    }
}

#[derive(Clone, Debug)]
pub enum ZoneSource {
    Field(Ident),
    Phone(Span),
    Literal(Spanned<String>),
    /// A bare word other than `phone`.
    Invalid(Ident),
}

#[derive(Clone, Debug)]
pub struct Experiment {
    pub name: Ident,
    pub arms: Vec<Arm>,
}

#[derive(Clone, Debug)]
pub struct Arm {
    pub name: Ident,
    pub weight: Spanned<f64>,
    pub overrides: Vec<Setting>,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub name: Ident,
    pub body: Block,
}

#[derive(Clone, Debug)]
pub struct Block {
    pub span: Span,
    pub actions: Vec<Action>,
    pub routes: Vec<Route>,
}

/// `on a, b -> …` after a dial or transfer.
#[derive(Clone, Debug)]
pub struct Route {
    pub span: Span,
    pub outcomes: Vec<Ident>,
    pub target: Target,
}

#[derive(Clone, Debug)]
pub enum Target {
    Step(Ident),
    Block(Block),
}

#[derive(Clone, Debug)]
pub struct Action {
    pub span: Span,
    pub kind: ActionKind,
}

#[derive(Clone, Debug)]
pub enum ActionKind {
    Dial {
        number: Expr,
        timeout: Option<Spanned<u64>>,
        detect_voicemail: Option<Span>,
        from: Option<Spanned<String>>,
    },
    Say(Str),
    Play(Spanned<String>),
    Gather {
        digits: Spanned<u32>,
        timeout: Option<Spanned<u64>>,
        tries: Option<Spanned<u32>>,
        arms: Vec<GatherArm>,
    },
    Record {
        max: Option<Spanned<u64>>,
        name: Ident,
    },
    Transfer {
        number: Expr,
        timeout: Option<Spanned<u64>>,
    },
    Set {
        name: Ident,
        value: Expr,
    },
    SendSms(Str),
    SendEmail {
        body: Str,
        subject: Option<Str>,
    },
    Flag(Spanned<String>),
    OptOut,
    Wait(Spanned<u64>),
    If {
        cond: Expr,
        then: Block,
        otherwise: Option<Block>,
    },
    Goto(Ident),
    Retry {
        form: Option<Spanned<RetryForm>>,
        max: Option<Spanned<u32>>,
    },
    End {
        completed: bool,
        reason: Option<Spanned<String>>,
    },
}

#[derive(Clone, Debug)]
pub struct GatherArm {
    pub span: Span,
    pub keys: Vec<Spanned<GatherKey>>,
    pub target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatherKey {
    Digits(String),
    Timeout,
    Invalid,
    Other,
    Unknown(String),
}

/// A string literal, split into text and `{expr}` interpolations.
#[derive(Clone, Debug)]
pub struct Str {
    pub span: Span,
    pub parts: Vec<StrPart>,
}

#[derive(Clone, Debug)]
pub enum StrPart {
    Text(String),
    Expr(Expr),
}

impl Str {
    /// The text when the string has no interpolation.
    pub fn plain(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                StrPart::Text(t) => out.push_str(t),
                StrPart::Expr(_) => return None,
            }
        }
        Some(out)
    }
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub span: Span,
    pub kind: ExprKind,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Literal(Literal),
    Str(Str),
    Field(Ident),
    Local(Ident),
    Name(Ident),
    List(Vec<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    IsSet(Box<Expr>),
    /// A piece the lowering already reported; checks stay quiet about it.
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Number(f64),
    Percent(f64),
    Bool(bool),
    Duration(u64),
    Time(u16),
    Date(chrono::NaiveDate),
    DateTime(DateTime),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Coalesce => "??",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Test {
    pub name: Spanned<String>,
    pub span: Span,
    pub entries: Vec<TestEntry>,
}

#[derive(Clone, Debug)]
pub enum TestEntry {
    Contact {
        span: Span,
        fields: Vec<(Ident, Expr)>,
    },
    Now(Spanned<DateTime>),
    /// `arm NAME`: the contact runs in this experiment arm, whatever its hash.
    Arm(Ident),
    Dial {
        span: Span,
        outcome: Ident,
        press: Option<Spanned<String>>,
        transfer: Option<Ident>,
        lasting: Option<Spanned<u64>>,
    },
    ExpectAttemptAt {
        span: Span,
        attempt: Spanned<u32>,
        at: Spanned<DateTime>,
    },
    ExpectAttempts(Spanned<u32>),
    ExpectEnd {
        span: Span,
        completed: bool,
        reason: Option<Spanned<String>>,
    },
    ExpectPath(Vec<Ident>),
    ExpectSms(Span, Option<Spanned<String>>),
    ExpectEmail(Span, Option<Spanned<String>>),
    ExpectFlag(Spanned<String>),
    ExpectArm(Ident),
    ExpectSkipped(Span),
}
