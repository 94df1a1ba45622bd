//! The pest parser, syntax-error conversion into author-friendly diagnostics,
//! and recovery at top-level item boundaries.

use pest::error::{ErrorVariant, InputLocation};
use pest::Parser;

use super::ast;
use super::lower::Lower;
use crate::diagnostic::{Code, Diagnostic};
use crate::source::{FileId, Span};

#[derive(pest_derive::Parser)]
#[grammar = "grammar/flow.pest"]
pub(super) struct FlowParser;

pub(super) fn grammar_accepts(text: &str) -> bool {
    FlowParser::parse(Rule::file, text).is_ok()
}

/// Files larger than this are parsed on several threads.
const PARALLEL_BYTES: usize = 32 * 1024;

/// Parses a file in pieces: each top-level item, and a large flow split
/// further at its steps. Pieces are independent, so they parse on several
/// threads, and a syntax error in one piece leaves the others checked.
pub(super) fn parse_file(file: FileId, text: &str) -> (ast::File, Vec<Diagnostic>) {
    let jobs = split(text);
    let threads = if text.len() >= PARALLEL_BYTES {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(jobs.len())
            .max(1)
    } else {
        1
    };
    let parts = run(file, text, &jobs, threads);
    if parts.iter().all(|p| p.error.is_none()) {
        return assemble(parts);
    }
    if let Some(deep) = parts.iter().find_map(|p| p.too_deep.clone()) {
        return (ast::File::default(), vec![deep]);
    }
    // The split is a guess (a block comment may hold a line that looks like
    // an item): when the whole file parses, it was wrong and the file is fine.
    if let Some(deep) = super::limits::nesting(file, text, 0) {
        return (ast::File::default(), vec![deep]);
    }
    match FlowParser::parse(Rule::file, text) {
        Ok(mut pairs) => {
            let mut lower = Lower::new(file, 0);
            let tree = lower.file(pairs.next().expect("the file rule always produces a pair"));
            (tree, lower.diagnostics)
        }
        Err(_) => assemble(parts),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum JobKind {
    Item,
    FlowHead,
    FlowEntries,
    FlowTail,
}

#[derive(Debug)]
struct Job {
    kind: JobKind,
    start: usize,
    end: usize,
}

enum Lowered {
    Items(Vec<ast::Item>),
    FlowHead(ast::Flow),
    FlowEntries(ast::Flow),
    FlowTail,
}

struct Part {
    kind: JobKind,
    lowered: Option<Lowered>,
    diagnostics: Vec<Diagnostic>,
    error: Option<Diagnostic>,
    /// The name of the item or step that failed to parse.
    broken: Option<String>,
    /// The piece nests deeper than the parser may go; it was not parsed.
    too_deep: Option<Diagnostic>,
}

fn split(text: &str) -> Vec<Job> {
    let starts = item_starts(text);
    let mut jobs = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        if text[start..end].trim().is_empty() {
            continue;
        }
        match flow_pieces(text, start, end) {
            Some(pieces) => jobs.extend(pieces),
            None => jobs.push(Job {
                kind: JobKind::Item,
                start,
                end,
            }),
        }
    }
    jobs
}

/// Splits a flow item at the `step` lines directly inside it, when its braces
/// balance; `None` leaves the item whole.
fn flow_pieces(text: &str, start: usize, end: usize) -> Option<Vec<Job>> {
    let chunk = &text[start..end];
    let first_word = chunk.split_whitespace().find(|w| !w.starts_with("//"))?;
    if first_word != "flow" {
        return None;
    }
    let mut depth = 0i32;
    let mut steps = Vec::new();
    let mut close = None;
    let mut line_start = true;
    let mut line_offset = 0;
    let (mut in_string, mut in_block_comment) = (false, false);
    let bytes = chunk.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_block_comment {
            if b == b'*' && bytes.get(i + 1) == Some(&b'/') {
                in_block_comment = false;
                i += 1;
            }
        } else if in_string {
            match b {
                b'\\' => i += 1,
                b'"' | b'\n' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => in_block_comment = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                b's' if depth == 1
                    && line_start
                    && chunk[i..].starts_with("step")
                    && chunk[i + 4..].starts_with([' ', '\t']) =>
                {
                    steps.push(line_offset);
                }
                _ => {}
            }
        }
        if b == b'\n' {
            line_start = true;
            line_offset = i + 1;
        } else if !(b == b' ' || b == b'\t') {
            line_start = false;
        }
        i += 1;
    }
    let close = close?;
    let first = *steps.first()?;
    let mut jobs = vec![Job {
        kind: JobKind::FlowHead,
        start,
        end: start + first,
    }];
    for (k, &s) in steps.iter().enumerate() {
        let e = steps.get(k + 1).copied().unwrap_or(close);
        jobs.push(Job {
            kind: JobKind::FlowEntries,
            start: start + s,
            end: start + e,
        });
    }
    jobs.push(Job {
        kind: JobKind::FlowTail,
        start: start + close,
        end,
    });
    Some(jobs)
}

fn run(file: FileId, text: &str, jobs: &[Job], threads: usize) -> Vec<Part> {
    if threads <= 1 {
        return jobs.iter().map(|j| parse_job(file, text, j)).collect();
    }
    // Contiguous runs of jobs of about equal size, one per thread.
    let share = text.len() / threads + 1;
    let mut groups: Vec<&[Job]> = Vec::new();
    let (mut from, mut size) = (0, 0);
    for (i, j) in jobs.iter().enumerate() {
        size += j.end - j.start;
        if size >= share && groups.len() + 1 < threads {
            groups.push(&jobs[from..=i]);
            from = i + 1;
            size = 0;
        }
    }
    groups.push(&jobs[from..]);
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .map(|group| {
                scope.spawn(move || {
                    group
                        .iter()
                        .map(|j| parse_job(file, text, j))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a parser thread never panics"))
            .collect()
    })
}

fn parse_job(file: FileId, text: &str, job: &Job) -> Part {
    let chunk = &text[job.start..job.end];
    let rule = match job.kind {
        JobKind::Item => Rule::item_only,
        JobKind::FlowHead => Rule::flow_head,
        JobKind::FlowEntries => Rule::flow_entries,
        JobKind::FlowTail => Rule::flow_tail,
    };
    let mut part = Part {
        kind: job.kind,
        lowered: None,
        diagnostics: Vec::new(),
        error: None,
        broken: None,
        too_deep: super::limits::nesting(file, chunk, job.start),
    };
    if let Some(deep) = &part.too_deep {
        part.error = Some(deep.clone());
        return part;
    }
    match FlowParser::parse(rule, chunk) {
        Ok(mut pairs) => {
            let pair = pairs.next().expect("a rule always produces a pair");
            let mut lower = Lower::new(file, job.start);
            part.lowered = Some(match job.kind {
                JobKind::Item => Lowered::Items(lower.file(pair).items),
                JobKind::FlowHead => Lowered::FlowHead(lower.flow_head(pair)),
                JobKind::FlowEntries => {
                    let mut flow = ast::Flow {
                        name: crate::source::Spanned::new(String::new(), Span::default()),
                        settings: Vec::new(),
                        experiments: Vec::new(),
                        steps: Vec::new(),
                    };
                    lower.more_flow_entries(pair, &mut flow);
                    Lowered::FlowEntries(flow)
                }
                JobKind::FlowTail => Lowered::FlowTail,
            });
            part.diagnostics = lower.diagnostics;
        }
        Err(err) => {
            let mut words = chunk.split_whitespace().skip_while(|w| w.starts_with("//"));
            if let (Some(_kind), Some(name)) = (words.next(), words.next()) {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                part.broken = Some(name.to_lowercase());
            }
            part.error = Some(syntax_error(file, chunk, job.start, &err));
        }
    }
    part
}

/// Puts the pieces back in order; a flow whose head failed is left out whole.
fn assemble(parts: Vec<Part>) -> (ast::File, Vec<Diagnostic>) {
    let mut tree = ast::File::default();
    let mut diags = Vec::new();
    let mut flow: Option<ast::Flow> = None;
    let mut skipping_flow = false;
    for part in parts {
        diags.extend(part.diagnostics);
        if let Some(e) = part.error {
            diags.push(e);
            tree.broken.extend(part.broken);
            if part.kind == JobKind::FlowHead {
                skipping_flow = true;
            }
        }
        match part.lowered {
            Some(Lowered::Items(mut items)) => tree.items.append(&mut items),
            Some(Lowered::FlowHead(f)) => {
                skipping_flow = false;
                flow = Some(f);
            }
            Some(Lowered::FlowEntries(mut more)) => {
                if let Some(f) = flow.as_mut() {
                    f.settings.append(&mut more.settings);
                    f.experiments.append(&mut more.experiments);
                    f.steps.append(&mut more.steps);
                }
            }
            Some(Lowered::FlowTail) | None => {}
        }
        if part.kind == JobKind::FlowTail || (skipping_flow && part.kind == JobKind::Item) {
            if let Some(f) = flow.take() {
                tree.items.push(ast::Item::Flow(f));
            }
            if part.kind == JobKind::Item {
                skipping_flow = false;
            }
        }
    }
    if let Some(f) = flow.take() {
        tree.items.push(ast::Item::Flow(f));
    }
    diags.sort_by_key(|d| d.primary_span().map(|s| s.start));
    (tree, diags)
}

const ITEM_WORDS: &[&str] = &[
    "use",
    "contact",
    "calendar",
    "strategy",
    "compliance",
    "flow",
    "test",
];

/// Byte offsets of lines that start, in the first column, with an item keyword.
fn item_starts(text: &str) -> Vec<usize> {
    // The first chunk runs from the top of the file (its comments) through the
    // first item; a byte-order mark before it is not part of the text.
    let mut starts = vec![if text.starts_with('\u{FEFF}') { 3 } else { 0 }];
    let mut offset = 0;
    let mut first_seen = false;
    for line in text.split_inclusive('\n') {
        let end = line
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or(line.len());
        if ITEM_WORDS.contains(&&line[..end]) {
            if first_seen {
                starts.push(offset);
            }
            first_seen = true;
        }
        offset += line.len();
    }
    starts
}

const SETTINGS: &str =
    "a setting such as `calendar`, `strategy` or `concurrency`, an `experiment` or a `step`";

/// Words a misspelt token may have meant, by the rule that failed on it.
fn rule_keywords(rule: Rule) -> &'static [&'static str] {
    use Rule::*;
    match rule {
        use_item | contact_item | calendar_item | strategy_item | compliance_item | flow_item
        | test_item => ITEM_WORDS,
        step_item | experiment | title_set | calendar_set | timezone_set | region_set
        | strategy_set | compliance_set | caller_id_set | concurrency_set | rate_set
        | per_day_set | start_step_set | start_set | stop_set | pause_when_set => &[
            "title",
            "calendar",
            "timezone",
            "region",
            "strategy",
            "compliance",
            "caller",
            "concurrency",
            "rate",
            "max",
            "start",
            "stop",
            "pause",
            "experiment",
            "step",
        ],
        day | day_item | days | day_range | day_word => &[
            "mon", "tue", "wed", "thu", "fri", "sat", "sun", "daily", "weekdays", "weekends",
        ],
        dial | say | play | gather | record | transfer | set_var | send_sms | send_email | flag
        | opt_out | wait | if_action | goto | retry | end | k_dial | k_if | k_end | k_retry => &[
            "dial", "say", "play", "gather", "record", "transfer", "set", "send", "flag", "opt",
            "wait", "if", "goto", "retry", "end",
        ],
        hours_line | pause_line | closed_line => &["hours", "pause", "closed"],
        max_attempts | min_gap | jitter | strat_rule => &["max", "min", "jitter", "on"],
        quiet_hours | rolling_limit | require_consent | allowed_line | min_ring | holidays_line => {
            &["quiet", "max", "require", "allowed", "min", "no"]
        }
        retry_after | retry_backoff | retry_at | retry_next_day | retry_on => {
            &["after", "backoff", "at", "next", "on"]
        }
        type_expr | enum_type => &[
            "text", "number", "bool", "date", "datetime", "duration", "phone", "timezone", "enum",
        ],
        end_kind => &["completed", "failed"],
        rate_unit => &["second", "minute", "hour"],
        dial_timeout | detect_vm | dial_from => &["timeout", "detect", "from"],
        _ => &[],
    }
}

/// What the author should write instead, in their words; `None` for rules
/// that only add noise to a message.
fn expected_words(rule: Rule) -> Option<&'static str> {
    use Rule::*;
    Some(match rule {
        ident => "a name",
        number | integer => "a number",
        percent => "a percentage such as `34%`",
        duration | unitless | dur => "a duration such as `15m`",
        time => "a time of day such as `09:00`",
        date => "a date such as `2026-12-25`",
        datetime => "a date and time such as `2026-12-01 09:00`",
        boolean => "`true` or `false`",
        string | label => "a text in double quotes",
        str_text | str_escape | str_brace | interp => "the closing `\"` of the text",
        window | windows => "a time window such as `09:00-17:00`",
        day | day_item | days | day_range | day_word => "days such as `mon-fri` or `daily`",
        use_item | contact_item | calendar_item | strategy_item | compliance_item | flow_item | test_item => {
            "`use`, `contact`, `calendar`, `strategy`, `compliance`, `flow` or `test`"
        }
        k_use => "`use`",
        k_contact => "`contact`",
        k_calendar => "`calendar`",
        k_strategy => "`strategy`",
        k_compliance => "`compliance`",
        k_flow => "`flow`",
        k_test => "`test`",
        p_arrow => "`->`",
        p_colon => "`:`",
        or_op | and_op | in_op | eq | ne | le | ge | lt | gt | coalesce | add | sub | is_set => {
            "an operator such as `==`, `and` or `+`"
        }
        field_decl => "a field such as `name: text`",
        type_expr | enum_type => "a type such as `text`, `phone` or `enum(a, b)`",
        hours_line | pause_line | closed_line => "`hours`, `pause` or `closed`",
        max_attempts | min_gap | jitter | strat_rule => "`max attempts`, `min gap`, `jitter` or `on OUTCOME retry …`",
        k_retry => "`retry`",
        stop_word => "`stop`",
        retry_after | retry_backoff | retry_at | retry_next_day | retry_on => {
            "a retry such as `after 15m`, `backoff 15m x2 up to 4h`, `at 10:00` or `next day at 10:00`"
        }
        rule_max => "`max N`",
        factor => "a factor such as `x2`",
        quiet_hours | rolling_limit | require_consent | allowed_line | min_ring | holidays_line => {
            "`quiet hours`, `max attempts N per D`, `require consent`, `allowed`, `min ring` or `no holidays`"
        }
        k_step => "`step`",
        k_experiment => "`experiment`",
        step_item | experiment | title_set | calendar_set | timezone_set | region_set
        | strategy_set | compliance_set | caller_id_set | concurrency_set | rate_set | per_day_set
        | start_step_set | start_set | stop_set | pause_when_set => SETTINGS,
        zone_source => "`contact.FIELD`, `phone` or a zone name such as \"Europe/Paris\"",
        rate_unit => "`second`, `minute` or `hour`",
        arm => "an arm such as `control 50% strategy none`",
        arm_override => "`strategy`, `calendar` or `caller id`",
        block => "`{`",
        route_line => "a route such as `on busy -> …`",
        k_on => "`on`",
        dial | say | play | gather | record | transfer | set_var | send_sms | send_email | flag | opt_out | wait
        | if_action | goto | retry | end | k_dial | k_if | k_end => "an action such as `dial`, `say`, `goto` or `end`",
        k_else => "`else`",
        route => "a step name or an action",
        dial_timeout | k_timeout => "`timeout`",
        detect_vm => "`detect voicemail`",
        dial_from => "`from`",
        tries => "`tries`",
        digit_word => "`digit` or `digits`",
        gather_arm | gather_key => "a key such as `\"1\" -> …`, `timeout -> …` or `invalid -> …`",
        end_kind => "`completed` or `failed`",
        outcomes => "an outcome such as `busy`",
        expr | literal | field_ref | local_ref | list => "a value such as `contact.name`, `3` or `\"text\"`",
        record_field => "a field such as `name: \"Ann\"`",
        test_contact | test_now | test_dial | k_expect => "`contact`, `now`, `dial` or `expect …`",
        expect_attempt_at | expect_attempts | expect_end | expect_path | expect_sms | expect_email | expect_flag
        | expect_arm | expect_skipped => "`attempt N at …`, `attempts N`, `end …`, `path …`, `sms`, `flag …`, `arm …` or `skipped`",
        press => "`press`",
        transfer_outcome => "`transfer`",
        lasting => "`lasting`",
        k_max => "`max`",
        k_attempts => "`attempts`",
        k_per => "`per`",
        k_at => "`at`",
        EOI => "the end of the file",
        _ => return None,
    })
}

fn syntax_error(
    file: FileId,
    chunk: &str,
    offset: usize,
    err: &pest::error::Error<Rule>,
) -> Diagnostic {
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut words: Vec<&str> = Vec::new();
    if let ErrorVariant::ParsingError { positives, .. } = &err.variant {
        for w in positives.iter().filter_map(|r| expected_words(*r)) {
            if !words.contains(&w) {
                words.push(w);
            }
        }
        // `at` and `on` also start retry forms; the retry phrase already names them.
        if positives
            .iter()
            .any(|r| matches!(r, Rule::retry_at | Rule::retry_on | Rule::retry_after))
        {
            words.retain(|w| *w != "`at`" && *w != "`on`");
        }
        // Keywords that a broader phrase already covers.
        if words.contains(&SETTINGS) {
            words.retain(|w| {
                !matches!(
                    *w,
                    "`calendar`"
                        | "`strategy`"
                        | "`compliance`"
                        | "`step`"
                        | "`experiment`"
                        | "`max`"
                )
            });
        }
        if words.iter().any(|w| w.starts_with("`use`,")) {
            words.retain(|w| {
                !matches!(
                    *w,
                    "`contact`"
                        | "`calendar`"
                        | "`strategy`"
                        | "`compliance`"
                        | "`flow`"
                        | "`test`"
                )
            });
        }
        if words.len() > 1 {
            words.retain(|w| !w.starts_with("an operator"));
        }
    }
    let keywords: Vec<&str> = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives
            .iter()
            .flat_map(|r| rule_keywords(*r).iter().copied())
            .collect(),
        _ => Vec::new(),
    };
    if let Some(diag) = item_entry_error(file, chunk, offset, pos) {
        return diag;
    }
    if chunk[pos..].trim().is_empty() {
        if let Some(open) = unclosed_brace(chunk) {
            let span = Span::new(file, offset + open, offset + open + 1);
            return Diagnostic::new(Code::Syntax, "this `{` is never closed")
                .primary(span, "the block opened here has no `}`")
                .help("add `}` where the block ends; each `{` needs its own `}`");
        }
    }
    if let Some(diag) = two_word_error(file, chunk, offset, pos) {
        return diag;
    }
    let rest = &chunk[pos..];
    let token_len = token_length(rest);
    let span = Span::new(file, offset + pos, offset + pos + token_len);
    let found = describe_token(&rest[..token_len]);
    let line_start = chunk[..pos].rfind('\n').map_or(0, |i| i + 1);
    let before = chunk[line_start..pos].trim();
    // What fits here that the grammar names with a literal, not a rule.
    if before.starts_with("gather") {
        words.push("`{` and a block of keys");
    }
    if before.contains("backoff") {
        words.insert(0, "`up to`");
    }
    let message = if words.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {}", or_list(&words))
    };
    let mut diag = Diagnostic::new(Code::Syntax, message).primary(span, format!("found {found}"));
    diag = diag.help(syntax_help(&rest[..token_len], before, &words, &keywords));
    diag
}

/// The last `{` of a text that no `}` closes (strings and comments skipped).
fn unclosed_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 1);
            }
            b'{' => open.push(i),
            b'}' => {
                open.pop();
            }
            _ => {}
        }
        i += 1;
    }
    open.pop()
}

/// Phrases of two words: when the first is found and the second is not
/// what follows it, the second word is the mistake.
const TWO_WORDS: &[(&str, &str)] = &[
    ("detect", "voicemail"),
    ("min", "gap"),
    ("min", "ring"),
    ("quiet", "hours"),
    ("caller", "id"),
    ("next", "day"),
    ("opt", "out"),
    ("require", "consent"),
    ("no", "holidays"),
    ("send", "sms"),
    ("send", "email"),
    ("up", "to"),
];

/// `detect voicemal`: points at the misspelt second word of a phrase.
fn two_word_error(file: FileId, chunk: &str, offset: usize, pos: usize) -> Option<Diagnostic> {
    let rest = &chunk[pos..];
    let first_len = token_length(rest);
    let first = &rest[..first_len];
    let after = &rest[first_len..];
    let gap = after.len() - after.trim_start_matches([' ', '\t']).len();
    let second_len = token_length(&after[gap..]);
    let second = &after[gap..gap + second_len];
    let wanted: Vec<&str> = TWO_WORDS
        .iter()
        .filter(|(a, _)| *a == first)
        .map(|(_, b)| *b)
        .collect();
    if wanted.is_empty() || second.is_empty() || wanted.contains(&second) {
        return None;
    }
    let start = offset + pos + first_len + gap;
    let span = Span::new(file, start, start + second_len);
    let phrases: Vec<String> = wanted.iter().map(|w| format!("`{first} {w}`")).collect();
    let help = match crate::diagnostic::did_you_mean(second, wanted.iter().copied()) {
        Some(w) => format!("did you mean `{first} {w}`?"),
        None => format!(
            "`{first}` begins {}",
            or_list(&phrases.iter().map(String::as_str).collect::<Vec<_>>())
        ),
    };
    Some(
        Diagnostic::new(
            Code::Syntax,
            format!(
                "expected {}",
                or_list(&phrases.iter().map(String::as_str).collect::<Vec<_>>())
            ),
        )
        .primary(span, format!("found `{second}`"))
        .help(help),
    )
}

/// A calendar, strategy or compliance item that fails as a whole points at
/// its first line that is not one of its entries, with what that line
/// should be (pest's furthest failure lies at the item's start).
fn item_entry_error(file: FileId, chunk: &str, offset: usize, pos: usize) -> Option<Diagnostic> {
    let head = chunk[pos..].trim_start();
    let (entry, kind) = if head.starts_with("strategy ") {
        (Rule::strat_entry, "strategy")
    } else if head.starts_with("calendar ") {
        (Rule::cal_entry, "calendar")
    } else if head.starts_with("compliance ") {
        (Rule::comp_entry, "compliance policy")
    } else {
        return None;
    };
    let body_start = pos + chunk[pos..].find('{')? + 1;
    let mut at = body_start;
    for line in chunk[body_start..].split_inclusive('\n') {
        let code = line.split("//").next().unwrap_or("").trim();
        let lead = line.len() - line.trim_start().len();
        let start = at + lead;
        at += line.len();
        if code.is_empty() || code == "}" || code.starts_with("/*") {
            continue;
        }
        let code = code.trim_end_matches([';', '}']).trim();
        let whole = FlowParser::parse(entry, code)
            .ok()
            .and_then(|mut p| p.next())
            .is_some_and(|p| p.as_str().len() == code.len());
        if whole {
            continue;
        }
        let span = Span::new(file, offset + start, offset + start + code.len());
        let words: Vec<&str> = code.split_whitespace().collect();
        let (message, help) = match words.as_slice() {
            ["max", "attempts", n, "per", "day"] if kind == "strategy" => (
                "a daily limit is not a strategy setting".to_string(),
                format!("it belongs in the flow, written `max attempts per day {n}`"),
            ),
            ["max", "attempts", n, "per", d] if kind == "strategy" => (
                "a rolling limit is not a strategy setting".to_string(),
                format!(
                    "it belongs in a compliance policy: `compliance limits {{ max attempts {n} per {d} }}`, named in the flow's `compliance` line"
                ),
            ),
            _ => (
                format!("this line is not a {kind} entry"),
                match kind {
                    "strategy" => "a strategy holds `max attempts N`, `min gap D`, `jitter P%` and `on OUTCOME retry …` or `on OUTCOME stop` lines; `flowc explain E0101` shows the syntax".to_string(),
                    "calendar" => "a calendar holds `hours DAYS WINDOWS`, `pause [DAYS] WINDOW` and `closed DATE` lines".to_string(),
                    _ => "a compliance policy holds `quiet hours`, `max attempts N per D`, `require consent`, `allowed DAYS WINDOWS`, `min ring D` and `no holidays \"FR\"` lines".to_string(),
                },
            ),
        };
        return Some(
            Diagnostic::new(Code::Syntax, message)
                .primary(span, format!("in the {kind} here"))
                .help(help),
        );
    }
    None
}

fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{}, or {}", init.join(", "), last),
    }
}

fn token_length(rest: &str) -> usize {
    let mut chars = rest.char_indices();
    match chars.next() {
        None => 0,
        Some((_, c)) if c == '\n' || c == '\r' => 0,
        Some((_, c)) if c.is_alphanumeric() || c == '_' => rest
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '.'))
            .map_or(rest.len(), |(i, _)| i),
        Some((_, '"')) => rest[1..]
            .find(['"', '\n'])
            .map_or(rest.len(), |i| (i + 2).min(rest.len())),
        Some((_, c)) => c.len_utf8(),
    }
}

fn describe_token(token: &str) -> String {
    if token.is_empty() {
        "the end of the line".to_string()
    } else {
        format!("`{token}`")
    }
}

fn syntax_help(token: &str, before: &str, expected: &[&str], keywords: &[&str]) -> String {
    let wants = |s: &str| expected.iter().any(|w| w.contains(s));
    if before.starts_with("gather") && token.is_empty() {
        return format!(
            "a gather's keys go in a block after it: `{before} {{ \"1\" -> … }}`, one `\"KEY\" -> ROUTE` line each, with `timeout ->` and `invalid ->`"
        );
    }
    if before.contains("backoff") && matches!(token, "cap" | "max" | "limit" | "upto") {
        return format!("a backoff's longest wait is written `up to`: `{before} up to …`");
    }
    if wants("a retry such as")
        && token.chars().next().is_some_and(|c| c.is_ascii_digit())
        && token.ends_with(['s', 'm', 'h', 'd'])
    {
        return format!("a delay is written after `after`: `retry after {token}`");
    }
    if wants("a time of day") {
        if let Some((h, m)) = token.split_once(':') {
            if h.len() == 1 && h.chars().all(|c| c.is_ascii_digit()) {
                return format!("times are written with two digits for the hour: `0{h}:{m}`");
            }
        }
    }
    if wants("double quotes") && !token.is_empty() && !token.starts_with('"') {
        return format!("write it in double quotes: `{before} \"{token}\"`");
    }
    if wants("duration") && token.chars().all(|c| c.is_ascii_digit()) && !token.is_empty() {
        return format!("a duration needs a unit: `{token}m` for minutes, `{token}s` for seconds, `{token}h` for hours");
    }
    if token.chars().any(|c| c.is_ascii_uppercase())
        && token.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return format!(
            "keywords and names are written in lower case: `{}`",
            token.to_lowercase()
        );
    }
    if token.is_empty() {
        return "the line ends too early: complete it or remove it".to_string();
    }
    if let Some(k) = crate::diagnostic::did_you_mean(token, keywords.iter().copied()) {
        return format!("did you mean `{k}`?");
    }
    "check the spelling and the order of the words on this line; `flowc explain E0101` shows the syntax".to_string()
}
