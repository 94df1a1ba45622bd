//! `flowc fmt`: idempotent, and the formatted file means the same (the same
//! IR but for the source hash, the same diagnostic codes), over every
//! example flow, every UI fixture and mutated flows; a file that does not
//! parse is left as it is.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::{flow_files, root};

/// Reads the root file as formatted, every other file as it is.
struct Formatted {
    root: PathBuf,
    text: String,
}

impl flowc::check::Loader for Formatted {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        if path == self.root {
            Ok(self.text.clone())
        } else {
            flowc::check::Loader::load(&flowc::check::FsLoader, path)
        }
    }
}

fn parses(text: &str) -> bool {
    let (_, diags) = flowc::syntax::parse(flowc::source::FileId(0), text);
    !diags
        .iter()
        .any(|d| d.code == flowc::diagnostic::Code::Syntax)
}

/// What a compilation means: its diagnostic codes, and its IR without the
/// source hash.
fn meaning(c: &flowc::check::Compilation) -> (Vec<&'static str>, Option<serde_json::Value>) {
    let mut codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
    codes.sort();
    let ir = c.program.as_ref().map(|p| {
        let mut v = serde_json::to_value(p).unwrap();
        v["source_hash"] = serde_json::Value::Null;
        v
    });
    (codes, ir)
}

fn same_meaning_and_idempotent(path: &Path, text: &str) -> Result<(), TestCaseError> {
    let once = flowc::syntax::fmt::format(text);
    let twice = flowc::syntax::fmt::format(&once);
    prop_assert_eq!(&twice, &once, "{}: not idempotent", path.display());
    let before = flowc::check::check(
        path,
        &Formatted {
            root: path.to_path_buf(),
            text: text.to_string(),
        },
    )
    .unwrap();
    let after = flowc::check::check(
        path,
        &Formatted {
            root: path.to_path_buf(),
            text: once.clone(),
        },
    )
    .unwrap();
    prop_assert_eq!(
        meaning(&before),
        meaning(&after),
        "{}: formatting changed the meaning\n{}",
        path.display(),
        once
    );
    Ok(())
}

fn corpus() -> Vec<PathBuf> {
    let mut files = flow_files("flows");
    files.extend(flow_files("flows/common"));
    for dir in [
        "tests/ui/parse/ok",
        "tests/ui/parse/err",
        "tests/ui/check/ok",
        "tests/ui/check/err",
        "tests/scenarios",
    ] {
        files.extend(flow_files(dir));
    }
    files
}

#[test]
fn every_example_and_fixture_formats_idempotently_and_keeps_its_meaning() {
    std::env::set_current_dir(root()).unwrap();
    let mut formatted = 0;
    for path in corpus() {
        let text = std::fs::read_to_string(root().join(&path)).unwrap();
        if !parses(&text) {
            continue;
        }
        same_meaning_and_idempotent(&path, &text).unwrap();
        formatted += 1;
    }
    assert!(formatted > 100, "only {formatted} files formatted");
}

#[test]
fn the_examples_are_formatted() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["fmt", "--check", "flows/"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn a_messy_flow_gets_the_canonical_layout() {
    let messy = "contact {phone: phone,name:text}\n\n\n\nflow   demo{\n\n  timezone   phone , \"UTC\"\n compliance tcpa\nstep call {\n      dial contact.phone   timeout 30s\n on answered->end completed \"ok\"   // reached\n    on other -> end failed // not reached\n\n}\n}\n\n";
    let expected = "contact { phone: phone, name:text }\n\nflow demo {\n  timezone phone, \"UTC\"\n  compliance tcpa\n  step call {\n    dial contact.phone timeout 30s\n    on answered -> end completed \"ok\" // reached\n    on other    -> end failed         // not reached\n  }\n}\n";
    assert_eq!(flowc::syntax::fmt::format(messy), expected);
}

#[test]
fn a_file_that_does_not_parse_is_left_as_it_is() {
    let dir = std::env::temp_dir().join(format!("flowc-fmt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let broken = "flow demo {\n  step call {\n    dial contact.phone\n    on answered ->\n";
    std::fs::write(dir.join("broken.flow"), broken).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["fmt", "broken.flow"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("left as it is"));
    assert_eq!(
        std::fs::read_to_string(dir.join("broken.flow")).unwrap(),
        broken
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn mutated() -> impl Strategy<Value = (usize, usize, usize, String)> {
    (
        any::<usize>(),
        any::<usize>(),
        0usize..4,
        prop::sample::select(vec![
            " ".to_string(),
            "\n".to_string(),
            "  ".to_string(),
            "\t".to_string(),
            "\n\n\n".to_string(),
            "// note\n".to_string(),
            "/* c */".to_string(),
            "{".to_string(),
            "}".to_string(),
            "->".to_string(),
            ",".to_string(),
            ";".to_string(),
        ]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whitespace, comments and punctuation spliced into the corpus: when the
    /// result parses, formatting it is idempotent and keeps its meaning.
    #[test]
    fn mutated_flows_format_idempotently_and_keep_their_meaning(edits in prop::collection::vec(mutated(), 1..6)) {
        let files = corpus();
        let (pick, _, _, _) = &edits[0];
        let path = &files[pick % files.len()];
        let mut text: Vec<char> = std::fs::read_to_string(root().join(path)).unwrap().chars().collect();
        for (_, at, _, piece) in &edits {
            let at = at % (text.len() + 1);
            text.splice(at..at, piece.chars());
        }
        let text: String = text.into_iter().collect();
        if parses(&text) {
            same_meaning_and_idempotent(Path::new("fuzz.flow"), &text)?;
        }
    }
}
