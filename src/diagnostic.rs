//! Diagnostics: the stable codes, the value every stage reports user errors
//! with, and rendering (human, JSON, GitHub annotations, SARIF).

mod explain;
pub mod render;

pub use explain::{explanation, has_explanation, reference_section, Explanation};
pub use render::{render_github, render_human, render_json, render_sarif, Format};

use serde::Serialize;

use crate::source::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $sev:ident, $title:literal;)*) => {
        /// Every diagnostic flowc can report. The string codes are stable: CI
        /// configurations and `flowc explain` depend on them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev),* }
            }

            /// A one-line description of the rule, used for SARIF and `explain`.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title),* }
            }

            pub fn parse(s: &str) -> Option<Code> {
                let s = s.trim().to_ascii_uppercase();
                Code::ALL.iter().copied().find(|c| c.as_str() == s)
            }
        }
    };
}

codes! {
    Syntax = "E0101", Error, "the text does not follow the language's syntax";
    NotSnakeCase = "E0102", Error, "names are written in lower snake case";
    DurationWithoutUnit = "E0103", Error, "a duration needs a unit";
    InvalidLiteral = "E0104", Error, "a date, time, number or string that cannot be read";
    DuplicateSetting = "E0105", Error, "a flow setting is given twice";
    SeveralFlows = "E0106", Error, "a campaign has exactly one flow";
    UnknownStep = "E0201", Error, "a step that does not exist";
    UnknownCalendar = "E0202", Error, "a calendar that does not exist";
    UnknownStrategy = "E0203", Error, "a strategy that does not exist";
    UnknownCompliance = "E0204", Error, "a compliance policy that does not exist";
    UnknownField = "E0205", Error, "a contact field that the schema does not declare";
    UnknownVariable = "E0206", Error, "a variable that nothing sets";
    UnknownArm = "E0207", Error, "an experiment arm that does not exist";
    Duplicate = "E0208", Error, "a name defined twice";
    UseCycle = "E0209", Error, "files that use each other";
    UseNotFound = "E0210", Error, "a used file that cannot be read";
    UnreachableStep = "W0211", Warning, "a step no route leads to";
    ReadBeforeSet = "E0212", Error, "a variable read on a path that has not set it";
    UnknownOutcome = "E0213", Error, "an outcome name that does not exist";
    UnknownType = "E0214", Error, "a field type that does not exist";
    MissingSchema = "E0215", Error, "a flow without a contact schema or phone field";
    UsePath = "E0216", Error, "a `use` path that is not a relative path to a .flow file";
    NoZone = "E0217", Error, "a flow that gives its contacts no time zone";
    CalendarFile = "E0218", Error, "a calendar file that cannot be read";
    CalendarFileEvent = "W0219", Warning, "an event of a calendar file that closes nothing, or less than it seems";
    TypeMismatch = "E0301", Error, "a value of the wrong type";
    ConditionNotBool = "E0302", Error, "a condition that is not true or false";
    OptionalNotUnwrapped = "E0303", Error, "an optional field used without a default";
    UnknownZone = "E0304", Error, "a time zone that is not in the IANA database";
    InvalidPhone = "E0305", Error, "a phone number that cannot be dialled";
    NotInEnum = "E0306", Error, "a value the enum does not list";
    MissingRoutes = "E0401", Error, "dial or transfer outcomes with no route";
    RouteTwice = "E0402", Error, "an outcome routed twice";
    VoicemailWithoutDetection = "E0403", Error, "`on voicemail` on a dial that does not detect voicemail";
    RetryOutsideDial = "E0404", Error, "`retry` outside a dial's routes";
    BareRetryWithoutRule = "E0405", Error, "a bare `retry` with no strategy rule to follow";
    InCallWithoutCall = "E0406", Error, "an in-call action reachable without a connected call";
    EndlessLoop = "E0407", Error, "a loop that never dials, waits or ends";
    UnboundedDialCycle = "E0408", Error, "a loop through a dial with no attempt bound";
    MisplacedRoute = "E0409", Error, "routes that do not follow a dial or transfer";
    StepWithoutEnd = "E0410", Error, "a step that does not say what happens next";
    WaitDuringCall = "E0411", Error, "`wait` while a call is connected";
    UnboundedRetry = "E0501", Error, "a retry with no attempt bound";
    RuleMaxUnreachable = "W0502", Warning, "a rule limit the attempt limit never lets it reach";
    NoCallableTime = "E0503", Error, "a calendar with no callable minute";
    RetryAtNeverCallable = "E0504", Error, "`retry at` times the calendar never allows";
    OverlappingHours = "W0505", Warning, "hours windows that overlap";
    BackwardsWindow = "E0506", Error, "a time window that ends before it starts";
    ClosedBeforeStart = "W0507", Warning, "a closed date before the campaign starts";
    StrategyImpossible = "E0508", Error, "a strategy the limits make impossible";
    ArmWeights = "E0509", Error, "experiment weights that do not sum to 100%";
    InvalidValue = "E0510", Error, "a setting with a value out of range";
    HoursInQuietPreset = "E0601", Error, "calendar hours inside a preset's quiet hours";
    HoursInQuietCustom = "W0602", Warning, "calendar hours inside quiet hours";
    ConsentWithoutField = "E0603", Error, "`require consent` without a consent field";
    NoCompliance = "W0604", Warning, "calling outside 08:00-21:00 with no compliance policy";
    RingTooShort = "E0605", Error, "a dial timeout shorter than the policy's minimum ring";
    StateQuietHours = "W0606", Warning, "calendar hours inside a state preset's quiet hours";
    MissingField = "E0701", Error, "a test contact without a required field";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A place a diagnostic points at, with what to say there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

/// A user error or warning. Diagnostics carry spans only; the source text is
/// attached when they are rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub labels: Vec<Label>,
    pub help: Option<String>,
    pub note: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            labels: vec![],
            help: None,
            note: None,
        }
    }

    /// The place the diagnostic is about.
    pub fn primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: true,
        });
        self
    }

    /// Another place involved (the first definition of a duplicate, the importing file).
    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.note = Some(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn primary_span(&self) -> Option<Span> {
        self.labels
            .iter()
            .find(|l| l.primary)
            .or(self.labels.first())
            .map(|l| l.span)
    }
}

/// The closest candidate to a misspelt name, if one is close enough to suggest.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, c)| *score >= 0.85 && *c != name)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "a, b and c": how messages list several things.
pub fn list_words<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(|s| s.as_ref()).collect();
            format!("{} and {}", init.join(", "), last.as_ref())
        }
    }
}
