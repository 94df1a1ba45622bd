//! `flowc simulate FILE --contacts LIST [--model M] [--seed N] [--from DATETIME] [--db PATH] [--journal FILE] [--format table|json]`

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{TimeZone, Utc};

use super::campaign::{self, usage, ReportFormat};
use crate::dialer::{Model, SimDialer};
use crate::record::{CampaignState, Kind};
use crate::runtime::clock::VirtualClock;
use crate::runtime::engine::Engine;
use crate::runtime::journal::Durability;
use crate::runtime::simulate::block_on;
use crate::store::postgres;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: campaign::Common,
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
    /// Keep the run in this database, for `flowc report --db`: a SQLite
    /// file, or a PostgreSQL URL (`postgres://user@host/db#campaign`); a
    /// database holding an unfinished simulation of the flow starts it again
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// With a PostgreSQL database: split the simulation into this many
    /// parts, each with its share of the flow's concurrency and rate, for
    /// `flowc worker`s to simulate beside this command (which takes the
    /// parts nobody else does)
    #[arg(long, default_value_t = 1, value_name = "N")]
    parts: u32,
}

pub fn load_model(path: Option<&std::path::Path>) -> Result<Model, ExitCode> {
    match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| Model::parse(&t))
            .map_err(|e| usage(format!("the model {} cannot be used: {e}", path.display()))),
        None => Ok(Model::default_model()),
    }
}

/// Checks the model's `[by_field]` against the flow's contacts (`path`:
/// where the model was read, for the error).
pub fn check_model(
    model: &Model,
    path: Option<&std::path::Path>,
    flow: &crate::ir::Flow,
) -> Result<(), ExitCode> {
    model.check_fields(&flow.contact).map_err(|e| {
        let path = path.map_or(String::new(), |p| format!(" {}", p.display()));
        usage(format!(
            "the model{path} cannot be used with this flow: {e}"
        ))
    })
}

/// The model at `path` (or the built-in one), checked against the flow's
/// contacts.
pub fn model_for(
    path: Option<&std::path::Path>,
    flow: &crate::ir::Flow,
) -> Result<Model, ExitCode> {
    let model = load_model(path)?;
    check_model(&model, path, flow)?;
    Ok(model)
}

pub fn run(args: Args) -> ExitCode {
    if let Some(url) = args
        .db
        .as_deref()
        .and_then(|d| d.to_str())
        .filter(|d| postgres::is_url(d))
    {
        return on_postgres(&args, url);
    }
    if args.parts != 1 {
        return usage("--parts splits a simulation kept in PostgreSQL among workers".into());
    }
    let model = match load_model(args.model.as_deref()) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |d| Utc.from_utc_datetime(&d));
    let mut prepared = match campaign::prepare(
        &args.common,
        args.db.as_deref().map(|db| (db, Kind::Simulation)),
        |flow| campaign::start_of(flow, args.from.as_deref(), today),
        "nothing to simulate",
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = check_model(&model, args.model.as_deref(), prepared.flow()) {
        return code;
    }
    let dialer = SimDialer {
        model,
        seed: args.seed,
    };
    let clock = VirtualClock::new(prepared.start);
    let mut store = prepared.store.take();
    let history = std::mem::take(&mut prepared.history);
    let flow = prepared.flow();
    let mut engine = Engine::new(flow, &prepared.contacts, &dialer, &clock, prepared.start)
        .history(history)
        .do_not_call(prepared.do_not_call.clone())
        .on_opt_out(campaign::opt_out_writer(args.common.dnc.as_deref()))
        .migrating(args.common.migrate);
    if let Some(s) = store.as_mut() {
        s.share_list(&prepared.contacts);
        engine = engine.journal(s.as_mut(), Durability::Batched);
    }
    let results = match block_on(engine.run()) {
        Ok(mut r) => {
            r.finish = r.finish.max(prepared.finish.unwrap_or(r.finish));
            r
        }
        Err(e) => return usage(format!("the store: {e}")),
    };
    if let Some(s) = store.as_mut() {
        let state = if results.paused_at.is_some() {
            CampaignState::Paused
        } else {
            CampaignState::Finished
        };
        if let Err(e) = s.set_state(state, results.finish) {
            return usage(format!("the store: {e}"));
        }
    }
    if let Err(e) = campaign::write_journal(&args.common, flow, &results) {
        return usage(e);
    }
    campaign::print_report(flow, &prepared.contacts, &results, args.common.format);
    if args.common.format == ReportFormat::Table {
        if let (Some(at), Some(p)) = (results.paused_at, flow.pause_when) {
            outln!(
                "\nthe campaign paused at {} UTC: step `{}` was reached {} times; the pending contacts were not called",
                at.format("%Y-%m-%d %H:%M"),
                flow.steps[p.step].name,
                p.times
            );
        }
        outln!(
            "\nsimulated {} to {} (UTC), seed {}",
            results.start.format("%Y-%m-%d %H:%M"),
            results.finish.format("%Y-%m-%d %H:%M"),
            args.seed
        );
    }
    ExitCode::SUCCESS
}

/// `flowc simulate --db postgres://…`: begins the simulation (or finds it
/// finished), adds the list's contacts once its seed, model and parts are
/// kept, then simulates parts as a worker until none is left, and prints
/// the report from the database.
fn on_postgres(args: &Args, url: &str) -> ExitCode {
    if args.common.journal.is_some() {
        return usage(
            "--journal writes a simulation kept in a file; read one kept in PostgreSQL with `flowc report --db`"
                .into(),
        );
    }
    let model_text = match &args.model {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) => return usage(format!("the model {} cannot be read: {e}", path.display())),
        },
        None => None,
    };
    let model = match load_model(args.model.as_deref()) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |d| Utc.from_utc_datetime(&d));
    let db = args.db.as_deref().expect("a database");
    let mut prepared = match campaign::prepare(
        &args.common,
        Some((db, Kind::Simulation)),
        |flow| campaign::start_of(flow, args.from.as_deref(), today),
        "nothing to simulate",
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = check_model(&model, args.model.as_deref(), prepared.flow()) {
        return code;
    }
    if let (Some(p), true) = (prepared.flow().pause_when, args.parts > 1) {
        // Each part is simulated on its own clock: no moment is common to
        // all of them at which the whole campaign could stop.
        return usage(format!(
            "--parts {}: the flow pauses the campaign when step `{}` is reached {} times, and a \
             simulation in parts cannot pause all its parts at one simulated moment: simulate it \
             in one part (without --parts)",
            args.parts,
            prepared.flow().steps[p.step].name,
            p.times
        ));
    }
    let simulation = postgres::Simulation {
        seed: args.seed,
        model: model_text,
        parts: args.parts.max(1),
    };
    let (name, base) =
        match campaign::open_to_workers(&mut prepared, db, url, Some(&simulation), &HashMap::new())
        {
            Ok(x) => x,
            Err(code) => return code,
        };
    let base = base.as_str();
    let worker = super::worker::args_for_run(
        base,
        None,
        "sim",
        (None, None),
        args.seed,
        args.common.region.clone(),
        super::run::Mail::none(),
    );
    let dialer = SimDialer {
        model: Model::default_model(),
        seed: args.seed,
    };
    let do_not_call = std::mem::take(&mut prepared.do_not_call);
    let code = super::worker::work(&worker, |_, _| Ok(dialer), Some(&name), do_not_call);
    if code != ExitCode::SUCCESS {
        return code;
    }
    super::report::print(
        &format!("{base}#{name}"),
        args.common.format == ReportFormat::Json,
    )
}
