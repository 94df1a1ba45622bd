//! UI tests: every fixture in `ok/` checks clean, every fixture in `err/`
//! reports the code its name starts with; the rendered report of each error
//! fixture is a snapshot, reviewed like code.

use crate::{check, flow_files, render, root};

fn snapshot_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(root().join("tests/ui/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn ok_fixtures_check_clean() {
    let mut failures = Vec::new();
    for stage in ["parse", "check"] {
        for path in flow_files(&format!("tests/ui/{stage}/ok")) {
            let c = check(&path);
            if !c.diagnostics.is_empty() {
                failures.push(format!("{}:\n{}", path.display(), render(&c)));
            }
            assert!(
                c.program.is_some() || c.has_errors(),
                "{}: no IR and no error",
                path.display()
            );
        }
    }
    assert!(
        failures.is_empty(),
        "ok fixtures with diagnostics:\n{}",
        failures.join("\n")
    );
}

#[test]
fn err_fixtures_report_their_code() {
    let settings = snapshot_settings();
    let mut failures = Vec::new();
    let mut count = 0;
    for stage in ["parse", "check"] {
        for path in flow_files(&format!("tests/ui/{stage}/err")) {
            count += 1;
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let code = &name[..5];
            let c = check(&path);
            let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
            if !codes.contains(&code) {
                failures.push(format!(
                    "{}: expected {code}, got {codes:?}",
                    path.display()
                ));
            }
            if stage == "parse" && !code.starts_with("E01") {
                failures.push(format!(
                    "{}: parse fixtures hold syntax codes (E01xx)",
                    path.display()
                ));
            }
            if code.starts_with('E') && c.program.is_some() {
                failures.push(format!("{}: an error fixture produced IR", path.display()));
            }
            let source = std::fs::read_to_string(root().join(&path)).unwrap();
            settings.bind(|| {
                insta::assert_snapshot!(
                    name.clone(),
                    format!("{source}\n----- rendered -----\n{}", render(&c))
                )
            });
        }
    }
    assert!(count >= 50, "only {count} error fixtures found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn several_errors_in_one_file_are_all_reported() {
    let path = std::path::Path::new("tests/ui/multi/several_errors.flow");
    let c = check(path);
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
    for expected in ["E0101", "E0102", "E0104", "E0201", "E0304"] {
        assert!(codes.contains(&expected), "missing {expected} in {codes:?}");
    }
    snapshot_settings().bind(|| insta::assert_snapshot!("several_errors", render(&c)));
}
