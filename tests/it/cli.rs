//! The real binary: exit codes, output formats, `explain` and `compile`.

use std::process::{Command, Output};

use crate::root;

fn flowc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 output")
}

/// One line per case: arguments, expected exit code.
const EXIT_CODES: &[(&[&str], i32)] = &[
    (&["check", "flows/renewal.flow"], 0),
    (&["check", "tests/ui/check/err/E0201_unknown_step.flow"], 1),
    (
        &["check", "tests/ui/check/err/W0211_unreachable_step.flow"],
        0,
    ),
    (
        &[
            "check",
            "--deny",
            "warnings",
            "tests/ui/check/err/W0211_unreachable_step.flow",
        ],
        1,
    ),
    (&["check", "--deny", "warnings", "flows/renewal.flow"], 0),
    (&["check", "no/such/file.flow"], 2),
    (&["check", "flows/renewal.flow", "no/such/file.flow"], 2),
    (&["check"], 2),
    (&["check", "--format", "yaml", "flows/renewal.flow"], 2),
    (&["explain", "E0401"], 0),
    (&["explain", "e0401"], 0),
    (&["explain", "E9999"], 2),
];

#[test]
fn exit_codes() {
    for (args, expected) in EXIT_CODES {
        let o = flowc(args);
        assert_eq!(
            code(&o),
            *expected,
            "flowc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn json_is_one_document_even_when_a_file_cannot_be_read() {
    let o = flowc(&[
        "check",
        "--format",
        "json",
        "tests/ui/check/err/E0201_unknown_step.flow",
        "missing.flow",
    ]);
    assert_eq!(code(&o), 2);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(doc["ioErrors"][0]["file"], "missing.flow");
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "E0201");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 8);
    assert_eq!(d["column"], 20);
    assert_eq!(d["help"], "did you mean `greeting`?");
    assert_eq!(doc["summary"]["errors"], 2);
}

#[test]
fn github_annotations() {
    let o = flowc(&[
        "check",
        "--format",
        "github",
        "tests/ui/check/err/E0201_unknown_step.flow",
    ]);
    let out = stdout(&o);
    assert!(
        out.starts_with(
            "::error file=tests/ui/check/err/E0201_unknown_step.flow,line=8,col=20,endLine=8,endColumn=25,title=E0201::there is no step `greet`%0Ahelp: did you mean `greeting`?"
        ),
        "{out}"
    );
    let o = flowc(&[
        "check",
        "--format",
        "github",
        "tests/ui/check/err/W0211_unreachable_step.flow",
    ]);
    assert!(stdout(&o).starts_with("::warning file="), "{}", stdout(&o));
}

#[test]
fn sarif_has_stable_rules_and_results() {
    let o = flowc(&[
        "check",
        "--format",
        "sarif",
        "tests/ui/check/err/E0304_unknown_zone.flow",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(doc["version"], "2.1.0");
    let run = &doc["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), flowc::diagnostic::Code::ALL.len());
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "E0304");
    let index = result["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[index]["id"], "E0304");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], 5);
    assert_eq!(region["startColumn"], 19);
}

#[test]
fn human_output_is_plain_without_a_terminal() {
    let o = flowc(&["check", "tests/ui/check/err/E0201_unknown_step.flow"]);
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!err.contains('\u{1b}'), "colour codes in piped output");
    assert!(err.contains("there is no step `greet`"));
    assert!(err.contains("checked 1 file(s): 1 error(s), 0 warning(s)"));
}

#[test]
fn explain_shows_both_examples_for_every_code() {
    for code_ in flowc::diagnostic::Code::ALL {
        let o = flowc(&["explain", code_.as_str()]);
        assert_eq!(code(&o), 0);
        let out = stdout(&o);
        assert!(
            out.contains("For example, this reports") && out.contains("Fixed:"),
            "{code_}: {out}"
        );
    }
}

#[test]
fn compile_writes_the_ir() {
    let dir = std::env::temp_dir().join(format!("flowc-compile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("renewal.json");
    let o = flowc(&["compile", "flows/renewal.flow", "-o", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    let program: flowc::ir::Program = serde_json::from_str(&text).expect("the IR reads back");
    assert_eq!(program.format_version, flowc::ir::FORMAT_VERSION);
    assert_eq!(program.compiler_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(program.source_hash.len(), 64);
    let flow = program.flow.expect("a flow");
    assert_eq!(flow.name, "renewal");
    assert_eq!(flow.arms.len(), 3);

    let o = flowc(&[
        "compile",
        "tests/ui/check/err/E0201_unknown_step.flow",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no IR written"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plan_prints_timelines_and_the_week() {
    let o = flowc(&["plan", "flows/renewal.flow", "--from", "2026-12-21 08:00"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("tests/ui/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("plan_renewal", stdout(&o)));

    let o = flowc(&[
        "plan",
        "flows/fallback.flow",
        "--zone",
        "Europe/Paris",
        "--from",
        "2027-05-03 09:00",
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(doc["zone"], "Europe/Paris");
    let days = doc["calendars"][0]["days"].as_array().unwrap();
    // The france preset: Thursday 2027-05-06 is Ascension, a public holiday.
    let ascension = days.iter().find(|d| d["date"] == "2027-05-06").unwrap();
    assert_eq!(ascension["windows"].as_array().unwrap().len(), 0);
    assert!(ascension["closed"][0]["label"]
        .as_str()
        .unwrap()
        .contains("public holiday"));
    let monday = &days[0];
    assert_eq!(monday["windows"][0]["start"], "10:00");
    assert_eq!(monday["windows"][1]["end"], "18:00");
    assert_eq!(doc["strategies"][0]["timeline"][0]["attempt"], 2);

    for (args, expected) in [
        (vec!["plan", "flows/renewal.flow", "--zone", "Mars/Base"], 2),
        (vec!["plan", "flows/renewal.flow", "--from", "tomorrow"], 2),
        (
            vec!["plan", "tests/ui/check/err/E0201_unknown_step.flow"],
            1,
        ),
    ] {
        assert_eq!(code(&flowc(&args)), expected, "{args:?}");
    }
}

#[test]
fn plan_shows_a_regions_holidays_for_holidays_from_contact() {
    let flow = "tests/scenarios/holidays_from_contact.flow";
    let args = |region: Option<&str>| {
        let mut a = vec![
            "plan",
            flow,
            "--zone",
            "America/Los_Angeles",
            "--from",
            "2026-07-01 09:00",
            "--format",
            "json",
        ];
        if let Some(r) = region {
            a.extend(["--region", r]);
        }
        flowc(&a)
    };
    let labels = |o: &Output| {
        let doc: serde_json::Value = serde_json::from_str(&stdout(o)).expect("valid JSON");
        let days = doc["calendars"][0]["days"].as_array().unwrap().clone();
        (
            doc,
            days.iter()
                .flat_map(|d| {
                    let date = d["date"].as_str().unwrap().to_string();
                    d["closed"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(move |c| (date.clone(), c["label"].as_str().unwrap_or("").to_string()))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>(),
        )
    };
    // Independence Day 2026 falls on a Saturday: observed on Friday the 3rd.
    let o = args(Some("us-ca"));
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let (doc, closed) = labels(&o);
    assert_eq!(doc["holidaysFromContact"], true);
    assert_eq!(doc["contactRegion"], "US-CA");
    assert!(
        closed.contains(&(
            "2026-07-03".into(),
            "public holiday (US, from contact)".into()
        )),
        "{closed:?}"
    );
    // Without a region, the week shows none, and the text says how to see them.
    let (doc, closed) = labels(&args(None));
    assert_eq!(doc["contactRegion"], serde_json::Value::Null);
    assert!(
        closed.iter().all(|(_, l)| !l.contains("from contact")),
        "{closed:?}"
    );
    let o = flowc(&["plan", flow, "--from", "2026-07-01 09:00"]);
    assert!(stdout(&o).contains("see a country's with --region"));
    // An unknown region is a usage error with the way to write it.
    let o = args(Some("USA"));
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("has no public holidays for the region \"USA\""));
}
