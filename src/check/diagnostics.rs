//! One constructor per checker diagnostic: the wording lives here, so that
//! every message reads alike (lowercase, short, a help that says what to do).

use crate::diagnostic::{did_you_mean, list_words, Code, Diagnostic};
use crate::source::Span;

fn suggestion(name: &str, candidates: &[&str], kind: &str) -> String {
    match did_you_mean(name, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if candidates.is_empty() => {
            format!("no {kind} is defined; define one or remove this reference")
        }
        None => format!(
            "the {} are: {}",
            plural(kind),
            list_words(&quoted(candidates))
        ),
    }
}

/// `strategy` → `strategies`, `step` → `steps`.
fn plural(kind: &str) -> String {
    match kind.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{stem}ies"),
        _ => format!("{kind}s"),
    }
}

fn quoted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().take(12).map(|s| format!("`{s}`")).collect();
    if items.len() > 12 {
        v.push(format!("{} more", items.len() - 12));
    }
    v
}

pub fn unknown_name(
    code: Code,
    kind: &str,
    name: &str,
    span: Span,
    candidates: &[&str],
) -> Diagnostic {
    Diagnostic::new(code, format!("there is no {kind} `{name}`"))
        .primary(span, format!("unknown {kind}"))
        .help(suggestion(name, candidates, kind))
}

pub fn unknown_field(name: &str, span: Span, candidates: &[&str]) -> Diagnostic {
    Diagnostic::new(
        Code::UnknownField,
        format!("the contact schema has no field `{name}`"),
    )
    .primary(span, "unknown field")
    .help(match did_you_mean(name, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            format!("declare `{name}` in the `contact {{ … }}` schema, or use one of its fields")
        }
    })
}

pub fn unknown_variable(name: &str, span: Span, candidates: &[&str]) -> Diagnostic {
    Diagnostic::new(Code::UnknownVariable, format!("nothing sets a variable `{name}`"))
        .primary(span, "unknown name")
        .help(match did_you_mean(name, candidates.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!(
                "set it first with `set {name} = …`; contact fields are read as `contact.{name}`, and the built-ins are `attempt`, `outcome`, `arm`, `digits` and `local.hour`, `local.weekday`, `local.date`"
            ),
        })
}

pub fn unknown_outcome(name: &str, span: Span, allowed: &[&str], context: &str) -> Diagnostic {
    Diagnostic::new(
        Code::UnknownOutcome,
        format!("`{name}` is not an outcome of {context}"),
    )
    .primary(span, "unknown outcome")
    .help(match did_you_mean(name, allowed.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("the outcomes are {}", list_words(&quoted(allowed))),
    })
}

pub fn unknown_type(name: &str, span: Span) -> Diagnostic {
    const TYPES: &[&str] = &[
        "text", "number", "bool", "date", "datetime", "duration", "phone", "timezone",
    ];
    Diagnostic::new(Code::UnknownType, format!("there is no type `{name}`"))
        .primary(span, "unknown type")
        .help(match did_you_mean(name, TYPES.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => "the types are `text`, `number`, `bool`, `date`, `datetime`, `duration`, `phone`, `timezone` and `enum(a, b, …)`".into(),
        })
}

pub fn duplicate(kind: &str, name: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::new(
        Code::Duplicate,
        format!("the {kind} `{name}` is defined twice"),
    )
    .primary(span, "defined again here")
    .secondary(first, "first defined here")
    .help(format!(
        "rename one of them or remove the second; each {kind} name must be unique"
    ))
}

pub fn duplicate_preset(name: &str, span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::Duplicate,
        format!("`{name}` is the name of a built-in compliance policy"),
    )
    .primary(span, "this would hide the built-in policy")
    .help(format!("choose another name, such as `{name}_custom`"))
}

pub fn duplicate_setting(keyword: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::new(Code::DuplicateSetting, format!("`{keyword}` is set twice"))
        .primary(span, "set again here")
        .secondary(first, "first set here")
        .help("keep one of the two lines; a setting may appear once per flow")
}

pub fn several_flows(span: Span, first: Span) -> Diagnostic {
    Diagnostic::new(Code::SeveralFlows, "a campaign holds exactly one flow")
        .primary(span, "a second flow")
        .secondary(first, "the first flow")
        .help("move each flow into its own file and share calendars and strategies with `use`")
}

pub fn use_not_found(path: &str, span: Span, error: &str) -> Diagnostic {
    Diagnostic::new(Code::UseNotFound, format!("cannot read `{path}`"))
        .primary(span, error.to_string())
        .help("`use` paths are relative to the file that contains the `use` line; check the path and the file name")
}

pub fn use_path(path: &str, span: Span, why: &str) -> Diagnostic {
    Diagnostic::new(Code::UsePath, format!("`use` cannot read `{path}`"))
        .primary(span, why.to_string())
        .help("`use` takes a path relative to this file, to a `.flow` file: `use \"common/calendars.flow\"`")
}

pub fn calendar_file_path(path: &str, span: Span, why: &str) -> Diagnostic {
    Diagnostic::new(Code::CalendarFile, format!("the calendar cannot read `{path}`"))
        .primary(span, why.to_string())
        .help("`from` takes a path relative to this file, to an iCalendar file: `calendar office from \"holidays.ics\"`")
}

pub fn calendar_file_unread(path: &str, span: Span, why: &str) -> Diagnostic {
    Diagnostic::new(Code::CalendarFile, format!("cannot read the calendar file `{path}`"))
        .primary(span, why.to_string())
        .help("the path is relative to the file that contains the `calendar` line; check the path and the file name")
}

/// A problem inside an iCalendar file: at its line, with the `from` that reads it.
pub fn calendar_file_problem(
    error: bool,
    at: Span,
    from: Span,
    message: String,
    label: String,
    help: Option<String>,
) -> Diagnostic {
    let code = if error {
        Code::CalendarFile
    } else {
        Code::CalendarFileEvent
    };
    let d = Diagnostic::new(code, message)
        .primary(at, label)
        .secondary(from, "the calendar reads this file");
    match help {
        Some(h) => d.help(h),
        None => d,
    }
}

pub fn no_zone(span: Span) -> Diagnostic {
    Diagnostic::new(Code::NoZone, "the contacts of this flow get no time zone")
        .primary(span, "no `timezone` line: every contact of a list would be rejected")
        .note("calendars, quiet hours and `retry at` times are the contact's local time")
        .help("add a line such as `timezone phone, \"America/New_York\"` to the flow: the zones of the number, then a zone to fall back on (a field of type `timezone` may come first)")
}

pub fn use_cycle(span: Span, back: Span, chain: &[String]) -> Diagnostic {
    Diagnostic::new(Code::UseCycle, "these files use each other")
        .primary(span, "this `use` closes a cycle")
        .secondary(back, "the cycle starts here")
        .note(format!("the chain is {}", chain.join(" → ")))
        .help("move what both files need into a third file that both `use`")
}

pub fn unreachable_step(name: &str, span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::UnreachableStep,
        format!("no route leads to the step `{name}`"),
    )
    .primary(span, "never reached")
    .help(format!(
        "add a route such as `on answered -> {name}` or `goto {name}`, or remove the step"
    ))
}

pub fn read_before_set(name: &str, span: Span, via: Option<Span>) -> Diagnostic {
    let d = Diagnostic::new(
        Code::ReadBeforeSet,
        format!("`{name}` may be read before it is set"),
    )
    .primary(span, "read here")
    .help(format!(
        "set `{name}` on every path that reaches this line, or read `{name} ?? DEFAULT`"
    ));
    match via {
        Some(v) => d.secondary(v, "this path arrives without setting it"),
        None => d,
    }
}

pub fn missing_schema(span: Span) -> Diagnostic {
    Diagnostic::new(Code::MissingSchema, "the flow has no contact schema")
        .primary(span, "this flow calls contacts, but nothing says what a contact is")
        .help("add `contact { phone: phone }` (and any other fields) to this file or to a file it uses")
}

pub fn missing_phone_field(span: Span) -> Diagnostic {
    Diagnostic::new(Code::MissingSchema, "the contact schema has no phone field")
        .primary(span, "nothing here can be dialled")
        .help("add a field such as `phone: phone`")
}

pub fn type_mismatch(span: Span, expected: &str, found: &str) -> Diagnostic {
    Diagnostic::new(
        Code::TypeMismatch,
        format!("expected {expected}, found {found}"),
    )
    .primary(span, format!("this is {found}"))
    .help(format!("use {expected} here"))
}

pub fn operand_mismatch(
    op: &str,
    span: Span,
    left: &str,
    left_span: Span,
    right: &str,
    right_span: Span,
) -> Diagnostic {
    Diagnostic::new(Code::TypeMismatch, format!("`{op}` cannot combine {left} and {right}"))
        .primary(span, format!("`{op}` here"))
        .secondary(left_span, left.to_string())
        .secondary(right_span, right.to_string())
        .help("compare or combine values of the same kind: numbers with numbers, durations with durations, dates with dates")
}

pub fn condition_not_bool(span: Span, found: &str) -> Diagnostic {
    Diagnostic::new(
        Code::ConditionNotBool,
        format!("a condition must be true or false, found {found}"),
    )
    .primary(span, format!("this is {found}"))
    .help("compare it with something, for example `attempt < 3` or `contact.segment == \"vip\"`")
}

pub fn optional_not_unwrapped(span: Span, field: &str) -> Diagnostic {
    Diagnostic::new(
        Code::OptionalNotUnwrapped,
        format!("`{field}` is optional and may be missing"),
    )
    .primary(span, "may have no value")
    .help(format!(
        "give a default with `{field} ?? VALUE`, or test it first: `if {field} is set {{ … }}`"
    ))
}

pub fn unknown_zone(zone: &str, span: Span) -> Diagnostic {
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    let by_city = zone
        .rsplit('/')
        .next()
        .unwrap_or(zone)
        .to_ascii_lowercase()
        .replace(' ', "_");
    let city_match = names.iter().find(|n| {
        n.rsplit('/')
            .next()
            .is_some_and(|c| c.to_ascii_lowercase() == by_city)
    });
    let help = match city_match
        .copied()
        .or_else(|| did_you_mean(zone, names.iter().copied()))
    {
        Some(c) => format!("did you mean \"{c}\"?"),
        None => "write an IANA zone name such as \"America/New_York\" or \"Europe/Paris\"".into(),
    };
    Diagnostic::new(Code::UnknownZone, format!("\"{zone}\" is not a time zone"))
        .primary(span, "not in the IANA time zone database")
        .help(help)
}

pub fn invalid_phone(number: &str, span: Span, reason: &str) -> Diagnostic {
    Diagnostic::new(Code::InvalidPhone, format!("\"{number}\" is not a valid phone number"))
        .primary(span, reason.to_string())
        .help("write the number in E.164 form: `+`, the country code and the national number, for example \"+12125550142\"")
}

pub fn not_in_enum(value: &str, span: Span, values: &[String]) -> Diagnostic {
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    Diagnostic::new(
        Code::NotInEnum,
        format!("\"{value}\" is not one of the values of this enum"),
    )
    .primary(span, "not a listed value")
    .help(match did_you_mean(value, refs.iter().copied()) {
        Some(c) => format!("did you mean \"{c}\"?"),
        None => format!("the values are {}", list_words(&quoted(&refs))),
    })
}

pub fn missing_routes(span: Span, what: &str, missing: &[&str], arm: Option<&str>) -> Diagnostic {
    let list = list_words(&missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>());
    let under = arm
        .map(|a| format!(" under the experiment arm `{a}`"))
        .unwrap_or_default();
    let example = missing.first().copied().unwrap_or("busy");
    Diagnostic::new(Code::MissingRoutes, format!("this {what} does not say what happens on {list}{under}"))
        .primary(span, format!("no route for {list}"))
        .help(format!(
            "add `on {example} -> …`, a strategy rule such as `on {example} retry after 15m`, or `on other -> …` for every outcome not listed"
        ))
}

pub fn route_twice(outcome: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::new(Code::RouteTwice, format!("`{outcome}` is routed twice"))
        .primary(span, "routed again here")
        .secondary(first, "first routed here")
        .help("keep one route per outcome; put both actions in one route with `-> { … }`")
}

pub fn voicemail_without_detection(route: Span, dial: Span) -> Diagnostic {
    Diagnostic::new(
        Code::VoicemailWithoutDetection,
        "`on voicemail` can never happen: this dial does not detect voicemail",
    )
    .primary(route, "never taken")
    .secondary(dial, "add `detect voicemail` to this dial")
    .help("write `dial … detect voicemail`; without it an answering machine counts as `answered`")
}

pub fn retry_outside_dial(span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::RetryOutsideDial,
        "`retry` is only allowed in a dial's routes",
    )
    .primary(span, "nothing to retry here")
    .help("move it into a route such as `on busy -> retry after 15m`, or use `goto` to dial again")
}

pub fn bare_retry_without_rule(
    span: Span,
    outcomes: &[&str],
    strategy: Option<&str>,
    arm: Option<&str>,
) -> Diagnostic {
    let list = list_words(
        &outcomes
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>(),
    );
    let who = match strategy {
        Some(s) => format!("the strategy `{s}`"),
        None => "the flow (it has no strategy)".to_string(),
    };
    let under = arm
        .map(|a| format!(" under the arm `{a}`"))
        .unwrap_or_default();
    Diagnostic::new(
        Code::BareRetryWithoutRule,
        format!("{who} has no retry rule for {list}{under}"),
    )
    .primary(span, "a bare `retry` follows the strategy's rule")
    .help("say how to retry here, for example `retry after 30m`, or add a rule to the strategy")
}

pub fn in_call_without_call(action: &str, span: Span, via: Option<Span>) -> Diagnostic {
    let d = Diagnostic::new(Code::InCallWithoutCall, format!("`{action}` needs a connected call, and this path may have none"))
        .primary(span, "no call is connected here on some path")
        .help("reach this step only from `on answered` or `on voicemail` routes, or send a message (`send sms`) instead");
    match via {
        Some(v) => d.secondary(v, "this route arrives without a connected call"),
        None => d,
    }
}

pub fn endless_loop(span: Span, steps: &[String]) -> Diagnostic {
    Diagnostic::new(Code::EndlessLoop, "this loop never dials, waits or ends")
        .primary(span, "goes round without end")
        .note(format!(
            "the loop runs through {}",
            list_words(&steps.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>())
        ))
        .help("add a `dial`, a `wait` or an `end` to the loop, or break it with an `if`")
}

pub fn unbounded_dial_cycle(span: Span, steps: &[String]) -> Diagnostic {
    Diagnostic::new(Code::UnboundedDialCycle, "this loop can dial the same contact without limit")
        .primary(span, "dials again with no attempt bound")
        .note(format!("the loop runs through {}", list_words(&steps.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>())))
        .help("give the flow a strategy with `max attempts N`, or guard the loop with `if attempt < N { … }`")
}

pub fn routes_without_dial(span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::MisplacedRoute,
        "`on` routes must follow a `dial` or a `transfer`",
    )
    .primary(span, "there is no dial or transfer in this block")
    .help("put a `dial` or `transfer` before the routes, or use `goto` and `end` directly")
}

pub fn after_terminator(span: Span, what: &str, terminator: Span) -> Diagnostic {
    Diagnostic::new(
        Code::MisplacedRoute,
        format!("nothing may follow a `{what}` in its block"),
    )
    .primary(span, "this never runs")
    .secondary(
        terminator,
        format!("the `{what}` decides what happens next"),
    )
    .help(format!("move this action into the `{what}`'s routes"))
}

pub fn step_without_end(span: Span) -> Diagnostic {
    Diagnostic::new(Code::StepWithoutEnd, "this does not say what happens next")
        .primary(span, "the actions run out here")
        .help("finish with `end completed`, `end failed \"reason\"`, `goto STEP`, or a `dial` with its routes")
}

pub fn wait_during_call(span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::WaitDuringCall,
        "`wait` would keep the recipient on a silent line",
    )
    .primary(span, "a call is connected here")
    .help("`wait` belongs before a dial; to pause during a call use `say` or `play`")
}

pub fn unbounded_retry(span: Span, strategy: Option<&str>) -> Diagnostic {
    let message = match strategy {
        Some(s) => format!("the strategy `{s}` retries without an attempt bound"),
        None => "this retry has no attempt bound".to_string(),
    };
    Diagnostic::new(Code::UnboundedRetry, message)
        .primary(span, "could retry forever")
        .help("add `max attempts N` to the strategy, or `max N` to the retry")
}

pub fn rule_max_unreachable(
    span: Span,
    max: u32,
    attempts: u32,
    attempts_span: Span,
) -> Diagnostic {
    Diagnostic::new(
        Code::RuleMaxUnreachable,
        format!("`max {max}` can never be reached with `max attempts {attempts}`"),
    )
    .primary(
        span,
        format!("at most {} retries can happen", attempts.saturating_sub(1)),
    )
    .secondary(attempts_span, "the attempt limit")
    .help(format!(
        "lower it to `max {}` or raise `max attempts`",
        attempts.saturating_sub(1)
    ))
}

pub fn no_callable_time(span: Span, what: &str) -> Diagnostic {
    Diagnostic::new(Code::NoCallableTime, format!("{what} leaves no minute of the week to call in"))
        .primary(span, "never callable")
        .help("widen the `hours`, narrow the `pause` windows, or check them against the compliance quiet hours")
}

pub fn campaign_never_callable(stop: Span, start: Span) -> Diagnostic {
    Diagnostic::new(Code::NoCallableTime, "no minute between `start` and `stop` is callable")
        .primary(stop, "the campaign ends before any callable time")
        .secondary(start, "it starts here")
        .help("move `start` or `stop` so that the campaign spans some of the calendar's hours outside the quiet hours")
}

pub fn retry_at_never_callable(span: Span, calendar: Option<(&str, Span)>) -> Diagnostic {
    let d = Diagnostic::new(
        Code::RetryAtNeverCallable,
        "none of these times is ever callable",
    )
    .primary(span, "no day allows any of these times")
    .help("choose times inside the calendar's hours and outside its pauses and the quiet hours");
    match calendar {
        Some((name, s)) => d.secondary(s, format!("the calendar `{name}`")),
        None => d,
    }
}

pub fn overlapping_hours(span: Span, other: Span) -> Diagnostic {
    Diagnostic::new(
        Code::OverlappingHours,
        "these hours overlap other hours of the same day",
    )
    .primary(span, "overlaps")
    .secondary(other, "with these")
    .help("merge the windows into one; to remove time from the day, use `pause`")
}

pub fn backwards_window(span: Span) -> Diagnostic {
    Diagnostic::new(Code::BackwardsWindow, "this window ends before it starts")
        .primary(span, "the end is not after the start")
        .help("windows stay within one day: to cross midnight, split it in two, for example `20:00-24:00` and `00:00-02:00`")
}

pub fn closed_before_start(span: Span, start: Span) -> Diagnostic {
    Diagnostic::new(
        Code::ClosedBeforeStart,
        "this closed date is before the campaign starts",
    )
    .primary(span, "never applies")
    .secondary(start, "the campaign starts here")
    .help("check the year of the date, or remove it")
}

pub fn strategy_impossible(
    span: Span,
    attempts: u32,
    possible: u64,
    limit: Span,
    why: &str,
) -> Diagnostic {
    Diagnostic::new(
        Code::StrategyImpossible,
        format!("`max attempts {attempts}` cannot be reached: {why} allow at most {possible}"),
    )
    .primary(span, "more attempts than the limits allow")
    .secondary(limit, "this limit")
    .help(format!(
        "lower `max attempts` to {possible} or lengthen the campaign"
    ))
}

pub fn arm_weights(span: Span, total: f64) -> Diagnostic {
    Diagnostic::new(
        Code::ArmWeights,
        format!(
            "the arm weights add up to {}%, not 100%",
            format_number(total)
        ),
    )
    .primary(span, "weights must sum to 100%")
    .help(format!(
        "adjust the weights by {}%",
        format_number(100.0 - total)
    ))
}

pub fn invalid_value(span: Span, message: &str, help: &str) -> Diagnostic {
    Diagnostic::new(Code::InvalidValue, message.to_string())
        .primary(span, "out of range")
        .help(help.to_string())
}

pub fn hours_in_quiet(span: Span, quiet: Span, policy: &str, preset: bool) -> Diagnostic {
    let code = if preset {
        Code::HoursInQuietPreset
    } else {
        Code::HoursInQuietCustom
    };
    Diagnostic::new(
        code,
        format!("these hours fall inside the quiet hours of `{policy}`"),
    )
    .primary(span, "calls would be planned in quiet hours")
    .secondary(quiet, "the quiet hours")
    .help("end the calendar's hours before the quiet hours begin and start them after they end")
}

pub fn state_quiet_hours(
    span: Span,
    quiet: Span,
    policy: &str,
    state: &str,
    until: &str,
) -> Diagnostic {
    Diagnostic::new(
        Code::StateQuietHours,
        format!("the contacts of {state} get calls until {until} only"),
    )
    .primary(span, format!("these hours run into the quiet hours of `{policy}`"))
    .secondary(quiet, "the state's quiet hours")
    .note(format!(
        "`{policy}` applies to contacts whose `state` is {state} or whose number's area code is in {state}"
    ))
    .help("nothing to change if that is intended; end the hours earlier to give every contact the same hours")
}

pub fn consent_without_field(span: Span, schema: Option<Span>) -> Diagnostic {
    let d = Diagnostic::new(Code::ConsentWithoutField, "`require consent` needs a `consent: bool` contact field")
        .primary(span, "consent is required here")
        .help("add `consent: bool` to the contact schema (with `= false` as the default if unknown contacts must not be called)");
    match schema {
        Some(s) => d.secondary(s, "the schema has no bool `consent` field"),
        None => d,
    }
}

pub fn no_compliance(span: Span, window: &str) -> Diagnostic {
    Diagnostic::new(Code::NoCompliance, "no compliance policy: is this intended?")
        .primary(span, format!("this flow may call at {window}, outside 08:00-21:00"))
        .help("add `compliance tcpa` (or the policy that governs these contacts), or keep calendar hours within 08:00-21:00")
}

pub fn ring_too_short(span: Span, seconds: u64, min: u64, policy: &str) -> Diagnostic {
    Diagnostic::new(
        Code::RingTooShort,
        format!("`{policy}` requires ringing at least {min}s before giving up"),
    )
    .primary(span, format!("rings only {seconds}s"))
    .help(format!("use `timeout {min}s` or longer"))
}

pub fn missing_field(name: &str, span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::MissingField,
        format!("this test contact has no `{name}`"),
    )
    .primary(span, format!("`{name}` is required by the schema"))
    .help(format!(
        "add `{name}: …`, or give the field a default or a `?` in the schema"
    ))
}

pub fn bad_zone_source(span: Span) -> Diagnostic {
    Diagnostic::new(Code::Syntax, "expected `contact.FIELD`, `phone` or a zone name")
        .primary(span, "not a zone source")
        .help("list where each contact's zone comes from, for example `timezone contact.timezone, phone, \"America/New_York\"`")
}

pub fn invalid_literal(span: Span, message: &str, help: &str) -> Diagnostic {
    Diagnostic::new(Code::InvalidLiteral, message.to_string())
        .primary(span, "cannot be read")
        .help(help.to_string())
}

pub fn format_number(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        format!("{n:.2}").trim_end_matches('0').to_string()
    }
}
