//! Tidiness: every diagnostic code has fixtures, an explanation and a snapshot.

use flowc::diagnostic::{has_explanation, Code};

use crate::{flow_files, root};

#[test]
fn every_code_has_a_fixture_an_explanation_and_a_snapshot() {
    let fixtures: Vec<String> = ["tests/ui/parse/err", "tests/ui/check/err"]
        .iter()
        .flat_map(|d| flow_files(d))
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for code in Code::ALL {
        let name = fixtures.iter().find(|f| f.starts_with(code.as_str()));
        let name = name.unwrap_or_else(|| panic!("{code} has no error fixture"));
        assert!(has_explanation(*code), "{code} has no explanation");
        let snap = root()
            .join("tests/ui/snapshots")
            .join(format!("{}.snap", name.trim_end_matches(".flow")));
        assert!(
            snap.exists(),
            "{code} has no snapshot at {}",
            snap.display()
        );
        let fixed = ["parse", "check"]
            .iter()
            .any(|s| root().join(format!("tests/ui/{s}/ok/{name}")).exists());
        assert!(fixed, "{code} has no fixed twin of {name} in ok/");
    }
    for f in &fixtures {
        assert!(
            Code::parse(&f[..5]).is_some(),
            "fixture {f} names no known code"
        );
    }
}

#[test]
fn codes_are_unique_and_well_formed() {
    let mut seen = std::collections::HashSet::new();
    for code in Code::ALL {
        let s = code.as_str();
        assert!(seen.insert(s), "{s} is used twice");
        assert!(
            s.len() == 5 && (s.starts_with('E') || s.starts_with('W')),
            "{s}"
        );
        assert_eq!(
            s.starts_with('W'),
            code.severity() == flowc::diagnostic::Severity::Warning,
            "{s}"
        );
    }
}
