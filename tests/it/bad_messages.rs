//! A ledger of error messages known to be poor. Each test asserts today's
//! behaviour; when a message improves, the test fails and moves to the UI
//! fixtures.

use flowc::check::check_source;

fn messages(src: &str) -> Vec<String> {
    check_source("ledger.flow", src)
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect()
}

/// FIXME: a misspelt second word of a two-word option points at the first
/// word (`detect`), not at the misspelling (`voicemal`).
#[test]
fn misspelt_detect_voicemail_points_at_detect() {
    let src = "contact { phone: phone }\nflow f {\n  compliance tcpa\n  step call {\n    dial contact.phone detect voicemal\n    on other -> end failed\n  }\n}\n";
    let c = check_source("ledger.flow", src);
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "E0101")
        .expect("a syntax error");
    assert_eq!(
        d.message,
        "expected `timeout`, `detect voicemail`, or `from`"
    );
    let span = d.primary_span().unwrap();
    assert_eq!(&src[span.start as usize..span.end as usize], "detect");
}

/// FIXME: a missing closing brace is found only at the end of the file, where
/// the message names everything a flow may contain.
#[test]
fn missing_closing_brace_is_reported_at_the_end() {
    let src = "contact { phone: phone }\nflow f {\n  step call {\n    dial contact.phone\n    on other -> end failed\n}\n";
    let m = messages(src);
    assert_eq!(m.len(), 1);
    assert!(m[0].starts_with("expected "), "{m:?}");
}
