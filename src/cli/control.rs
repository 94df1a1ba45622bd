//! `flowc campaign pause|resume|cancel --db postgres://…[#campaign]`: the
//! operator's hand on a campaign that workers run. The campaign's state in
//! the database changes; every worker reads it within a second. (A run
//! kept in a file is paused with Ctrl-C, or through `flowc serve`.)

use std::process::ExitCode;

use super::campaign::usage;
use crate::record::CampaignState;
use crate::store::postgres::{self, PgStore};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// No new call from any worker (within a second); calls under way finish
    Pause(Target),
    /// Workers dial the paused campaign again
    Resume(Target),
    /// Every contact not ended ends `skipped "cancelled"`; nobody is dialled again
    Cancel(Target),
}

#[derive(clap::Args)]
struct Target {
    /// The campaign's database: `postgres://user@host/db#campaign` (the
    /// name may be left out when the database holds one campaign)
    #[arg(long)]
    db: String,
}

pub fn run(args: Args) -> ExitCode {
    let db = match &args.action {
        Action::Pause(t) | Action::Resume(t) | Action::Cancel(t) => t.db.as_str(),
    };
    if !postgres::is_url(db) {
        return usage(format!(
            "--db {db}: `flowc campaign` acts on campaigns in PostgreSQL, which workers run; \
             a run kept in a file is paused with Ctrl-C, or through `flowc serve`"
        ));
    }
    let shown = postgres::redact(db);
    let done = PgStore::open(db).and_then(|mut store| match args.action {
        Action::Pause(_) => store.pause_or_resume(true).map(|was| match was {
            CampaignState::Running => {
                "paused: no worker places a new call after the next second; calls under way finish"
                    .to_string()
            }
            other => format!("not running (it is {}): nothing to pause", other.name()),
        }),
        Action::Resume(_) => store.pause_or_resume(false).map(|was| match was {
            CampaignState::Paused => {
                "running again: workers take its contacts within a second".to_string()
            }
            other => format!("not paused (it is {}): nothing to resume", other.name()),
        }),
        Action::Cancel(_) => store.cancel().map(|n| {
            format!(
                "cancelled: {n} contact(s) that had not ended are skipped; nobody is dialled again"
            )
        }),
    });
    match done {
        Ok(what) => {
            eprintln!("{shown}: the campaign is {what}");
            ExitCode::SUCCESS
        }
        Err(e) => usage(format!("{shown}: {e}")),
    }
}
