//! Dialers: what places a call and reports what happened. This module holds
//! the seeded simulation model used by `flowc simulate`; the scenario tests
//! script their own replies (`runtime::scenario`).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDateTime, Timelike};
use serde::Deserialize;

use crate::ir::{Outcome, TransferOutcome};

/// One call to place.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    pub contact: usize,
    pub attempt: u32,
    pub number: &'a str,
    /// The contact's local time when the call starts.
    pub local: NaiveDateTime,
    pub timeout_seconds: u64,
    pub detect_voicemail: bool,
}

/// How a call ended and how long it took (ringing and talking).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dialled {
    pub outcome: Outcome,
    pub seconds: u64,
}

/// The simulation model (`--model FILE`, TOML). Probabilities are weights of
/// each outcome on a first attempt; `answered` is scaled by the local hour,
/// the weekday and the attempt number, the rest share what is left.
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
    pub fn parse(text: &str) -> Result<Model, String> {
        let m: Model = toml::from_str(text).map_err(|e| e.to_string())?;
        for name in m.outcomes.keys() {
            if Outcome::from_name(name).is_none_or(|o| o == Outcome::Exhausted) {
                return Err(format!("`{name}` is not a dial outcome"));
            }
        }
        let total: f64 = m.outcomes.values().sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(format!("the outcome probabilities sum to {total}, not 1"));
        }
        if m.outcomes.values().any(|p| *p < 0.0)
            || !(0.0..=1.0).contains(&m.gather_timeout)
            || m.retry_decay < 0.0
        {
            return Err("probabilities must lie between 0 and 1".into());
        }
        Ok(m)
    }

    pub fn default_model() -> Model {
        Model::parse(DEFAULT_MODEL).expect("the built-in model is valid")
    }
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

impl SimDialer {
    pub fn dial(&self, call: &Call<'_>) -> Dialled {
        let m = &self.model;
        let base = |o: &str| m.outcomes.get(o).copied().unwrap_or(0.0);
        let hour = m
            .by_hour
            .get(&call.local.hour().to_string())
            .copied()
            .unwrap_or(1.0);
        let weekday = WEEKDAYS[call.local.weekday().num_days_from_monday() as usize];
        let day = m.by_weekday.get(weekday).copied().unwrap_or(1.0);
        let decay = m.retry_decay.powi(call.attempt.saturating_sub(1) as i32);
        let answered = (base("answered") * hour * day * decay).clamp(0.0, 1.0);
        // The other outcomes share the rest in their base proportions.
        let others: Vec<(Outcome, f64)> = Outcome::DIAL
            .iter()
            .filter(|o| **o != Outcome::Answered)
            .map(|o| (*o, base(o.name())))
            .collect();
        let others_total: f64 = others.iter().map(|(_, p)| p).sum();
        let u = uniform(self.seed, call.contact, call.attempt, 0);
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
        Dialled { outcome, seconds }
    }

    /// Keys pressed for a gather on a connected call: nothing, or one of the listed keys.
    pub fn gather(
        &self,
        contact: usize,
        attempt: u32,
        ask: u32,
        keys: &[String],
    ) -> Option<String> {
        let u = uniform(self.seed, contact, attempt, 100 + ask);
        if keys.is_empty() || u < self.model.gather_timeout {
            return None;
        }
        let v = uniform(self.seed, contact, attempt, 200 + ask);
        keys.get((v * keys.len() as f64) as usize).cloned()
    }

    pub fn transfer(&self, contact: usize, attempt: u32) -> TransferOutcome {
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
