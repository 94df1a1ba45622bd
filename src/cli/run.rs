//! `flowc run FILE --contacts LIST --dialer sim|script:FILE|exec:PROGRAM|sip:HOST [--db PATH]`: the
//! campaign on the wall clock, journalled in the store as it goes, resumable
//! after a pause or a crash by running the same command again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use super::campaign::{self, usage, ReportFormat};
use super::signals;
use crate::dialer::bridge::Bridge;
use crate::dialer::script::ScriptDialer;
use crate::dialer::sip::{Prompts, SipDialer};
use crate::dialer::{Dialer, SimDialer};
use crate::messaging::{BridgeSms, Delivered, DynCourier, Outbox, SmtpCourier};
use crate::record::{CampaignState, Kind};
use crate::runtime::clock::WallClock;
use crate::runtime::engine::{Engine, Progress, Results};
use crate::runtime::journal::Durability;
use crate::server::Control;
use crate::store::outbox::OutboxStore;
use crate::store::postgres::PgStore;
use crate::store::StoreError;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: campaign::Common,
    /// Who places the calls: `sim` (the simulation model, in real time),
    /// `script:FILE` (outcomes from a file), or `exec:PROGRAM` (a program
    /// that places them, speaking JSON lines: docs/bridge.md)
    #[arg(long, value_name = "ADAPTER")]
    dialer: String,
    /// The SIP trunk's settings for `--dialer sip:HOST` (TOML): transport,
    /// domain, username and the environment variable of its password,
    /// local address, T1, request URI, caller-id header
    #[arg(long, value_name = "FILE")]
    trunk: Option<PathBuf>,
    /// The folder `record` writes its WAV files to (`--dialer sip:`), one
    /// per recording, named by the contact's number and the attempt
    #[arg(long, value_name = "DIR")]
    recordings: Option<PathBuf>,
    /// How long a bridge (`--dialer exec:`) may take to answer an operation,
    /// beyond the operation's own timeout (a dial's ring timeout)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_grace)]
    bridge_deadline: std::time::Duration,
    #[command(flatten)]
    mail: Mail,
    /// The run's SQLite database; running the same command again resumes it
    #[arg(long, value_name = "PATH", default_value = "flowc-run.db")]
    db: PathBuf,
    /// With `--db postgres://…`: this run's name as a worker (default:
    /// host and process id); a run started again under its name takes
    /// back at once the contacts its dead predecessor held
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
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

/// Where the SMTP password is, unless `--smtp-password-env` says.
const SMTP_PASSWORD_ENV: &str = "FLOWC_SMTP_PASSWORD";

/// How e-mails are sent (`run` and `worker`).
#[derive(clap::Args, Clone, Debug)]
pub struct Mail {
    /// Sends `send email` through this SMTP server: `smtp://user@host:port`
    /// (STARTTLS when the server offers it) or `smtps://user@host:port`
    #[arg(long, value_name = "URL", requires = "mail_from")]
    pub smtp: Option<String>,
    /// The sender of e-mails (`--smtp`): `Campaigns <campaigns@example.com>`
    #[arg(long, value_name = "ADDRESS")]
    pub mail_from: Option<String>,
    /// The environment variable holding the SMTP user's password
    #[arg(long, value_name = "NAME", default_value = SMTP_PASSWORD_ENV)]
    pub smtp_password_env: String,
}

impl Mail {
    /// No e-mail (a simulation sends nothing).
    pub fn none() -> Mail {
        Mail {
            smtp: None,
            mail_from: None,
            smtp_password_env: SMTP_PASSWORD_ENV.into(),
        }
    }

    /// The e-mail courier `--smtp` asks for, if any.
    pub fn courier(&self) -> Result<Option<SmtpCourier>, String> {
        self.smtp
            .as_deref()
            .map(|url| {
                SmtpCourier::new(
                    url,
                    self.mail_from.as_deref().unwrap_or_default(),
                    &self.smtp_password_env,
                )
            })
            .transpose()
    }
}

/// Who carries a run's messages: e-mail when `--smtp` was given, SMS when
/// the dialer is a bridge.
pub(super) struct Couriers<'a> {
    pub email: Option<SmtpCourier>,
    pub sms: Option<BridgeSms<'a>>,
}

impl<'a> Couriers<'a> {
    pub fn new(mail: &Mail, bridge: Option<&'a Bridge>) -> Result<Couriers<'a>, String> {
        Ok(Couriers {
            email: mail.courier()?,
            sms: bridge.map(|bridge| BridgeSms { bridge, from: None }),
        })
    }

    /// Each one there is, for an outbox.
    pub fn all(&self) -> Vec<&dyn DynCourier> {
        let email = self.email.as_ref().map(|c| c as &dyn DynCourier);
        let sms = self.sms.as_ref().map(|c| c as &dyn DynCourier);
        email.into_iter().chain(sms).collect()
    }
}

pub(crate) fn parse_grace(text: &str) -> Result<std::time::Duration, String> {
    crate::syntax::parse_duration(text.trim())
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("\"{text}\" is not a duration: write one such as 30s or 2m"))
}

pub fn run(args: Args) -> ExitCode {
    run_with(args, None)
}

/// `flowc run`, or a run driven by `remote`.
/// The driver's [`Control`] holds its pause and stop signals and receives
/// its progress; such a run prints nothing but errors.
pub fn run_with(args: Args, remote: Option<Control>) -> ExitCode {
    if let Some(url) = args
        .db
        .to_str()
        .filter(|d| crate::store::postgres::is_url(d))
    {
        // A server's run in a database is controlled through the campaign's
        // state there, as every worker is, and counted from the database.
        return on_postgres(&args, url, remote.is_some());
    }
    if args.name.is_some() {
        return usage(
            "--name names a worker of a campaign in PostgreSQL (`--db postgres://…`); a run kept in a file has none"
                .into(),
        );
    }
    let mut prepared = match prepare(&args) {
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
            let model = match super::simulate::model_for(args.model.as_deref(), prepared.flow()) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let dialer = SimDialer {
                model,
                seed: args.seed,
            };
            drive(&args, remote, &mut prepared, |_, _| Ok(dialer))
        }
        Some(("script", file)) => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => return usage(format!("cannot read the script {file}: {e}")),
            };
            match ScriptDialer::parse(&text, region) {
                Ok(dialer) => drive(&args, remote, &mut prepared, |_, _| Ok(dialer)),
                Err(e) => usage(format!("{file}:{e}")),
            }
        }
        Some(("exec", command)) => {
            let deadline = args.bridge_deadline;
            drive(&args, remote, &mut prepared, |pause, runtime| {
                let _entered = runtime.enter();
                Bridge::start(command, deadline, move |why| {
                    eprintln!("the bridge failed ({why}): pausing the run");
                    let _ = pause.send(true);
                })
            })
        }
        Some(("sip", target)) => {
            let trunk = match super::worker::read_trunk(args.trunk.as_deref()) {
                Ok(t) => t,
                Err(e) => return usage(e),
            };
            let folder = flow_folder(&args);
            let prompts = match Prompts::prepare(
                prepared.flow(),
                &folder,
                &trunk,
                args.recordings.as_deref(),
            ) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            drive(&args, remote, &mut prepared, |_, runtime| {
                runtime.block_on(SipDialer::start(target, trunk, prompts))
            })
        }
        _ => usage(format!(
            "`--dialer {}` is not an adapter: write `sim`, `script:FILE`, `exec:PROGRAM` or `sip:HOST[:PORT]`",
            args.dialer
        )),
    }
}

/// The flow, the list and the store of a run, which starts at the flow's
/// `start` when it lies ahead, otherwise now.
fn prepare(args: &Args) -> Result<campaign::Prepared, ExitCode> {
    campaign::prepare(
        &args.common,
        Some((&args.db, Kind::Run)),
        |flow| {
            let now = Utc::now();
            campaign::start_of(flow, None, now).map(|s| s.max(now))
        },
        "nothing to run",
    )
}

/// `flowc run --db postgres://…`: begins (or resumes) the campaign, adds the
/// list's new contacts, then works on it as one worker among any others
/// (`flowc worker`) until every contact has ended, and prints its report.
fn on_postgres(args: &Args, url: &str, quiet: bool) -> ExitCode {
    let known = args.dialer == "sim"
        || matches!(
            args.dialer.split_once(':'),
            Some(("script" | "exec" | "sip", _))
        );
    if !known {
        return usage(format!(
            "`--dialer {}` is not an adapter: write `sim`, `script:FILE`, `exec:PROGRAM` or `sip:HOST[:PORT]`",
            args.dialer
        ));
    }
    let mut prepared = match prepare(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flow = prepared.flow().clone();
    // The `sim` dialer's model, read and checked before the campaign opens.
    let model = if args.dialer == "sim" {
        match super::simulate::model_for(args.model.as_deref(), &flow) {
            Ok(m) => Some(m),
            Err(code) => return code,
        }
    } else {
        None
    };
    // The audio the flow plays goes into the database with the campaign,
    // for whichever worker dials it through SIP; a run through SIP checks
    // what it needs before it begins.
    let folder = flow_folder(args);
    let sip = args.dialer.strip_prefix("sip:");
    let audio = match Prompts::read(&flow, &folder) {
        Ok(audio) => audio,
        Err(e) if sip.is_some() => return usage(e),
        Err(e) => {
            eprintln!(
                "warning: {e}: workers dialling through SIP will leave this campaign to others"
            );
            HashMap::new()
        }
    };
    let trunk = match sip {
        Some(_) => match super::worker::read_trunk(args.trunk.as_deref()) {
            Ok(trunk) => {
                if let Err(e) =
                    Prompts::ready(&flow, audio.clone(), &trunk, args.recordings.as_deref())
                {
                    return usage(e);
                }
                Some(trunk)
            }
            Err(e) => return usage(e),
        },
        None => None,
    };
    let (name, base) = match campaign::open_to_workers(&mut prepared, &args.db, url, None, &audio) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let base = base.as_str();
    let worker_args = super::worker::args_for_run(
        base,
        args.name.clone(),
        &args.dialer,
        (args.trunk.clone(), args.recordings.clone()),
        args.seed,
        args.common.region.clone(),
        args.mail.clone(),
    );
    let dnc = std::mem::take(&mut prepared.do_not_call);
    // Every worker's opt-outs, whichever machine heard them, go into the
    // `--dnc` file as they come (within two seconds), and once more when
    // the run ends.
    let copier = args.common.dnc.clone().map(|path| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = format!("{base}#{name}");
        let stopped = stop.clone();
        let copier = std::thread::spawn(move || copy_opt_outs(&url, &path, &stopped));
        (stop, copier)
    });
    let code = match args.dialer.split_once(':') {
        Some(("script", file)) => {
            let region = args
                .common
                .region
                .as_deref()
                .or(flow.region.as_deref())
                .and_then(crate::calendar::phone::region);
            match std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the script {file}: {e}"))
                .and_then(|t| ScriptDialer::parse(&t, region).map_err(|e| format!("{file}:{e}")))
            {
                Ok(d) => super::worker::work(&worker_args, |_, _| Ok(d), Some(&name), dnc),
                Err(e) => return usage(e),
            }
        }
        Some(("exec", command)) => super::worker::work(
            &worker_args,
            super::worker::bridge(command, args.bridge_deadline),
            Some(&name),
            dnc,
        ),
        Some(("sip", target)) => super::worker::work(
            &worker_args,
            super::worker::sip(target, trunk.expect("read above"), args.recordings.clone()),
            Some(&name),
            dnc,
        ),
        _ => {
            let d = SimDialer {
                model: model.expect("read above for the sim dialer"),
                seed: args.seed,
            };
            super::worker::work(&worker_args, |_, _| Ok(d), Some(&name), dnc)
        }
    };
    if let Some((stop, copier)) = copier {
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = copier.join();
    }
    if code != ExitCode::SUCCESS || quiet {
        return code;
    }
    if let Ok(mut store) = PgStore::open(&format!("{base}#{name}")) {
        unsent_note(
            |kind| store.unsent(kind).unwrap_or(0),
            args.mail.smtp.is_some(),
            args.dialer.starts_with("exec:"),
        );
    }
    super::report::print(
        &format!("{base}#{name}"),
        args.common.format == ReportFormat::Json,
    )
}

/// The folder of the flow file, where the files it plays are named from.
fn flow_folder(args: &Args) -> PathBuf {
    args.common
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Appends to `path` the campaign's opted-out numbers that neither the
/// file (its numbers are in the database) nor this process added yet:
/// every two seconds, and a last time once `stop` is set.
fn copy_opt_outs(url: &str, path: &Path, stop: &std::sync::atomic::AtomicBool) {
    let mut write = campaign::opt_out_writer(Some(path));
    let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut store: Option<PgStore> = None;
    let mut warned = false;
    loop {
        let last = stop.load(std::sync::atomic::Ordering::SeqCst);
        if store.is_none() {
            store = PgStore::open(url).ok();
        }
        match store.as_mut().map(PgStore::opted_out_numbers) {
            Some(Ok(numbers)) => {
                for n in numbers {
                    if written.insert(n.clone()) {
                        write(&n);
                    }
                }
            }
            failed => {
                store = None;
                if last && !warned {
                    let why = match failed {
                        Some(Err(e)) => e.to_string(),
                        _ => "the database cannot be reached".to_string(),
                    };
                    eprintln!(
                        "warning: the campaign's opt-outs could not be read to add to {}: {why}",
                        path.display()
                    );
                    warned = true;
                }
            }
        }
        if last {
            return;
        }
        // Two seconds, looking at `stop` now and then.
        for _ in 0..20 {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// What `run` needs of a dialer beyond dialling: a bridge may fail for good
/// while the run goes on (the run then pauses, and says why), carries SMS,
/// and is closed at the end.
#[allow(async_fn_in_trait)]
pub(super) trait Adapter {
    fn failure(&self) -> Option<String> {
        None
    }
    fn bridge(&self) -> Option<&Bridge> {
        None
    }
    async fn close(&self) {}
    /// Gets ready for a campaign's flow before its calls (a worker serves
    /// many campaigns, one after another); `audio` reads the audio of the
    /// files it plays, as the campaign kept it. Err: this dialer cannot
    /// run the flow, and why.
    fn ready_for(
        &self,
        _flow: &crate::ir::Flow,
        _audio: impl FnOnce() -> Result<HashMap<String, std::sync::Arc<Vec<i16>>>, String>,
    ) -> Result<(), String> {
        Ok(())
    }
}

impl Adapter for SipDialer {
    async fn close(&self) {
        self.shut_down().await;
    }
    fn ready_for(
        &self,
        flow: &crate::ir::Flow,
        audio: impl FnOnce() -> Result<HashMap<String, std::sync::Arc<Vec<i16>>>, String>,
    ) -> Result<(), String> {
        self.take_flow(flow, audio()?)
    }
}
impl Adapter for SimDialer {}
impl Adapter for ScriptDialer {}
impl Adapter for Bridge {
    fn failure(&self) -> Option<String> {
        Bridge::failure(self)
    }
    fn bridge(&self) -> Option<&Bridge> {
        Some(self)
    }
    async fn close(&self) {
        self.shut_down().await;
    }
}

/// Runs the campaign with the dialer `make` returns, inside the run's
/// runtime; `make` gets the sender that pauses the run.
fn drive<D: Dialer + Adapter>(
    args: &Args,
    remote: Option<Control>,
    prepared: &mut campaign::Prepared,
    make: impl FnOnce(tokio::sync::watch::Sender<bool>, &tokio::runtime::Runtime) -> Result<D, String>,
) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts");
    let (pause, stop, mut on_progress) = match remote {
        Some(r) => (r.pause, r.stop, Some(r.progress)),
        None => (
            tokio::sync::watch::channel(signals::received()).0,
            tokio::sync::watch::channel(false).0,
            None,
        ),
    };
    let quiet = on_progress.is_some();
    let paused = pause.subscribe();
    let stopped = stop.subscribe();
    let dialer = match make(pause.clone(), &runtime) {
        Ok(d) => d,
        Err(e) => return usage(e),
    };
    let dialer = &dialer;
    let couriers = match Couriers::new(&args.mail, dialer.bridge()) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    let clock = WallClock;
    let mut outbox = match Outbox::open(&args.db, couriers.all(), &clock) {
        Ok(o) => o,
        Err(e) => return usage(format!("{}: {e}", args.db.display())),
    };
    if outbox.delivered.interrupted > 0 {
        eprintln!(
            "{} message(s) were being handed over when the run stopped: they are `unknown` in the store and are not sent again",
            outbox.delivered.interrupted
        );
    }
    let outbox_stop = pause.subscribe();
    let (done, run_done) = tokio::sync::watch::channel(false);
    let mut store = prepared.store.take().expect("a run always has a store");
    let history = std::mem::take(&mut prepared.history);
    let flow = prepared.flow();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(prepared.contacts.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} ended  {msg}")
            .expect("a valid template"),
    );
    let bar_for_progress = bar.clone();
    store.share_list(&prepared.contacts);
    let engine = Engine::new(flow, &prepared.contacts, dialer, &clock, prepared.start)
        .history(history)
        .do_not_call(prepared.do_not_call.clone())
        .on_opt_out(campaign::opt_out_writer(args.common.dnc.as_deref()))
        .on_progress(move |p, now| {
            bar_for_progress.set_position(p.completed + p.failed + p.skipped);
            bar_for_progress.set_message(summary(p, now));
            if let Some(f) = on_progress.as_mut() {
                f(p, now);
            }
        })
        .pause_on(paused)
        .stop_on(stopped)
        .migrating(args.common.migrate)
        .journal(store.as_mut(), Durability::BeforeEachDial);
    let bar_for_signal = bar.clone();
    let grace = args.grace;
    let results = runtime.block_on(async move {
        tokio::spawn(signals::watch(pause, stop, grace, move |note| {
            if bar_for_signal.is_hidden() {
                eprintln!("{note}");
            } else {
                bar_for_signal.println(note);
            }
        }));
        let engine = async move {
            let results = engine.run().await;
            let _ = done.send(true);
            results
        };
        let (results, delivered) = tokio::join!(engine, outbox.run(run_done, outbox_stop));
        dialer.close().await;
        (results, delivered.map(|()| outbox.delivered))
    });
    let (results, delivered) = results;
    bar.finish_and_clear();
    let results = match results {
        Ok(r) => r,
        Err(e) => return usage(format!("{}: {e}", args.db.display())),
    };
    say_delivered(delivered, &args.db.display().to_string());
    if let Ok((store, _)) = OutboxStore::open(&args.db) {
        unsent_note(
            |kind| store.unsent(&[kind]).unwrap_or(0),
            couriers.email.is_some(),
            couriers.sms.is_some(),
        );
    }
    let state = if results.paused_at.is_some() {
        CampaignState::Paused
    } else {
        CampaignState::Finished
    };
    if let Err(e) = store.set_state(state, results.finish) {
        return usage(format!("{}: {e}", args.db.display()));
    }
    if let Err(e) = campaign::write_journal(&args.common, flow, &results) {
        return usage(e);
    }
    if !quiet {
        campaign::print_report(flow, &prepared.contacts, &results, args.common.format);
    }
    if args.lateness {
        print_lateness(&results);
    }
    if results.cut_off > 0 {
        eprintln!(
            "{} call(s) under way were cut off: the store keeps them without an end, and they resume as `unknown`",
            results.cut_off
        );
    }
    if !quiet && (args.common.format == ReportFormat::Table || results.paused_by_operator) {
        eprintln!(
            "{}: the run is {}{}",
            args.db.display(),
            state.name(),
            if state == CampaignState::Paused {
                "; run the same command to resume it"
            } else {
                ""
            }
        );
    }
    if let Some(why) = dialer.failure() {
        eprintln!(
            "{why}\n{}: the run is paused; mend the bridge and run the same command to resume it",
            args.db.display()
        );
        ExitCode::FAILURE
    } else if results.paused_by_operator && !quiet {
        ExitCode::from(signals::exit_status())
    } else {
        ExitCode::SUCCESS
    }
}

/// Says what the outbox did (`db`: the store, for an error).
pub(super) fn say_delivered(delivered: Result<Delivered, StoreError>, db: &str) {
    match delivered {
        Ok(d) if d.sent + d.failed + d.retried > 0 => eprintln!(
            "messages: {} sent, {} failed{}",
            d.sent,
            d.failed,
            if d.retried > 0 {
                format!(" ({} temporary failure(s) tried again)", d.retried)
            } else {
                String::new()
            }
        ),
        Ok(_) => {}
        Err(e) => eprintln!("{db}: the outbox stopped: {e}"),
    }
}

/// Says which messages wait in the store because no adapter sends them
/// (`unsent`: how many of a kind wait).
fn unsent_note(mut unsent: impl FnMut(&str) -> usize, email: bool, sms: bool) {
    for (kind, sent, how) in [
        (
            "email",
            email,
            "e-mail(s) wait unsent in the store: no --smtp was given",
        ),
        (
            "sms",
            sms,
            "SMS wait unsent in the store: SMS go through a bridge (--dialer exec:PROGRAM)",
        ),
    ] {
        if !sent {
            match unsent(kind) {
                0 => {}
                n => eprintln!("{n} {how}"),
            }
        }
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
