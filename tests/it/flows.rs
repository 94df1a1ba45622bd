//! The example campaigns in `flows/` check clean and compile to IR that
//! survives a JSON round trip.

use crate::{check, flow_files, render};

#[test]
fn every_example_flow_is_clean() {
    let files = flow_files("flows");
    assert!(
        files.len() >= 8,
        "expected at least eight example flows, found {}",
        files.len()
    );
    for path in files {
        let c = check(&path);
        assert!(
            c.diagnostics.is_empty(),
            "{}:\n{}",
            path.display(),
            render(&c)
        );
        let program = c.program.expect("clean flows compile");
        let flow = program
            .flow
            .as_ref()
            .unwrap_or_else(|| panic!("{} holds no flow", path.display()));
        assert!(!flow.steps.is_empty());
        let json = serde_json::to_string(&program).unwrap();
        let back: flowc::ir::Program = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back,
            program,
            "{}: the IR changes in a JSON round trip",
            path.display()
        );
    }
}

#[test]
fn shared_files_check_clean() {
    for path in flow_files("flows/common") {
        let c = check(&path);
        assert!(
            c.diagnostics.is_empty(),
            "{}:\n{}",
            path.display(),
            render(&c)
        );
    }
}
