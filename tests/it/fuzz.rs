//! Random and mutated inputs never make the parser or the checker panic.
//! `PROPTEST_CASES` raises the count for long runs (see BENCHMARKS.md).

use proptest::prelude::*;

use crate::{flow_files, root};

/// 300 cases in the test suite; `PROPTEST_CASES` sets more for long runs.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn corpus() -> &'static [String] {
    static CORPUS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(read_corpus);
    &CORPUS
}

fn read_corpus() -> Vec<String> {
    let mut files = flow_files("flows");
    for dir in [
        "tests/ui/parse/ok",
        "tests/ui/parse/err",
        "tests/ui/check/ok",
        "tests/ui/check/err",
    ] {
        files.extend(flow_files(dir));
    }
    files
        .iter()
        .map(|p| std::fs::read_to_string(root().join(p)).unwrap())
        .collect()
}

/// Pieces of the language to splice into inputs.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "->",
    "\n",
    ";",
    ",",
    "\"",
    "{x}",
    "on ",
    "retry ",
    "after ",
    "15",
    "15m",
    "09:00",
    "24:00",
    "2026-02-30",
    "dial contact.phone",
    "step s ",
    "goto s",
    "end failed",
    "if attempt < 3 ",
    "else ",
    "?? ",
    "is set",
    "%",
    "x2",
    "contact.",
    "local.",
    "use \"a.flow\"",
    "\u{e9}",
    "\u{1F600}",
    "/*",
    "*/",
    "//",
    "max attempts ",
    "experiment e ",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, usize),
    Duplicate(usize, usize),
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for e in edits {
        let len = s.len().max(1);
        match *e {
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n % 16).min(s.len());
                s.drain(at.min(s.len())..end);
            }
            Edit::Insert(at, t) => {
                let at = (at % len).min(s.len());
                let tok: Vec<char> = TOKENS[t % TOKENS.len()].chars().collect();
                s.splice(at..at, tok);
            }
            Edit::Duplicate(at, n) => {
                let at = (at % len).min(s.len());
                let end = (at + n % 64).min(s.len());
                let piece: Vec<char> = s[at..end].to_vec();
                s.splice(at..at, piece);
            }
        }
    }
    s.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, t)| Edit::Insert(a, t)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Duplicate(a, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_flows_never_panic(pick in any::<usize>(), edits in prop::collection::vec(edit(), 1..8)) {
        let corpus = corpus();
        let input = apply(&corpus[pick % corpus.len()], &edits);
        let c = flowc::check::check_source("fuzz.flow", &input);
        spans_inside(&c, &input)?;
        let _ = flowc::diagnostic::render_human(&c.diagnostics, &c.sources, false, 80);
    }

    #[test]
    fn random_text_never_panics(input in "\\PC{0,200}") {
        let c = flowc::check::check_source("fuzz.flow", &input);
        spans_inside(&c, &input)?;
        let _ = flowc::diagnostic::render_human(&c.diagnostics, &c.sources, false, 80);
    }

    /// The other files an operator writes: dialer scripts and contact lists
    /// (random text, and lines shaped like theirs).
    #[test]
    fn scripts_and_lists_never_panic(
        input in "\\PC{0,120}",
        shaped in "([+*(]?[0-9 ()-]{0,14} (busy|answered|no_answer|voicemail)( press [0-9#*]{0,3})?( lasting [0-9]{0,4}(ms|s|m|h|x)?)?;?\n){0,4}",
    ) {
        let us = flowc::calendar::phone::region("US");
        let _ = flowc::dialer::script::ScriptDialer::parse(&input, us);
        let _ = flowc::dialer::script::ScriptDialer::parse(&shaped, us);
        let flow = list_flow();
        let rules = flowc::contacts::Rules::new(&flow.contact, &flow.timezone, us);
        let _ = flowc::contacts::import_csv(&format!("phone,name\n{input}"), &rules);
        let _ = flowc::contacts::import_jsonl(&input, &rules);
    }
}

/// Every diagnostic points somewhere, and every label lies inside the file
/// on character boundaries.
fn spans_inside(c: &flowc::check::Compilation, input: &str) -> Result<(), TestCaseError> {
    for d in &c.diagnostics {
        prop_assert!(d.primary_span().is_some(), "{d:?} points nowhere");
        for l in &d.labels {
            let (start, end) = (l.span.start as usize, l.span.end as usize);
            prop_assert!(
                start <= end && end <= input.len(),
                "{d:?} lies outside the file"
            );
            prop_assert!(
                input.is_char_boundary(start) && input.is_char_boundary(end),
                "{d:?} cuts a character"
            );
        }
    }
    Ok(())
}

fn list_flow() -> &'static flowc::ir::Flow {
    static FLOW: std::sync::OnceLock<flowc::ir::Flow> = std::sync::OnceLock::new();
    FLOW.get_or_init(|| {
        let c = flowc::check::check(
            std::path::Path::new("tests/fixtures/contacts.flow"),
            &flowc::check::FsLoader,
        )
        .unwrap();
        c.program.unwrap().flow.unwrap()
    })
}

/// Inputs nested or chained far beyond any real flow are refused with a
/// diagnostic instead of exhausting the stack.
#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let head = "contact { phone: phone }\nflow f {\n  step s {\n    ";
    let tail = "\n  }\n}\n";
    let cases = [
        format!(
            "{head}if {}attempt{} {{ end completed }} else {{ end failed }}{tail}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        ),
        format!(
            "{head}if {}true {{ end completed }} else {{ end failed }}{tail}",
            "not ".repeat(20_000)
        ),
        format!(
            "{head}if attempt{} > 1 {{ end completed }} else {{ end failed }}{tail}",
            " + 1".repeat(20_000)
        ),
        format!(
            "{head}if attempt > 1 {{ end completed }}{} else {{ end failed }}{tail}",
            " else if attempt > 1 { end completed }".repeat(5_000)
        ),
        format!(
            "{head}{}end completed{}{tail}",
            "if true { ".repeat(50_000),
            " }".repeat(50_000)
        ),
        format!(
            "{head}send sms \"{}x{}\"\n    end completed{tail}",
            "{\"".repeat(50_000),
            "\"}".repeat(50_000)
        ),
    ];
    for (i, src) in cases.iter().enumerate() {
        let c = flowc::check::check_source("deep.flow", src);
        assert!(c.has_errors(), "case {i} was accepted");
        let messages: Vec<&str> = c.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert!(
            messages.iter().any(|m| m.contains("too")),
            "case {i}: {messages:?}"
        );
    }
}
