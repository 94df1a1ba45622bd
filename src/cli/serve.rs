//! `flowc serve --db DIR` (or `--db postgres://… --keys DIR`): the
//! executions API and the dashboard; `flowc keys`: the keys it accepts.
//! The runs themselves are `flowc run`'s, driven through [`Control`], or,
//! in a database, the workers'.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use super::campaign::{self, usage};
use super::{run, signals, Cli, Command};
use crate::server::{self, Control, Refusal, Runner, Settings};

#[derive(clap::Args)]
pub struct Args {
    /// The folder of the executions: one database per execution, and the
    /// server's keys (made when missing). `flowc run --db DIR/NAME.db`
    /// keeps a run there that the server shows too. Or a PostgreSQL
    /// database (`postgres://user@host/db`): its campaigns, begun by `flowc
    /// run` or by this server and run by workers, are the executions
    #[arg(long, value_name = "DIR|URL")]
    db: PathBuf,
    /// With a PostgreSQL `--db`: the folder of the server's keys and audit
    /// (made when missing; `flowc keys create --db DIR` makes a key there)
    #[arg(long, value_name = "DIR")]
    keys: Option<PathBuf>,
    /// The address to listen on
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The folder whose files an execution may name (`contactsPath`,
    /// `script:FILE`); without it, lists come in the request
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// An adapter executions may use besides `sim` and `script:`, exactly as
    /// written (`exec:/opt/bridge`, `sip:trunk.example.com`); repeatable
    #[arg(long = "allow-dialer", value_name = "ADAPTER")]
    allowed_dialers: Vec<String>,
    /// The SIP trunk's settings for `sip:` executions (as `flowc run --trunk`)
    #[arg(long, value_name = "FILE")]
    trunk: Option<PathBuf>,
    /// Where `record` writes (as `flowc run --recordings`)
    #[arg(long, value_name = "DIR")]
    recordings: Option<PathBuf>,
    /// After SIGTERM or Ctrl-C, how long calls under way may go on before
    /// they are cut off
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::run::parse_grace)]
    grace: std::time::Duration,
    /// Logs on standard error: `text`, or `json` (one object a line)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

pub fn run(args: Args) -> ExitCode {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_ansi(super::color());
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let database = args
        .db
        .to_str()
        .filter(|d| crate::store::postgres::is_url(d))
        .map(str::to_string);
    let folder = match (&database, &args.keys) {
        (Some(_), Some(keys)) => keys.clone(),
        (Some(url), None) => {
            return usage(format!(
                "--db {}: a server on a database keeps its keys in a folder of its own: \
                 give it with `--keys DIR` (and make a key with `flowc keys create --db DIR --name NAME`)",
                crate::store::postgres::redact(url)
            ))
        }
        (None, Some(_)) => {
            return usage(format!(
                "--keys is for a server on a PostgreSQL database; the keys of --db {} are in that folder",
                args.db.display()
            ))
        }
        (None, None) => args.db.clone(),
    };
    if std::fs::metadata(&args.db).is_ok_and(|m| m.is_file()) {
        return usage(format!(
            "--db {} is a file: `flowc serve` takes a folder (one database per execution); \
             to see this run, give the folder it is in",
            args.db.display()
        ));
    }
    if let Some(d) = &args.data_dir {
        if !d.is_dir() {
            return usage(format!(
                "--data-dir {}: there is no such folder",
                d.display()
            ));
        }
    }
    let runner = Arc::new(CliRunner {
        trunk: args.trunk.clone(),
        recordings: args.recordings.clone(),
        grace: args.grace,
    });
    let shown = match &database {
        Some(url) => crate::store::postgres::redact(url),
        None => args.db.display().to_string(),
    };
    let options = server::Options {
        folder,
        postgres: database,
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        allowed_dialers: args.allowed_dialers.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime starts");
    let served = runtime.block_on(server::serve(options, runner, signals::received, |a| {
        eprintln!("flowc serves {shown} on http://{a}/");
    }));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(e),
    }
}

/// Runs executions as `flowc run` would, with their files as arguments.
struct CliRunner {
    trunk: Option<PathBuf>,
    recordings: Option<PathBuf>,
    grace: std::time::Duration,
}

impl CliRunner {
    fn argv(&self, store: &Path, files: &Path, s: &Settings) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> = vec!["flowc".into(), "run".into()];
        argv.push(flow_file(files).into());
        argv.extend(["--contacts".into(), s.contacts.clone().into_os_string()]);
        argv.extend([
            "--rejects".into(),
            files.join("rejects.csv").into_os_string(),
        ]);
        argv.extend(["--db".into(), store.as_os_str().to_owned()]);
        argv.extend(["--dialer".into(), s.dialer.clone().into()]);
        if let Some(id) = store
            .to_str()
            .filter(|d| crate::store::postgres::is_url(d))
            .and_then(|url| url.rsplit_once('#'))
            .map(|(_, id)| id)
        {
            // One name for the server's worker on the execution, whichever
            // process: started again, it takes its contacts back at once.
            argv.extend(["--name".into(), format!("serve:{id}").into()]);
        }
        argv.extend(["--seed".into(), s.seed.to_string().into()]);
        argv.extend([
            "--grace".into(),
            format!("{}s", self.grace.as_secs()).into(),
        ]);
        if let Some(r) = &s.region {
            argv.extend(["--region".into(), r.into()]);
        }
        if let Some(m) = &s.max_rejects {
            argv.extend(["--max-rejects".into(), m.into()]);
        }
        if let Some(t) = &self.trunk {
            argv.extend(["--trunk".into(), t.clone().into_os_string()]);
        }
        if let Some(r) = &self.recordings {
            argv.extend(["--recordings".into(), r.clone().into_os_string()]);
        }
        argv
    }
}

/// The execution's flow: its source, or the program compiled from it.
fn flow_file(files: &Path) -> PathBuf {
    let compiled = files.join("flow.json");
    if compiled.exists() {
        compiled
    } else {
        files.join("flow.flow")
    }
}

fn refusal(detail: impl Into<String>) -> Refusal {
    Refusal {
        detail: detail.into(),
        errors: serde_json::Value::Null,
    }
}

impl Runner for CliRunner {
    fn validate(&self, files: &Path, s: &Settings) -> Result<(), Refusal> {
        let file = flow_file(files);
        let program = if file.extension().is_some_and(|e| e == "json") {
            super::compiled_program(&file).map_err(|e| refusal(format!("ir: {e}")))?
        } else {
            let c = crate::check::check(&file, &crate::check::FsLoader)
                .map_err(|e| refusal(format!("the flow cannot be read: {e}")))?;
            match c.program {
                Some(p) if !c.has_errors() && p.flow.is_some() => p,
                _ => {
                    let doc = crate::diagnostic::render_json(&c.diagnostics, &c.sources, &[]);
                    return Err(Refusal {
                        detail: if c.diagnostics.iter().any(|d| d.is_error()) {
                            "the flow has errors: `errors` holds the checker's diagnostics".into()
                        } else {
                            "the source holds no flow to run".into()
                        },
                        errors: serde_json::from_str(&doc).unwrap_or_default(),
                    });
                }
            }
        };
        let flow = program.flow.as_ref().expect("checked above");
        let max = match &s.max_rejects {
            Some(m) => {
                campaign::parse_max_rejects(m).map_err(|e| refusal(format!("maxRejects: {e}")))?
            }
            None => campaign::MaxRejects::Percent(5.0),
        };
        if let Some(from) = &s.from {
            campaign::start_of(flow, Some(from), chrono::Utc::now())
                .map_err(|e| refusal(format!("from: {e}")))?;
        }
        if let Some(("script", file)) = s.dialer.split_once(':') {
            let region = s
                .region
                .as_deref()
                .or(flow.region.as_deref())
                .and_then(crate::calendar::phone::region);
            let text = std::fs::read_to_string(file)
                .map_err(|e| refusal(format!("the dialer's script cannot be read: {e}")))?;
            crate::dialer::script::ScriptDialer::parse(&text, region)
                .map_err(|e| refusal(format!("the dialer's script, line {e}")))?;
        }
        let list = super::check::import_list(
            flow,
            &s.contacts,
            Some(&files.join("rejects.csv")),
            s.region.as_deref(),
        )
        .map_err(|f| refusal(format!("the contact list cannot be read: {}", f.message)))?;
        let i = &list.import;
        let rows = i.contacts.len() + i.rejects.len() + i.duplicates.len();
        let refused = |detail: String| Refusal {
            detail,
            errors: list.json(),
        };
        if !i.errors.is_empty() {
            return Err(refused(format!(
                "the contact list cannot be used: {}",
                i.errors.join("; ")
            )));
        }
        if !max.allows(i.rejects.len(), rows) {
            return Err(refused(format!(
                "{} of {rows} row(s) were rejected, more than maxRejects {max} allows; nobody was dialled: `errors` lists them by line",
                i.rejects.len()
            )));
        }
        if i.contacts.is_empty() {
            return Err(refused(format!(
                "the list holds no contact to call ({rows} row(s) read)"
            )));
        }
        Ok(())
    }

    fn run(
        &self,
        store: &Path,
        files: &Path,
        s: &Settings,
        control: Control,
    ) -> Result<(), String> {
        let argv = self.argv(store, files, s);
        let args = match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Run(args),
            }) => args,
            Ok(_) => unreachable!("the arguments name `run`"),
            Err(e) => return Err(e.to_string()),
        };
        let code = run::run_with(args, Some(control));
        if code == ExitCode::SUCCESS {
            Ok(())
        } else {
            Err("the run stopped with an error: the server's log says which".into())
        }
    }
}

#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(clap::Subcommand)]
enum KeysAction {
    /// Make a key and print it (the only time it is shown; the server keeps its hash)
    Create {
        /// The folder `flowc serve --db` serves (or its `--keys` folder)
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        /// Who or what uses the key: `ci`, `dashboard`, `alice`
        #[arg(long)]
        name: String,
        /// The key reads, and cannot start, pause, resume or cancel
        #[arg(long)]
        read_only: bool,
    },
    /// The keys, with their rights and dates (never the keys themselves)
    List {
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
    },
    /// Refuse a key from now on
    Revoke {
        /// The key's name
        name: String,
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
    },
}

pub fn keys(args: KeysArgs) -> ExitCode {
    let open = |db: &Path| {
        if let Some(url) = db.to_str().filter(|d| crate::store::postgres::is_url(d)) {
            return Err(usage(format!(
                "--db {}: a server on a database keeps its keys in the folder of its `--keys DIR`: \
                 give that folder here",
                crate::store::postgres::redact(url)
            )));
        }
        server::keys::Keys::open(db).map_err(usage)
    };
    match args.action {
        KeysAction::Create {
            db,
            name,
            read_only,
        } => {
            let keys = match open(&db) {
                Ok(k) => k,
                Err(c) => return c,
            };
            match keys.create(&name, read_only) {
                Ok(key) => {
                    outln!("{key}");
                    eprintln!(
                        "key \"{}\" made{}: keep it now, it is not shown again",
                        name.trim(),
                        if read_only { " (read-only)" } else { "" }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => usage(e),
            }
        }
        KeysAction::List { db } => {
            let keys = match open(&db) {
                Ok(k) => k,
                Err(c) => return c,
            };
            match keys.list() {
                Ok(list) if list.is_empty() => {
                    eprintln!(
                        "no key yet: make one with `flowc keys create --db {} --name NAME`",
                        db.display()
                    );
                    ExitCode::SUCCESS
                }
                Ok(list) => {
                    outln!("{:<20} {:<10} {:<22} revoked", "name", "rights", "created");
                    for k in list {
                        outln!(
                            "{:<20} {:<10} {:<22} {}",
                            k.name,
                            if k.read_only { "read" } else { "control" },
                            k.created_at,
                            k.revoked_at.as_deref().unwrap_or("-")
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => usage(e),
            }
        }
        KeysAction::Revoke { name, db } => {
            let keys = match open(&db) {
                Ok(k) => k,
                Err(c) => return c,
            };
            match keys.revoke(&name) {
                Ok(true) => {
                    eprintln!("key \"{name}\" revoked: requests with it are refused from now on");
                    ExitCode::SUCCESS
                }
                Ok(false) => usage(format!(
                    "there is no key \"{name}\" in use in {}",
                    db.display()
                )),
                Err(e) => usage(e),
            }
        }
    }
}
