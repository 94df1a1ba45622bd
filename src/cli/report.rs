//! `flowc report --db PATH [--format table|json|csv|html] [--failed] [-o FILE]`

use std::path::PathBuf;
use std::process::ExitCode;

use crate::report;
use crate::store::postgres::{self, PgStore};
use crate::store::{Reader, Store, StoreError};

#[derive(clap::Args)]
pub struct Args {
    /// The run's database: a SQLite file, or a PostgreSQL URL
    /// (`postgres://user@host/db#campaign`)
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// `table` and `json`: the metrics and failure patterns; `csv`: every
    /// contact with its attempt history, one row each; `html`: one
    /// self-contained page with charts
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report to this file instead of standard output
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// With `--format csv`: only the contacts that failed
    #[arg(long)]
    failed: bool,
    /// The contacts that need someone: every flag raised, SMS and e-mail
    /// sent, with the contact's fields, as CSV
    #[arg(long, conflicts_with_all = ["failed"])]
    follow_up: bool,
}

/// A stored campaign as a report reads it.
type Loaded = (
    crate::ir::Flow,
    Vec<crate::contacts::Contact>,
    Vec<crate::record::ContactResult>,
    Vec<crate::store::StoredMessage>,
);

/// A stored campaign's flow, contacts, results and (for `--follow-up`)
/// messages, from either store.
fn read(db: &mut dyn Reader, follow_up: bool) -> Result<Loaded, StoreError> {
    let flow = db
        .program()?
        .flow
        .ok_or_else(|| StoreError::Corrupt("the run has no flow".into()))?;
    let (list, results) = db.results(&flow)?;
    let messages = if follow_up {
        db.messages()?
    } else {
        Vec::new()
    };
    Ok((flow, list, results, messages))
}

/// The report of `db` on standard output, as a table or as JSON.
pub(crate) fn print(db: &str, json: bool) -> ExitCode {
    run(Args {
        db: db.into(),
        format: if json { Format::Json } else { Format::Table },
        output: None,
        failed: false,
        follow_up: false,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
    Html,
}

pub fn run(args: Args) -> ExitCode {
    let url = args.db.to_str().filter(|d| postgres::is_url(d));
    if url.is_none() && !args.db.exists() {
        eprintln!("error: there is no database at {}", args.db.display());
        return ExitCode::from(super::EXIT_USAGE);
    }
    // A million contacts take seconds: say what is going on (on a
    // terminal only; indicatif draws nothing otherwise).
    let spinner = indicatif::ProgressBar::new_spinner().with_message("reading the store");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let loaded = match url {
        Some(url) => PgStore::open(url).and_then(|mut db| read(&mut db, args.follow_up)),
        None => Store::open_read_only(&args.db).and_then(|mut db| read(&mut db, args.follow_up)),
    };
    spinner.set_message("finding the failure patterns");
    let (flow, list, results, messages) = match loaded {
        Ok(x) => x,
        Err(e) => {
            spinner.finish_and_clear();
            eprintln!("error: {}: {e}", super::campaign::shown(&args.db));
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    if args.follow_up {
        spinner.finish_and_clear();
        out!(
            "{}",
            report::follow_up_csv(&flow, &list, &results, &messages)
        );
        return ExitCode::SUCCESS;
    }
    // The metrics and the failure patterns read the same results: each on
    // its own core.
    let (report, patterns) = std::thread::scope(|s| {
        let patterns = s.spawn(|| report::patterns::failure_patterns(&flow, &list, &results));
        let report = report::report(&flow, &results);
        (
            report,
            patterns.join().expect("finding patterns does not panic"),
        )
    });
    let report = report.with(patterns);
    let text = match args.format {
        Format::Table => report.table(),
        Format::Csv => report::contacts_csv(&flow, &list, &results, args.failed),
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&report).expect("a report always serialises")
        ),
        Format::Html => report::html::html(&flow, &report, &results),
    };
    spinner.finish_and_clear();
    match &args.output {
        Some(path) => {
            if let Err(e) = super::files::write_file(path, &[&args.db], text.as_bytes()) {
                eprintln!("error: {e}");
                return ExitCode::from(super::EXIT_USAGE);
            }
        }
        None => out!("{text}"),
    }
    // The process ends here: a million contacts need not be freed first.
    std::mem::forget((list, results));
    ExitCode::SUCCESS
}
