//! Dialers: what places a call and reports what happened. The engine talks
//! to every adapter through one async trait, `Dialer`: place a call and learn
//! its outcome, then, on a connected call, carry out the in-call actions
//! (gather keys, transfer) until the flow hangs up. Adapters: `sim` (a seeded
//! model, below) and `script` (outcomes from a file, `dialer::script`). A SIP
//! or external-program adapter fits the same trait: its futures wait on the
//! network or the program, and the engine keeps dialling meanwhile.

pub mod amd;
pub mod audio;
pub mod bridge;
pub mod rtp;
pub mod script;
pub mod sip;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{Datelike, Duration, NaiveDateTime, Timelike};
use serde::Deserialize;

use crate::contacts::Fields;
use crate::ir::{Outcome, Schema, TransferOutcome, Type, Value};

/// How long a `record` without `max` may last.
pub const RECORD_DEFAULT_SECONDS: u64 = 120;

/// One call to place.
#[derive(Clone, Debug)]
pub struct Call {
    pub id: CallId,
    /// The number to dial, E.164.
    pub number: String,
    /// The number shown to the recipient, when the flow sets one.
    pub caller_id: Option<String>,
    /// The contact's local time when the call starts.
    pub local: NaiveDateTime,
    pub timeout_seconds: u64,
    pub detect_voicemail: bool,
    /// The contact's fields, for a dialer that asks for them
    /// (`Dialer::wants_fields`).
    pub fields: Option<Fields>,
}

/// Names a call: the contact (its place in the campaign) and the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallId {
    pub contact: usize,
    pub attempt: u32,
}

/// How a call ended and how long it took (ringing and talking). The engine
/// holds the line until the call's start plus `duration`: an adapter that
/// answers at once (the simulation) still occupies a line as long as the call.
#[derive(Clone, Debug, PartialEq)]
pub struct Dialled {
    pub outcome: Outcome,
    pub duration: Duration,
    /// The final SIP status and reason phrase, when the adapter knows them
    /// (kept on the attempt's row; reports group failures by them).
    pub sip: Option<(u16, String)>,
}

/// A `gather` on a connected call: the keys the flow lists (a simulated
/// person picks among them) and which try this is.
#[derive(Clone, Debug)]
pub struct Ask {
    pub digits: u32,
    pub timeout_seconds: u64,
    pub attempt: u32,
    pub keys: Vec<String>,
}

/// A dialer adapter. The engine runs on one thread, so futures need not be
/// `Send`; each call's futures run concurrently with the others'.
#[allow(async_fn_in_trait)]
pub trait Dialer {
    /// Places the call; resolves when its outcome is known.
    fn place(&self, call: Call) -> impl Future<Output = Dialled>;
    /// Keys pressed on a connected call, `None` when nothing came in time.
    fn gather(&self, call: CallId, ask: Ask) -> impl Future<Output = Option<String>>;
    /// Transfers a connected call.
    fn transfer(
        &self,
        call: CallId,
        number: String,
        timeout_seconds: u64,
    ) -> impl Future<Output = TransferOutcome>;
    /// Speaks a text on a connected call (`say`); adapters without media
    /// skip it.
    fn say(&self, _call: CallId, _text: String) -> impl Future<Output = ()> {
        async {}
    }
    /// Plays an audio file on a connected call (`play`).
    fn play(&self, _call: CallId, _file: String) -> impl Future<Output = ()> {
        async {}
    }
    /// Records what the caller says into `file` (a name in the run's
    /// recordings folder) for `max_seconds` at most, ending sooner on a
    /// silence or when they hang up; adapters without media skip it.
    fn record(
        &self,
        _call: CallId,
        _file: String,
        _max_seconds: Option<u64>,
    ) -> impl Future<Output = ()> {
        async {}
    }
    /// The flow is done with a connected call.
    fn hang_up(&self, _call: CallId) -> impl Future<Output = ()> {
        async {}
    }
    /// Whether each call should carry its contact's fields (`Call::fields`):
    /// a copy per call, made only for a dialer that reads them.
    fn wants_fields(&self) -> bool {
        false
    }
}

/// The simulation model (`--model FILE`, TOML). Probabilities are weights of
/// each outcome on a first attempt; `answered` is scaled by the local hour,
/// the weekday, the contact's fields and the attempt number, the rest
/// share what is left.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub outcomes: BTreeMap<String, f64>,
    /// Multipliers of `answered` by local hour ("18" = 1.2).
    #[serde(default)]
    pub by_hour: BTreeMap<String, f64>,
    /// Multipliers of `answered` by weekday ("sat" = 0.8).
    #[serde(default)]
    pub by_weekday: BTreeMap<String, f64>,
    /// Multipliers of `answered` by a contact field's value
    /// (`[by_field.segment]` `vip = 1.4`); a value not listed weighs 1.
    #[serde(default)]
    pub by_field: BTreeMap<String, BTreeMap<String, f64>>,
    /// `answered` on attempt n is multiplied by decay^(n-1): people who did
    /// not answer once are less likely to answer later.
    #[serde(default = "one")]
    pub retry_decay: f64,
    #[serde(default = "talk")]
    pub talk_seconds: u64,
    #[serde(default = "ring")]
    pub ring_seconds: u64,
    /// Chance that nobody presses a key when a gather asks.
    #[serde(default = "gather_timeout")]
    pub gather_timeout: f64,
}

fn one() -> f64 {
    1.0
}
fn talk() -> u64 {
    90
}
fn ring() -> u64 {
    25
}
fn gather_timeout() -> f64 {
    0.2
}

/// The built-in model, calibrated to the field's published figures: about
/// 30% of first attempts connect, 45% of contacts within two attempts and
/// 53% within three (20-40%, 30-50% and 40-60% are the published ranges).
pub const DEFAULT_MODEL: &str = r#"
retry_decay = 0.7
talk_seconds = 90
ring_seconds = 25
gather_timeout = 0.2

[outcomes]
answered = 0.30
voicemail = 0.12
busy = 0.10
no_answer = 0.40
rejected = 0.04
invalid_number = 0.02
network_error = 0.02

[by_hour]
"9" = 0.9
"12" = 0.85
"17" = 1.1
"18" = 1.15
"19" = 1.1

[by_weekday]
sat = 0.9
sun = 0.8
"#;

impl Model {
    /// Reads a model, refusing what it would otherwise ignore: an hour that
    /// is not 0 to 23 (`"9"` and `"09"` are both read), a weekday that is
    /// not `mon` … `sun`, a weight that is negative or not a number, an
    /// unknown key, outcomes that do not sum to 1. Errors name the line.
    pub fn parse(text: &str) -> Result<Model, String> {
        let mut m: Model = toml::from_str(text).map_err(|e| e.to_string())?;
        let at = |section: &str, key: &str| match key_line(text, section, key) {
            Some(line) => format!("line {line}: "),
            None => String::new(),
        };
        for (name, p) in &m.outcomes {
            if Outcome::from_name(name).is_none_or(|o| !Outcome::DIAL.contains(&o)) {
                return Err(format!(
                    "{}[outcomes] `{name}` is not a dial outcome: write one of {}",
                    at("outcomes", name),
                    Outcome::DIAL
                        .iter()
                        .map(|o| o.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !p.is_finite() || !(0.0..=1.0).contains(p) {
                return Err(format!(
                    "{}[outcomes] `{name}` = {p}: a probability lies between 0 and 1",
                    at("outcomes", name)
                ));
            }
        }
        let total: f64 = m.outcomes.values().sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(format!(
                "the [outcomes] probabilities sum to {total}, not 1: make them add up to 1"
            ));
        }
        let mut by_hour = BTreeMap::new();
        for (key, w) in &m.by_hour {
            let hour = Some(key.as_str())
                .filter(|k| (1..=2).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|k| k.parse::<u32>().ok())
                .filter(|h| *h < 24);
            let Some(hour) = hour else {
                return Err(format!(
                    "{}[by_hour] \"{key}\" is not an hour: write \"0\" to \"23\" (\"9\" or \"09\")",
                    at("by_hour", key)
                ));
            };
            if !w.is_finite() || *w < 0.0 {
                return Err(format!(
                    "{}[by_hour] \"{key}\" = {w}: a weight is a number of 0 or more (1 changes nothing)",
                    at("by_hour", key)
                ));
            }
            if by_hour.insert(hour.to_string(), *w).is_some() {
                return Err(format!(
                    "{}[by_hour] the hour {hour} is given twice",
                    at("by_hour", key)
                ));
            }
        }
        m.by_hour = by_hour;
        for (key, w) in &m.by_weekday {
            if !WEEKDAYS.contains(&key.as_str()) {
                return Err(format!(
                    "{}[by_weekday] `{key}` is not a weekday: write one of {}",
                    at("by_weekday", key),
                    WEEKDAYS.join(", ")
                ));
            }
            if !w.is_finite() || *w < 0.0 {
                return Err(format!(
                    "{}[by_weekday] `{key}` = {w}: a weight is a number of 0 or more (1 changes nothing)",
                    at("by_weekday", key)
                ));
            }
        }
        for (field, values) in &m.by_field {
            let section = format!("by_field.{field}");
            for (value, w) in values {
                if !w.is_finite() || *w < 0.0 {
                    return Err(format!(
                        "{}[{section}] `{value}` = {w}: a weight is a number of 0 or more (1 changes nothing)",
                        at(&section, value)
                    ));
                }
            }
        }
        if !(0.0..=1.0).contains(&m.gather_timeout) {
            return Err("`gather_timeout` is a probability: it lies between 0 and 1".into());
        }
        if !m.retry_decay.is_finite() || m.retry_decay < 0.0 {
            return Err("`retry_decay` is a number of 0 or more".into());
        }
        Ok(m)
    }

    pub fn default_model() -> Model {
        Model::parse(DEFAULT_MODEL).expect("the built-in model is valid")
    }

    /// Checks `[by_field.…]` against the flow's contact schema: each names
    /// a field of text, choice (enum), yes/no, phone or time-zone type, and
    /// a choice field's values are among its choices, a yes/no field's
    /// `true` and `false`.
    pub fn check_fields(&self, schema: &Schema) -> Result<(), String> {
        for (name, values) in &self.by_field {
            let Some(field) = schema.fields.iter().find(|f| f.name == *name) else {
                let known: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
                return Err(format!(
                    "[by_field.{name}]: the contact schema has no field `{name}`; its fields are {}",
                    known.join(", ")
                ));
            };
            let ty = match &field.ty {
                Type::Optional(inner) => inner.as_ref(),
                ty => ty,
            };
            let allowed: Option<Vec<String>> = match ty {
                Type::Text | Type::Phone | Type::Timezone => None,
                Type::Enum(choices) => Some(choices.clone()),
                Type::Bool => Some(vec!["true".into(), "false".into()]),
                _ => {
                    return Err(format!(
                        "[by_field.{name}]: `{name}` is not a text, choice or yes/no field; \
                         weigh contacts by one of those (a number or date field has too many values)"
                    ))
                }
            };
            if let Some(allowed) = allowed {
                if let Some(v) = values.keys().find(|v| !allowed.contains(v)) {
                    return Err(format!(
                        "[by_field.{name}] `{v}` is not a value `{name}` can take: write one of {}",
                        allowed.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The product of the weights of `fields`' values.
    fn field_weight(&self, fields: &Fields) -> f64 {
        self.by_field
            .iter()
            .map(|(name, values)| {
                let value = match fields.get(name) {
                    Some(Value::Text(t)) => t,
                    Some(Value::Bool(b)) => b.to_string(),
                    _ => return 1.0,
                };
                values.get(&value).copied().unwrap_or(1.0)
            })
            .product()
    }
}

/// The line (1-based) of `key` in the table `[section]` of a TOML text.
fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches(['"', '\'']);
        if current == section && k == key {
            return Some(n + 1);
        }
    }
    None
}

/// A stream of uniform numbers fixed by a seed and the call: a simulation
/// gives the same results whatever order its events run in.
fn uniform(seed: u64, contact: usize, attempt: u32, draw: u32) -> f64 {
    let mut x = seed
        ^ (contact as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (u64::from(attempt) << 32)
        ^ u64::from(draw);
    // SplitMix64.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The `sim` dialer: outcomes drawn from a model with a seed.
pub struct SimDialer {
    pub model: Model,
    pub seed: u64,
}

impl Dialer for SimDialer {
    async fn place(&self, call: Call) -> Dialled {
        self.dial(&call)
    }

    fn wants_fields(&self) -> bool {
        !self.model.by_field.is_empty()
    }

    async fn gather(&self, call: CallId, ask: Ask) -> Option<String> {
        self.keys(call.contact, call.attempt, ask.attempt, &ask.keys)
    }

    async fn transfer(&self, call: CallId, _number: String, _timeout: u64) -> TransferOutcome {
        self.transferred(call.contact, call.attempt)
    }
}

impl SimDialer {
    pub fn dial(&self, call: &Call) -> Dialled {
        let m = &self.model;
        let base = |o: &str| m.outcomes.get(o).copied().unwrap_or(0.0);
        let hour = m
            .by_hour
            .get(&call.local.hour().to_string())
            .copied()
            .unwrap_or(1.0);
        let weekday = WEEKDAYS[call.local.weekday().num_days_from_monday() as usize];
        let day = m.by_weekday.get(weekday).copied().unwrap_or(1.0);
        let decay = m.retry_decay.powi(call.id.attempt.saturating_sub(1) as i32);
        let field = call.fields.as_ref().map_or(1.0, |f| m.field_weight(f));
        let answered = (base("answered") * hour * day * field * decay).clamp(0.0, 1.0);
        // The other outcomes share the rest in their base proportions.
        let others: Vec<(Outcome, f64)> = Outcome::DIAL
            .iter()
            .filter(|o| **o != Outcome::Answered)
            .map(|o| (*o, base(o.name())))
            .collect();
        let others_total: f64 = others.iter().map(|(_, p)| p).sum();
        let u = uniform(self.seed, call.id.contact, call.id.attempt, 0);
        let mut outcome = Outcome::Answered;
        if u >= answered && others_total > 0.0 {
            let mut acc = answered;
            outcome = others.last().map_or(Outcome::NoAnswer, |(o, _)| *o);
            for (o, p) in &others {
                acc += p / others_total * (1.0 - answered);
                if u < acc {
                    outcome = *o;
                    break;
                }
            }
        }
        if outcome == Outcome::Voicemail && !call.detect_voicemail {
            // A machine answered and nobody told them apart.
            outcome = Outcome::Answered;
        }
        let seconds = match outcome {
            Outcome::Answered | Outcome::Voicemail => m.ring_seconds / 2 + m.talk_seconds,
            Outcome::NoAnswer => call.timeout_seconds,
            _ => 5,
        };
        Dialled {
            outcome,
            duration: Duration::seconds(seconds as i64),
            sip: None,
        }
    }

    /// Keys pressed for a gather on a connected call: nothing, or one of the listed keys.
    pub fn keys(&self, contact: usize, attempt: u32, ask: u32, keys: &[String]) -> Option<String> {
        let u = uniform(self.seed, contact, attempt, 100 + ask);
        if keys.is_empty() || u < self.model.gather_timeout {
            return None;
        }
        let v = uniform(self.seed, contact, attempt, 200 + ask);
        keys.get((v * keys.len() as f64) as usize).cloned()
    }

    pub fn transferred(&self, contact: usize, attempt: u32) -> TransferOutcome {
        let u = uniform(self.seed, contact, attempt, 300);
        if u < 0.8 {
            TransferOutcome::Answered
        } else if u < 0.95 {
            TransferOutcome::Failed
        } else {
            TransferOutcome::Hangup
        }
    }
}
