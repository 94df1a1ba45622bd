//! Lowering: pest pairs into the owned AST. Lexical mistakes the grammar lets
//! through on purpose (capitals in names, durations without a unit, dates that
//! do not exist) are reported here, and lowering goes on.

use std::sync::LazyLock;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};

use super::ast::*;
use super::parser::Rule;
use crate::diagnostic::{Code, Diagnostic};
use crate::source::{FileId, Span, Spanned};

pub(super) struct Lower {
    file: FileId,
    offset: usize,
    pub diagnostics: Vec<Diagnostic>,
}

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or_op, Assoc::Left))
        .op(Op::infix(Rule::and_op, Assoc::Left))
        .op(Op::prefix(Rule::not_op))
        .op(Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left)
            | Op::infix(Rule::lt, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::ge, Assoc::Left)
            | Op::infix(Rule::in_op, Assoc::Left))
        .op(Op::infix(Rule::coalesce, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::prefix(Rule::neg))
        .op(Op::postfix(Rule::is_set))
});

fn is_keyword(rule: Rule) -> bool {
    use Rule::*;
    matches!(
        rule,
        k_use
            | k_contact
            | k_calendar
            | k_strategy
            | k_compliance
            | k_flow
            | k_test
            | k_step
            | k_experiment
            | k_on
            | k_retry
            | k_max
            | k_attempts
            | k_timeout
            | k_end
            | k_else
            | k_if
            | k_per
            | k_at
            | k_expect
            | k_dial
            | p_arrow
            | p_colon
    )
}

/// The children of a pair, keywords left out.
fn kids(pair: Pair<'_, Rule>) -> impl Iterator<Item = Pair<'_, Rule>> {
    pair.into_inner().filter(|p| !is_keyword(p.as_rule()))
}

impl Lower {
    pub fn new(file: FileId, offset: usize) -> Lower {
        Lower {
            file,
            offset,
            diagnostics: Vec::new(),
        }
    }

    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, self.offset + s.start(), self.offset + s.end())
    }

    fn error(&mut self, diag: Diagnostic) {
        self.diagnostics.push(diag);
    }

    pub fn file(&mut self, pair: Pair<'_, Rule>) -> File {
        let mut file = File::default();
        for item in pair.into_inner() {
            let lowered = match item.as_rule() {
                Rule::use_item => {
                    let s = kids(item).next().expect("use has a string");
                    Some(Item::Use(self.plain_string(s)))
                }
                Rule::contact_item => Some(Item::Contact(self.schema(item))),
                Rule::calendar_item => Some(Item::Calendar(self.calendar(item))),
                Rule::strategy_item => Some(Item::Strategy(self.strategy(item))),
                Rule::compliance_item => Some(Item::Compliance(self.compliance(item))),
                Rule::flow_item => Some(Item::Flow(self.flow(item))),
                Rule::test_item => Some(Item::Test(self.test(item))),
                _ => None,
            };
            file.items.extend(lowered);
        }
        file
    }

    // ------------------------------------------------------------ lexemes

    fn ident(&mut self, pair: Pair<'_, Rule>) -> Ident {
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

    fn integer(&mut self, pair: Pair<'_, Rule>) -> Spanned<u32> {
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

    fn number(&mut self, pair: &Pair<'_, Rule>) -> f64 {
        pair.as_str()
            .trim_end_matches('%')
            .parse::<f64>()
            .unwrap_or(0.0)
    }

    fn percent(&mut self, pair: Pair<'_, Rule>) -> Spanned<f64> {
        let span = self.span(&pair);
        Spanned::new(self.number(&pair), span)
    }

    /// Seconds; `unitless` numbers are reported and read as minutes.
    fn duration(&mut self, pair: Pair<'_, Rule>) -> Spanned<u64> {
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
    fn time(&mut self, pair: Pair<'_, Rule>, end_of_window: bool) -> Spanned<u16> {
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

    fn date(&mut self, pair: Pair<'_, Rule>) -> Spanned<NaiveDate> {
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

    fn datetime(&mut self, pair: Pair<'_, Rule>) -> Spanned<DateTime> {
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

    fn window(&mut self, pair: Pair<'_, Rule>) -> Window {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let start = self.time(inner.next().expect("window start"), false);
        let end = self.time(inner.next().expect("window end"), true);
        Window { span, start, end }
    }

    fn windows(&mut self, pair: Pair<'_, Rule>) -> Vec<Window> {
        pair.into_inner().map(|w| self.window(w)).collect()
    }

    fn days(&mut self, pair: Pair<'_, Rule>) -> Spanned<DaySet> {
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

    fn string(&mut self, pair: Pair<'_, Rule>) -> Str {
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
    fn plain_string(&mut self, pair: Pair<'_, Rule>) -> Spanned<String> {
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

    // ------------------------------------------------------------ items

    fn schema(&mut self, pair: Pair<'_, Rule>) -> Schema {
        let span = self.span(&pair);
        let mut fields = Vec::new();
        for decl in kids(pair) {
            let mut inner = kids(decl);
            let name = self.ident(inner.next().expect("field name"));
            let ty_pair = inner
                .next()
                .expect("field type")
                .into_inner()
                .next()
                .expect("type child");
            let ty = if ty_pair.as_rule() == Rule::enum_type {
                let span = self.span(&ty_pair);
                TypeExpr::Enum(span, ty_pair.into_inner().map(|v| self.ident(v)).collect())
            } else {
                TypeExpr::Named(self.ident(ty_pair))
            };
            let mut optional = false;
            let mut default = None;
            for rest in inner {
                match rest.as_rule() {
                    Rule::optional_mark => optional = true,
                    _ => default = Some(self.literal(rest)),
                }
            }
            fields.push(FieldDecl {
                name,
                ty,
                optional,
                default,
            });
        }
        Schema { span, fields }
    }

    fn calendar(&mut self, pair: Pair<'_, Rule>) -> Calendar {
        let mut inner = kids(pair);
        let name = self.ident(inner.next().expect("calendar name"));
        let mut entries = Vec::new();
        for entry in inner {
            let span = self.span(&entry);
            let rule = entry.as_rule();
            let mut parts = entry.into_inner().peekable();
            match rule {
                Rule::hours_line => {
                    let days = self.days(parts.next().expect("hours days"));
                    let windows = self.windows(parts.next().expect("hours windows"));
                    entries.push(CalendarEntry::Hours {
                        span,
                        days,
                        windows,
                    });
                }
                Rule::pause_line => {
                    let days = if parts.peek().map(|p| p.as_rule()) == Some(Rule::days) {
                        self.days(parts.next().expect("peeked"))
                    } else {
                        Spanned::new(DaySet::ALL, span)
                    };
                    let window = self.window(parts.next().expect("pause window"));
                    let label = parts.next().map(|l| self.label(l));
                    entries.push(CalendarEntry::Pause {
                        span,
                        days,
                        window,
                        label,
                    });
                }
                _ => {
                    let mut dates = Vec::new();
                    let mut window = None;
                    let mut label = None;
                    for p in parts {
                        match p.as_rule() {
                            Rule::date => dates.push(self.date(p)),
                            Rule::window => window = Some(self.window(p)),
                            _ => label = Some(self.label(p)),
                        }
                    }
                    entries.push(CalendarEntry::Closed {
                        span,
                        dates,
                        window,
                        label,
                    });
                }
            }
        }
        Calendar { name, entries }
    }

    fn label(&mut self, pair: Pair<'_, Rule>) -> String {
        let s = pair.into_inner().next().expect("label has a string");
        self.plain_string(s).node
    }

    fn strategy(&mut self, pair: Pair<'_, Rule>) -> Strategy {
        let mut inner = kids(pair);
        let name = self.ident(inner.next().expect("strategy name"));
        let mut s = Strategy {
            name,
            max_attempts: None,
            min_gap: None,
            jitter: None,
            rules: Vec::new(),
        };
        for entry in inner {
            let span = self.span(&entry);
            match entry.as_rule() {
                Rule::max_attempts => {
                    s.max_attempts = Some(self.integer(kids(entry).next().expect("count")))
                }
                Rule::min_gap => s.min_gap = Some(self.duration(kids(entry).next().expect("gap"))),
                Rule::jitter => s.jitter = Some(self.percent(kids(entry).next().expect("jitter"))),
                _ => {
                    let mut parts = kids(entry);
                    let outcomes = self.outcomes(parts.next().expect("outcomes"));
                    let first = parts.next().expect("rule action");
                    let action = if first.as_rule() == Rule::stop_word {
                        RuleAction::Stop
                    } else {
                        let form = self.retry_form(first);
                        let max = parts
                            .next()
                            .map(|m| self.integer(kids(m).next().expect("max count")));
                        RuleAction::Retry { form, max }
                    };
                    s.rules.push(super::ast::Rule {
                        span,
                        outcomes,
                        action,
                    });
                }
            }
        }
        s
    }

    fn outcomes(&mut self, pair: Pair<'_, Rule>) -> Vec<Ident> {
        pair.into_inner().map(|p| self.ident(p)).collect()
    }

    fn retry_form(&mut self, pair: Pair<'_, Rule>) -> Spanned<RetryForm> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let parts: Vec<Pair<'_, Rule>> = kids(pair).collect();
        let form = match rule {
            Rule::retry_after => {
                RetryForm::After(parts.into_iter().map(|p| self.duration(p)).collect())
            }
            Rule::retry_backoff => {
                let mut it = parts.into_iter();
                let first = self.duration(it.next().expect("backoff start"));
                let f = it.next().expect("backoff factor");
                let fspan = self.span(&f);
                let factor = Spanned::new(
                    self.number(&f.into_inner().next().expect("factor number")),
                    fspan,
                );
                let cap = it.next().map(|c| self.duration(c));
                RetryForm::Backoff { first, factor, cap }
            }
            Rule::retry_at => {
                RetryForm::At(parts.into_iter().map(|p| self.time(p, false)).collect())
            }
            Rule::retry_next_day => {
                RetryForm::NextDayAt(parts.into_iter().map(|p| self.time(p, false)).collect())
            }
            _ => RetryForm::On(parts.into_iter().map(|p| self.datetime(p)).collect()),
        };
        Spanned::new(form, span)
    }

    fn compliance(&mut self, pair: Pair<'_, Rule>) -> Compliance {
        let mut inner = kids(pair);
        let name = self.ident(inner.next().expect("compliance name"));
        let mut entries = Vec::new();
        for entry in inner {
            let span = self.span(&entry);
            let rule = entry.as_rule();
            let mut parts = kids(entry);
            entries.push(match rule {
                Rule::quiet_hours => {
                    ComplianceEntry::QuietHours(self.window(parts.next().expect("window")))
                }
                Rule::rolling_limit => {
                    let max = self.integer(parts.next().expect("count"));
                    let per = self.duration(parts.next().expect("period"));
                    ComplianceEntry::Rolling { span, max, per }
                }
                Rule::require_consent => ComplianceEntry::RequireConsent(span),
                Rule::allowed_line => {
                    let days = self.days(parts.next().expect("days"));
                    let windows = self.windows(parts.next().expect("windows"));
                    ComplianceEntry::Allowed {
                        span,
                        days,
                        windows,
                    }
                }
                Rule::min_ring => {
                    ComplianceEntry::MinRing(self.duration(parts.next().expect("ring")))
                }
                _ => ComplianceEntry::NoHolidays(self.plain_string(parts.next().expect("region"))),
            });
        }
        Compliance { name, entries }
    }

    fn flow(&mut self, pair: Pair<'_, Rule>) -> Flow {
        let mut inner = kids(pair);
        let name = self.ident(inner.next().expect("flow name"));
        let mut flow = Flow {
            name,
            settings: Vec::new(),
            experiments: Vec::new(),
            steps: Vec::new(),
        };
        self.flow_entries(inner, &mut flow);
        flow
    }

    /// The head of a flow parsed on its own (`flow_head`): its name and first entries.
    pub fn flow_head(&mut self, pair: Pair<'_, Rule>) -> Flow {
        self.flow(pair)
    }

    /// Entries of a flow parsed on their own (`flow_entries`), added to `flow`.
    pub fn more_flow_entries(&mut self, pair: Pair<'_, Rule>, flow: &mut Flow) {
        self.flow_entries(kids(pair), flow);
    }

    fn flow_entries<'i>(&mut self, entries: impl Iterator<Item = Pair<'i, Rule>>, flow: &mut Flow) {
        for entry in entries.filter(|e| e.as_rule() != Rule::EOI) {
            match entry.as_rule() {
                Rule::step_item => {
                    let mut parts = kids(entry);
                    let name = self.ident(parts.next().expect("step name"));
                    let body = self.block(parts.next().expect("step body"));
                    flow.steps.push(Step { name, body });
                }
                Rule::experiment => {
                    let mut parts = kids(entry);
                    let name = self.ident(parts.next().expect("experiment name"));
                    let arms = parts
                        .map(|arm| {
                            let mut a = arm.into_inner();
                            let name = self.ident(a.next().expect("arm name"));
                            let weight = self.percent(a.next().expect("arm weight"));
                            let overrides = a.map(|o| self.setting(o)).collect();
                            Arm {
                                name,
                                weight,
                                overrides,
                            }
                        })
                        .collect();
                    flow.experiments.push(Experiment { name, arms });
                }
                _ => {
                    let setting = self.setting(entry);
                    flow.settings.push(setting);
                }
            }
        }
    }

    fn setting(&mut self, pair: Pair<'_, Rule>) -> Setting {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut parts = kids(pair);
        let mut next = || parts.next().expect("the grammar guarantees this part");
        let kind = match rule {
            Rule::title_set => SettingKind::Title(self.plain_string(next())),
            Rule::calendar_set => SettingKind::Calendar(self.ident(next())),
            Rule::timezone_set => {
                let sources = parts.map(|z| self.zone_source(z)).collect();
                SettingKind::Timezone(sources)
            }
            Rule::region_set => SettingKind::Region(self.plain_string(next())),
            Rule::strategy_set => SettingKind::Strategy(self.ident(next())),
            Rule::compliance_set => SettingKind::Compliance(parts.map(|p| self.ident(p)).collect()),
            Rule::caller_id_set => {
                SettingKind::CallerId(parts.map(|p| self.plain_string(p)).collect())
            }
            Rule::concurrency_set => SettingKind::Concurrency(self.integer(next())),
            Rule::rate_set => {
                let count = self.integer(next());
                let per_seconds = match next().as_str() {
                    "second" => 1,
                    "minute" => 60,
                    _ => 3600,
                };
                SettingKind::Rate { count, per_seconds }
            }
            Rule::per_day_set => SettingKind::MaxPerDay(self.integer(next())),
            Rule::start_step_set => SettingKind::StartStep(self.ident(next())),
            Rule::start_set => SettingKind::Start(self.datetime(next())),
            Rule::stop_set => SettingKind::Stop(self.datetime(next())),
            _ => {
                let step = self.ident(next());
                let times = self.integer(next());
                SettingKind::PauseWhen { step, times }
            }
        };
        Setting { span, kind }
    }

    fn zone_source(&mut self, pair: Pair<'_, Rule>) -> ZoneSource {
        let inner = pair.into_inner().next().expect("zone source child");
        match inner.as_rule() {
            Rule::field_ref => {
                ZoneSource::Field(self.ident(kids(inner).next().expect("field name")))
            }
            Rule::string => ZoneSource::Literal(self.plain_string(inner)),
            _ if inner.as_str() == "phone" => ZoneSource::Phone(self.span(&inner)),
            _ => ZoneSource::Invalid(self.ident(inner)),
        }
    }

    fn block(&mut self, pair: Pair<'_, Rule>) -> Block {
        let span = self.span(&pair);
        let mut block = Block {
            span,
            actions: Vec::new(),
            routes: Vec::new(),
        };
        for stmt in pair.into_inner() {
            if stmt.as_rule() == Rule::route_line {
                let span = self.span(&stmt);
                let mut parts = kids(stmt);
                let outcomes = self.outcomes(parts.next().expect("outcomes"));
                let target = self.target(parts.next().expect("route target"));
                block.routes.push(Route {
                    span,
                    outcomes,
                    target,
                });
            } else {
                block.actions.push(self.action(stmt));
            }
        }
        block
    }

    fn target(&mut self, route: Pair<'_, Rule>) -> Target {
        let inner = route.into_inner().next().expect("route has a child");
        match inner.as_rule() {
            Rule::block => Target::Block(self.block(inner)),
            Rule::ident => Target::Step(self.ident(inner)),
            _ => {
                let action = self.action(inner);
                Target::Block(Block {
                    span: action.span,
                    actions: vec![action],
                    routes: Vec::new(),
                })
            }
        }
    }

    fn action(&mut self, pair: Pair<'_, Rule>) -> Action {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut parts = kids(pair).peekable();
        let kind = match rule {
            Rule::dial => {
                let number = self.expr(parts.next().expect("dial number"));
                let (mut timeout, mut detect_voicemail, mut from) = (None, None, None);
                for opt in parts {
                    match opt.as_rule() {
                        Rule::dial_timeout => {
                            timeout = Some(self.duration(kids(opt).next().expect("timeout")))
                        }
                        Rule::detect_vm => detect_voicemail = Some(self.span(&opt)),
                        _ => {
                            from = Some(
                                self.plain_string(opt.into_inner().next().expect("from number")),
                            )
                        }
                    }
                }
                ActionKind::Dial {
                    number,
                    timeout,
                    detect_voicemail,
                    from,
                }
            }
            Rule::say => ActionKind::Say(self.string(parts.next().expect("say text"))),
            Rule::play => ActionKind::Play(self.plain_string(parts.next().expect("play file"))),
            Rule::gather => {
                let digits = self.integer(parts.next().expect("digit count"));
                parts.next(); // `digit` or `digits`
                let (mut timeout, mut tries, mut arms) = (None, None, Vec::new());
                for p in parts {
                    match p.as_rule() {
                        Rule::dial_timeout => {
                            timeout = Some(self.duration(kids(p).next().expect("timeout")))
                        }
                        Rule::tries => {
                            tries = Some(self.integer(p.into_inner().next().expect("tries")))
                        }
                        _ => arms.push(self.gather_arm(p)),
                    }
                }
                ActionKind::Gather {
                    digits,
                    timeout,
                    tries,
                    arms,
                }
            }
            Rule::record => {
                let max = if parts.peek().map(|p| p.as_rule()) == Some(Rule::dur) {
                    Some(self.duration(parts.next().expect("peeked")))
                } else {
                    None
                };
                ActionKind::Record {
                    max,
                    name: self.ident(parts.next().expect("record name")),
                }
            }
            Rule::transfer => {
                let number = self.expr(parts.next().expect("transfer number"));
                let timeout = parts
                    .next()
                    .map(|t| self.duration(kids(t).next().expect("timeout")));
                ActionKind::Transfer { number, timeout }
            }
            Rule::set_var => {
                let name = self.ident(parts.next().expect("variable"));
                ActionKind::Set {
                    name,
                    value: self.expr(parts.next().expect("value")),
                }
            }
            Rule::send_sms => ActionKind::SendSms(self.string(parts.next().expect("sms text"))),
            Rule::send_email => {
                let body = self.string(parts.next().expect("email text"));
                let subject = parts.next().map(|s| self.string(s));
                ActionKind::SendEmail { body, subject }
            }
            Rule::flag => ActionKind::Flag(self.plain_string(parts.next().expect("flag label"))),
            Rule::opt_out => ActionKind::OptOut,
            Rule::wait => ActionKind::Wait(self.duration(parts.next().expect("wait duration"))),
            Rule::if_action => {
                let cond = self.expr(parts.next().expect("condition"));
                let then = self.block(parts.next().expect("then block"));
                let mut branches = vec![(span, cond, then)];
                let mut otherwise = None;
                for p in parts {
                    if p.as_rule() == Rule::else_if {
                        let espan = self.span(&p);
                        let mut e = kids(p);
                        let cond = self.expr(e.next().expect("else-if condition"));
                        branches.push((espan, cond, self.block(e.next().expect("else-if block"))));
                    } else {
                        otherwise = Some(self.block(p));
                    }
                }
                if branches.len() > MAX_ELSE_IF {
                    let (extra, _, _) = &branches[MAX_ELSE_IF];
                    self.error(too_deep(
                        *extra,
                        "this `if` has too many `else if` branches",
                        "split the choice over several steps",
                    ));
                    branches.truncate(MAX_ELSE_IF);
                }
                // Nested from the last branch outwards, without recursion.
                let mut nested = otherwise;
                while let Some((bspan, cond, then)) = branches.pop() {
                    if branches.is_empty() {
                        return Action {
                            span,
                            kind: ActionKind::If {
                                cond,
                                then,
                                otherwise: nested,
                            },
                        };
                    }
                    let action = Action {
                        span: bspan,
                        kind: ActionKind::If {
                            cond,
                            then,
                            otherwise: nested,
                        },
                    };
                    nested = Some(Block {
                        span: bspan,
                        actions: vec![action],
                        routes: Vec::new(),
                    });
                }
                unreachable!("an `if` has at least one branch")
            }
            Rule::goto => ActionKind::Goto(self.ident(parts.next().expect("goto target"))),
            Rule::retry => {
                let form = parts.next().map(|f| self.retry_form(f));
                let max = parts
                    .next()
                    .map(|m| self.integer(kids(m).next().expect("max")));
                ActionKind::Retry { form, max }
            }
            _ => {
                let completed = parts.next().expect("end kind").as_str() == "completed";
                let reason = parts.next().map(|r| self.plain_string(r));
                ActionKind::End { completed, reason }
            }
        };
        Action { span, kind }
    }

    fn gather_arm(&mut self, pair: Pair<'_, Rule>) -> GatherArm {
        let span = self.span(&pair);
        let mut keys = Vec::new();
        let mut target = None;
        for p in kids(pair) {
            match p.as_rule() {
                Rule::gather_key => {
                    let k = p.into_inner().next().expect("key child");
                    let kspan = self.span(&k);
                    let key = if k.as_rule() == Rule::string {
                        GatherKey::Digits(self.plain_string(k).node)
                    } else {
                        match k.as_str() {
                            "timeout" => GatherKey::Timeout,
                            "invalid" => GatherKey::Invalid,
                            "other" => GatherKey::Other,
                            other => GatherKey::Unknown(other.to_string()),
                        }
                    };
                    keys.push(Spanned::new(key, kspan));
                }
                _ => target = Some(self.target(p)),
            }
        }
        GatherArm {
            span,
            keys,
            target: target.expect("a gather arm has a route"),
        }
    }

    // ------------------------------------------------------------ expressions

    pub fn expr(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        let pairs: Pairs<'_, Rule> = pair.into_inner();
        // The Pratt parser recurses once per prefix operator, and the tree it
        // builds is as deep as its operator chain: both are bounded here.
        let (mut run, mut longest_run, mut operators) = (0usize, 0usize, 0usize);
        for p in pairs.clone() {
            match p.as_rule() {
                Rule::not_op | Rule::neg => {
                    run += 1;
                    longest_run = longest_run.max(run);
                }
                Rule::or_op
                | Rule::and_op
                | Rule::eq
                | Rule::ne
                | Rule::lt
                | Rule::le
                | Rule::gt
                | Rule::ge
                | Rule::in_op
                | Rule::coalesce
                | Rule::add
                | Rule::sub => {
                    operators += 1;
                    run = 0;
                }
                _ => run = 0,
            }
        }
        if longest_run > MAX_PREFIX || operators > MAX_OPERATORS {
            self.error(too_deep(
                span,
                "this expression is too long",
                "split it with `set` into smaller steps",
            ));
            return Expr {
                span,
                kind: ExprKind::Error,
            };
        }
        let file = self.file;
        let offset = self.offset;
        let span_of = move |p: &Pair<'_, Rule>| {
            Span::new(
                file,
                offset + p.as_span().start(),
                offset + p.as_span().end(),
            )
        };
        PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(move |op, rhs| {
                let op_kind = if op.as_rule() == Rule::not_op {
                    UnaryOp::Not
                } else {
                    UnaryOp::Neg
                };
                Expr {
                    span: span_of(&op).to(rhs.span),
                    kind: ExprKind::Unary(op_kind, Box::new(rhs)),
                }
            })
            .map_postfix(move |lhs, op| Expr {
                span: lhs.span.to(span_of(&op)),
                kind: ExprKind::IsSet(Box::new(lhs)),
            })
            .map_infix(move |lhs, op, rhs| {
                let op = match op.as_rule() {
                    Rule::or_op => BinaryOp::Or,
                    Rule::and_op => BinaryOp::And,
                    Rule::eq => BinaryOp::Eq,
                    Rule::ne => BinaryOp::Ne,
                    Rule::lt => BinaryOp::Lt,
                    Rule::le => BinaryOp::Le,
                    Rule::gt => BinaryOp::Gt,
                    Rule::ge => BinaryOp::Ge,
                    Rule::in_op => BinaryOp::In,
                    Rule::coalesce => BinaryOp::Coalesce,
                    Rule::add => BinaryOp::Add,
                    _ => BinaryOp::Sub,
                };
                Expr {
                    span: lhs.span.to(rhs.span),
                    kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                }
            })
            .parse(pairs)
    }

    fn primary(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::expr => return self.expr(pair),
            Rule::list => ExprKind::List(pair.into_inner().map(|e| self.expr(e)).collect()),
            Rule::literal => return self.literal(pair),
            Rule::field_ref => ExprKind::Field(self.ident(kids(pair).next().expect("field name"))),
            Rule::local_ref => {
                ExprKind::Local(self.ident(pair.into_inner().next().expect("local name")))
            }
            _ => ExprKind::Name(self.ident(pair)),
        };
        Expr { span, kind }
    }

    fn literal(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        let inner = pair.into_inner().next().expect("literal has a child");
        let kind = match inner.as_rule() {
            Rule::datetime => ExprKind::Literal(Literal::DateTime(self.datetime(inner).node)),
            Rule::date => ExprKind::Literal(Literal::Date(self.date(inner).node)),
            Rule::time => ExprKind::Literal(Literal::Time(self.time(inner, false).node)),
            Rule::duration => ExprKind::Literal(Literal::Duration(self.duration(inner).node)),
            Rule::percent => ExprKind::Literal(Literal::Percent(self.number(&inner))),
            Rule::number => ExprKind::Literal(Literal::Number(self.number(&inner))),
            Rule::string => ExprKind::Str(self.string(inner)),
            _ => ExprKind::Literal(Literal::Bool(inner.as_str() == "true")),
        };
        Expr { span, kind }
    }

    // ------------------------------------------------------------ tests

    fn test(&mut self, pair: Pair<'_, Rule>) -> Test {
        let span = self.span(&pair);
        let mut inner = kids(pair);
        let name = self.plain_string(inner.next().expect("test name"));
        let mut entries = Vec::new();
        for entry in inner {
            let espan = self.span(&entry);
            let rule = entry.as_rule();
            let mut parts = kids(entry);
            entries.push(match rule {
                Rule::test_contact => {
                    let fields = parts
                        .map(|f| {
                            let mut fp = kids(f);
                            let name = self.ident(fp.next().expect("field name"));
                            (name, self.literal(fp.next().expect("field value")))
                        })
                        .collect();
                    TestEntry::Contact {
                        span: espan,
                        fields,
                    }
                }
                Rule::test_now => TestEntry::Now(self.datetime(parts.next().expect("now"))),
                Rule::test_dial => {
                    let outcome = self.ident(parts.next().expect("outcome"));
                    let (mut press, mut transfer, mut lasting) = (None, None, None);
                    for p in parts {
                        match p.as_rule() {
                            Rule::press => {
                                press =
                                    Some(self.plain_string(p.into_inner().next().expect("digits")))
                            }
                            Rule::transfer_outcome => {
                                transfer = Some(
                                    self.ident(p.into_inner().next().expect("transfer outcome")),
                                )
                            }
                            _ => {
                                lasting =
                                    Some(self.duration(p.into_inner().next().expect("lasting")))
                            }
                        }
                    }
                    TestEntry::Dial {
                        span: espan,
                        outcome,
                        press,
                        transfer,
                        lasting,
                    }
                }
                Rule::expect_attempt_at => {
                    let attempt = self.integer(parts.next().expect("attempt"));
                    TestEntry::ExpectAttemptAt {
                        span: espan,
                        attempt,
                        at: self.datetime(parts.next().expect("at")),
                    }
                }
                Rule::expect_attempts => {
                    TestEntry::ExpectAttempts(self.integer(parts.next().expect("count")))
                }
                Rule::expect_end => {
                    let completed = parts.next().expect("kind").as_str() == "completed";
                    let reason = parts.next().map(|r| self.plain_string(r));
                    TestEntry::ExpectEnd {
                        span: espan,
                        completed,
                        reason,
                    }
                }
                Rule::expect_path => TestEntry::ExpectPath(parts.map(|p| self.ident(p)).collect()),
                Rule::expect_sms => {
                    TestEntry::ExpectSms(espan, parts.next().map(|s| self.plain_string(s)))
                }
                Rule::expect_email => {
                    TestEntry::ExpectEmail(espan, parts.next().map(|s| self.plain_string(s)))
                }
                Rule::expect_flag => {
                    TestEntry::ExpectFlag(self.plain_string(parts.next().expect("flag")))
                }
                Rule::expect_arm => TestEntry::ExpectArm(self.ident(parts.next().expect("arm"))),
                _ => TestEntry::ExpectSkipped(espan),
            });
        }
        Test {
            name,
            span,
            entries,
        }
    }
}

/// Limits that keep every recursive walk of the tree shallow.
const MAX_ELSE_IF: usize = 32;
const MAX_PREFIX: usize = 16;
const MAX_OPERATORS: usize = 128;

fn too_deep(span: Span, message: &str, help: &str) -> Diagnostic {
    Diagnostic::new(Code::Syntax, message.to_string())
        .primary(span, "too deeply nested")
        .help(help.to_string())
}

fn weekday_index(day: &str) -> u8 {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| *d == day)
        .unwrap_or(0) as u8
}

/// `1h30m` in seconds; `None` on overflow.
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut n: u64 = 0;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            n = n.checked_mul(10)?.checked_add(u64::from(d))?;
        } else {
            let unit = match c {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                _ => 1,
            };
            total = total.checked_add(n.checked_mul(unit)?)?;
            n = 0;
        }
    }
    (total <= 10 * 365 * 86_400).then_some(total)
}

pub(crate) fn to_snake_case(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c);
        }
    }
    out
}
