//! Retry timing: the instant of a contact's next attempt for every retry form
//! (after, progressive, backoff, at listed times, next day at, fixed
//! instants), with deterministic jitter, then moved forward by the calendar
//! and the attempt limits.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::limits::Limits;
use super::schedule::{instant, Schedule};
use crate::ir::RetryForm;

/// What the next attempt's timing depends on.
#[derive(Clone, Debug)]
pub struct Retry<'a> {
    /// When the attempt being retried ended.
    pub ended_at: DateTime<Utc>,
    /// Which retry of the contact this is: 1 for the first.
    pub nth: u32,
    pub jitter_percent: f64,
    /// Stable per contact (its number): the same contact gets the same jitter.
    pub key: &'a str,
    pub min_gap: Duration,
    /// The zone of `retry on` instants written without one: the flow's zone.
    pub flow_zone: Tz,
}

/// The delay the n-th retry waits under a delay-based form, before jitter.
pub fn delay(form: &RetryForm, nth: u32) -> Option<Duration> {
    let n = nth.max(1);
    match form {
        RetryForm::After { delays_seconds } => {
            let i = (n as usize - 1).min(delays_seconds.len().checked_sub(1)?);
            Some(Duration::seconds(delays_seconds[i] as i64))
        }
        RetryForm::Backoff {
            first_seconds,
            factor,
            cap_seconds,
        } => {
            let raw = *first_seconds as f64 * factor.powi(n as i32 - 1);
            let capped = cap_seconds.map_or(raw, |c| raw.min(c as f64));
            Some(Duration::seconds(capped.min(10.0 * 365.0 * 86_400.0) as i64))
        }
        _ => None,
    }
}

/// A number in [0, 1) that depends only on the contact and the retry.
pub fn jitter_fraction(key: &str, nth: u32) -> f64 {
    // FNV-1a: small, stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(nth.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The instant the form asks for, before the calendar and the limits move it:
/// delays are minimums, listed times are callable local times of day.
pub fn requested(
    form: &RetryForm,
    r: &Retry<'_>,
    zones: &[Tz],
    schedule: &Schedule,
) -> Option<DateTime<Utc>> {
    match form {
        RetryForm::After { .. } | RetryForm::Backoff { .. } => {
            let d = delay(form, r.nth)?;
            let spread = d.num_milliseconds() as f64 * r.jitter_percent / 100.0
                * jitter_fraction(r.key, r.nth);
            Some(r.ended_at + d + Duration::milliseconds(spread as i64))
        }
        RetryForm::At { times } => {
            schedule.next_time_of_day(r.ended_at + r.min_gap, times, zones, false)
        }
        RetryForm::NextDayAt { times } => {
            // The first listed time on the next day that has one callable.
            schedule.next_time_of_day(r.ended_at, times, zones, true)
        }
        RetryForm::On { instants } => {
            let zone = r.flow_zone;
            instants
                .iter()
                .map(|i| {
                    let tz = i
                        .zone
                        .as_deref()
                        .and_then(|z| z.parse::<Tz>().ok())
                        .unwrap_or(zone);
                    let minute = (chrono::Timelike::hour(&i.local) * 60
                        + chrono::Timelike::minute(&i.local))
                        as u16;
                    instant(tz, i.local.date(), minute)
                })
                .filter(|t| *t > r.ended_at)
                .min()
        }
    }
}

/// Moves an instant forward until it is callable in every zone and keeps
/// every limit; `None` when nothing within the horizon does.
pub fn settle(
    at: DateTime<Utc>,
    zones: &[Tz],
    schedule: &Schedule,
    limits: &Limits,
    history: &[DateTime<Utc>],
) -> Option<DateTime<Utc>> {
    let zone = *zones.first()?;
    let mut t = at;
    for _ in 0..1000 {
        let allowed = limits.earliest(t, history, zone);
        let callable = schedule.next_callable(allowed, zones)?;
        if callable == allowed {
            return Some(callable);
        }
        t = callable;
    }
    None
}

/// The next attempt's instant: what the form asks for, then settled.
pub fn next_attempt(
    form: &RetryForm,
    r: &Retry<'_>,
    zones: &[Tz],
    schedule: &Schedule,
    limits: &Limits,
    history: &[DateTime<Utc>],
) -> Option<DateTime<Utc>> {
    settle(
        requested(form, r, zones, schedule)?,
        zones,
        schedule,
        limits,
        history,
    )
}
