//! `flowc simulate FILE --contacts LIST [--model M] [--seed N] [--from DATETIME] [--journal FILE] [--format table|json]`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{NaiveDateTime, TimeZone, Utc};

use crate::dialer::{Model, SimDialer};
use crate::ir::{self};
use crate::report;
use crate::runtime::simulate::{self, Simulation};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The .flow file
    file: PathBuf,
    /// The contact list: CSV with a header row, or JSON lines (.jsonl)
    #[arg(long, value_name = "LIST")]
    contacts: PathBuf,
    /// The simulation model (TOML); the built-in one is calibrated to the field's figures
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Seed of the simulation: the same seed gives the same campaign
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// When the campaign starts, in the flow's fallback zone: `2026-12-01 09:00`
    /// (default: the flow's `start`, else today at 00:00 UTC)
    #[arg(long)]
    from: Option<String>,
    /// Write every attempt as JSON lines here
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Never dial the numbers of this list (one a line, any format the region reads)
    #[arg(long, value_name = "FILE")]
    dnc: Option<PathBuf>,
    /// Keep the run in this SQLite database, for `flowc report --db`
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Where rejected contact rows go (default: LIST.rejects.csv)
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// How numbers without a country code are read (default: the flow's `region`)
    #[arg(long)]
    region: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
}

fn usage(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(super::EXIT_USAGE)
}

pub fn run(args: Args) -> ExitCode {
    let program = match super::flow_program(&args.file, "nothing to simulate") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flow = program.flow.as_ref().expect("flow_program returns a flow");
    let model = match &args.model {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| Model::parse(&t))
        {
            Ok(m) => m,
            Err(e) => return usage(format!("the model {} cannot be used: {e}", path.display())),
        },
        None => Model::default_model(),
    };
    let list = match super::check::import_list(
        flow,
        &args.contacts,
        args.rejects.as_deref(),
        args.region.as_deref(),
    ) {
        Ok(l) => l,
        Err(f) => return usage(format!("{}: {}", f.path, f.message)),
    };
    let import = &list.import;
    for e in &import.errors {
        eprintln!("error: {}: {e}", list.path);
    }
    if !import.errors.is_empty() {
        return ExitCode::from(1);
    }
    if let (Some(file), Some(first)) = (&list.rejects_file, import.rejects.first()) {
        eprintln!(
            "{} row(s) rejected, written to {file} (the first: line {}: {})",
            import.rejects.len(),
            first.line,
            first.reason
        );
    }
    if !import.duplicates.is_empty() {
        eprintln!("{} duplicate number(s) merged", import.duplicates.len());
    }
    let zone = crate::runtime::interpreter::flow_zone(flow);
    let start = match args.from.as_deref() {
        Some(t) => match NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M")
            .ok()
            .and_then(|l| zone.from_local_datetime(&l).earliest())
        {
            Some(s) => s.with_timezone(&Utc),
            None => {
                return usage(format!(
                "cannot read --from \"{t}\": write a date and time such as \"2026-12-01 09:00\""
            ))
            }
        },
        None => flow
            .start
            .as_ref()
            .and_then(|s| crate::runtime::interpreter::local_instant(s, zone))
            .unwrap_or_else(|| {
                Utc::now()
                    .date_naive()
                    .and_hms_opt(0, 0, 0)
                    .map_or_else(Utc::now, |d| Utc.from_utc_datetime(&d))
            }),
    };
    let dialer = SimDialer {
        model,
        seed: args.seed,
    };
    let mut do_not_call = std::collections::HashSet::new();
    if let Some(path) = &args.dnc {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return usage(format!("cannot read {}: {e}", path.display())),
        };
        let region = args
            .region
            .as_deref()
            .or(flow.region.as_deref())
            .and_then(crate::calendar::phone::region);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match crate::calendar::phone::parse(line, region) {
                Ok(number) => {
                    do_not_call.insert(number.e164);
                }
                // An entry that cannot be read blocks nothing: say so.
                Err(e) => eprintln!(
                    "warning: {}:{}: \"{line}\" {e}; it blocks no number",
                    path.display(),
                    n + 1
                ),
            }
        }
    }
    let sim = simulate::simulate_with(flow, &import.contacts, &dialer, start, &do_not_call);
    if let Some(path) = &args.journal {
        if let Err(e) = write_journal(path, flow, &sim) {
            return usage(format!("cannot write {}: {e}", path.display()));
        }
    }
    if let Some(path) = &args.db {
        let saved = crate::store::Store::open(path).and_then(|mut db| {
            db.begin(&program, sim.start)?;
            db.save_results(flow, &sim.contacts)
        });
        if let Err(e) = saved {
            return usage(format!("{}: {e}", path.display()));
        }
    }
    let report = report::report(flow, &sim.contacts);
    match args.format {
        ReportFormat::Table => {
            print!("{}", report.table());
            if let (Some(at), Some(p)) = (sim.paused_at, flow.pause_when) {
                println!(
                    "\nthe campaign paused at {} UTC: step `{}` was reached {} times; the pending contacts were not called",
                    at.format("%Y-%m-%d %H:%M"),
                    flow.steps[p.step].name,
                    p.times
                );
            }
            println!(
                "\nsimulated {} to {} (UTC), seed {}",
                sim.start.format("%Y-%m-%d %H:%M"),
                sim.finish.format("%Y-%m-%d %H:%M"),
                args.seed
            );
        }
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report always serialises")
        ),
    }
    ExitCode::SUCCESS
}

/// One JSON line per attempt; a contact's last line carries its path and end.
fn write_journal(path: &std::path::Path, flow: &ir::Flow, sim: &Simulation) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for c in &sim.contacts {
        let arm = &flow.arms[c.arm];
        for (k, a) in c.attempts.iter().enumerate() {
            let last = k + 1 == c.attempts.len();
            let caller_id = (!arm.caller_ids.is_empty())
                .then(|| arm.caller_ids[(a.number as usize - 1) % arm.caller_ids.len()].clone());
            let mut line = serde_json::json!({
                "contact": c.phone,
                "attempt": a.number,
                "step": flow.steps[a.step].name,
                "started_at": a.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "local_time": a.started_at.with_timezone(&c.zone).format("%Y-%m-%dT%H:%M:%S").to_string(),
                "zone": c.zone.name(),
                "outcome": a.outcome.name(),
                "ended_at": a.ended_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "arm": arm.name,
                "caller_id": caller_id,
            });
            if last {
                line["path"] = serde_json::json!(c
                    .path
                    .iter()
                    .map(|s| flow.steps[*s].name.as_str())
                    .collect::<Vec<_>>());
                line["end"] = serde_json::json!({ "state": c.state(), "reason": c.end.as_ref().map(|e| e.reason.as_str()) });
            }
            writeln!(out, "{line}")?;
        }
    }
    out.flush()
}
