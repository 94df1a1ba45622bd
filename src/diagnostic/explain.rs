//! Long explanations for `flowc explain`. The wrong and the fixed example of
//! each code are the UI test fixtures themselves, so every example shown to
//! an author is checked by the test suite.

use super::Code;

pub struct Explanation {
    pub code: Code,
    pub summary: &'static str,
    /// A file that reports the code.
    pub wrong: &'static str,
    /// The same file, fixed: it checks clean.
    pub fixed: &'static str,
    /// Where the examples live under `tests/ui/`.
    pub fixture: &'static str,
}

macro_rules! entry {
    ($code:literal, $kind:literal, $file:literal, $summary:literal) => {
        (
            $code,
            $summary,
            include_str!(concat!("../../tests/ui/", $kind, "/err/", $file, ".flow")),
            include_str!(concat!("../../tests/ui/", $kind, "/ok/", $file, ".flow")),
            concat!($kind, "/", $file),
        )
    };
}

type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const TABLE: &[Row] = &[
    entry!("E0101", "parse", "E0101_misspelt_keyword", "The text does not follow the language's syntax. The message names what the parser expected at that point, in the words a campaign author uses, and the label points at the first token it could not read. The parser starts again at the next top-level item (`calendar`, `strategy`, `flow`, ...), so one mistake does not hide the others."),
    entry!("E0102", "parse", "E0102_capital_letters", "Names of steps, calendars, strategies, fields and variables are written in lower snake case: lowercase letters, digits and underscores, starting with a letter. Capitals are easy to mistype in one place and not another, so the language does not allow them; the help gives the snake-case spelling."),
    entry!("E0103", "parse", "E0103_duration_without_unit", "Durations always carry a unit: `30s`, `15m`, `2h`, `1d`, or sums such as `1h30m`. A bare number is ambiguous (seconds? minutes?), so it is an error wherever a duration belongs."),
    entry!("E0104", "parse", "E0104_date_that_does_not_exist", "A literal that cannot be read: a date that is not in the calendar (`2026-02-30`), a time such as `25:00`, `24:00` anywhere but the end of a window, a number too large, an escape that is not a character, or a region code that does not exist."),
    entry!("E0105", "check", "E0105_setting_twice", "Each flow setting (`calendar`, `strategy`, `concurrency`, `start`, ...) may appear once per flow. When the same setting is given twice it is unclear which one the author meant, so both places are shown."),
    entry!("E0106", "check", "E0106_two_flows", "A campaign file holds exactly one `flow`. Shared calendars, strategies and compliance policies go in files of their own that each campaign `use`s."),
    entry!("E0201", "check", "E0201_unknown_step", "A route, `goto`, `start step` or `pause campaign when step` names a step that the flow does not define. The help suggests the closest existing step name."),
    entry!("E0202", "check", "E0202_unknown_calendar", "The flow or an experiment arm names a calendar that is not defined in this file or in a file it `use`s."),
    entry!("E0203", "check", "E0203_unknown_strategy", "The flow or an experiment arm names a strategy that is not defined in this file or in a file it `use`s."),
    entry!("E0204", "check", "E0204_unknown_compliance", "`compliance` names a policy that is neither a built-in preset (`tcpa`, `reg_f`, `florida`, `oklahoma`, `maryland`, `france`) nor a `compliance` item defined in this file or a file it `use`s."),
    entry!("E0205", "check", "E0205_unknown_field", "An expression, a message interpolation, a `timezone` source or a test contact names a contact field that the `contact { ... }` schema does not declare."),
    entry!("E0206", "check", "E0206_unknown_variable", "An expression reads a name that no `set`, `record ... as` or `gather` creates and that is not a built-in (`attempt`, `outcome`, `arm`, `digits`, `local.hour`, `local.weekday`, `local.date`). Contact fields are read as `contact.FIELD`."),
    entry!("E0207", "check", "E0207_unknown_arm", "A test expects an experiment arm that the flow's experiment does not define."),
    entry!("E0208", "check", "E0208_duplicate_step", "Two definitions share a name: steps, calendars, strategies, compliance policies, contact fields, experiment arms, enum values, or a compliance item that would hide a built-in preset. Names are global across the files joined by `use`, so the first definition may be in another file."),
    entry!("E0209", "check", "E0209_use_cycle", "Files that `use` each other, directly or through others, form a cycle. The diagnostic points at the `use` line in each file of the cycle. Move what both need into a third file."),
    entry!("E0210", "check", "E0210_missing_use", "A `use` line names a file that cannot be read. Paths are relative to the file that holds the `use` line."),
    entry!("W0211", "check", "W0211_unreachable_step", "No route, `goto` or `start step` leads to this step, so it never runs. Usually a route was forgotten or misspelt."),
    entry!("E0212", "check", "E0212_read_before_set", "A variable is read on a path where nothing has set it yet: some route reaches this line without passing through the `set`. Set it on every path, or read it with a default (`name ?? VALUE`)."),
    entry!("E0213", "check", "E0213_unknown_outcome", "An `on` line, a strategy rule, a gather key or a test script names an outcome that does not exist where it is used. Dials produce `answered`, `voicemail`, `busy`, `no_answer`, `rejected`, `invalid_number`, `network_error` and `unknown` (plus the routing outcomes `exhausted` and `other`); transfers produce `answered`, `failed` and `hangup`; gathers route `timeout` and `invalid`."),
    entry!("E0214", "check", "E0214_unknown_type", "A contact field has a type the language does not know. The types are `text`, `number`, `bool`, `date`, `datetime`, `duration`, `phone`, `timezone` and `enum(a, b, ...)`."),
    entry!("E0215", "check", "E0215_missing_schema", "A flow needs a contact schema with a `phone` field: it says what a contact is, what a contact list is validated against, and which number is dialled."),
    entry!("E0216", "check", "E0216_use_path", "`use` joins another flow file to this one. It takes a path relative to the file that holds the `use` line, ending in `.flow`: an absolute path, or a file of another kind, is refused before it is read, so a flow cannot read (and show in an error) a file that is not flow text."),
    entry!("E0218", "check", "E0218_calendar_file", "`calendar NAME from \"FILE.ics\"` reads closed days from an iCalendar file, relative to the flow file. The file must exist, be an `.ics` file, and read as iCalendar: each event needs a readable `DTSTART` (a date such as `20261225` or a date and time such as `20261225T090000`), its `DTEND` or `DURATION` and `RRULE` must be readable too. The error points at the line of the file."),
    entry!("W0219", "check", "W0219_calendar_file_event", "An event of a calendar file closes nothing or less than it seems: a timed event without an end (no `DTEND` nor `DURATION`), a file without events, times in UTC in a file that names no time zone (they are read as clock times), or a recurring event with more occurrences than flowc keeps."),
    entry!("E0217", "check", "E0217_no_zone", "Every contact needs a time zone: calendars, quiet hours and `retry at` times are local times. Without a `timezone` line no contact has one, and every row of a contact list would be rejected. Name where zones come from, in order: a contact field of type `timezone`, `phone` (the zones of the number's country and area code), and a zone to fall back on."),
    entry!("E0301", "check", "E0301_type_mismatch", "An operator or a setting gets a value of the wrong type: a number compared with a text, a duration added to a number, a variable set to values of two types."),
    entry!("E0302", "check", "E0302_condition_not_bool", "`if` needs a condition that is true or false. Compare the value with something (`attempt > 1`, `contact.segment == \"vip\"`)."),
    entry!("E0303", "check", "E0303_optional_not_unwrapped", "An optional field (declared with `?`) may be missing for some contacts. Before its value is used, give it a default with `??` or test it with `is set` in an enclosing `if`."),
    entry!("E0304", "check", "E0304_unknown_zone", "A time zone must be an IANA name such as \"America/New_York\" or \"Europe/Paris\"; the help suggests the closest one. Zones decide when each contact may be called, so a wrong name is never guessed."),
    entry!("E0305", "check", "E0305_invalid_phone", "A phone number written in the flow (a caller id, a transfer target, a test contact) cannot be dialled. Write numbers in E.164: `+`, the country code and the national number."),
    entry!("E0306", "check", "E0306_not_in_enum", "A text compared with an enum field, or given as an enum value, is not one of the enum's values. Enum values are written as strings and checked against the schema."),
    entry!("E0401", "check", "E0401_missing_routes", "Every outcome a dial can produce needs a route: an `on` line, a rule of the active strategy, or `on other`, in that order of precedence. With an experiment, each arm's strategy is checked separately and the message names the arm. Transfers must route `answered`, `failed` and `hangup`; gathers must route `timeout` and `invalid`. `unknown` needs no route: without one it ends the contact failed \"unknown\", because replaying an uncertain call risks calling someone twice."),
    entry!("E0402", "check", "E0402_route_twice", "The same outcome is routed by two `on` lines (or listed twice in a strategy, or a gather key twice). Only one route can be taken; merge the actions into one route."),
    entry!("E0403", "check", "E0403_voicemail_without_detection", "`on voicemail` only happens on a dial with `detect voicemail`; without detection an answering machine is reported as `answered`."),
    entry!("E0404", "check", "E0404_retry_outside_dial", "`retry` repeats the dial whose outcome is being routed, so it is only allowed inside a dial step's `on` routes. Elsewhere, use `goto` back to the dial step."),
    entry!("E0405", "check", "E0405_bare_retry_without_rule", "A bare `retry` follows the active strategy's rule for the outcome being routed. When the strategy (under some experiment arm) has no retry rule for that outcome, there is nothing to follow: write the retry form (`retry after 30m`) or add the rule."),
    entry!("E0406", "check", "E0406_in_call_without_call", "`say`, `play`, `gather`, `record` and `transfer` need a connected call. They are only allowed where every path arrives from `on answered` or `on voicemail` (or a gather or a failed transfer on such a call). Use `send sms` to reach someone who did not answer."),
    entry!("E0407", "check", "E0407_endless_loop", "A cycle of steps that neither dials, waits, gathers input nor ends would spin forever without doing anything in the world."),
    entry!("E0408", "check", "E0408_unbounded_dial_cycle", "A `goto` cycle back to a dial has no bound on how many times it dials: the flow has no strategy with `max attempts` (under some arm) and the cycle is not guarded by an `if` on `attempt`."),
    entry!("E0409", "check", "E0409_action_after_dial", "`on` routes belong to the `dial` or `transfer` of their block, and a `dial`, `transfer`, `gather`, `goto`, `retry` or `end` decides what happens next, so nothing may follow it in the same block."),
    entry!("E0410", "check", "E0410_step_without_end", "Every path through a step must say what happens next: `end completed`, `end failed`, `goto`, a `dial`, `transfer` or `gather` with its routes, or `retry` in a dial route. A block whose actions just run out is an error rather than a silent fall-through."),
    entry!("E0411", "check", "E0411_wait_during_call", "`wait` pauses the contact's flow between dials; while a call is connected it would hold the recipient on a silent line."),
    entry!("E0501", "check", "E0501_unbounded_retry", "Every retry has a bound. A strategy that retries needs `max attempts N` (or each rule a `max N`), and a retry written in a route needs `max N`, a strategy with `max attempts`, or an `if` on `attempt` around it. There is no silent unlimited default."),
    entry!("W0502", "check", "W0502_rule_max_unreachable", "`max N` on a rule counts the retries that rule causes, and `max attempts` counts every dial including the first. A rule limit of `max attempts` or more can never be reached."),
    entry!("E0503", "check", "E0503_no_callable_time", "A calendar (alone, or together with the flow's compliance quiet hours and allowed windows) leaves no minute of the week in which a dial may start. Nobody would ever be called."),
    entry!("E0504", "check", "E0504_retry_at_never_callable", "`retry at` and `retry next day at` wait for a listed local time of day. When none of the listed times falls inside the calendar's hours on any day (after pauses and quiet hours), the retry can never happen."),
    entry!("W0505", "check", "W0505_overlapping_hours", "Two `hours` windows of the same day overlap. They add up, so the overlap is harmless, but it usually means a typo; to remove time from a day, use `pause`."),
    entry!("E0506", "check", "E0506_backwards_window", "A window's end must be after its start; windows stay within one day. To call across midnight, split the window in two. (Compliance quiet hours are the exception: `quiet hours 21:00-08:00` wraps midnight.)"),
    entry!("W0507", "check", "W0507_closed_before_start", "A `closed` date lies before the campaign's `start`, so it never applies; usually the year is wrong."),
    entry!("E0508", "check", "E0508_strategy_impossible", "A strategy's `max attempts` cannot be reached in the campaign's time under its rolling limits (`N per D`) or `max attempts per day`. A limit of N per D allows at most N times the number of D-long periods the campaign spans."),
    entry!("E0509", "check", "E0509_arm_weights", "The weights of an experiment's arms must add up to exactly 100%."),
    entry!("E0510", "check", "E0510_invalid_value", "A setting has a value out of range: zero concurrency or rate, `max attempts 0`, jitter above 100%, a backoff factor below 1, a gather key longer than the digits gathered, a campaign that stops before it starts."),
    entry!("E0601", "check", "E0601_hours_in_preset_quiet_hours", "A calendar's `hours` fall inside the quiet hours of a built-in policy such as `tcpa` (21:00-08:00). Those hours stand for a legal rule: the engine would never dial then, and the calendar says otherwise."),
    entry!("W0602", "check", "W0602_hours_in_custom_quiet_hours", "A calendar's `hours` fall inside the quiet hours of a compliance item you defined. The engine enforces the quiet hours, so those hours of the calendar are never used."),
    entry!("E0603", "check", "E0603_consent_without_field", "`require consent` skips contacts whose `consent` field is false, so the schema needs a `consent: bool` field."),
    entry!("W0604", "check", "W0604_no_compliance", "The flow may call outside 08:00-21:00 local time and names no compliance policy. Most jurisdictions restrict calling hours; say which policy governs the campaign, or keep the hours within the day."),
    entry!("E0605", "check", "E0605_ring_too_short", "A dial's `timeout` is shorter than the minimum ring time of a policy in force (`tcpa`: 15 seconds)."),
    entry!("W0606", "check", "W0606_state_quiet_hours", "A state preset (`florida`, `oklahoma`, `maryland`) applies to the contacts of its state only: those whose `state` field names it, or, without one, whose number's area code is in the state. Calendar hours inside its quiet hours are not an error, since other contacts may be called then; this warning says which contacts get fewer hours, so that the campaign's plan is not a surprise."),
    entry!("E0701", "check", "E0701_test_contact_missing_field", "A test's contact lacks a field that the schema requires (neither optional nor defaulted), so the test could not run."),
];

/// The explanation of a code; every code has one (a test asserts it).
pub fn explanation(code: Code) -> Explanation {
    let row = TABLE.iter().find(|r| r.0 == code.as_str());
    let (_, summary, wrong, fixed, fixture) =
        row.copied()
            .unwrap_or((code.as_str(), code.title(), "", "", ""));
    Explanation {
        code,
        summary,
        wrong,
        fixed,
        fixture,
    }
}

/// The section of the language reference (`docs/language.md`) a code
/// concerns, as its anchor.
pub fn reference_section(code: Code) -> &'static str {
    match code.as_str() {
        "E0101" | "E0102" | "E0103" | "E0104" => "lexical-structure",
        "E0105" | "E0304" | "E0217" | "E0510" => "flow-settings",
        "E0106" | "E0208" | "E0209" | "E0210" | "E0216" => "items",
        "E0202" | "E0503" | "E0506" | "W0505" | "W0507" | "E0218" | "W0219" => "calendar",
        "E0203" | "E0405" | "E0501" | "W0502" | "E0504" | "E0508" => "strategy",
        "E0204" | "E0601" | "W0602" | "E0603" | "W0604" | "E0605" | "W0606" => "compliance",
        "E0205" | "E0214" | "E0215" | "E0305" | "E0306" | "E0303" => "contact",
        "E0206" | "E0212" | "E0301" | "E0302" => "expressions",
        "E0207" | "E0509" => "experiment",
        "E0213" | "E0401" | "E0402" | "E0403" | "E0404" | "E0409" => "outcomes-and-routes",
        "E0701" => "tests",
        _ => "steps-and-actions",
    }
}

pub fn has_explanation(code: Code) -> bool {
    TABLE
        .iter()
        .any(|r| r.0 == code.as_str() && !r.2.is_empty() && !r.3.is_empty())
}

impl Explanation {
    pub fn render(&self) -> String {
        let kind = match self.code.severity() {
            super::Severity::Error => "error",
            super::Severity::Warning => "warning",
        };
        format!(
            "{code} ({kind}): {title}\n\n{summary}\n\nReference: docs/language.md#{section}\n\nFor example, this reports {code}:\n\n{wrong}\nFixed:\n\n{fixed}",
            code = self.code,
            title = self.code.title(),
            summary = wrap(self.summary, 78),
            wrong = indent(self.wrong),
            fixed = indent(self.fixed),
            section = reference_section(self.code),
        )
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("    {l}\n")
            }
        })
        .collect()
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + 1 + word.len() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}
