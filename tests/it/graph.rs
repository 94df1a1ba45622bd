//! `flowc graph`: a snapshot of every example's picture, and Graphviz draws
//! every one of them.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{flow_files, root};

fn graph(path: &std::path::Path, format: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["graph", "--format", format])
        .arg(path)
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn every_example_has_a_picture() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("tests/graphs"));
    settings.set_prepend_module_to_snapshot(false);
    for path in flow_files("flows") {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let mermaid = graph(&path, "mermaid");
        settings.bind(|| insta::assert_snapshot!(name.clone(), mermaid));
    }
}

/// The DOT output of every example is drawn by Graphviz (`dot -Tsvg`): it
/// is valid, and every step and end is in the picture.
#[test]
fn graphviz_draws_every_example() {
    if Command::new("dot").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Graphviz (`dot`) is missing in CI: .ci/run installs it"
        );
        eprintln!("skipped: Graphviz (`dot`) is not installed");
        return;
    }
    for path in flow_files("flows") {
        let dot = graph(&path, "dot");
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{}: {stderr}",
            path.display()
        );
        let svg = String::from_utf8_lossy(&out.stdout);
        let c = crate::check(&path);
        let flow = c.program.unwrap().flow.unwrap();
        for step in &flow.steps {
            assert!(
                svg.contains(&format!("<title>step_{}</title>", step.name)),
                "{}: step {} is not drawn",
                path.display(),
                step.name
            );
        }
    }
}

#[test]
fn each_arm_has_its_own_retries() {
    let tight = graph(std::path::Path::new("flows/win_back.flow"), "mermaid");
    assert!(tight.contains("busy: 30m"), "{tight}");
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["graph", "flows/win_back.flow", "--arm", "spread"])
        .current_dir(root())
        .output()
        .unwrap();
    let spread = String::from_utf8(o.stdout).unwrap();
    assert!(
        spread.contains("busy: 2h") && spread.contains("no_answer: next day 11:00, 17:30"),
        "{spread}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["graph", "flows/win_back.flow", "--arm", "loose"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("tight, spread"));
}
