//! Lowering: pest pairs into the owned AST. Lexical mistakes the grammar lets
//! through on purpose (capitals in names, durations without a unit, dates that
//! do not exist) are reported here, and lowering goes on.

mod expr;
mod lexemes;
mod tests;

use pest::iterators::Pair;

use super::ast::*;
use super::parser::Rule;
use crate::diagnostic::{Code, Diagnostic};
use crate::source::{FileId, Span, Spanned};

pub(super) struct Lower {
    file: FileId,
    offset: usize,
    pub diagnostics: Vec<Diagnostic>,
}

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
        let mut from = None;
        for entry in inner {
            let span = self.span(&entry);
            if entry.as_rule() == Rule::cal_from {
                let path = entry.into_inner().next().expect("calendar file path");
                from = Some(self.plain_string(path));
                continue;
            }
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
                Rule::open_line => {
                    let dates = parts
                        .filter(|p| p.as_rule() == Rule::date)
                        .map(|p| self.date(p))
                        .collect();
                    entries.push(CalendarEntry::Open { span, dates });
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
        Calendar {
            name,
            from,
            entries,
        }
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
                _ => {
                    let what = parts.next().expect("region");
                    if what.as_rule() == Rule::holidays_from {
                        ComplianceEntry::NoHolidaysFromContact(self.span(&what))
                    } else {
                        ComplianceEntry::NoHolidays(self.plain_string(what))
                    }
                }
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

/// Seconds in a duration as the grammar writes it (`90s`, `1h30m`, `2d`):
/// one or more numbers each followed by a unit. Anything else, such as
/// `soon`, `15` or `5ms`, is `None` (and so is an overflow or more than ten
/// years), so contact fields and command-line options read with it are as
/// strict as the language.
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut n: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            n = Some(n.unwrap_or(0).checked_mul(10)?.checked_add(u64::from(d))?);
        } else {
            let unit = match c {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return None,
            };
            total = total.checked_add(n.take()?.checked_mul(unit)?)?;
        }
    }
    let whole = n.is_none() && !text.is_empty();
    (whole && total <= 10 * 365 * 86_400).then_some(total)
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
