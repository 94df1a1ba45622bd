//! `flowc run FILE --contacts LIST --dialer sim|script:FILE [--db PATH]`: the
//! campaign on the wall clock, journalled in the store as it goes, resumable
//! after a pause or a crash by running the same command again.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use super::campaign::{self, usage, ReportFormat};
use super::signals;
use crate::dialer::script::ScriptDialer;
use crate::dialer::{Dialer, SimDialer};
use crate::runtime::clock::WallClock;
use crate::runtime::engine::{Engine, Progress, Results};
use crate::runtime::simulate::block_on;
use crate::store::Kind;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: campaign::Common,
    /// Who places the calls: `sim` (the simulation model, in real time) or
    /// `script:FILE` (outcomes from a file)
    #[arg(long, value_name = "ADAPTER")]
    dialer: String,
    /// The run's SQLite database; running the same command again resumes it
    #[arg(long, value_name = "PATH", default_value = "flowc-run.db")]
    db: PathBuf,
    /// The simulation model of `--dialer sim` (TOML)
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Seed of `--dialer sim`
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print how late dials started after their due instant (p50, p99, max)
    #[arg(long)]
    lateness: bool,
    /// After Ctrl-C or SIGTERM, how long the calls under way may go on
    /// before they are cut off (`30s`, `2m`)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_grace)]
    grace: std::time::Duration,
}

fn parse_grace(text: &str) -> Result<std::time::Duration, String> {
    crate::syntax::parse_duration(text.trim())
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("\"{text}\" is not a duration: write one such as 30s or 2m"))
}

pub fn run(args: Args) -> ExitCode {
    let mut prepared = match campaign::prepare(
        &args.common,
        Some((&args.db, Kind::Run)),
        |flow| {
            // The flow's `start` when it lies ahead; otherwise now.
            let now = Utc::now();
            campaign::start_of(flow, None, now).map(|s| s.max(now))
        },
        "nothing to run",
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let region = args
        .common
        .region
        .as_deref()
        .or(prepared.flow().region.as_deref())
        .and_then(crate::calendar::phone::region);
    match args.dialer.split_once(':') {
        None if args.dialer == "sim" => {
            let model = match super::simulate::load_model(args.model.as_deref()) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let dialer = SimDialer {
                model,
                seed: args.seed,
            };
            drive(&args, &mut prepared, &dialer)
        }
        Some(("script", file)) => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => return usage(format!("cannot read the script {file}: {e}")),
            };
            match ScriptDialer::parse(&text, region) {
                Ok(dialer) => drive(&args, &mut prepared, &dialer),
                Err(e) => usage(format!("{file}:{e}")),
            }
        }
        _ => usage(format!(
            "`--dialer {}` is not an adapter: write `sim` or `script:FILE`",
            args.dialer
        )),
    }
}

fn drive<D: Dialer>(args: &Args, prepared: &mut campaign::Prepared, dialer: &D) -> ExitCode {
    let clock = WallClock;
    let mut store = prepared.store.take().expect("a run always has a store");
    let history = std::mem::take(&mut prepared.history);
    let flow = prepared.flow();
    let bar = ProgressBar::new(prepared.contacts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} ended  {msg}")
            .expect("a valid template"),
    );
    let (pause, paused) = tokio::sync::watch::channel(signals::received());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bar_for_progress = bar.clone();
    let engine = Engine::new(flow, &prepared.contacts, dialer, &clock, prepared.start)
        .history(history)
        .do_not_call(prepared.do_not_call.clone())
        .on_opt_out(campaign::opt_out_writer(args.common.dnc.as_deref()))
        .on_progress(move |p, now| {
            bar_for_progress.set_position(p.completed + p.failed + p.skipped);
            bar_for_progress.set_message(summary(p, now));
        })
        .pause_on(paused)
        .stop_on(stopped)
        .migrating(args.common.migrate)
        .store(&mut store);
    let bar_for_signal = bar.clone();
    let grace = args.grace;
    let results = block_on(async move {
        tokio::spawn(signals::watch(pause, stop, grace, move |note| {
            if bar_for_signal.is_hidden() {
                eprintln!("{note}");
            } else {
                bar_for_signal.println(note);
            }
        }));
        engine.run().await
    });
    bar.finish_and_clear();
    let results = match results {
        Ok(r) => r,
        Err(e) => return usage(format!("{}: {e}", args.db.display())),
    };
    let state = if results.paused_at.is_some() {
        "paused"
    } else {
        "finished"
    };
    if let Err(e) = store.set_state(state, results.finish) {
        return usage(format!("{}: {e}", args.db.display()));
    }
    if let Err(e) = campaign::write_journal(&args.common, flow, &results) {
        return usage(e);
    }
    campaign::print_report(flow, &results, args.common.format);
    if args.lateness {
        print_lateness(&results);
    }
    if results.cut_off > 0 {
        eprintln!(
            "{} call(s) under way were cut off: the store keeps them without an end, and they resume as `unknown`",
            results.cut_off
        );
    }
    if args.common.format == ReportFormat::Table || results.paused_by_operator {
        eprintln!(
            "{}: the run is {state}{}",
            args.db.display(),
            if state == "paused" {
                "; run the same command to resume it"
            } else {
                ""
            }
        );
    }
    if results.paused_by_operator {
        ExitCode::from(signals::exit_status())
    } else {
        ExitCode::SUCCESS
    }
}

/// The live summary beside the progress bar.
fn summary(p: &Progress, now: DateTime<Utc>) -> String {
    format!(
        "completed {}  failed {}  skipped {}  pending {}  in progress {}  calls {}  ({} UTC)",
        p.completed,
        p.failed,
        p.skipped,
        p.pending,
        p.in_progress,
        p.calls,
        now.format("%H:%M:%S")
    )
}

fn print_lateness(results: &Results) {
    let mut l = results.lateness_ms.clone();
    if l.is_empty() {
        eprintln!("dial lateness: no dials");
        return;
    }
    l.sort_by(f64::total_cmp);
    let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "dial lateness over {} dials: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
