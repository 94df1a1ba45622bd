//! The simulator against closed-form results, the built-in model against the
//! field's published ranges, and `flowc simulate` end to end.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use flowc::contacts::Contact;
use flowc::dialer::{Model, SimDialer};
use flowc::ir::{self, Value};
use flowc::runtime::simulate::simulate;

fn flow(src: &str) -> ir::Flow {
    let c = flowc::check::check_source("sim.flow", src);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    c.program.unwrap().flow.unwrap()
}

fn contacts(n: usize) -> Vec<Contact> {
    (0..n)
        .map(|i| {
            let phone = format!("+1212555{:04}", i % 10_000);
            let phone = if i < 10_000 {
                phone
            } else {
                format!("+1646555{:04}", i % 10_000)
            };
            let mut fields = BTreeMap::new();
            fields.insert("phone".to_string(), Value::Text(phone.clone()));
            Contact {
                line: i as u32 + 2,
                phone: phone.into(),
                fields: fields.into(),
                zones: [chrono_tz::Tz::America__New_York].into(),
                written: None,
            }
        })
        .collect()
}

fn start() -> DateTime<Utc> {
    "2026-12-01T14:00:00Z".parse().unwrap()
}

const MEMORYLESS: &str = r#"
talk_seconds = 60
ring_seconds = 20
[outcomes]
answered = 0.3
no_answer = 0.7
"#;

/// Answer 30% on every attempt, up to 3 attempts: 1 - 0.7^3 = 65.7% complete,
/// and each attempt connects 30%.
#[test]
fn memoryless_model_matches_the_closed_form() {
    let flow = flow(
        "contact { phone: phone }\n\
         strategy three { max attempts 3\n on no_answer retry after 1h }\n\
         flow f {\n strategy three\n timezone \"America/New_York\"\n compliance tcpa\n\
         step call {\n dial contact.phone\n on answered -> end completed\n on other -> end failed\n }\n}\n",
    );
    let n = 20_000;
    let dialer = SimDialer {
        model: Model::parse(MEMORYLESS).unwrap(),
        seed: 7,
    };
    let sim = simulate(&flow, &contacts(n), &dialer, start());
    let report = flowc::report::report(&flow, &sim.contacts);
    let m = &report.metrics;
    // Three standard deviations of a proportion over 20,000 contacts is about 1%.
    assert!(
        (m.connection_rate - 65.7).abs() < 1.2,
        "connection rate {}",
        m.connection_rate
    );
    for p in &m.per_attempt {
        assert!(
            (p.connection_rate - 30.0).abs() < 2.0,
            "attempt {}: {}",
            p.attempt,
            p.connection_rate
        );
    }
    assert_eq!(m.per_attempt.len(), 3);
    assert_eq!(m.total_contacts, n as u64);
    assert_eq!(
        m.contacts_completed
            + m.contacts_failed
            + m.contacts_skipped
            + m.contacts_pending
            + m.contacts_in_progress,
        m.total_contacts
    );
    // Retries follow the rule: each retry at least an hour after the attempt before.
    for c in &sim.contacts {
        for pair in c.attempts.windows(2) {
            assert!(pair[1].started_at - pair[0].ended_at >= chrono::Duration::hours(1));
        }
    }
}

/// The built-in model: 20-40% connect on the first attempt, 30-50% within
/// two attempts, 40-60% within three.
#[test]
fn the_built_in_model_is_calibrated_to_the_field() {
    let flow = flow(
        "contact { phone: phone }\n\
         strategy three { max attempts 3\n on busy, no_answer, voicemail, network_error retry after 2h\n on rejected stop }\n\
         flow f {\n strategy three\n timezone \"America/New_York\"\n compliance tcpa\n\
         step call {\n dial contact.phone detect voicemail\n on answered -> end completed\n on invalid_number -> end failed\n on exhausted -> end failed\n }\n}\n",
    );
    let dialer = SimDialer {
        model: Model::default_model(),
        seed: 11,
    };
    let sim = simulate(&flow, &contacts(20_000), &dialer, start());
    let total = sim.contacts.len() as f64;
    let within = |k: usize| {
        sim.contacts
            .iter()
            .filter(|c| {
                c.attempts
                    .iter()
                    .take(k)
                    .any(|a| a.outcome == ir::Outcome::Answered)
            })
            .count() as f64
            / total
            * 100.0
    };
    let (one, two, three) = (within(1), within(2), within(3));
    assert!((20.0..=40.0).contains(&one), "first attempt {one}");
    assert!((30.0..=50.0).contains(&two), "within two {two}");
    assert!((40.0..=60.0).contains(&three), "within three {three}");
}

#[test]
fn simulate_on_the_command_line() {
    let dir = std::env::temp_dir().join(format!("flowc-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.jsonl");
    let rejects = dir.join("rejects.csv");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "flows/win_back.flow",
            "--contacts",
            "contacts/sample.csv",
            "--format",
            "json",
            "--rejects",
        ];
        args.push(rejects.to_str().unwrap());
        args.extend_from_slice(extra);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(&args)
            .current_dir(crate::root())
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let report = run(&["--journal", journal.to_str().unwrap()]);
    let n = |k: &str| report[k].as_u64().unwrap();
    assert_eq!(
        n("contactsCompleted")
            + n("contactsFailed")
            + n("contactsSkipped")
            + n("contactsPending")
            + n("contactsInProgress"),
        n("totalContacts")
    );
    assert_eq!(report["arms"].as_array().unwrap().len(), 2);
    let lines = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(lines.lines().count() as u64, n("callsUsed"));
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    for key in [
        "contact",
        "attempt",
        "step",
        "started_at",
        "local_time",
        "zone",
        "outcome",
        "ended_at",
        "arm",
        "caller_id",
    ] {
        assert!(first.get(key).is_some(), "journal lines carry `{key}`");
    }
    // The same seed gives the same campaign; another seed another one.
    assert_eq!(run(&[]), report);
    assert_ne!(run(&["--seed", "2"]), report);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn skipped_contacts_stay_in_their_arm() {
    let flow = flow(
        "contact { phone: phone\n consent: bool = false }\n\
         strategy a { max attempts 1 }\nstrategy b { max attempts 1 }\n\
         compliance needs_consent { require consent }\n\
         flow f {\n timezone \"America/New_York\"\n compliance tcpa, needs_consent\n\
         experiment e {\n one 50% strategy a\n two 50% strategy b\n }\n\
         step call {\n dial contact.phone\n on answered -> end completed\n on other -> end failed\n }\n}\n",
    );
    // An import fills `consent` from the schema's default, false.
    let mut list = contacts(2_000);
    for c in &mut list {
        c.fields.insert("consent", Value::Bool(false));
    }
    let dialer = SimDialer {
        model: Model::default_model(),
        seed: 3,
    };
    let sim = simulate(&flow, &list, &dialer, start());
    let report = flowc::report::report(&flow, &sim.contacts);
    assert_eq!(report.metrics.contacts_skipped, 2_000);
    for arm in &report.arms {
        assert!(
            arm.metrics.contacts_skipped > 800,
            "{}: {}",
            arm.arm,
            arm.metrics.contacts_skipped
        );
    }
}

#[test]
fn the_store_keeps_a_run_for_report() {
    let dir = std::env::temp_dir().join(format!("flowc-db-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("run.db");
    let rejects = dir.join("rejects.csv");
    let flowc = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(args)
            .current_dir(crate::root())
            .output()
            .unwrap()
    };
    let sim = flowc(&[
        "simulate",
        "flows/win_back.flow",
        "--contacts",
        "contacts/sample.csv",
        "--format",
        "json",
        "--rejects",
        rejects.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(
        sim.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let report = flowc(&["report", "--db", db.to_str().unwrap(), "--format", "json"]);
    assert_eq!(report.status.code(), Some(0));
    assert_eq!(
        report.stdout, sim.stdout,
        "the report from the store is the simulation's"
    );
    // The failed contacts with their attempt history, one CSV row each.
    let csv = flowc(&[
        "report",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "csv",
        "--failed",
    ]);
    assert_eq!(csv.status.code(), Some(0));
    let metrics: serde_json::Value = serde_json::from_slice(&sim.stdout).unwrap();
    let text = String::from_utf8(csv.stdout).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        rows.len() as u64,
        metrics["contactsFailed"].as_u64().unwrap(),
        "{text}"
    );
    assert!(rows.iter().all(|r| r.contains(",failed,")), "{text}");
    // The same campaign again: it is finished, so nobody is dialled and the
    // report is unchanged.
    let rerun = flowc(&[
        "simulate",
        "flows/win_back.flow",
        "--contacts",
        "contacts/sample.csv",
        "--rejects",
        rejects.to_str().unwrap(),
        "--format",
        "json",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(rerun.status.code(), Some(0));
    assert_eq!(rerun.stdout, sim.stdout, "a finished campaign dials no one");
    // Another flow does not go into the same database.
    let other = dir.join("other.flow");
    std::fs::write(
        &other,
        std::fs::read_to_string(crate::root().join("flows/win_back.flow"))
            .unwrap()
            .replace("max attempts 3", "max attempts 2"),
    )
    .unwrap();
    let again = flowc(&[
        "simulate",
        other.to_str().unwrap(),
        "--contacts",
        "contacts/sample.csv",
        "--rejects",
        rejects.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("another version of the flow") && said.contains("--migrate"),
        "{said}"
    );
    assert_eq!(
        flowc(&["report", "--db", dir.join("none.db").to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn do_not_call_numbers_are_never_dialled() {
    let dir = std::env::temp_dir().join(format!("flowc-dnc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dnc = dir.join("dnc.txt");
    // The first three numbers of the sample, written as a person would, and a line that is no number.
    std::fs::write(
        &dnc,
        "# do not call\n(212) 450-3657\n+12129338928\n1-713-544-1674\nnobody\n",
    )
    .unwrap();
    let journal = dir.join("journal.jsonl");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args([
            "simulate",
            "flows/win_back.flow",
            "--contacts",
            "contacts/sample.csv",
            "--format",
            "json",
        ])
        .args([
            "--rejects",
            dir.join("r.csv").to_str().unwrap(),
            "--dnc",
            dnc.to_str().unwrap(),
        ])
        .args(["--journal", journal.to_str().unwrap()])
        .current_dir(crate::root())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("dnc.txt:5: \"nobody\""));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["endReasons"]["skipped: do_not_call"], 3);
    let dialled = std::fs::read_to_string(&journal).unwrap();
    for number in ["+12124503657", "+12129338928", "+17135441674"] {
        assert!(!dialled.contains(number), "{number} was dialled");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `pause campaign when step thanks reached 50 times`: new dials stop, calls
/// in progress finish, the rest stay pending.
#[test]
fn the_campaign_pauses_at_its_threshold() {
    let flow = flow(
        "contact { phone: phone }\n\
         flow f {\n timezone \"America/New_York\"\n compliance tcpa\n concurrency 1\n\
         pause campaign when step thanks reached 50 times\n\
         step call {\n dial contact.phone\n on answered -> thanks\n on other -> end failed\n }\n\
         step thanks { end completed \"thanked\" }\n}\n",
    );
    let dialer = SimDialer {
        model: Model::parse(MEMORYLESS).unwrap(),
        seed: 5,
    };
    let sim = simulate(&flow, &contacts(1_000), &dialer, start());
    assert!(sim.paused_at.is_some());
    let m = flowc::report::report(&flow, &sim.contacts).metrics;
    assert_eq!(
        m.contacts_completed, 50,
        "one line: the threshold call was the last"
    );
    assert!(m.contacts_pending > 500, "{}", m.contacts_pending);
    assert_eq!(
        m.contacts_completed
            + m.contacts_failed
            + m.contacts_skipped
            + m.contacts_pending
            + m.contacts_in_progress,
        1_000
    );
}

/// Contacts of one zone share the first dial's settled instant
/// (`Setup::settle`), but only for the instant it was asked for: a contact
/// that waits before its first dial is settled from where its wait ends.
#[test]
fn first_dials_of_one_zone_settle_from_each_contact_s_own_instant() {
    let flow = flow(
        "contact { phone: phone\n vip: bool = false }\n\
         flow f {\n timezone \"America/New_York\"\n compliance tcpa\n\
         step call {\n if contact.vip { wait 3h }\n dial contact.phone\n\
         on answered -> end completed\n on other -> end failed\n }\n}\n",
    );
    let mut list = contacts(4);
    for c in list.iter_mut().skip(2) {
        c.fields.insert("vip", Value::Bool(true));
    }
    let dialer = SimDialer {
        model: Model::default_model(),
        seed: 1,
    };
    // 07:00 in New York: quiet hours until 08:00.
    let start: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
    let sim = simulate(&flow, &list, &dialer, start);
    let first: Vec<String> = sim
        .contacts
        .iter()
        .map(|c| c.attempts[0].started_at.to_rfc3339())
        .collect();
    assert_eq!(
        first,
        [
            "2026-12-01T13:00:00+00:00",
            "2026-12-01T13:00:00+00:00",
            "2026-12-01T15:00:00+00:00",
            "2026-12-01T15:00:00+00:00"
        ]
    );
}

/// `[by_field.…]` weighs `answered` by a contact's field values: here a
/// VIP who consented is always answered, anyone else never; a model naming
/// a field or value the flow's contacts cannot have is refused.
#[test]
fn the_model_weighs_answers_by_contact_field() {
    let dir = std::env::temp_dir().join(format!("flowc-sim-fields-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("f.flow"),
        "contact {\n  phone: phone\n  segment: enum(vip, standard)\n  consent: bool\n}\n\
         calendar always {\n  hours mon-sun 00:00-24:00\n}\n\
         flow f {\n  timezone \"UTC\"\n  calendar always\n\
         step call {\n    dial contact.phone\n    on answered -> end completed\n    on other -> end failed\n  }\n}\n",
    )
    .unwrap();
    let mut list = String::from("phone,segment,consent\n");
    let mut expected = std::collections::HashSet::new();
    for k in 0..200 {
        let phone = format!("+1212555{:04}", 1000 + k);
        let vip = k % 2 == 0;
        let consent = k % 3 != 0;
        if vip && consent {
            expected.insert(phone.clone());
        }
        list.push_str(&format!(
            "{phone},{},{consent}\n",
            if vip { "vip" } else { "standard" }
        ));
    }
    std::fs::write(dir.join("list.csv"), list).unwrap();
    let simulate = |model: &str| {
        std::fs::write(dir.join("model.toml"), model).unwrap();
        let _ = std::fs::remove_file(dir.join("journal.jsonl"));
        std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
            .arg("simulate")
            .arg(dir.join("f.flow"))
            .arg("--contacts")
            .arg(dir.join("list.csv"))
            .arg("--model")
            .arg(dir.join("model.toml"))
            .arg("--journal")
            .arg(dir.join("journal.jsonl"))
            .args(["--format", "json"])
            .output()
            .unwrap()
    };
    let base = "[outcomes]\nanswered = 0.5\nno_answer = 0.5\n";
    let o = simulate(&format!(
        "{base}[by_field.segment]\nvip = 2.0\nstandard = 0\n[by_field.consent]\nfalse = 0\n"
    ));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let answered: std::collections::HashSet<String> = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| a["outcome"] == "answered")
        .map(|a| a["contact"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(answered, expected);

    for (bad, says) in [
        (
            "[by_field.tier]\ngold = 1.0\n",
            "the contact schema has no field `tier`; its fields are phone, segment, consent",
        ),
        (
            "[by_field.segment]\ngold = 1.0\n",
            "`gold` is not a value `segment` can take: write one of vip, standard",
        ),
        (
            "[by_field.consent]\nyes = 1.0\n",
            "`yes` is not a value `consent` can take: write one of true, false",
        ),
        (
            "[by_field.segment]\nvip = -1\n",
            "line 5: [by_field.segment] `vip` = -1",
        ),
    ] {
        let o = simulate(&format!("{base}{bad}"));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }

    // The README's example reads, against the contacts it describes.
    let readme = std::fs::read_to_string(crate::root().join("README.md")).unwrap();
    let example = readme
        .split("```toml\n")
        .find(|block| block.starts_with("[by_field.segment]"))
        .and_then(|block| block.split("```").next())
        .expect("the README shows [by_field]");
    let model = Model::parse(&format!("{base}{example}")).unwrap();
    let schema = flow(
        "contact {\n  phone: phone\n  segment: enum(vip, standard, lapsed)\n  consent: bool\n}\n\
         flow f {\n  timezone \"UTC\"\n  step call {\n    dial contact.phone\n    on answered -> end completed\n    on other -> end failed\n  }\n}\n",
    )
    .contact;
    model.check_fields(&schema).unwrap();
    assert_eq!(model.by_field["segment"]["lapsed"], 0.5);
    std::fs::remove_dir_all(&dir).ok();
}
