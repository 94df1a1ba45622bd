//! Closed days from an iCalendar file (`calendar office from "holidays.ics"`).
//!
//! The file is parsed by the `icalendar` crate and recurrence rules are
//! expanded by `rrule`; this module turns each event occurrence into the
//! closed dates and day windows a calendar's `closed` lines would give, and
//! keeps every position in the file's own text so that a problem is reported
//! at its line.
//!
//! Times are read the way calendar hours are: as local clock times of each
//! contact. An event written with a `TZID` or as a floating time closes the
//! clock times it names; one written in UTC (`…Z`) is first converted to the
//! file's own zone (`X-WR-TIMEZONE`, as calendar applications export it).

use std::collections::BTreeSet;
use std::ops::Range;

use chrono::{Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use icalendar::parser::{Component, Property};

/// Recurring events are expanded over these years: the range of the public
/// holiday table.
pub const FIRST_YEAR: i32 = 2020;
pub const LAST_YEAR: i32 = 2035;
/// The most occurrences one recurring event may have in that range.
const MAX_OCCURRENCES: u16 = 10_000;

/// One closed date, or part of a date, and the line of the event it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Closure {
    pub date: NaiveDate,
    /// Minutes of the day, end exclusive; the whole day when absent.
    pub window: Option<(u16, u16)>,
    pub label: Option<String>,
    /// The event's `DTSTART` line, as byte offsets in the file's text.
    pub at: Range<usize>,
}

/// Something the author should know about the file: an error makes it
/// unreadable; a warning says an event was read in a way they may not expect.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub error: bool,
    pub at: Range<usize>,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

#[derive(Debug, Default)]
pub struct Read {
    pub closures: Vec<Closure>,
    pub problems: Vec<Problem>,
    /// Events read (occurrences of a recurring event count once).
    pub events: usize,
}

/// Reads an iCalendar text. Never panics; an unreadable file gives one error.
pub fn read(text: &str) -> Read {
    let unfolded = Unfolded::new(text);
    let mut read = Read::default();
    if let Some(at) = first_malformed_line(&unfolded.text) {
        let at = unfolded.range(at);
        read.problems.push(Problem {
            error: true,
            at,
            message: "this is not an iCalendar file".into(),
            label: "an iCalendar line reads `NAME:value` (such as `DTSTART;VALUE=DATE:20261225`)".into(),
            help: Some("export the calendar as an .ics file from your calendar application, or fix this line".into()),
        });
        return read;
    }
    if let Some((at, label)) = unbalanced(&unfolded.text) {
        read.problems.push(Problem {
            error: true,
            at: unfolded.range(at),
            message: "this iCalendar file cannot be read".into(),
            label,
            help: Some("each `BEGIN:NAME` line is closed by an `END:NAME` line; a file cut short misses its last lines".into()),
        });
        return read;
    }
    let components = match icalendar::parser::read_calendar_simple(&unfolded.text) {
        Ok(c) => c,
        Err(e) => {
            let at = unfolded
                .offset_of(e.input)
                .map_or(0..0, |o| unfolded.range(line_of(&unfolded.text, o)));
            read.problems.push(Problem {
                error: true,
                at,
                message: "this iCalendar file cannot be read".into(),
                label: "the file stops making sense here (a `BEGIN:` without its `END:`?)".into(),
                help: Some("each `BEGIN:VEVENT` needs an `END:VEVENT`, inside `BEGIN:VCALENDAR` … `END:VCALENDAR`".into()),
            });
            return read;
        }
    };
    let mut reader = Reader {
        file: &unfolded,
        zone: None,
        utc_noted: false,
        read: &mut read,
    };
    for root in &components {
        reader.zone = root
            .find_prop("X-WR-TIMEZONE")
            .and_then(|p| p.val.as_str().trim().parse::<chrono_tz::Tz>().ok());
        reader.component(root);
    }
    if read.events == 0 && !read.problems.iter().any(|p| p.error) {
        read.problems.push(Problem {
            error: false,
            at: 0..text.lines().next().map_or(0, str::len),
            message: "this calendar file holds no events".into(),
            label: "no `BEGIN:VEVENT` in the file: it closes no day".into(),
            help: Some("check that the export includes the events (some applications export only the calendar's name)".into()),
        });
    }
    read
}

/// The text with folded lines joined (RFC 5545 §3.1), and where each fold was,
/// to map positions back to the file as written.
struct Unfolded {
    text: String,
    /// (offset in the unfolded text, bytes removed up to there).
    folds: Vec<(usize, usize)>,
}

impl Unfolded {
    fn new(original: &str) -> Unfolded {
        let bytes = original.as_bytes();
        let mut text = String::with_capacity(original.len());
        let mut folds = Vec::new();
        let (mut i, mut last, mut removed) = (0, 0, 0);
        while i < bytes.len() {
            let newline = match (bytes[i], bytes.get(i + 1)) {
                (b'\r', Some(b'\n')) => 2,
                (b'\n', _) => 1,
                _ => 0,
            };
            if newline > 0 && matches!(bytes.get(i + newline), Some(b' ' | b'\t')) {
                text.push_str(&original[last..i]);
                i += newline + 1;
                removed += newline + 1;
                last = i;
                folds.push((text.len(), removed));
            } else {
                i += 1;
            }
        }
        text.push_str(&original[last..]);
        Unfolded { text, folds }
    }

    /// The offset in the original text of an offset in the unfolded one.
    fn original(&self, offset: usize) -> usize {
        let k = self.folds.partition_point(|(u, _)| *u <= offset);
        offset + if k == 0 { 0 } else { self.folds[k - 1].1 }
    }

    fn range(&self, r: Range<usize>) -> Range<usize> {
        self.original(r.start)..self.original(r.end)
    }

    /// Where a slice of the unfolded text starts, if it is one.
    fn offset_of(&self, s: &str) -> Option<usize> {
        let base = self.text.as_ptr() as usize;
        let p = s.as_ptr() as usize;
        (p >= base && p + s.len() <= base + self.text.len()).then(|| p - base)
    }
}

/// The line (without its line break) around an offset.
fn line_of(text: &str, offset: usize) -> Range<usize> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..]
        .find(['\r', '\n'])
        .map_or(text.len(), |i| offset + i);
    start..end
}

/// The first line that is not `NAME[;PARAM=…]:value`, so that a file that is
/// not iCalendar at all is reported at its line rather than as a whole.
fn first_malformed_line(text: &str) -> Option<Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_end_matches(['\r', '\n']);
        if body.trim().is_empty() {
            continue;
        }
        let name_end = body.find([';', ':']).unwrap_or(body.len());
        let name_ok = name_end > 0
            && body[..name_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let mut quoted = false;
        let colon = body[name_end..].char_indices().find(|&(_, c)| {
            if c == '"' {
                quoted = !quoted;
            }
            c == ':' && !quoted
        });
        if !name_ok || colon.is_none() {
            return Some(start..start + body.len());
        }
    }
    None
}

/// The first `BEGIN:`/`END:` that does not pair up, with what is wrong.
fn unbalanced(text: &str) -> Option<(Range<usize>, String)> {
    let mut open: Vec<(Range<usize>, &str)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let at = offset..offset + line.trim_end_matches(['\r', '\n']).len();
        offset += line.len();
        let body = line.trim();
        let Some((key, name)) = body.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if key.eq_ignore_ascii_case("BEGIN") {
            open.push((at, name));
        } else if key.eq_ignore_ascii_case("END") {
            match open.pop() {
                Some((_, begun)) if begun.eq_ignore_ascii_case(name) => {}
                Some((_, begun)) => {
                    return Some((at, format!("`END:{name}` where `END:{begun}` was expected")))
                }
                None => return Some((at, format!("`END:{name}` without a `BEGIN:{name}`"))),
            }
        }
    }
    open.pop().map(|(at, name)| {
        (
            at,
            format!("`BEGIN:{name}` is never closed by `END:{name}`"),
        )
    })
}

/// A date or time as written in the file.
#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    Date(NaiveDate),
    /// Floating, or with a `TZID`: a clock time.
    Local(NaiveDateTime),
    Utc(NaiveDateTime),
}

impl When {
    fn rrule_text(self) -> String {
        match self {
            When::Date(d) => format!("DTSTART;VALUE=DATE:{}", d.format("%Y%m%d")),
            When::Local(t) => format!("DTSTART:{}", t.format("%Y%m%dT%H%M%S")),
            When::Utc(t) => format!("DTSTART:{}Z", t.format("%Y%m%dT%H%M%S")),
        }
    }
}

struct Reader<'r> {
    file: &'r Unfolded,
    zone: Option<chrono_tz::Tz>,
    utc_noted: bool,
    read: &'r mut Read,
}

fn param<'p>(p: &'p Property<'_>, key: &str) -> Option<&'p str> {
    p.params
        .iter()
        .find(|q| q.key.as_str().eq_ignore_ascii_case(key))
        .and_then(|q| q.val.as_ref())
        .map(|v| v.as_str())
}

fn props<'c>(c: &'c Component<'_>, name: &'c str) -> impl Iterator<Item = &'c Property<'c>> {
    c.properties
        .iter()
        .filter(move |p| p.name.as_str().eq_ignore_ascii_case(name))
}

/// The values of a property, which may be a comma-separated list.
fn values(p: &Property<'_>) -> Result<Vec<When>, String> {
    let date = param(p, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
    p.val
        .as_str()
        .split(',')
        .map(|v| when(v.trim(), date))
        .collect()
}

fn when(v: &str, date: bool) -> Result<When, String> {
    let bad =
        || format!("`{v}` is not a date (`20261225`) nor a date and time (`20261225T090000`)");
    if date || v.len() == 8 {
        return NaiveDate::parse_from_str(v, "%Y%m%d")
            .map(When::Date)
            .map_err(|_| bad());
    }
    let (t, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(t) => (t, true),
        None => (v, false),
    };
    let t = NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
    Ok(if utc { When::Utc(t) } else { When::Local(t) })
}

fn seconds(d: &str) -> Result<i64, String> {
    let bad = || format!("`{d}` is not a duration such as `P1D` or `PT2H30M`");
    if d.starts_with('-') {
        return Err(bad());
    }
    match iso8601::duration(d.trim_start_matches('+')).map_err(|_| bad())? {
        iso8601::Duration::Weeks(w) => Ok(i64::from(w) * 7 * 86_400),
        iso8601::Duration::YMDHMS {
            year,
            month,
            day,
            hour,
            minute,
            second,
            ..
        } => {
            if year > 0 || month > 0 {
                return Err(format!(
                    "`{d}` counts years or months, which have no fixed length: write the end (`DTEND`) instead"
                ));
            }
            Ok(i64::from(day) * 86_400
                + i64::from(hour) * 3_600
                + i64::from(minute) * 60
                + i64::from(second))
        }
    }
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_time(NaiveTime::MIN)
}

impl Reader<'_> {
    fn span(&self, s: &str) -> Option<Range<usize>> {
        self.file
            .offset_of(s)
            .map(|o| self.file.range(line_of(&self.file.text, o)))
    }

    fn prop_span(&self, p: &Property<'_>, c: &Component<'_>) -> Range<usize> {
        self.span(p.name.as_str())
            .or_else(|| self.span(c.name.as_str()))
            .unwrap_or(0..0)
    }

    fn problem(&mut self, error: bool, at: Range<usize>, message: String, label: String) {
        self.read.problems.push(Problem {
            error,
            at,
            message,
            label,
            help: None,
        });
    }

    fn component(&mut self, c: &Component<'_>) {
        if c.name.as_str().eq_ignore_ascii_case("VEVENT") {
            self.event(c);
        }
        for inner in &c.components {
            self.component(inner);
        }
    }

    /// A clock time from what the file says.
    fn wall(&mut self, w: When, at: &Range<usize>) -> (NaiveDateTime, bool) {
        match w {
            When::Date(d) => (midnight(d), true),
            When::Local(t) => (t, false),
            When::Utc(t) => match self.zone {
                Some(z) => (z.from_utc_datetime(&t).naive_local(), false),
                None => {
                    if !self.utc_noted {
                        self.utc_noted = true;
                        self.read.problems.push(Problem {
                            error: false,
                            at: at.clone(),
                            message: "this event's times are in UTC and the file names no time zone".into(),
                            label: "read as the clock times they show, in each contact's local time".into(),
                            help: Some("export the calendar with its time zone (the file then has an `X-WR-TIMEZONE` line), or add one such as `X-WR-TIMEZONE:Europe/Paris` after `BEGIN:VCALENDAR`".into()),
                        });
                    }
                    (t, false)
                }
            },
        }
    }

    fn event(&mut self, c: &Component<'_>) {
        let event_at = self.span(c.name.as_str()).unwrap_or(0..0);
        if props(c, "STATUS").any(|p| p.val.as_str().trim().eq_ignore_ascii_case("CANCELLED")) {
            return;
        }
        self.read.events += 1;
        let Some(start_prop) = props(c, "DTSTART").next() else {
            self.problem(
                true,
                event_at,
                "an event without a start".into(),
                "this event has no `DTSTART` line".into(),
            );
            return;
        };
        let at = self.prop_span(start_prop, c);
        // `values` gives at least one value when it gives any.
        let start = match values(start_prop) {
            Ok(v) => v[0],
            Err(e) => {
                self.problem(true, at, "an event start that cannot be read".into(), e);
                return;
            }
        };
        let (begin, all_day) = self.wall(start, &at);
        // How long each occurrence lasts.
        let length = if let Some(end_prop) = props(c, "DTEND").next() {
            let end_at = self.prop_span(end_prop, c);
            match values(end_prop) {
                Ok(v) => (self.wall(v[0], &end_at).0 - begin).num_seconds(),
                Err(e) => {
                    self.problem(true, end_at, "an event end that cannot be read".into(), e);
                    return;
                }
            }
        } else if let Some(d) = props(c, "DURATION").next() {
            let d_at = self.prop_span(d, c);
            match seconds(d.val.as_str().trim()) {
                Ok(s) => s,
                Err(e) => {
                    self.problem(true, d_at, "an event length that cannot be read".into(), e);
                    return;
                }
            }
        } else if all_day {
            86_400
        } else {
            0
        };
        let length = if all_day && length <= 0 {
            86_400
        } else {
            length
        };
        if length <= 0 {
            self.problem(
                false,
                at,
                "this event closes nothing".into(),
                "it ends when it starts (no `DTEND` or `DURATION` after it)".into(),
            );
            return;
        }
        let label = props(c, "SUMMARY").next().map(|p| {
            p.val
                .clone()
                .unescape_text()
                .as_str()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        });
        let label = label.filter(|l| !l.is_empty());

        let Some(starts) = self.occurrences(c, start, begin, &at) else {
            return;
        };
        let length = chrono::Duration::seconds(length);
        for s in starts {
            self.close(s, s + length, all_day, &label, &at);
        }
    }

    /// The clock times each occurrence starts at: the start, the recurrence
    /// rule's instances and the added dates, less the excluded ones.
    fn occurrences(
        &mut self,
        c: &Component<'_>,
        start: When,
        begin: NaiveDateTime,
        at: &Range<usize>,
    ) -> Option<BTreeSet<NaiveDateTime>> {
        let mut starts = BTreeSet::from([begin]);
        let rules: Vec<&Property<'_>> = props(c, "RRULE").collect();
        if !rules.is_empty() {
            let text = std::iter::once(start.rrule_text())
                .chain(
                    rules
                        .iter()
                        .map(|r| format!("RRULE:{}", r.val.as_str().trim())),
                )
                .collect::<Vec<_>>()
                .join("\n");
            let rule_at = self.prop_span(rules[0], c);
            let set = match text.parse::<rrule::RRuleSet>() {
                Ok(set) => set,
                Err(e) => {
                    let why = e.to_string();
                    let why = why
                        .strip_prefix("RRule parsing error: ")
                        .or_else(|| why.strip_prefix("RRule validation error: "))
                        .unwrap_or(&why)
                        .to_string();
                    self.problem(
                        true,
                        rule_at,
                        "a recurrence rule that cannot be read".into(),
                        why,
                    );
                    return None;
                }
            };
            let utc = rrule::Tz::UTC;
            let from = utc
                .with_ymd_and_hms(FIRST_YEAR, 1, 1, 0, 0, 0)
                .single()
                .expect("a valid instant");
            let to = utc
                .with_ymd_and_hms(LAST_YEAR + 1, 1, 1, 0, 0, 0)
                .single()
                .expect("a valid instant");
            let found = set.after(from).before(to).all(MAX_OCCURRENCES);
            if found.limited {
                let last = found.dates.last().map(|d| d.date_naive());
                self.problem(
                    false,
                    rule_at.clone(),
                    "this recurring event is applied in part".into(),
                    format!(
                        "only its first {MAX_OCCURRENCES} occurrences from {FIRST_YEAR} are kept{}",
                        last.map(|d| format!(" (until {d})")).unwrap_or_default()
                    ),
                );
            }
            for d in found.dates {
                let w = match start {
                    When::Date(_) => When::Date(d.date_naive()),
                    When::Local(_) => When::Local(d.naive_local()),
                    When::Utc(_) => When::Utc(d.naive_utc()),
                };
                starts.insert(self.wall(w, at).0);
            }
        }
        for (name, add) in [("RDATE", true), ("EXDATE", false)] {
            for p in props(c, name) {
                let p_at = self.prop_span(p, c);
                match values(p) {
                    Ok(list) => {
                        for w in list {
                            let t = self.wall(w, &p_at).0;
                            if add {
                                starts.insert(t);
                            } else if matches!(w, When::Date(_)) {
                                starts.retain(|s| s.date() != t.date());
                            } else {
                                starts.remove(&t);
                            }
                        }
                    }
                    Err(e) => {
                        self.problem(true, p_at, format!("a `{name}` that cannot be read"), e);
                        return None;
                    }
                }
            }
        }
        Some(starts)
    }

    /// The closed dates and day windows from `start` to `end`.
    fn close(
        &mut self,
        start: NaiveDateTime,
        end: NaiveDateTime,
        all_day: bool,
        label: &Option<String>,
        at: &Range<usize>,
    ) {
        let mut day = start.date();
        while midnight(day) < end {
            let Some(next) = day.checked_add_days(Days::new(1)) else {
                break;
            };
            let from = start.max(midnight(day));
            let to = end.min(midnight(next));
            let first = (from.time().num_seconds_from_midnight() / 60) as u16;
            let last = if to == midnight(next) {
                1440
            } else {
                to.time().num_seconds_from_midnight().div_ceil(60) as u16
            };
            let window = if all_day || (first == 0 && last == 1440) {
                None
            } else {
                Some((first, last))
            };
            if window.is_none_or(|(a, b)| b > a) {
                self.read.closures.push(Closure {
                    date: day,
                    window,
                    label: label.clone(),
                    at: at.clone(),
                });
            }
            day = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn folded_lines_map_back_to_the_file() {
        let text = "A:1\r\nSUMMARY:Chris\r\n tmas\r\nBAD LINE\r\n";
        let u = Unfolded::new(text);
        assert_eq!(u.text, "A:1\r\nSUMMARY:Christmas\r\nBAD LINE\r\n");
        let at = u.text.find("BAD").unwrap();
        assert_eq!(&text[u.original(at)..u.original(at) + 8], "BAD LINE");
    }

    #[test]
    fn timed_events_across_midnight_close_two_windows() {
        let r = read("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261224T200000\nDTEND:20261225T090000\nEND:VEVENT\nEND:VCALENDAR\n");
        let got: Vec<_> = r.closures.iter().map(|c| (c.date, c.window)).collect();
        assert_eq!(
            got,
            [
                (d("2026-12-24"), Some((1200, 1440))),
                (d("2026-12-25"), Some((0, 540)))
            ]
        );
    }
}
