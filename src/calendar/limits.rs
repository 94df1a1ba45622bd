//! Attempt limits over time: `min gap` between two dials of a contact,
//! `max attempts per day` (the contact's local calendar day) and rolling
//! `max attempts N per D` windows. Given a contact's past attempts, the
//! earliest instant the next one may start.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::schedule::instant;
use crate::ir::RollingLimit;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    pub min_gap: Duration,
    pub per_day: Option<u32>,
    pub rolling: Vec<RollingLimit>,
}

impl Limits {
    /// The earliest instant at or after `at` at which one more attempt keeps
    /// every limit, given the start instants of past attempts (any order).
    /// Local days are those of `zone`.
    pub fn earliest(
        &self,
        at: DateTime<Utc>,
        history: &[DateTime<Utc>],
        zone: Tz,
    ) -> DateTime<Utc> {
        // Attempts start in order: a copy is sorted only when they do not.
        let past: std::borrow::Cow<'_, [DateTime<Utc>]> = if history.is_sorted() {
            history.into()
        } else {
            let mut past = history.to_vec();
            past.sort_unstable();
            past.into()
        };
        let mut t = at;
        // Each rule only moves `t` forward; a few rounds reach a point that keeps all.
        for _ in 0..64 {
            let before = t;
            if let Some(last) = past.last() {
                t = t.max(*last + self.min_gap);
            }
            for limit in &self.rolling {
                let n = limit.max as usize;
                if n == 0 {
                    continue;
                }
                let window = Duration::seconds(limit.per_seconds as i64);
                // Attempts in (t - D, t]: with N of them, the oldest of the
                // last N must leave the window first, at its start + D.
                let recent: Vec<&DateTime<Utc>> = past
                    .iter()
                    .filter(|a| **a > t - window && **a <= t)
                    .collect();
                if recent.len() >= n {
                    t = t.max(*recent[recent.len() - n] + window);
                }
            }
            if let Some(per_day) = self.per_day {
                let day = t.with_timezone(&zone).date_naive();
                let on_day = past
                    .iter()
                    .filter(|a| a.with_timezone(&zone).date_naive() == day)
                    .count();
                if on_day >= per_day as usize {
                    t = instant(zone, day.succ_opt().unwrap_or(day), 0).max(t);
                }
            }
            if t == before {
                break;
            }
        }
        t
    }
}
