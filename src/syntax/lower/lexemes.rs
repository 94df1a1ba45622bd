//! Lowering lexemes: names, numbers, durations, times, dates, days and strings.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use pest::iterators::Pair;

use super::{parse_duration, to_snake_case, weekday_index, Lower};
use crate::diagnostic::{Code, Diagnostic};
use crate::source::Spanned;
use crate::syntax::ast::*;
use crate::syntax::parser::Rule;

impl Lower {
    pub(super) fn ident(&mut self, pair: Pair<'_, Rule>) -> Ident {
        let span = self.span(&pair);
        let text = pair.as_str();
        if text.chars().any(|c| c.is_ascii_uppercase()) {
            let snake = to_snake_case(text);
            self.error(
                Diagnostic::new(
                    Code::NotSnakeCase,
                    format!("`{text}` is not written in lower snake case"),
                )
                .primary(span, "capital letters are not allowed in names")
                .help(format!("write `{snake}`")),
            );
            return Spanned::new(snake, span);
        }
        Spanned::new(text.to_string(), span)
    }

    pub(super) fn integer(&mut self, pair: Pair<'_, Rule>) -> Spanned<u32> {
        let span = self.span(&pair);
        match pair.as_str().parse::<u32>() {
            Ok(n) => Spanned::new(n, span),
            Err(_) => {
                self.error(
                    Diagnostic::new(Code::InvalidLiteral, "this number is too large")
                        .primary(span, "more than 4294967295")
                        .help("use a smaller whole number"),
                );
                Spanned::new(u32::MAX, span)
            }
        }
    }

    pub(super) fn number(&mut self, pair: &Pair<'_, Rule>) -> f64 {
        pair.as_str()
            .trim_end_matches('%')
            .parse::<f64>()
            .unwrap_or(0.0)
    }

    pub(super) fn percent(&mut self, pair: Pair<'_, Rule>) -> Spanned<f64> {
        let span = self.span(&pair);
        Spanned::new(self.number(&pair), span)
    }

    /// Seconds; `unitless` numbers are reported and read as minutes.
    pub(super) fn duration(&mut self, pair: Pair<'_, Rule>) -> Spanned<u64> {
        let pair = if pair.as_rule() == Rule::dur {
            pair.into_inner().next().expect("dur has a child")
        } else {
            pair
        };
        let span = self.span(&pair);
        let text = pair.as_str();
        if pair.as_rule() == Rule::unitless {
            self.error(
                Diagnostic::new(Code::DurationWithoutUnit, "a duration needs a unit")
                    .primary(span, "this number has no unit")
                    .help(format!(
                        "write `{text}m` for minutes, `{text}s` for seconds or `{text}h` for hours"
                    )),
            );
            let minutes = text.parse::<f64>().unwrap_or(0.0);
            return Spanned::new((minutes * 60.0) as u64, span);
        }
        match parse_duration(text) {
            Some(seconds) => Spanned::new(seconds, span),
            None => {
                self.error(
                    Diagnostic::new(Code::InvalidLiteral, "this duration is too long")
                        .primary(span, "out of range")
                        .help("durations are limited to a few years; use a shorter one"),
                );
                Spanned::new(0, span)
            }
        }
    }

    /// Minutes since midnight; 24:00 only where `end_of_window` allows it.
    pub(super) fn time(&mut self, pair: Pair<'_, Rule>, end_of_window: bool) -> Spanned<u16> {
        let span = self.span(&pair);
        let text = pair.as_str();
        let (h, m) = text.split_once(':').expect("the grammar guarantees HH:MM");
        let (h, m): (u16, u16) = (h.parse().unwrap_or(99), m.parse().unwrap_or(99));
        let minutes = h * 60 + m;
        if m >= 60 || h > 24 || (h == 24 && m > 0) {
            self.error(
                Diagnostic::new(
                    Code::InvalidLiteral,
                    format!("`{text}` is not a time of day"),
                )
                .primary(span, "hours go from 00 to 23 and minutes from 00 to 59")
                .help("write a time such as `09:00` or `17:30`"),
            );
            // A value that keeps the surrounding window valid, so no second error follows.
            return Spanned::new(if end_of_window { 1440 } else { 0 }, span);
        }
        if minutes == 1440 && !end_of_window {
            self.error(
                Diagnostic::new(Code::InvalidLiteral, "`24:00` only ends a window")
                    .primary(span, "not allowed here")
                    .help("write `00:00` for midnight at the start of a day"),
            );
            return Spanned::new(0, span);
        }
        Spanned::new(minutes, span)
    }

    pub(super) fn date(&mut self, pair: Pair<'_, Rule>) -> Spanned<NaiveDate> {
        let span = self.span(&pair);
        match NaiveDate::parse_from_str(pair.as_str(), "%Y-%m-%d") {
            Ok(d) => Spanned::new(d, span),
            Err(_) => {
                self.error(
                    Diagnostic::new(
                        Code::InvalidLiteral,
                        format!("there is no date `{}`", pair.as_str()),
                    )
                    .primary(span, "not a day of the calendar")
                    .help("write the date as YYYY-MM-DD, for example `2026-12-25`"),
                );
                Spanned::new(NaiveDate::default(), span)
            }
        }
    }

    pub(super) fn datetime(&mut self, pair: Pair<'_, Rule>) -> Spanned<DateTime> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let date = self.date(inner.next().expect("datetime has a date"));
        let time = self.time(inner.next().expect("datetime has a time"), false);
        let zone = inner.next().map(|s| self.plain_string(s));
        let t = NaiveTime::from_hms_opt(u32::from(time.node / 60), u32::from(time.node % 60), 0)
            .unwrap_or_default();
        Spanned::new(
            DateTime {
                local: NaiveDateTime::new(date.node, t),
                zone,
            },
            span,
        )
    }

    pub(super) fn window(&mut self, pair: Pair<'_, Rule>) -> Window {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let start = self.time(inner.next().expect("window start"), false);
        let end = self.time(inner.next().expect("window end"), true);
        Window { span, start, end }
    }

    pub(super) fn windows(&mut self, pair: Pair<'_, Rule>) -> Vec<Window> {
        pair.into_inner().map(|w| self.window(w)).collect()
    }

    pub(super) fn days(&mut self, pair: Pair<'_, Rule>) -> Spanned<DaySet> {
        let span = self.span(&pair);
        let mut set = 0u8;
        for item in pair.into_inner() {
            let inner = item.into_inner().next().expect("a day item has a child");
            set |= match inner.as_rule() {
                Rule::day_word => match inner.as_str() {
                    "daily" => 0x7f,
                    "weekdays" => 0x1f,
                    _ => 0x60,
                },
                Rule::day_range => {
                    let mut ends = inner.into_inner();
                    let a = weekday_index(ends.next().expect("range start").as_str());
                    let b = weekday_index(ends.next().expect("range end").as_str());
                    let mut bits = 0u8;
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                    bits
                }
                _ => 1 << weekday_index(inner.as_str()),
            };
        }
        Spanned::new(DaySet(set), span)
    }

    pub(super) fn string(&mut self, pair: Pair<'_, Rule>) -> Str {
        let span = self.span(&pair);
        let mut parts: Vec<StrPart> = Vec::new();
        let push_text = |parts: &mut Vec<StrPart>, s: &str| match parts.last_mut() {
            Some(StrPart::Text(t)) => t.push_str(s),
            _ => parts.push(StrPart::Text(s.to_string())),
        };
        for part in pair.into_inner() {
            match part.as_rule() {
                Rule::str_text => push_text(&mut parts, part.as_str()),
                Rule::str_brace => push_text(&mut parts, &part.as_str()[..1]),
                Rule::str_escape => {
                    let esc = part.as_str();
                    let c = match &esc[1..2] {
                        "n" => Some('\n'),
                        "t" => Some('\t'),
                        "u" => u32::from_str_radix(&esc[3..esc.len() - 1], 16)
                            .ok()
                            .and_then(char::from_u32),
                        other => other.chars().next(),
                    };
                    match c {
                        Some(c) => push_text(&mut parts, c.encode_utf8(&mut [0; 4])),
                        None => {
                            let span = self.span(&part);
                            self.error(
                                Diagnostic::new(
                                    Code::InvalidLiteral,
                                    format!("`{esc}` is not a character"),
                                )
                                .primary(span, "no such Unicode code point")
                                .help("write a code point such as `\\u{e9}`"),
                            );
                        }
                    }
                }
                Rule::interp => {
                    let e = part.into_inner().next().expect("interp has an expression");
                    parts.push(StrPart::Expr(self.expr(e)));
                }
                _ => {}
            }
        }
        Str { span, parts }
    }

    /// A string where `{…}` has no meaning (file names, labels, numbers).
    pub(super) fn plain_string(&mut self, pair: Pair<'_, Rule>) -> Spanned<String> {
        let s = self.string(pair);
        match s.plain() {
            Some(text) => Spanned::new(text, s.span),
            None => {
                self.error(
                    Diagnostic::new(Code::InvalidLiteral, "this text cannot hold `{…}`")
                        .primary(s.span, "values are only filled into messages")
                        .help("write `{{` and `}}` for literal braces"),
                );
                Spanned::new(String::new(), s.span)
            }
        }
    }
}
