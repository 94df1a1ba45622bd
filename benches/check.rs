//! `cargo bench --bench check`: how long `flowc check` takes on a generated
//! 10,000-line flow, next to the bare pest parse of the same text. Prints the
//! median and the spread of repeated runs; figures go to BENCHMARKS.md.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A realistic flow of about `lines` lines: dial steps with voicemail
/// handling and retries, each followed by an IVR step.
fn generate(lines: usize) -> String {
    let mut s = String::from(
        "// Generated for the check benchmark.\ncontact {\n  phone: phone\n  name: text\n  timezone: timezone?\n  segment: enum(vip, standard, lapsed) = \"standard\"\n}\n\n\
         calendar office {\n  hours mon-fri 09:00-20:00\n  hours sat 10:00-14:00\n  pause daily 12:00-13:00 \"lunch\"\n  closed 2026-12-25, 2027-01-01\n}\n\n\
         strategy standard {\n  max attempts 4\n  min gap 15m\n  on busy retry after 15m\n  on no_answer retry after 30m, 1h, 2h\n  on network_error retry after 5m max 2\n  on rejected stop\n}\n\n\
         flow large {\n  calendar office\n  timezone contact.timezone, phone, \"America/New_York\"\n  strategy standard\n  compliance tcpa\n",
    );
    let units = lines.saturating_sub(30) / 16;
    for i in 0..units {
        let next = if i + 1 < units {
            format!("call_{}", i + 1)
        } else {
            "{ flag \"exhausted\"; end failed \"unreachable\" }".to_string()
        };
        s.push_str(&format!(
            "\n  step call_{i} {{\n    dial contact.phone timeout 30s detect voicemail\n    on answered -> greet_{i}\n    on voicemail -> if attempt < 3 {{ retry after 2h }} else {{ end completed \"vm_{i}\" }}\n    on exhausted -> {next}\n    on other -> end failed \"not_reached\"\n  }}\n\n  step greet_{i} {{\n    say \"Hello {{contact.name}}, this is message {i}.\"\n    gather 1 digit timeout 8s tries 2 {{\n      \"1\" -> end completed \"confirmed_{i}\"\n      \"2\" -> if contact.segment == \"vip\" {{ end completed \"vip_{i}\" }} else {{ end completed \"declined_{i}\" }}\n      other -> end completed \"no_input\"\n    }}\n  }}\n"
        ));
    }
    s.push_str("}\n");
    s
}

fn measure(runs: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[runs / 2], times[runs - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let text = generate(10_000);
    let lines = text.lines().count();
    let c = flowc::check::check_source("large.flow", &text);
    assert!(
        c.diagnostics.is_empty(),
        "the generated flow must be clean: {:?}",
        c.diagnostics.first()
    );

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("large.flow");
    std::fs::write(&path, &text).expect("write the generated flow");

    println!("generated flow: {lines} lines, {} bytes", text.len());
    println!("{:<44} {:>10} {:>10} {:>10}", "", "min", "median", "max");
    let row = |name: &str, (lo, mid, hi): (Duration, Duration, Duration)| {
        println!("{name:<44} {:>10} {:>10} {:>10}", ms(lo), ms(mid), ms(hi));
    };
    row(
        "pest parse only (grammar, no tree)",
        measure(30, || assert!(flowc::syntax::parse_only(&text))),
    );
    row(
        "parse + lower to AST",
        measure(30, || {
            let (_, d) = flowc::syntax::parse(flowc::source::FileId(0), &text);
            assert!(d.is_empty());
        }),
    );
    row(
        "check (parse, names, types, analysis, IR)",
        measure(30, || {
            let c = flowc::check::check_source("large.flow", &text);
            assert!(c.program.is_some());
        }),
    );
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/flowc");
    if exe.exists() {
        row(
            "`flowc check large.flow` (release binary)",
            measure(20, || {
                let status = Command::new(&exe)
                    .arg("check")
                    .arg(&path)
                    .output()
                    .expect("run flowc")
                    .status;
                assert!(status.success());
            }),
        );
    } else {
        println!("(build the release binary with `cargo build --release` to time the command end to end)");
    }
}
