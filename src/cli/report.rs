//! `flowc report --db PATH [--format table|json]`

use std::path::PathBuf;
use std::process::ExitCode;

use super::campaign::ReportFormat;
use crate::report;
use crate::store::Store;

#[derive(clap::Args)]
pub struct Args {
    /// The run's SQLite database
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
}

pub fn run(args: Args) -> ExitCode {
    if !args.db.exists() {
        eprintln!("error: there is no database at {}", args.db.display());
        return ExitCode::from(super::EXIT_USAGE);
    }
    let loaded = Store::open(&args.db).and_then(|db| {
        let program = db.program()?;
        let flow = program
            .flow
            .ok_or_else(|| crate::store::StoreError::Corrupt("the run has no flow".into()))?;
        let results = db.results(&flow)?;
        Ok((flow, results))
    });
    let (flow, results) = match loaded {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {}: {e}", args.db.display());
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let report = report::report(&flow, &results);
    match args.format {
        ReportFormat::Table => print!("{}", report.table()),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report always serialises")
        ),
    }
    ExitCode::SUCCESS
}
