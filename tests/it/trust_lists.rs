//! What a first real campaign hit (contact lists, reports, what flowc reads
//! and writes): each test names the defect it holds fixed.

use std::path::{Path, PathBuf};
use std::process::Command;

use flowc::contacts;

fn flowc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const FLOW: &str = r#"
contact {
  phone: phone
  name: text
  segment: enum(vip, standard) = "standard"
}

calendar always {
  hours mon-sun 00:00-24:00
}

strategy twice {
  max attempts 2
  on no_answer retry after 1s
}

compliance lists {
  max attempts 10 per 24h
}

flow lists {
  timezone "UTC"
  calendar always
  strategy twice
  compliance lists
  step call {
    dial contact.phone detect voicemail
    on answered -> end completed "reached"
    on voicemail -> end completed "voicemail"
    on exhausted -> { send sms "Sorry we missed you, {contact.name}"; flag "call back"; end failed "not_reached" }
    on other -> end failed
  }
}
"#;

fn flow() -> flowc::ir::Flow {
    let c = flowc::check::check_source("lists.flow", FLOW);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    c.program.unwrap().flow.unwrap()
}

fn import(text: &str) -> contacts::Import {
    let flow = flow();
    let rules = contacts::Rules::new(&flow.contact, &flow.timezone, None);
    contacts::import_csv(text, &rules)
}

/// Writes the flow, a list and a script into `dir`.
fn campaign(dir: &Path, list: &str, script: &str) {
    std::fs::write(dir.join("lists.flow"), FLOW).unwrap();
    std::fs::write(dir.join("list.csv"), list).unwrap();
    std::fs::write(dir.join("script.txt"), script).unwrap();
}

fn run(dir: &Path, extra: &[&str]) -> std::process::Output {
    flowc()
        .args(["run", "lists.flow", "--contacts", "list.csv"])
        .args(["--dialer", "script:script.txt", "--db", "run.db"])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

// ---------------------------------------------------------- 9. rejections are easy to miss

#[test]
fn a_list_with_too_many_rejects_is_refused_with_the_reasons_grouped() {
    let dir = temp("maxrejects");
    let mut list = String::from("phone,name\n");
    for k in 0..62 {
        list.push_str(&format!("+1212555{:04},Good {k}\n", 100 + k));
    }
    for k in 0..30 {
        list.push_str(&format!("call me {k},Words\n"));
    }
    for k in 0..8 {
        list.push_str(&format!("+1212556{:04}\n", k));
    }
    campaign(&dir, &list, "* answered\n");
    let refused = run(&dir, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(said.contains("38 of 100 row(s) rejected (38.0%)"), "{said}");
    assert!(said.contains("30 × `phone` \"…\""), "{said}");
    assert!(said.contains("(first: line 64)"), "{said}");
    assert!(
        said.contains("8 × the row has 1 fields, the header 2 (first: line 94)"),
        "{said}"
    );
    assert!(said.contains("--max-rejects"), "{said}");
    assert!(
        !dir.join("run.db").exists(),
        "refused before the store is made"
    );
    // A limit that allows them: the good rows are called.
    let allowed = run(&dir, &["--max-rejects", "40%"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert!(
        stderr(&allowed).contains("warning: 38 of 100"),
        "{}",
        stderr(&allowed)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_contact_to_call_is_an_error() {
    let dir = temp("nocontact");
    campaign(&dir, "phone,name\nnot a number,A\n", "* answered\n");
    let out = run(&dir, &["--max-rejects", "100%"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds no contact to call"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- 10. broken rows

#[test]
fn rows_of_another_width_are_one_record_each_in_the_rejects_file() {
    let i =
        import("phone,name\n+12125550100\n+12125550101,A,extra\n+12125550102\n+12125550103,B\n");
    assert_eq!(i.rejects.len(), 3);
    assert_eq!(i.contacts.len(), 1);
    let out = contacts::rejects_csv(&i);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(out.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert_eq!(&rows[1][0], "3");
    assert_eq!(rows[1].len(), 5, "line, reason and the row's three fields");
    assert!(out.ends_with('\n'));
}

#[test]
fn a_stray_quote_rejects_its_line_and_loses_no_other_row() {
    let text = "phone,name\n\
                +12125550100,Ann\n\
                +12125550101,\"Bob\n\
                +12125550102,Cleo\n\
                +12125550103,Dan\n\
                +12125550104,Eve\n";
    let i = import(text);
    let lines: Vec<u32> = i.contacts.iter().map(|c| c.line).collect();
    assert_eq!(lines, vec![2, 4, 5, 6], "the rows after the quote are read");
    assert_eq!(i.rejects.len(), 1);
    assert_eq!(i.rejects[0].line, 3);
    assert!(
        i.rejects[0].reason.contains("quote"),
        "{}",
        i.rejects[0].reason
    );
    // A quoted field that spans lines is still one field.
    let i = import("phone,name\n+12125550100,\"Ann\nSmith\"\n+12125550101,Bob\n");
    assert_eq!(i.contacts.len(), 2, "{:?}", i.rejects);
    assert_eq!(i.contacts[1].line, 4);
}

#[test]
fn a_header_naming_a_column_twice_is_an_error() {
    let i = import("phone,name,phone\n+12125550100,Ann,+12125550199\n");
    assert!(i.contacts.is_empty());
    assert_eq!(i.errors.len(), 1, "{:?}", i.errors);
    assert!(i.errors[0].contains("`phone` twice"), "{}", i.errors[0]);
}

#[test]
fn json_lists_and_objects_are_rejected_where_a_value_belongs() {
    let flow = flow();
    let rules = contacts::Rules::new(&flow.contact, &flow.timezone, None);
    let i = contacts::import_jsonl(
        "{\"phone\": \"+12125550100\", \"name\": [\"Ann\"]}\n\
         {\"phone\": \"+12125550101\", \"name\": {\"first\": \"Bo\"}}\n\
         {\"phone\": \"+12125550102\", \"name\": \"Cy\"}\n",
        &rules,
    );
    assert_eq!(i.contacts.len(), 1);
    let reasons: Vec<&str> = i.rejects.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "`name` is a list; write a text, a number or true/false",
            "`name` is an object; write a text, a number or true/false"
        ]
    );
}

// ---------------------------------------------------------- 11. inputs without bounds

#[test]
fn endless_inputs_are_refused_with_a_message() {
    let dir = temp("endless");
    campaign(&dir, "phone,name\n", "* answered\n");
    let out = flowc()
        .args(["run", "lists.flow", "--contacts", "/dev/zero"])
        .args(["--dialer", "script:script.txt", "--db", "run.db"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no end within 16 MiB"),
        "{}",
        stderr(&out)
    );
    // A used file that never ends.
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.flow")).unwrap();
    std::fs::write(dir.join("uses.flow"), format!("use \"zero.flow\"\n{FLOW}")).unwrap();
    let out = flowc()
        .args(["check", "uses.flow"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("larger than 16 MiB"),
        "{}",
        stderr(&out)
    );
    // A row past the bound is a reject with its line, and the next row is read.
    let long = "x".repeat(contacts::MAX_ROW_BYTES + 10);
    let i = import(&format!(
        "phone,name\n+12125550100,{long}\n+12125550101,B\n"
    ));
    assert_eq!(i.contacts.len(), 1);
    assert_eq!(i.rejects[0].line, 2);
    assert!(i.rejects[0].raw.len() < 1000);
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- 12. the simulation model

#[test]
fn the_model_reads_hours_as_written_and_refuses_what_it_would_ignore() {
    use flowc::dialer::Model;
    let base = "[outcomes]\nanswered = 0.5\nno_answer = 0.5\n";
    let nine = Model::parse(&format!("{base}[by_hour]\n\"09\" = 2.0\n")).unwrap();
    let also = Model::parse(&format!("{base}[by_hour]\n\"9\" = 2.0\n")).unwrap();
    assert_eq!(nine.by_hour, also.by_hour);
    for (bad, says) in [
        (
            "[by_hour]\n\"nine\" = 1.0\n",
            "line 5: [by_hour] \"nine\" is not an hour",
        ),
        (
            "[by_hour]\n\"24\" = 1.0\n",
            "line 5: [by_hour] \"24\" is not an hour",
        ),
        (
            "[by_hour]\n\"10\" = -1.0\n",
            "line 5: [by_hour] \"10\" = -1",
        ),
        (
            "[by_weekday]\nmonday = 1.0\n",
            "line 5: [by_weekday] `monday` is not a weekday",
        ),
        ("[by_weekday]\nMon = 1.0\n", "`Mon` is not a weekday"),
        ("speed = 2\n", "unknown field `speed`"),
    ] {
        let text = if bad.starts_with('[') {
            format!("{base}{bad}")
        } else {
            format!("{bad}{base}")
        };
        let e = Model::parse(&text).unwrap_err();
        assert!(e.contains(says), "{e}");
    }
    let e = Model::parse("[outcomes]\nanswered = 0.5\nno_answer = 0.4\n").unwrap_err();
    assert!(e.contains("sum to 0.9"), "{e}");
}

// ---------------------------------------------------------- 13, 14. the report's figures

fn result(outcomes: &[&str], end: Option<(&str, bool)>) -> flowc::record::ContactResult {
    use flowc::ir::Outcome;
    let t: chrono::DateTime<chrono::Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
    flowc::record::ContactResult {
        line: 2,
        phone: "+12125550100".into(),
        zone: chrono_tz::Tz::UTC,
        arm: 0,
        end: end.map(|(reason, completed)| {
            let ending = if completed {
                flowc::record::Ending::Completed
            } else {
                flowc::record::Ending::Failed
            };
            flowc::record::End::new(ending, reason)
        }),
        in_progress: false,
        attempts: outcomes
            .iter()
            .enumerate()
            .map(|(k, o)| flowc::record::Attempt {
                number: k as u32 + 1,
                step: 0,
                started_at: t,
                ended_at: t,
                outcome: Outcome::from_name(o).unwrap(),
                sip_status: None,
            })
            .collect(),
        path: Box::default(),
        messages: None,
    }
}

#[test]
fn retry_conversion_counts_the_contacts_the_first_attempt_missed() {
    let rate = |contacts: &[flowc::record::ContactResult]| {
        let refs: Vec<_> = contacts.iter().collect();
        let m = flowc::report::metrics(&refs);
        (
            m.reached_on_retry,
            m.first_attempt_missed,
            m.retry_conversion_rate,
        )
    };
    // The issue's case: a one-shot flow, voicemail completes, no answer fails.
    let one_shot = [
        result(&["voicemail"], Some(("voicemail", true))),
        result(&["no_answer"], Some(("failed", false))),
    ];
    assert_eq!(rate(&one_shot), (0, 1, 0.0));
    // Missed, then answered; missed twice; answered at once.
    let retried = [
        result(&["no_answer", "answered"], Some(("reached", true))),
        result(&["busy", "no_answer"], Some(("failed", false))),
        result(&["answered"], Some(("reached", true))),
    ];
    assert_eq!(rate(&retried), (1, 2, 50.0));
    // A voicemail that completes on the second attempt reaches the contact;
    // one left on the first attempt of a contact who goes on does not.
    let voicemail = [
        result(&["busy", "voicemail"], Some(("voicemail", true))),
        result(&["voicemail", "answered"], Some(("reached", true))),
        result(&["voicemail", "no_answer"], Some(("failed", false))),
    ];
    assert_eq!(rate(&voicemail), (2, 3, 66.67));
}

#[test]
fn an_arm_without_finished_contacts_has_no_p_value_and_tables_show_counts() {
    let text = FLOW.replace(
        "  strategy twice\n",
        "  experiment e {\n    a 50% strategy twice\n    b 50% strategy twice\n  }\n",
    );
    let c = flowc::check::check_source("arms.flow", &text);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let flow = c.program.unwrap().flow.unwrap();
    let mut done = result(&["answered"], Some(("reached", true)));
    done.arm = 0;
    let mut waiting = result(&[], None);
    waiting.arm = 1;
    let report = flowc::report::report(&flow, &[done, waiting]);
    assert_eq!(report.arms[1].p_value, None);
    let note = report.arms[1].p_value_note.as_deref().unwrap();
    assert!(note.contains("`b` has no finished contact"), "{note}");
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["arms"][1]["pValue"].is_null());
    assert_eq!(json["connectionRate"], 50.0);
    assert_eq!(json["connectionRateOfFinished"], 100.0);
    let table = report.table();
    assert!(
        table.contains("1/2  50.00% of all contacts, 1/1 100.00% of finished ones"),
        "{table}"
    );
    assert!(table.contains("1/1 100.00%"), "{table}");
    assert!(
        table.contains("-  (no test: the arm `b` has no finished contact yet)"),
        "{table}"
    );
}

// ---------------------------------------------------------- 16, 17, 21. exports

#[test]
fn flags_and_messages_are_kept_and_exports_hold_the_contacts_fields() {
    let dir = temp("exports");
    campaign(
        &dir,
        "phone,name,segment\n(212) 555-0100,=HYPERLINK(\"x\"),vip\n+12125550101,Bo,standard\nnot a number,@SUM(1),vip\n",
        "+12125550100 no_answer; no_answer\n* answered\n",
    );
    std::fs::write(
        dir.join("lists.flow"),
        FLOW.replace("timezone \"UTC\"", "timezone \"UTC\"\n  region \"US\""),
    )
    .unwrap();
    let out = run(&dir, &["--max-rejects", "50%"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let follow = flowc()
        .args(["report", "--db", "run.db", "--follow-up"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(follow.status.code(), Some(0), "{}", stderr(&follow));
    let csv = stdout(&follow);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        header,
        vec![
            "kind",
            "text",
            "recipient",
            "status",
            "attempt",
            "phone",
            "written",
            "line",
            "state",
            "reason",
            "phone",
            "name",
            "segment"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(&rows[0][0], "sms");
    assert_eq!(&rows[0][1], "Sorry we missed you, =HYPERLINK(\"x\")");
    assert_eq!(&rows[0][2], "'+12125550100");
    assert_eq!(&rows[0][3], "unsent");
    assert_eq!(&rows[0][4], "2");
    assert_eq!(&rows[1][0], "flag");
    assert_eq!(&rows[1][1], "call back");
    assert_eq!(&rows[1][3], "open");
    assert_eq!(
        &rows[1][6], "(212) 555-0100",
        "the number as the list wrote it"
    );
    assert_eq!(&rows[1][11], "'=HYPERLINK(\"x\")", "a formula is escaped");

    let report = flowc()
        .args(["report", "--db", "run.db", "--format", "csv"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let csv = stdout(&report);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(&header[..4], ["phone", "written", "line", "zone"]);
    assert!(header.contains(&"first_attempt_local".to_string()));
    assert_eq!(&header[header.len() - 3..], ["phone", "name", "segment"]);
    let first = reader.records().next().unwrap().unwrap();
    assert_eq!(&first[1], "(212) 555-0100");
    assert_eq!(
        first[8].len(),
        "2026-12-01 09:00".len(),
        "the first attempt's local time"
    );
    assert_eq!(&first[header.len() - 2], "'=HYPERLINK(\"x\")");
    assert_eq!(&first[header.len() - 1], "vip");

    // The rejects file escapes formulas too.
    let rejects = std::fs::read_to_string(dir.join("list.csv.rejects.csv")).unwrap();
    assert!(rejects.contains(",'@SUM(1),"), "{rejects}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- 18. `use`

#[test]
fn use_names_relative_flow_files_and_never_quotes_another_file() {
    let dir = temp("use");
    std::fs::write(dir.join("secret.txt"), "root:$6$hash:19000:0:99999:7:::\n").unwrap();
    std::fs::write(dir.join("binary.flow"), b"\x00\x01secret\x02\n").unwrap();
    for (line, says) in [
        ("use \"/etc/shadow\"", "an absolute path"),
        ("use \"secret.txt\"", "not a `.flow` file"),
        ("use \"binary.flow\"", "not flow text"),
    ] {
        std::fs::write(dir.join("main.flow"), format!("{line}\n{FLOW}")).unwrap();
        let out = flowc()
            .args(["check", "main.flow"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{line}");
        let said = stderr(&out);
        assert!(said.contains(says), "{line}: {said}");
        assert!(
            !said.contains("$6$") && !said.contains("secret\u{2}"),
            "{said}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- 19. hostile text

#[test]
fn control_characters_of_a_list_never_reach_the_terminal_or_ci_raw() {
    let dir = temp("hostile");
    let list = "phone,name,segment\n+12125550100,Ann,\"\u{1b}]0;owned\u{7}\u{1b}[2J\"\n+12125550101,Bo,\"x\n::warning::forged\"\n";
    campaign(&dir, list, "* answered\n");
    let human = flowc()
        .args(["check", "lists.flow", "--contacts", "list.csv"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let said = stderr(&human);
    assert!(
        !said.contains('\u{1b}') && !said.contains('\u{7}'),
        "{said:?}"
    );
    assert!(said.contains("\\u{1b}]0;owned"), "{said}");
    let github = flowc()
        .args([
            "check",
            "lists.flow",
            "--contacts",
            "list.csv",
            "--format",
            "github",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let out = stdout(&github);
    assert!(
        out.lines()
            .all(|l| l.starts_with("::error") || l.starts_with("::warning file=")),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("::warning::")), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------- 20. outputs

#[test]
fn outputs_never_overwrite_an_input_nor_follow_a_planted_link() {
    let dir = temp("outputs");
    let list = "phone,name\n+12125550100,Ann\nbad,Bo\n";
    campaign(&dir, list, "* answered\n");
    let out = run(&dir, &["--rejects", "list.csv", "--max-rejects", "50%"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("would overwrite the input"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(dir.join("list.csv")).unwrap(), list);
    // A link planted where the rejects and the journal go.
    std::fs::write(dir.join("precious.txt"), "keep me").unwrap();
    std::os::unix::fs::symlink(dir.join("precious.txt"), dir.join("list.csv.rejects.csv")).unwrap();
    std::os::unix::fs::symlink(dir.join("precious.txt"), dir.join("journal.jsonl")).unwrap();
    let out = run(
        &dir,
        &["--max-rejects", "50%", "--journal", "journal.jsonl"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("precious.txt")).unwrap(),
        "keep me"
    );
    let rejects = std::fs::read_to_string(dir.join("list.csv.rejects.csv")).unwrap();
    assert!(rejects.contains("bad"), "{rejects}");
    assert!(std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap()
        .contains("+12125550100"));
    let out = run(&dir, &["--journal", "lists.flow"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(std::fs::read_to_string(dir.join("lists.flow"))
        .unwrap()
        .contains("flow lists"));
    std::fs::remove_dir_all(&dir).ok();
}
