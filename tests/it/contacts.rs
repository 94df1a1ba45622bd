//! Contact lists against a schema: good rows imported and normalised, bad
//! rows reported with their line and kept, duplicates merged, nothing lost.

use flowc::contacts::{self, Rules};
use flowc::ir;

use crate::root;

fn flow() -> ir::Flow {
    let c = crate::check(std::path::Path::new("tests/fixtures/contacts.flow"));
    assert!(c.diagnostics.is_empty(), "{}", crate::render(&c));
    c.program.unwrap().flow.unwrap()
}

fn rules(flow: &ir::Flow) -> Rules<'_> {
    Rules::new(
        &flow.contact,
        &flow.timezone,
        flowc::calendar::phone::region("US"),
    )
}

/// `tests/fixtures/contacts_bad.csv` is `gen-contacts 400 --seed 7 --bad-rate 0.05`.
#[test]
fn a_generated_list_with_broken_rows() {
    let flow = flow();
    let text = std::fs::read_to_string(root().join("tests/fixtures/contacts_bad.csv")).unwrap();
    let import = contacts::import_csv(&text, &rules(&flow));
    assert!(import.errors.is_empty(), "{:?}", import.errors);
    // The broken rows, found independently of the importer: gen-contacts breaks
    // a row by emptying the phone, writing words for it, an unknown zone or an unknown segment.
    let broken: Vec<usize> = text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| {
            l.starts_with(',')
                || l.contains("call me maybe")
                || l.contains("Mars/")
                || l.contains(",platinum,")
        })
        .map(|(i, _)| i + 1)
        .collect();
    let rejected: Vec<usize> = import.rejects.iter().map(|r| r.line).collect();
    assert_eq!(rejected, broken);
    // Nothing is lost: every data row is a contact, a reject or a merged duplicate.
    let rows = text.lines().count() - 1;
    assert_eq!(
        import.contacts.len() + import.rejects.len() + import.duplicates.len(),
        rows
    );
    for d in &import.duplicates {
        assert!(import
            .contacts
            .iter()
            .any(|c| *c.phone == d.phone && c.line as usize == d.first_line));
    }
    // Every contact has an E.164 number and at least one zone.
    for c in &import.contacts {
        assert!(
            c.phone.starts_with('+') && !c.zones.is_empty(),
            "line {}",
            c.line
        );
    }
    // The rejects file keeps each rejected row as written, with line and
    // reason; a cell a spreadsheet would run as a formula has a `'` before it.
    let out = contacts::rejects_csv(&import);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), import.rejects.len());
    let lines: Vec<&str> = text.lines().collect();
    for (row, reject) in rows.iter().zip(&import.rejects) {
        assert_eq!(row[0].parse::<usize>().unwrap(), reject.line);
        assert!(!row[1].is_empty());
        let original: Vec<String> = row
            .iter()
            .skip(2)
            .map(|c| match c.strip_prefix('\'') {
                Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => {
                    rest.to_string()
                }
                _ => c.to_string(),
            })
            .collect();
        assert_eq!(
            original.join(","),
            lines[reject.line - 1],
            "line {}",
            reject.line
        );
    }
}

#[test]
fn national_formats_zones_defaults_and_duplicates() {
    let flow = flow();
    let text = "phone,name,timezone,segment,consent,balance\n\
                (303) 555-0192,Yuki,,vip,yes,12.5\n\
                1-303-555-0192,Yuki again,,,,\n\
                +33612345678,\"Chloé, \"\"the\"\"\nsecond line\",Europe/Paris,,,\n\
                +13035550100,Ann,,standard,maybe,\n";
    let import = contacts::import_csv(text, &rules(&flow));
    assert_eq!(import.contacts.len(), 2);
    let first = &import.contacts[0];
    assert_eq!(&*first.phone, "+13035550192");
    assert_eq!(*first.zones, [chrono_tz::Tz::America__Denver]);
    assert_eq!(first.fields.get("consent"), Some(ir::Value::Bool(true)));
    assert_eq!(import.duplicates.len(), 1);
    assert_eq!(
        (import.duplicates[0].line, import.duplicates[0].first_line),
        (3, 2)
    );
    let paris = &import.contacts[1];
    assert_eq!(
        paris.fields.get("segment"),
        Some(ir::Value::Text("standard".into())),
        "the schema's default"
    );
    assert_eq!(*paris.zones, [chrono_tz::Tz::Europe__Paris]);
    // A quoted field spanning two lines: the next row is on line 6.
    assert_eq!(import.rejects.len(), 1);
    assert_eq!(import.rejects[0].line, 6);
    assert!(
        import.rejects[0]
            .reason
            .contains("`consent` \"maybe\" is not true or false"),
        "{}",
        import.rejects[0].reason
    );
}

#[test]
fn json_lines_and_a_missing_column() {
    let flow = flow();
    let text = "{\"phone\": \"+12125550100\", \"name\": \"Ann\"}\nnot json\n{\"phone\": \"+12125550101\"}\n[1]\n";
    let import = contacts::import_jsonl(text, &rules(&flow));
    assert_eq!(import.contacts.len(), 1);
    let lines: Vec<usize> = import.rejects.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![2, 3, 4]);
    assert!(import.rejects[1].reason.contains("`name` is empty"));
    let csv_without_name = "phone\n+12125550100\n";
    let import = contacts::import_csv(csv_without_name, &rules(&flow));
    assert_eq!(
        import.errors,
        vec!["the header has no `name` column, which the schema requires".to_string()]
    );
}

#[test]
fn check_contacts_on_the_command_line() {
    let dir = std::env::temp_dir().join(format!("flowc-contacts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("list.csv");
    std::fs::copy(root().join("tests/fixtures/contacts_bad.csv"), &list).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(args)
            .current_dir(root())
            .output()
            .unwrap()
    };
    let o = run(&[
        "check",
        "tests/fixtures/contacts.flow",
        "--contacts",
        list.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["contacts"]["rejected"], 28);
    assert_eq!(doc["contacts"]["valid"], 365);
    let rejects = dir.join("list.csv.rejects.csv");
    assert_eq!(doc["contacts"]["rejectsFile"], rejects.to_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap().lines().count(),
        29
    );
    // A clean list passes; two flows with one list is a usage error.
    let clean = dir.join("clean.csv");
    std::fs::write(&clean, "phone,name\n+12125550100,Ann\n").unwrap();
    let o = run(&[
        "check",
        "tests/fixtures/contacts.flow",
        "--contacts",
        clean.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&[
        "check",
        "tests/fixtures/contacts.flow",
        "flows/renewal.flow",
        "--contacts",
        clean.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

/// A duration field reads as strictly as the language writes durations:
/// a word, a bare number or an unknown unit is a rejected row.
#[test]
fn a_duration_field_takes_only_durations() {
    let dir = std::env::temp_dir().join(format!("flowc-durations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flow = dir.join("wait.flow");
    std::fs::write(
        &flow,
        "contact {\n  phone: phone\n  wait: duration\n}\n\nflow wait {\n  region \"US\"\n  timezone \"UTC\"\n  compliance tcpa\n  step call {\n    dial contact.phone\n    on answered -> end completed\n    on other -> end failed\n  }\n}\n",
    )
    .unwrap();
    let list = dir.join("list.csv");
    std::fs::write(
        &list,
        "phone,wait\n+12125550100,1h30m\n+12125550101,soon\n+12125550102,15\n+12125550103,5ms\n+12125550104,2d\n",
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args([
            "check",
            flow.to_str().unwrap(),
            "--contacts",
            list.to_str().unwrap(),
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(doc["contacts"]["valid"], 2, "{doc}");
    assert_eq!(doc["contacts"]["rejected"], 3, "{doc}");
    std::fs::remove_dir_all(&dir).ok();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

    /// Whatever a list holds, importing it never panics and loses no row.
    #[test]
    fn any_list_imports_without_panic(body in "[a-z0-9+() ,\"\\n\\-/:.éA-Z]{0,300}") {
        let flow = flow();
        let text = format!("phone,name,timezone,segment,consent,balance\n{body}");
        let import = contacts::import_csv(&text, &rules(&flow));
        let out = contacts::rejects_csv(&import);
        let rows = import.contacts.len() + import.rejects.len() + import.duplicates.len();
        // Every record is a contact, a reject or a merged duplicate. The
        // records are counted by an independent reader: one a non-blank line
        // for a body without quotes (a quoted field may span lines).
        if !body.contains('"') {
            let records = body.lines().filter(|l| !l.trim().is_empty()).count();
            proptest::prop_assert_eq!(rows, records, "{:?}", import.rejects);
        } else {
            // A stray quote rejects its own line and nothing else.
            proptest::prop_assert!(rows <= body.lines().count());
        }
        // The rejects file holds one record per reject.
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(out.as_bytes());
        proptest::prop_assert_eq!(reader.records().count(), import.rejects.len());
        let _ = contacts::import_jsonl(&body, &rules(&flow));
    }

    /// Records written by a CSV writer (quoted fields holding commas, line
    /// breaks and quotes among them): each is a contact, a reject or a
    /// merged duplicate, none lost, none split.
    #[test]
    fn written_records_are_all_accounted_for(
        records in proptest::collection::vec(proptest::collection::vec("[a-z0-9+() ,\"\n\\-]{0,12}", 6), 0..30)
    ) {
        let flow = flow();
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        w.write_record(["phone", "name", "timezone", "segment", "consent", "balance"]).unwrap();
        // A record of empty fields only is a blank line to a reader: give
        // each a name so that it stays a record.
        for r in &records {
            let mut r = r.clone();
            r[1] = format!("n{}", r[1]);
            w.write_record(&r).unwrap();
        }
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let import = contacts::import_csv(&text, &rules(&flow));
        let rows = import.contacts.len() + import.rejects.len() + import.duplicates.len();
        proptest::prop_assert_eq!(rows, records.len(), "{:?}", import.rejects);
    }
}
