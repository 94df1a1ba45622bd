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
    let twin = |name: &str| {
        ["parse", "check"]
            .iter()
            .any(|s| root().join(format!("tests/ui/{s}/ok/{name}")).exists())
    };
    for code in Code::ALL {
        let named: Vec<&String> = fixtures
            .iter()
            .filter(|f| f.starts_with(code.as_str()))
            .collect();
        assert!(!named.is_empty(), "{code} has no error fixture");
        assert!(
            named.iter().any(|n| twin(n)),
            "{code} has no fixture with a fixed twin in ok/"
        );
        assert!(has_explanation(*code), "{code} has no explanation");
        let e = flowc::diagnostic::explanation(*code);
        assert_ne!(
            e.wrong, e.fixed,
            "{code}: `flowc explain` would show the same file as wrong and fixed"
        );
    }
    for name in &fixtures {
        let snap = root()
            .join("tests/ui/snapshots")
            .join(format!("{}.snap", name.trim_end_matches(".flow")));
        assert!(
            snap.exists(),
            "{name} has no snapshot at {}",
            snap.display()
        );
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
