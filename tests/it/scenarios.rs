//! Scenario tests (`test` items) run on the virtual clock: the example flows'
//! own tests, fixtures for every retry form, limit and routing case, and
//! tests that must fail.

use crate::{check, flow_files};

fn run_all(path: &std::path::Path) -> Vec<flowc::runtime::scenario::TestResult> {
    let c = check(path);
    assert!(
        !c.has_errors(),
        "{}:\n{}",
        path.display(),
        crate::render(&c)
    );
    let program = c.program.unwrap();
    let flow = program.flow.as_ref().unwrap();
    program
        .tests
        .iter()
        .map(|t| flowc::runtime::scenario::run_test(flow, t))
        .collect()
}

#[test]
fn example_flows_and_scenario_fixtures_pass() {
    let mut files = flow_files("flows");
    files.extend(
        flow_files("tests/scenarios")
            .into_iter()
            .filter(|p| !p.ends_with("failing.flow")),
    );
    let mut count = 0;
    for path in files {
        for r in run_all(&path) {
            count += 1;
            assert!(
                r.passed(),
                "{} :: {}\n{}\n{}",
                path.display(),
                r.name,
                r.failures.join("\n"),
                r.timeline.join("\n")
            );
        }
    }
    assert!(count >= 18, "only {count} scenario tests ran");
}

#[test]
fn a_wrong_expectation_and_an_unscripted_dial_fail() {
    let results = run_all(std::path::Path::new("tests/scenarios/failing.flow"));
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[0].failures,
        vec!["expected end failed, got completed \"completed\"".to_string()]
    );
    assert_eq!(
        results[1].failures,
        vec![
            "the flow dialled more often than scripted: attempt 2 at 2026-12-01 11:00".to_string()
        ]
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["test", "tests/scenarios/failing.flow"])
        .current_dir(crate::root())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains("... FAILED")
            && out.contains("what happened:")
            && out.trim_end().ends_with("0 passed, 2 failed"),
        "{out}"
    );
}
