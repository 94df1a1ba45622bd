//! `flowc worker --db postgres://… --dialer sim|script:FILE|exec:PROGRAM|sip:HOST [--trunk FILE] [--recordings DIR] [--smtp URL --mail-from ADDRESS] [--name N] [--lease SECONDS] [--until-done]`
//!
//! Joins every running campaign of a PostgreSQL database and places its
//! calls, beside other workers on other machines. A campaign's contacts are
//! cut into parts (runs of ids) when it begins; a worker leases one part at
//! a time (`FOR UPDATE SKIP LOCKED`), and holds it while its heartbeat is
//! younger than its lease; a worker that dies loses its parts when its
//! heartbeat is older than that, and another takes them over, replaying
//! what their contacts did: an attempt that started and never ended is
//! `unknown`, never dialled again.
//!
//! Concurrency stays a campaign-wide limit: each worker holds lines of it
//! in the database (`flowc_lines`), an even share among the live workers,
//! taken and given back by its heartbeat every second, and never more than
//! the others leave (see `PgStore::lines`). The rate is shared out when a
//! batch is leased: the flow's figure divided by the live workers (at
//! least one call per period each). Pause, resume and cancel are the
//! campaign's state in the database, read by every worker every second.
//!
//! A worker dialling through SIP plays the audio the campaign's beginning
//! kept in the database (`flowc_prompts`), speaks with its own trunk
//! file's speech command and records into its own `--recordings` folder; a
//! campaign it cannot serve (no speech command for a flow that speaks, no
//! folder for one that records) is left to the other workers, and said.
//!
//! A worker with a way to send messages (its bridge for SMS, `--smtp` for
//! e-mail) also sends the campaigns' messages, beside its calls
//! (`store::postgres_outbox`), and reads each campaign's do-not-call list
//! when it joins it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

use super::campaign::usage;
use super::signals;
use crate::dialer::bridge::Bridge;
use crate::dialer::script::ScriptDialer;
use crate::dialer::sip::{Prompts, SipDialer, Trunk};
use crate::dialer::{Dialer, SimDialer};
use crate::messaging::{Delivered, Outbox};
use crate::record::CampaignState;
use crate::runtime::clock::{VirtualClock, WallClock};
use crate::runtime::engine::Engine;
use crate::runtime::journal::Durability;
use crate::store::postgres::{self, Leased, PgStore, Running};
use crate::store::postgres_outbox::PgOutbox;
use crate::store::StoreError;

#[derive(Parser, Debug)]
pub struct Args {
    /// The PostgreSQL database holding the campaigns (`postgres://user@host/db`;
    /// the password from PGPASSWORD)
    #[arg(long)]
    pub db: String,
    /// Who places the calls: `sim` (the simulation model, in real time),
    /// `script:FILE`, `exec:PROGRAM` (a bridge to a provider, one
    /// process per worker), or `sip:HOST[:PORT]` (a SIP trunk)
    #[arg(long, default_value = "sim")]
    pub dialer: String,
    /// The SIP trunk's settings for `--dialer sip:HOST` (TOML, as `flowc run`'s)
    #[arg(long, value_name = "FILE")]
    pub trunk: Option<std::path::PathBuf>,
    /// The folder `record` writes its WAV files to (`--dialer sip:`)
    #[arg(long, value_name = "DIR")]
    pub recordings: Option<std::path::PathBuf>,
    /// This worker's name in the database (default: host and process id)
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds a lease lasts unless renewed; the worker renews every third of it
    #[arg(long, default_value_t = 30)]
    pub lease: u32,
    /// Exit once no running campaign has a contact left to lease (otherwise
    /// wait for new campaigns)
    #[arg(long)]
    pub until_done: bool,
    /// Seed of `--dialer sim`
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How national numbers in the script are read (`--dialer script:`)
    #[arg(long)]
    pub region: Option<String>,
    /// How long the bridge (`--dialer exec:`) may take to answer an
    /// operation, beyond the operation's own timeout (a dial's ring timeout)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::run::parse_grace)]
    pub bridge_deadline: Duration,
    /// E-mail through SMTP (SMS go through `--dialer exec:`)
    #[command(flatten)]
    pub mail: super::run::Mail,
}

pub fn run(args: Args) -> ExitCode {
    if !postgres::is_url(&args.db) {
        return usage(format!(
            "--db {}: workers share a PostgreSQL database (postgres://user@host/db)",
            args.db
        ));
    }
    let region = args
        .region
        .as_deref()
        .and_then(crate::calendar::phone::region);
    match args.dialer.split_once(':') {
        None if args.dialer == "sim" => {
            let dialer = SimDialer {
                model: crate::dialer::Model::default_model(),
                seed: args.seed,
            };
            work(&args, |_, _| Ok(dialer), None, HashSet::new())
        }
        Some(("script", file)) => match std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the script {file}: {e}"))
            .and_then(|t| ScriptDialer::parse(&t, region).map_err(|e| format!("{file}:{e}")))
        {
            Ok(dialer) => work(&args, |_, _| Ok(dialer), None, HashSet::new()),
            Err(e) => usage(e),
        },
        Some(("exec", command)) => work(
            &args,
            bridge(command, args.bridge_deadline),
            None,
            HashSet::new(),
        ),
        Some(("sip", target)) => match read_trunk(args.trunk.as_deref()) {
            Ok(trunk) => work(
                &args,
                sip(target, trunk, args.recordings.clone()),
                None,
                HashSet::new(),
            ),
            Err(e) => usage(e),
        },
        _ => usage(format!(
            "`--dialer {}` is not an adapter: write `sim`, `script:FILE`, `exec:PROGRAM` or `sip:HOST[:PORT]`",
            args.dialer
        )),
    }
}

/// The trunk file of `--trunk` (none: the defaults).
pub fn read_trunk(file: Option<&std::path::Path>) -> Result<Trunk, String> {
    match file {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| Trunk::parse(&t))
            .map_err(|e| format!("--trunk {}: {e}", file.display())),
        None => Ok(Trunk::default()),
    }
}

/// Starts the SIP dialer of `--dialer sip:TARGET` in the worker's runtime;
/// each campaign's audio comes with the campaign.
pub fn sip(
    target: &str,
    trunk: Trunk,
    recordings: Option<std::path::PathBuf>,
) -> impl FnOnce(Failure, &tokio::runtime::Runtime) -> Result<SipDialer, String> + '_ {
    move |_, runtime| {
        runtime.block_on(SipDialer::start(
            target,
            trunk,
            Prompts::none(recordings.as_deref()),
        ))
    }
}

/// Makes the bridge of `--dialer exec:COMMAND` in the worker's runtime.
pub fn bridge(
    command: &str,
    deadline: Duration,
) -> impl FnOnce(Failure, &tokio::runtime::Runtime) -> Result<Bridge, String> + '_ {
    move |failure, runtime| {
        let _entered = runtime.enter();
        Bridge::start(command, deadline, move |why| {
            failure.fail(format!("the bridge failed ({why})"))
        })
    }
}

/// Told when the dialer fails for good (a bridge that exited): the
/// worker's engine pauses, the calls under way end as the dialer left
/// them, the worker gives its parts back and exits with the reason, and
/// the other workers take its contacts over.
#[derive(Clone)]
pub struct Failure {
    pause: tokio::sync::watch::Sender<bool>,
    why: Arc<Mutex<Option<String>>>,
}

impl Failure {
    fn fail(&self, why: String) {
        let mut slot = self.why.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(why);
        let _ = self.pause.send(true);
    }

    /// Lifts the pause for the next lease, unless the dialer failed (under
    /// the same lock as `fail`: a failure never goes unheeded).
    fn resume(&self) {
        let slot = self.why.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let _ = self.pause.send(false);
        }
    }

    fn reason(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the heartbeat thread shares with the worker.
struct Shared {
    /// The campaign being worked on (0: none).
    campaign: AtomicI64,
    /// Its flow's concurrency (0: none).
    limit: AtomicU32,
    /// Calls under way, as the engine last said.
    in_flight: AtomicU32,
    /// The lines last given to the engine.
    given: AtomicU32,
    /// The worker could not renew its leases in time: it must stop dialling.
    lost: AtomicBool,
    /// The worker is leaving: the heartbeat ends.
    leaving: AtomicBool,
    /// Where the heartbeat tells the engine of this lease how often the
    /// campaign's other contacts entered the step of `pause campaign when`.
    reached: Mutex<Option<ReachedFeed>>,
}

/// The count of `pause campaign when` elsewhere, for one lease's engine.
struct ReachedFeed {
    /// Which lease (counted from 1): a figure read before the lease is
    /// dropped, since it may count the leased contacts a second time.
    lease: u64,
    /// Its campaign: the heartbeat's own idea of the campaign may be a
    /// moment old when the worker turns to another.
    campaign: i64,
    times: tokio::sync::watch::Sender<u32>,
}

/// Works on the running campaigns until there is nothing left (with
/// `--until-done`, or `only`'s campaign once it ended) or a signal comes.
/// `do_not_call`: numbers never to dial beside each campaign's own list
/// (which `flowc run --dnc` wrote into the database when it began it).
pub fn work<D: Dialer + super::run::Adapter>(
    args: &Args,
    make: impl FnOnce(Failure, &tokio::runtime::Runtime) -> Result<D, String>,
    only: Option<&str>,
    do_not_call: HashSet<String>,
) -> ExitCode {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", crate::store::host_name(), std::process::id()));
    let mut store = match PgStore::open(&args.db) {
        Ok(s) => s,
        Err(e) => return usage(format!("{}: {e}", postgres::redact(&args.db))),
    };
    let shared = Arc::new(Shared {
        campaign: AtomicI64::new(0),
        limit: AtomicU32::new(0),
        in_flight: AtomicU32::new(0),
        given: AtomicU32::new(0),
        lost: AtomicBool::new(false),
        leaving: AtomicBool::new(false),
        reached: Mutex::new(None),
    });
    let mut leases: u64 = 0;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts");
    let (pause, paused) = tokio::sync::watch::channel(false);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let failure = Failure {
        pause: pause.clone(),
        why: Arc::default(),
    };
    let dialer = match make(failure.clone(), &runtime) {
        Ok(d) => d,
        Err(e) => return usage(e),
    };
    let dialer = &dialer;
    // The outbox: the campaigns' SMS (through the bridge) and e-mails
    // (`--smtp`), sent beside the dialling, in the same runtime.
    let carriers = match super::run::Couriers::new(&args.mail, dialer.bridge()) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    let couriers = carriers.all();
    let outbox = if couriers.is_empty() {
        None
    } else {
        match runtime.block_on(PgOutbox::connect(&args.db, &name, only)) {
            Ok((store, interrupted)) => {
                if interrupted > 0 {
                    eprintln!(
                        "{interrupted} message(s) were being handed over by a worker that stopped: \
                         they are `unknown` and are not sent again"
                    );
                }
                Some(Outbox::over(store, couriers, &WallClock, interrupted))
            }
            Err(e) => return usage(format!("{}: {e}", postgres::redact(&args.db))),
        }
    };
    let (outbox_done, outbox_done_rx) = tokio::sync::watch::channel(false);
    let (outbox_stop, outbox_stop_rx) = tokio::sync::watch::channel(false);
    let (outbox_over, mut outbox_over_rx) = tokio::sync::watch::channel(false);
    let delivered: RefCell<Option<Result<Delivered, StoreError>>> = RefCell::new(None);
    // Driven by every `beside` below: it waits where it is between them.
    let outbox = async {
        if let Some(mut outbox) = outbox {
            let r = outbox.run(outbox_done_rx, outbox_stop_rx).await;
            *delivered.borrow_mut() = Some(r.map(|()| outbox.delivered));
        }
        let _ = outbox_over.send(true);
        std::future::pending::<Infallible>().await
    };
    let mut outbox = std::pin::pin!(outbox);
    let (lines, lines_rx) = tokio::sync::watch::channel(0usize);
    let heartbeat = {
        let (url, name, shared) = (args.db.clone(), name.clone(), shared.clone());
        let (pause, stop, lines) = (pause.clone(), stop.clone(), lines.clone());
        let lease = args.lease;
        std::thread::spawn(move || beat(&url, &name, lease, &shared, &pause, &stop, &lines))
    };
    let result = (|| -> Result<(), StoreError> {
        // Said alive before the first lease, so that shares count this
        // worker; leases a dead process of its name left are given back.
        store.renew(&name, args.lease)?;
        store.forget_leases(&name)?;
        // Each campaign's numbers never to dial, with how many the
        // database held when they were read.
        let mut lists: HashMap<i64, (u64, HashSet<String>)> = HashMap::new();
        let mut said_paused = false;
        // Campaigns this worker's dialer cannot run, with the program it
        // could not (said once each; a changed program is tried again).
        let mut left_to_others: HashMap<i64, Arc<crate::ir::Program>> = HashMap::new();
        // The campaign (and program) the dialer was last made ready for.
        let mut readied: Option<(i64, Arc<crate::ir::Program>)> = None;
        loop {
            if failure.reason().is_some() || signals::received() {
                return Ok(());
            }
            let mut leased_any = false;
            let mut unfinished = false;
            for campaign in store.running()? {
                if only.is_some_and(|n| n != campaign.name) {
                    continue;
                }
                store.join(campaign.id);
                if left_to_others
                    .get(&campaign.id)
                    .is_some_and(|p| Arc::ptr_eq(p, &campaign.program))
                {
                    continue;
                }
                let readied_already = readied
                    .as_ref()
                    .is_some_and(|(id, p)| *id == campaign.id && Arc::ptr_eq(p, &campaign.program));
                if campaign.simulation.is_none() && !readied_already {
                    let flow = campaign
                        .program
                        .flow
                        .as_ref()
                        .expect("a running campaign has a flow");
                    let ready = dialer.ready_for(flow, || {
                        store
                            .prompts()
                            .map_err(|e| format!("its audio cannot be read: {e}"))
                    });
                    if let Err(why) = ready {
                        if only.is_some() {
                            failure.fail(why);
                            return Ok(());
                        }
                        eprintln!(
                            "this worker leaves the campaign \"{}\" to the others: {why}",
                            campaign.name
                        );
                        left_to_others.insert(campaign.id, campaign.program.clone());
                        continue;
                    }
                    readied = Some((campaign.id, campaign.program.clone()));
                }
                let limit = campaign
                    .program
                    .flow
                    .as_ref()
                    .and_then(|f| f.concurrency)
                    .unwrap_or(0);
                // A simulation's parts each have their share of the lines;
                // a real run's lines are held in the database.
                let simulated = match &campaign.simulation {
                    Some(sim) => Some(SimDialer {
                        model: match &sim.model {
                            Some(text) => crate::dialer::Model::parse(text).map_err(|e| {
                                StoreError::Corrupt(format!("the simulation's model: {e}"))
                            })?,
                            None => crate::dialer::Model::default_model(),
                        },
                        seed: sim.seed,
                    }),
                    None => None,
                };
                shared.limit.store(
                    if simulated.is_some() { 0 } else { limit },
                    Ordering::SeqCst,
                );
                shared.campaign.store(campaign.id, Ordering::SeqCst);
                loop {
                    if signals::received()
                        || shared.lost.load(Ordering::SeqCst)
                        || failure.reason().is_some()
                    {
                        return Ok(());
                    }
                    // A simulation's part is simulated alone; a run's parts
                    // go four at a time, so that lines stay busy while some
                    // contacts wait for their retries.
                    let most = if campaign.simulation.is_some() { 1 } else { 4 };
                    let lease = store.lease(&name, most)?;
                    if lease.parts.is_empty() {
                        break;
                    }
                    leased_any = true;
                    // The campaign's do-not-call list (read again only when
                    // a resume added to it), and this process's own.
                    let listed = store.do_not_call_count()?;
                    if lists.get(&campaign.id).is_none_or(|(n, _)| *n != listed) {
                        let mut never = store.do_not_call()?;
                        never.extend(do_not_call.iter().cloned());
                        lists.insert(campaign.id, (listed, never));
                    }
                    let never = &lists[&campaign.id].1;
                    failure.resume();
                    let mut journal = Leased {
                        store: &mut store,
                        ids: &lease.ids,
                    };
                    let results = match (&simulated, &campaign.simulation) {
                        (Some(sim_dialer), Some(sim)) => {
                            let flow = shared_flow(&campaign, u64::from(sim.parts), true);
                            let clock = VirtualClock::new(campaign.started_at);
                            let engine = Engine::new(
                                &flow,
                                &lease.contacts,
                                sim_dialer,
                                &clock,
                                campaign.started_at,
                            )
                            .store_ids(&lease.ids)
                            .history(lease.history)
                            .do_not_call(never.clone())
                            .journal(&mut journal, Durability::Batched)
                            .pause_on(paused.clone())
                            .stop_on(stopped.clone());
                            beside(&runtime, engine.run(), outbox.as_mut())?
                        }
                        _ => {
                            let live = journal.store.live_workers()?.max(1);
                            let flow = shared_flow(&campaign, live, false);
                            // `pause campaign when` counts the whole campaign:
                            // the other parts' count now, then as the heartbeat reads it.
                            leases += 1;
                            let elsewhere = match flow.pause_when {
                                Some(_) => {
                                    let n = journal.store.reached_elsewhere(&name)?;
                                    let (times, rx) = tokio::sync::watch::channel(n);
                                    *shared.reached.lock().unwrap_or_else(|e| e.into_inner()) =
                                        Some(ReachedFeed {
                                            lease: leases,
                                            campaign: campaign.id,
                                            times,
                                        });
                                    Some(rx)
                                }
                                None => None,
                            };
                            if limit > 0 {
                                // The first lines now; the heartbeat adjusts them.
                                let given = shared.given.load(Ordering::SeqCst);
                                let n = journal.store.lines(&name, limit, 0, given)?;
                                shared.given.store(n, Ordering::SeqCst);
                                let _ = lines.send(n as usize);
                            }
                            let in_flight = shared.clone();
                            let engine = Engine::new(
                                &flow,
                                &lease.contacts,
                                dialer,
                                &WallClock,
                                campaign.started_at,
                            )
                            .store_ids(&lease.ids)
                            .history(lease.history)
                            .do_not_call(never.clone())
                            .journal(&mut journal, Durability::BeforeEachDial)
                            .pause_on(paused.clone())
                            .stop_on(stopped.clone())
                            .on_progress(move |p, _| {
                                in_flight
                                    .in_flight
                                    .store(p.in_progress as u32, Ordering::SeqCst)
                            });
                            let engine = if limit > 0 {
                                engine.lines_from(lines_rx.clone())
                            } else {
                                engine
                            };
                            let engine = match elsewhere {
                                Some(rx) => engine.reached_elsewhere(rx),
                                None => engine,
                            };
                            let results = beside(&runtime, engine.run(), outbox.as_mut());
                            *shared.reached.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            results?
                        }
                    };
                    // Run to its end, the engine ended every contact of the part.
                    let done = results.paused_at.is_none();
                    for part in &lease.parts {
                        journal.store.release(&name, *part, done)?;
                    }
                    journal.store.reached(results.finish)?;
                    if results.paused_at.is_some() {
                        if !results.paused_by_operator {
                            // `pause campaign when …`: the whole campaign pauses.
                            if journal.store.pause_or_resume(true)? == CampaignState::Running {
                                if let Some(p) = campaign.program.flow.as_ref().and_then(|f| {
                                    f.pause_when
                                        .map(|p| (f.steps[p.step].name.clone(), p.times))
                                }) {
                                    eprintln!(
                                        "the campaign \"{}\" paused: its contacts entered step `{}` {} times \
                                         (`pause campaign when`); a resume pauses it again unless a \
                                         changed flow raises the figure (`flowc run --migrate`)",
                                        campaign.name, p.0, p.1
                                    );
                                }
                            }
                        }
                        break;
                    }
                }
                shared.campaign.store(0, Ordering::SeqCst);
                shared.given.store(0, Ordering::SeqCst);
                store.drop_lines(&name)?;
                if !store.finish_if_done()? {
                    unfinished = true;
                }
            }
            // A paused campaign is not done: it is waited for (a resume
            // from `flowc campaign resume` or `flowc serve` goes on); nor
            // is one whose contacts are still going in. (Asked only when
            // nothing was leased: otherwise the worker goes on anyway.)
            let waiting_for: Vec<(String, bool)> = if leased_any {
                Vec::new()
            } else {
                store
                    .waiting()?
                    .into_iter()
                    .filter(|(name, _)| only.is_none_or(|n| n == name))
                    .collect()
            };
            let waiting = !waiting_for.is_empty();
            let paused = waiting_for.iter().any(|(_, paused)| *paused);
            if paused && !said_paused {
                eprintln!(
                    "{} paused: waiting for it to be resumed (`flowc campaign resume`, or the dashboard); \
                     Ctrl-C leaves it paused",
                    match only {
                        Some(n) => format!("the campaign \"{n}\" is"),
                        None => "a campaign is".to_string(),
                    }
                );
            }
            said_paused = paused;
            let unfinished = unfinished || waiting;
            let done = match only {
                Some(_) => !unfinished,
                None => args.until_done && !unfinished,
            };
            if done && !leased_any {
                return Ok(());
            }
            if !leased_any {
                // Leases held by others (or expiring), or no campaign yet:
                // look again soon.
                beside(
                    &runtime,
                    // Made inside the runtime, which its timer needs.
                    async { tokio::time::sleep(Duration::from_millis(200)).await },
                    outbox.as_mut(),
                );
            }
        }
    })();
    // Nothing more to dial: the messages left are sent (their retries
    // waited for); stopped, the outbox ends after the message in hand.
    let finished = result.is_ok()
        && failure.reason().is_none()
        && !shared.lost.load(Ordering::SeqCst)
        && !signals::received();
    let _ = if finished {
        outbox_done.send(true)
    } else {
        outbox_stop.send(true)
    };
    beside(
        &runtime,
        async {
            loop {
                if signals::received() {
                    let _ = outbox_stop.send(true);
                }
                tokio::select! {
                    _ = outbox_over_rx.wait_for(|over| *over) => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        },
        outbox.as_mut(),
    );
    if let Some(delivered) = delivered.borrow_mut().take() {
        super::run::say_delivered(delivered, &postgres::redact(&args.db));
    }
    // A bridge is asked to finish (its input closed, two seconds to exit).
    beside(&runtime, dialer.close(), outbox.as_mut());
    shared.leaving.store(true, Ordering::SeqCst);
    let _ = heartbeat.join();
    if let Err(e) = store.forget_leases(&name) {
        eprintln!(
            "warning: the leases could not be given back ({e}); they expire in {} s",
            args.lease
        );
    }
    match result {
        Ok(()) if failure.reason().is_some() => {
            // The bridge's own account, with its last words, when it has one.
            let why = dialer.failure().or(failure.reason()).unwrap_or_default();
            eprintln!(
                "error: {why}\nthis worker stopped dialling; its contacts go to the other workers"
            );
            ExitCode::from(1)
        }
        Ok(()) if shared.lost.load(Ordering::SeqCst) => {
            eprintln!(
                "error: the database could not be reached in time to renew the leases: \
                 this worker stopped dialling; its contacts go to the other workers"
            );
            ExitCode::from(1)
        }
        Ok(()) if signals::received() => ExitCode::from(signals::exit_status()),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(format!("{}: {e}", postgres::redact(&args.db))),
    }
}

/// Runs `main` on the worker's runtime while driving the outbox beside
/// it; the outbox (which never ends) waits where it is when `main` is done.
fn beside<T>(
    runtime: &tokio::runtime::Runtime,
    main: impl Future<Output = T>,
    outbox: Pin<&mut impl Future<Output = Infallible>>,
) -> T {
    runtime.block_on(async move {
        tokio::select! {
            biased;
            done = main => done,
            never = outbox => match never {},
        }
    })
}

/// The campaign's flow with this worker's share of its rate among `ways`
/// (and, with `lines`, of its concurrency: a simulation's part).
fn shared_flow(campaign: &Running, ways: u64, lines: bool) -> crate::ir::Flow {
    let mut flow = campaign
        .program
        .flow
        .clone()
        .expect("a running campaign has a flow");
    let share = |n: u32| (n / ways as u32).max(1);
    if lines {
        flow.concurrency = flow.concurrency.map(share);
    }
    if let Some(rate) = flow.rate.as_mut() {
        rate.count = share(rate.count);
    }
    flow
}

/// The heartbeat: renews the leases every third of their length; twice a
/// second reads the campaign's state (a pause or a cancel pauses the
/// engine) and adjusts the worker's lines. A worker that cannot renew for
/// half a lease stops dialling.
fn beat(
    url: &str,
    name: &str,
    lease: u32,
    shared: &Shared,
    pause: &tokio::sync::watch::Sender<bool>,
    stop: &tokio::sync::watch::Sender<bool>,
    lines: &tokio::sync::watch::Sender<usize>,
) {
    let mut store = PgStore::open(url).ok();
    let renew_every = Duration::from_millis(u64::from(lease) * 1000 / 3);
    let mut renewed = Instant::now();
    let mut last_try = Instant::now() - renew_every;
    let mut looked = Instant::now();
    while !shared.leaving.load(Ordering::SeqCst) {
        if signals::received() {
            let _ = pause.send(true);
        }
        if store.is_none() {
            store = PgStore::open(url).ok();
        }
        if let Some(s) = store.as_mut() {
            if last_try.elapsed() >= renew_every {
                last_try = Instant::now();
                match s.renew(name, lease) {
                    Ok(_) => renewed = Instant::now(),
                    Err(_) => store = None,
                }
            }
        }
        let campaign = shared.campaign.load(Ordering::SeqCst);
        if let (Some(s), true) = (
            store.as_mut(),
            campaign != 0 && looked.elapsed() >= Duration::from_secs(1),
        ) {
            looked = Instant::now();
            s.join(campaign);
            match s.state() {
                Ok(CampaignState::Running) => {}
                Ok(_) => {
                    let _ = pause.send(true);
                }
                Err(_) => store = None,
            }
            // The count of `pause campaign when` in the parts this worker
            // does not hold, for the lease it was read for.
            let feed = shared
                .reached
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|f| (f.lease, f.campaign));
            if let (Some(s), Some((lease, of))) = (store.as_mut(), feed) {
                s.join(of);
                match s.reached_elsewhere(name) {
                    Ok(n) => {
                        if let Some(f) = shared
                            .reached
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_ref()
                            .filter(|f| f.lease == lease)
                        {
                            f.times.send_if_modified(|t| std::mem::replace(t, n) != n);
                        }
                    }
                    Err(_) => store = None,
                }
                if let Some(s) = store.as_mut() {
                    s.join(campaign);
                }
            }
            let limit = shared.limit.load(Ordering::SeqCst);
            if let (Some(s), true) = (store.as_mut(), limit > 0) {
                let holding = shared.in_flight.load(Ordering::SeqCst);
                let given = shared.given.load(Ordering::SeqCst);
                match s.lines(name, limit, holding, given) {
                    Ok(n) => {
                        // Only while the campaign is still this one.
                        if shared.campaign.load(Ordering::SeqCst) == campaign {
                            shared.given.store(n, Ordering::SeqCst);
                            lines.send_if_modified(|l| {
                                std::mem::replace(l, n as usize) != n as usize
                            });
                        }
                    }
                    Err(_) => store = None,
                }
            }
        }
        if renewed.elapsed() > Duration::from_millis(u64::from(lease) * 500) {
            shared.lost.store(true, Ordering::SeqCst);
            let _ = stop.send(true);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where `flowc run --db postgres://…` leaves off: its campaign, begun.
pub fn args_for_run(
    db: &str,
    name: Option<String>,
    dialer: &str,
    sip: (Option<std::path::PathBuf>, Option<std::path::PathBuf>),
    seed: u64,
    region: Option<String>,
    mail: super::run::Mail,
) -> Args {
    Args {
        db: db.to_string(),
        dialer: dialer.to_string(),
        trunk: sip.0,
        recordings: sip.1,
        name,
        lease: 30,
        until_done: false,
        seed,
        region,
        bridge_deadline: Duration::from_secs(30),
        mail,
    }
}
