//! A schedule: when dialling may start, as local windows per weekday minus
//! closed dates and holidays, evaluated in one or several IANA zones.
//!
//! Durations are elapsed time; windows are local. A local time that does not
//! exist (a spring-forward gap) moves to the next valid instant; an ambiguous
//! one (a fall-back overlap) takes the earlier instant.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

use super::holidays;
use crate::ir::{self, Week, Window};

/// How far ahead a search goes before it answers that nothing is callable.
pub const HORIZON_DAYS: u64 = 2 * 366;

/// Years for which holiday tables are expanded.
const HOLIDAY_YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    weekly: Week,
    /// Closed parts of local dates (the whole day is 00:00-24:00), merged.
    closed: BTreeMap<NaiveDate, Vec<Window>>,
}

/// A stretch of callable time, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stretch {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Schedule {
    /// Callable time under a calendar (every minute without one) and the
    /// policies that apply to the contact.
    pub fn new(calendar: Option<&ir::Calendar>, policies: &[&ir::Policy]) -> Schedule {
        let mut weekly: Week = match calendar {
            Some(c) => c.weekly.clone(),
            None => std::array::from_fn(|_| {
                vec![Window {
                    start: 0,
                    end: 1440,
                }]
            }),
        };
        let mut closed: BTreeMap<NaiveDate, Vec<Window>> = BTreeMap::new();
        let mut close = |date: NaiveDate, w: Window| {
            let day = closed.entry(date).or_default();
            day.push(w);
            *day = merge(std::mem::take(day));
        };
        for c in calendar.map(|c| c.closed.as_slice()).unwrap_or_default() {
            close(
                c.date,
                c.window.unwrap_or(Window {
                    start: 0,
                    end: 1440,
                }),
            );
        }
        for p in policies {
            if let Some(allowed) = &p.allowed {
                for (day, allow) in weekly.iter_mut().zip(allowed) {
                    *day = intersect(day, allow);
                }
            }
            for q in &p.quiet_hours {
                for piece in quiet_pieces(*q) {
                    for day in weekly.iter_mut() {
                        *day = subtract(day, piece);
                    }
                }
            }
            for region in &p.no_holidays {
                for year in HOLIDAY_YEARS {
                    let open = calendar.map(|c| c.open.as_slice()).unwrap_or_default();
                    for date in holidays::holidays(region, year)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|d| !open.contains(d))
                    {
                        close(
                            date,
                            Window {
                                start: 0,
                                end: 1440,
                            },
                        );
                    }
                }
            }
        }
        Schedule { weekly, closed }
    }

    /// Callable windows per weekday, before closed dates.
    pub fn weekly(&self) -> &Week {
        &self.weekly
    }

    /// The callable windows of one local date.
    pub fn windows_on(&self, date: NaiveDate) -> Cow<'_, [Window]> {
        let day = &self.weekly[date.weekday().num_days_from_monday() as usize];
        match self.closed.get(&date) {
            None => Cow::Borrowed(day),
            Some(cuts) => Cow::Owned(
                cuts.iter()
                    .fold(day.clone(), |acc, cut| subtract(&acc, *cut)),
            ),
        }
    }

    pub fn is_callable_local(&self, local: NaiveDateTime) -> bool {
        let minute = (local.hour() * 60 + local.minute()) as u16;
        self.windows_on(local.date())
            .iter()
            .any(|w| w.start <= minute && minute < w.end)
    }

    /// Whether a dial may start at `at` in every zone.
    pub fn is_callable(&self, at: DateTime<Utc>, zones: &[Tz]) -> bool {
        !zones.is_empty()
            && zones
                .iter()
                .all(|z| self.is_callable_local(at.with_timezone(z).naive_local()))
    }

    /// The first instant at or after `from` that is callable in `zone`.
    pub fn next_callable_in(&self, from: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        // One zone lookup gives the offset in force at `from`; candidates are
        // computed with it and confirmed with one more lookup. Only around a
        // clock change does the confirmation fail and the careful path run.
        let offset = zone.offset_from_utc_datetime(&from.naive_utc()).fix();
        let local = from.naive_utc() + offset;
        if self.is_callable_local(local) {
            return Some(from);
        }
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let mut date = local.date();
        for day in 0..HORIZON_DAYS {
            for w in self.windows_on(date).iter() {
                if day == 0 && w.start <= minute {
                    // Passed already (a window holding `minute` would have been callable).
                    if w.end <= minute {
                        continue;
                    }
                }
                let wanted = date.and_time(NaiveTime::from_hms_opt(
                    u32::from(w.start / 60),
                    u32::from(w.start % 60),
                    0,
                )?);
                let guess = Utc.from_utc_datetime(&(wanted - offset));
                if guess > from && guess.with_timezone(&zone).naive_local() == wanted {
                    return Some(guess);
                }
                if let Some(at) = self.first_in_window(from, zone, date, *w) {
                    return Some(at);
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// The careful path: the first callable instant at or after `from` within
    /// one local window, resolving gaps and overlaps minute by minute.
    fn first_in_window(
        &self,
        from: DateTime<Utc>,
        zone: Tz,
        date: NaiveDate,
        w: Window,
    ) -> Option<DateTime<Utc>> {
        let end = instant(zone, date, w.end);
        if end <= from {
            return None;
        }
        let mut at = instant(zone, date, w.start).max(from);
        while at < end {
            if self.is_callable_local(at.with_timezone(&zone).naive_local()) {
                return Some(at);
            }
            at = next_minute(at);
        }
        None
    }

    /// The first instant at or after `from` that is callable in every zone.
    pub fn next_callable(&self, from: DateTime<Utc>, zones: &[Tz]) -> Option<DateTime<Utc>> {
        let horizon = from + chrono::Duration::days(HORIZON_DAYS as i64);
        let mut at = from;
        // Go round the zones; each may move `at` forward. Once every zone in a
        // row has accepted `at` without moving it, it is callable in all.
        let mut accepted = 0;
        for zone in zones.iter().cycle() {
            if accepted == zones.len() {
                return Some(at);
            }
            let next = self.next_callable_in(at, *zone)?;
            if next > at {
                if next > horizon {
                    return None;
                }
                at = next;
                accepted = 1;
            } else {
                accepted += 1;
            }
        }
        None
    }

    /// The end of the callable stretch that contains `at` (callable in every zone).
    fn stretch_end(&self, at: DateTime<Utc>, zones: &[Tz]) -> DateTime<Utc> {
        zones
            .iter()
            .map(|z| {
                let local = at.with_timezone(z).naive_local();
                let minute = (local.hour() * 60 + local.minute()) as u16;
                let date = local.date();
                let w = self
                    .windows_on(date)
                    .iter()
                    .find(|w| w.start <= minute && minute < w.end)
                    .copied();
                w.map_or(at, |w| instant(*z, date, w.end))
            })
            .min()
            .unwrap_or(at)
            .max(next_minute(at))
    }

    /// The callable stretches between two instants, in order.
    pub fn stretches(&self, from: DateTime<Utc>, to: DateTime<Utc>, zones: &[Tz]) -> Vec<Stretch> {
        let mut out: Vec<Stretch> = Vec::new();
        let mut at = from;
        while at < to {
            let Some(start) = self.next_callable(at, zones) else {
                break;
            };
            if start >= to {
                break;
            }
            let mut end = self.stretch_end(start, zones);
            // A window ending at midnight continues into the next day's window.
            while end < to && self.is_callable(end, zones) {
                end = self.stretch_end(end, zones);
            }
            let end = end.min(to);
            match out.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => out.push(Stretch { start, end }),
            }
            at = end;
        }
        out
    }

    /// The first of the listed local times of day (in the first zone) that is
    /// later than `after` and callable in every zone; with `next_day`, only on
    /// dates after `after`'s own.
    pub fn next_time_of_day(
        &self,
        after: DateTime<Utc>,
        times: &[u16],
        zones: &[Tz],
        next_day: bool,
    ) -> Option<DateTime<Utc>> {
        let zone = *zones.first()?;
        let mut times = times.to_vec();
        times.sort_unstable();
        let mut date = after.with_timezone(&zone).date_naive();
        if next_day {
            date = date.succ_opt()?;
        }
        for _ in 0..HORIZON_DAYS {
            for &t in &times {
                let at = instant(zone, date, t);
                if at > after && self.is_callable(at, zones) {
                    return Some(at);
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// The instant a local time of day falls on: a time in a gap moves to the
/// next valid instant, an ambiguous one takes the earlier. Minute 1440 is the
/// next day's midnight.
pub fn instant(zone: Tz, date: NaiveDate, minute: u16) -> DateTime<Utc> {
    let (date, minute) = if minute >= 1440 {
        (date.checked_add_days(Days::new(1)).unwrap_or(date), 0)
    } else {
        (date, minute)
    };
    let mut local = date.and_time(
        NaiveTime::from_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0)
            .unwrap_or_default(),
    );
    // Gaps last an hour or two in practice; a day covers every zone's history.
    for _ in 0..1440 {
        match zone.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(earlier, _) => return earlier.with_timezone(&Utc),
            LocalResult::None => local += chrono::Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&local)
}

fn next_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    let truncated = at
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(at);
    truncated + chrono::Duration::minutes(1)
}

/// Quiet hours as same-day pieces: `21:00-08:00` is 21:00-24:00 and 00:00-08:00.
pub fn quiet_pieces(q: Window) -> Vec<Window> {
    if q.start < q.end {
        vec![q]
    } else {
        vec![
            Window {
                start: q.start,
                end: 1440,
            },
            Window {
                start: 0,
                end: q.end,
            },
        ]
    }
}

/// Sorts windows and merges those that touch.
pub fn merge(mut list: Vec<Window>) -> Vec<Window> {
    list.sort();
    let mut merged: Vec<Window> = Vec::with_capacity(list.len());
    for w in list {
        match merged.last_mut() {
            Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
            _ => merged.push(w),
        }
    }
    merged
}

pub fn subtract(list: &[Window], cut: Window) -> Vec<Window> {
    let mut out = Vec::with_capacity(list.len() + 1);
    for w in list {
        if cut.end <= w.start || cut.start >= w.end {
            out.push(*w);
            continue;
        }
        if cut.start > w.start {
            out.push(Window {
                start: w.start,
                end: cut.start,
            });
        }
        if cut.end < w.end {
            out.push(Window {
                start: cut.end,
                end: w.end,
            });
        }
    }
    out
}

pub fn intersect(a: &[Window], b: &[Window]) -> Vec<Window> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let (start, end) = (x.start.max(y.start), x.end.min(y.end));
            if start < end {
                out.push(Window { start, end });
            }
        }
    }
    merge(out)
}
