//! The executions of a `--db` folder: every flowc store in it is one
//! (`ID.db`). Those the server started keep their flow, list and settings
//! beside the store (`ID.files/`), so that it can run, pause, resume and
//! cancel them, and pick up after a restart those the store says were
//! running. Runs kept there by `flowc run` are shown and reported, and
//! driven by their own process.
//!
//! Or the campaigns of a PostgreSQL database (`--db postgres://…`), which
//! `flowc run` begins and workers run: each is an execution named as its
//! campaign, shown, reported, and paused, resumed or cancelled through its
//! state in the database, which every worker reads within a second.
//!
//! The PostgreSQL client blocks: every read here runs off the server's
//! request threads (`spawn_blocking`), never in an async task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::CampaignState;
use crate::runtime::engine::{Lateness, Progress};
use crate::runtime::journal::Durability;
use crate::store::postgres::PgStore;
use crate::store::{Overview, Reader, Store, StoreError};

/// How the server starts an execution's runs (the command line's `run`).
pub trait Runner: Send + Sync + 'static {
    /// Checks a new execution's files before it is accepted: the problem
    /// document (the checker's diagnostics, or the rejected rows) when not.
    fn validate(&self, files: &Path, settings: &Settings) -> Result<(), Refusal>;
    /// Runs the execution until it ends or pauses, resuming what the store
    /// holds; blocks the calling thread. `Err` says why it stopped.
    fn run(
        &self,
        store: &Path,
        files: &Path,
        settings: &Settings,
        control: Control,
    ) -> Result<(), String>;
}

/// Why a new execution is refused (422).
#[derive(Debug)]
pub struct Refusal {
    pub detail: String,
    /// The checker's JSON (`check --format json`), or the list's report.
    pub errors: serde_json::Value,
}

/// Told the live counters of a run, and the instant they were counted.
pub type OnProgress = Box<dyn FnMut(&Progress, DateTime<Utc>) + Send>;

/// A run driven from elsewhere than its terminal: the driver holds its
/// pause and stop signals and is given its progress.
pub struct Control {
    pub pause: tokio::sync::watch::Sender<bool>,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub progress: OnProgress,
}

/// An execution's settings, written beside its store when it is created.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The list: a file of `ID.files/`, or a path under `--data-dir`.
    pub contacts: PathBuf,
    pub dialer: String,
    pub seed: u64,
    pub region: Option<String>,
    pub max_rejects: Option<String>,
    /// The campaign's first instant, the flow's local time (`--from`).
    pub from: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The name of the key that created it.
    pub created_by: String,
}

/// The status an execution shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Running, its first instant still ahead.
    Scheduled,
    Running,
    Paused,
    Completed,
    /// It stopped before its end and nobody runs it: a crash, or an error.
    Stopped,
    Cancelled,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Stopped => "stopped",
            Status::Cancelled => "cancelled",
        }
    }
    pub const ALL: [Status; 6] = [
        Status::Scheduled,
        Status::Running,
        Status::Paused,
        Status::Completed,
        Status::Stopped,
        Status::Cancelled,
    ];
}

/// A run of the server's under way, and what waits for its end.
#[derive(Default)]
struct Live {
    running: bool,
    pause: Option<tokio::sync::watch::Sender<bool>>,
    progress: Option<(Progress, DateTime<Utc>)>,
    /// Pause asked: no new dial; calls under way finish.
    pausing: bool,
    cancel_after: bool,
    resume_after: bool,
    /// Why the last run stopped before its end.
    error: Option<String>,
    /// The dial lateness of the runs that ended, since the server started.
    past_lateness: Lateness,
}

/// Where an execution's campaign is kept.
#[derive(Clone)]
pub enum Place {
    /// A store of the folder (`ID.db`).
    File(PathBuf),
    /// The campaign of this name in the database.
    Postgres(Arc<Pool>, String),
}

impl Place {
    /// Reads the campaign (a moment's connection to its file; a kept
    /// connection to the database).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Place::File(path) => f(&mut Store::open_read_only(path)?),
            Place::Postgres(pool, name) => pool.with(|store| {
                store.select(name)?;
                f(store)
            }),
        }
    }
}

/// Connections to one PostgreSQL database, kept between requests.
pub struct Pool {
    url: String,
    idle: Mutex<Vec<PgStore>>,
}

impl Pool {
    /// The database of `url` (without a campaign's name), reached once to
    /// bring its schema to this version: a later one is refused here.
    pub fn open(url: &str) -> Result<Arc<Pool>, StoreError> {
        let url = url.split_once('#').map_or(url, |(u, _)| u).to_string();
        let first = PgStore::open(&url)?;
        Ok(Arc::new(Pool {
            url,
            idle: Mutex::new(vec![first]),
        }))
    }

    /// The database's URL, without a campaign's name.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` on a connection of the pool (a new one when all are taken),
    /// given back after unless it was lost.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut PgStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let taken = self.idle.lock().expect("not poisoned").pop();
        let mut store = match taken {
            Some(s) => s,
            None => PgStore::open(&self.url)?,
        };
        let result = f(&mut store);
        if !store.is_closed() {
            let mut idle = self.idle.lock().expect("not poisoned");
            if idle.len() < 4 {
                idle.push(store);
            }
        }
        result
    }
}

pub struct Execution {
    pub id: String,
    pub place: Place,
    /// `ID.files/` and its settings: an execution the server drives.
    pub files: Option<(PathBuf, Settings)>,
    live: Mutex<Live>,
    /// The store's overview, read at most once a second.
    cached: Mutex<Option<(Instant, Overview)>>,
    /// A request is reading the store's overview.
    reading: std::sync::atomic::AtomicBool,
    /// Attempts by outcome, for `/metrics`.
    outcomes: Mutex<Option<OutcomeCount>>,
}

/// Attempts by outcome as read at an instant, in a status.
type OutcomeCount = (Instant, Status, Vec<(String, u64)>);

/// An execution as the API shows it at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub id: String,
    pub flow: String,
    pub status: Status,
    /// total, completed, failed, skipped, pending, in progress.
    pub counters: [u64; 6],
    pub calls: u64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub dialer: Option<String>,
    pub error: Option<String>,
    /// Driven by this server (control routes apply).
    pub driven: bool,
    /// How late this server's dials of the execution started.
    pub lateness: Lateness,
}

/// What a control route may answer besides success.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    /// 409, with why.
    Conflict(String),
}

impl Execution {
    fn new(id: String, place: Place, files: Option<(PathBuf, Settings)>) -> Execution {
        Execution {
            id,
            place,
            files,
            live: Mutex::new(Live::default()),
            cached: Mutex::new(None),
            reading: std::sync::atomic::AtomicBool::new(false),
            outcomes: Mutex::new(None),
        }
    }

    /// Attempts by outcome, counted in the store (every attempt row): at
    /// most every 5 s while the execution goes on, once when it has ended
    /// (again only if it goes on again), so scraping `/metrics` does not
    /// scan every ended campaign's attempts each time.
    pub fn outcomes(&self, status: Status) -> Vec<(String, u64)> {
        let ended = matches!(
            status,
            Status::Completed | Status::Stopped | Status::Cancelled
        );
        let mut cached = self.outcomes.lock().expect("not poisoned");
        if let Some((at, read_in, rows)) = cached.as_ref() {
            let fresh = ended || at.elapsed() < std::time::Duration::from_secs(5);
            if *read_in == status && fresh {
                return rows.clone();
            }
        }
        match self.place.read(|r| r.outcomes()) {
            Ok(rows) => {
                *cached = Some((Instant::now(), status, rows.clone()));
                rows
            }
            // Unreadable for now (being made, say): the last count, if any.
            Err(_) => cached.as_ref().map(|c| c.2.clone()).unwrap_or_default(),
        }
    }

    /// The store's overview: read again when `fresh` is asked, or when the
    /// copy is older than a second and `live` (a run of ours) does not
    /// give the counters. Requests never wait on a read another request
    /// has under way: they get the copy in hand.
    fn overview(&self, fresh: bool, live: bool) -> Result<Overview, String> {
        use std::sync::atomic::Ordering;
        if !fresh {
            let cached = self.cached.lock().expect("not poisoned");
            if let Some((at, o)) = cached.as_ref() {
                // A campaign that ended changes only if `flowc run` takes it up again.
                let ended = matches!(o.state, CampaignState::Finished | CampaignState::Cancelled)
                    && !o.run_by_someone;
                let age = if ended { 30_000 } else { 1000 };
                if live || at.elapsed().as_millis() < age || self.reading.load(Ordering::Acquire) {
                    return Ok(o.clone());
                }
            }
        }
        self.reading.store(true, Ordering::Release);
        let read = self.place.read(|r| r.overview()).map_err(|e| e.to_string());
        self.reading.store(false, Ordering::Release);
        let o = read?;
        *self.cached.lock().expect("not poisoned") = Some((Instant::now(), o.clone()));
        Ok(o)
    }

    /// The execution now: a run under way gives its live counters, the
    /// store the rest.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        let (running, pausing, cancelling, progress, error, mut lateness) = {
            let l = self.live.lock().expect("not poisoned");
            (
                l.running,
                l.pausing,
                l.cancel_after,
                l.progress,
                l.error.clone(),
                l.past_lateness,
            )
        };
        if let Some((p, _)) = progress.filter(|_| running) {
            lateness.add(&p.lateness);
        }
        let o = self.overview(false, running && progress.is_some())?;
        let now = Utc::now();
        let status = match o.state {
            CampaignState::Cancelled => Status::Cancelled,
            _ if cancelling => Status::Cancelled,
            // In a database, the campaign's state is the truth for every worker.
            CampaignState::Paused if matches!(self.place, Place::Postgres(..)) => Status::Paused,
            CampaignState::Finished if !running => Status::Completed,
            _ if running && pausing => Status::Paused,
            _ if running && o.started_at > now => Status::Scheduled,
            _ if running => Status::Running,
            CampaignState::Paused => Status::Paused,
            _ if o.run_by_someone && o.started_at > now => Status::Scheduled,
            _ if o.run_by_someone => Status::Running,
            _ => Status::Stopped,
        };
        let (counters, calls, updated_at) = match progress.filter(|_| running) {
            Some((p, at)) => (
                [
                    p.total,
                    p.completed,
                    p.failed,
                    p.skipped,
                    p.pending,
                    p.in_progress,
                ],
                p.calls,
                at.max(o.updated_at),
            ),
            None => (o.counters, o.calls, o.updated_at),
        };
        Ok(Snapshot {
            id: self.id.clone(),
            flow: o.flow,
            status,
            counters,
            calls,
            started_at: o.started_at,
            updated_at,
            ended_at: matches!(status, Status::Completed | Status::Cancelled)
                .then_some(o.updated_at),
            dialer: self.files.as_ref().map(|(_, s)| s.dialer.clone()),
            error: error.filter(|_| status == Status::Stopped),
            driven: self.files.is_some() || matches!(self.place, Place::Postgres(..)),
            lateness,
        })
    }
}

/// The executions of one folder, or of one database.
pub struct Registry {
    pub folder: PathBuf,
    /// The database whose campaigns are the executions, instead of the
    /// folder's stores.
    pub postgres: Option<Arc<Pool>>,
    runner: Arc<dyn Runner>,
    executions: Mutex<BTreeMap<String, Arc<Execution>>>,
}

const FILES: &str = "files";
const SETTINGS: &str = "execution.json";

impl Registry {
    pub fn new(
        folder: PathBuf,
        postgres: Option<Arc<Pool>>,
        runner: Arc<dyn Runner>,
    ) -> Arc<Registry> {
        let r = Arc::new(Registry {
            folder,
            postgres,
            runner,
            executions: Mutex::new(BTreeMap::new()),
        });
        r.scan();
        r
    }

    /// Adds the stores that appeared in the folder (the campaigns that
    /// appeared in the database) since the last look.
    pub fn scan(&self) {
        if let Some(pool) = &self.postgres {
            let Ok(names) = pool.with(|s| s.campaign_names()) else {
                return;
            };
            let mut executions = self.executions.lock().expect("not poisoned");
            for name in names {
                if executions.contains_key(&name) {
                    continue;
                }
                // Those this server began keep their files in its folder
                // (looked for only under a name that stays in the folder).
                let settings = if is_plain(&name) {
                    self.settings_of(&name)
                } else {
                    None
                };
                let e = Execution::new(
                    name.clone(),
                    Place::Postgres(pool.clone(), name.clone()),
                    settings,
                );
                executions.insert(name, Arc::new(e));
            }
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.folder) else {
            return;
        };
        let mut executions = self.executions.lock().expect("not poisoned");
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".db"))
            else {
                continue;
            };
            if executions.contains_key(id) || path.ends_with(super::keys::FILE) {
                continue;
            }
            let e = Execution::new(
                id.to_string(),
                Place::File(path.clone()),
                self.settings_of(id),
            );
            // Only stores that hold a campaign are executions.
            if e.overview(true, false).is_ok() {
                executions.insert(id.to_string(), Arc::new(e));
            }
        }
    }

    /// The files and settings of an execution this server began.
    fn settings_of(&self, id: &str) -> Option<(PathBuf, Settings)> {
        let files = self.folder.join(format!("{id}.{FILES}"));
        let settings = std::fs::read_to_string(files.join(SETTINGS))
            .ok()
            .and_then(|t| serde_json::from_str::<Settings>(&t).ok())?;
        Some((files, settings))
    }

    pub fn get(&self, id: &str) -> Option<Arc<Execution>> {
        if let Some(e) = self.executions.lock().expect("not poisoned").get(id) {
            return Some(e.clone());
        }
        self.scan();
        self.executions
            .lock()
            .expect("not poisoned")
            .get(id)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Execution>> {
        self.scan();
        self.executions
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Runs under way.
    pub fn running(&self) -> usize {
        self.executions
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|e| e.live.lock().expect("not poisoned").running)
            .count()
    }

    /// A folder for a new execution's files, and its id: the instant of
    /// its creation and a few random letters.
    pub fn reserve(&self) -> Result<(String, PathBuf), String> {
        for _ in 0..16 {
            let mut raw = [0u8; 2];
            getrandom::getrandom(&mut raw).map_err(|e| e.to_string())?;
            let id = format!(
                "{}-{:02x}{:02x}",
                Utc::now().format("%Y%m%d-%H%M%S"),
                raw[0],
                raw[1]
            );
            let files = self.folder.join(format!("{id}.{FILES}"));
            let taken = match &self.postgres {
                Some(pool) => pool
                    .with(|s| s.campaign_names())
                    .map_err(|e| e.to_string())?
                    .contains(&id),
                None => self.folder.join(format!("{id}.db")).exists(),
            };
            if taken {
                continue;
            }
            match std::fs::create_dir(&files) {
                Ok(()) => return Ok((id, files)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("{}: {e}", files.display())),
            }
        }
        Err("no free execution id".into())
    }

    /// Creates the execution whose files are ready in `files`: checks them,
    /// writes the settings, makes its store, starts its run.
    pub fn create(
        self: &Arc<Self>,
        id: String,
        files: PathBuf,
        settings: Settings,
    ) -> Result<Arc<Execution>, Refusal> {
        if let Err(refusal) = self.runner.validate(&files, &settings) {
            let _ = std::fs::remove_dir_all(&files);
            return Err(refusal);
        }
        let written = serde_json::to_string_pretty(&settings)
            .map_err(|e| e.to_string())
            .and_then(|t| std::fs::write(files.join(SETTINGS), t).map_err(|e| e.to_string()));
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&files);
            return Err(Refusal {
                detail: format!("cannot keep the execution's settings: {e}"),
                errors: serde_json::Value::Null,
            });
        }
        let place = match &self.postgres {
            Some(pool) => Place::Postgres(pool.clone(), id.clone()),
            None => Place::File(self.folder.join(format!("{id}.db"))),
        };
        let e = Arc::new(Execution::new(id.clone(), place, Some((files, settings))));
        self.executions
            .lock()
            .expect("not poisoned")
            .insert(id, e.clone());
        self.launch(e.clone());
        // The run makes the store as it begins, then writes the contacts:
        // the execution is shown once its engine reports (every contact
        // counted) or, in a database, once every contact is in; or once
        // its run has ended, when it could not start.
        let database = self.postgres.is_some();
        loop {
            let (running, reported) = {
                let l = e.live.lock().expect("not poisoned");
                (l.running, l.progress.is_some())
            };
            let shown = if database {
                matches!(e.overview(true, false), Ok(o) if o.ready)
            } else {
                reported && e.overview(true, false).is_ok()
            };
            if !running || shown {
                break;
            }
            // (A database's counters are a query: asked less often.)
            std::thread::sleep(std::time::Duration::from_millis(if database {
                100
            } else {
                10
            }));
        }
        Ok(e)
    }

    /// Starts a run of `e` on a thread of its own, with its own runtime
    /// (the engine's loop is single-threaded, as in `flowc run`).
    fn launch(self: &Arc<Self>, e: Arc<Execution>) {
        let Some((files, settings)) = e.files.clone() else {
            return;
        };
        // Where `flowc run` keeps it: the file, or the campaign's URL.
        let store = match &e.place {
            Place::File(path) => path.clone(),
            Place::Postgres(pool, name) => PathBuf::from(format!("{}#{name}", pool.url())),
        };
        let (pause, _) = tokio::sync::watch::channel(false);
        let (stop, _) = tokio::sync::watch::channel(false);
        {
            let mut l = e.live.lock().expect("not poisoned");
            *l = Live {
                running: true,
                pause: Some(pause.clone()),
                past_lateness: l.past_lateness,
                ..Live::default()
            };
        }
        let registry = self.clone();
        std::thread::Builder::new()
            .name(format!("execution {}", e.id))
            .spawn(move || {
                let span = tracing::info_span!("execution", id = %e.id);
                let _entered = span.enter();
                tracing::info!(dialer = %settings.dialer, "run starts");
                let live = e.clone();
                let control = Control {
                    pause,
                    stop,
                    progress: Box::new(move |p, at| {
                        live.live.lock().expect("not poisoned").progress = Some((*p, at));
                    }),
                };
                let result = registry.runner.run(&store, &files, &settings, control);
                let (cancel, resume) = {
                    let mut l = e.live.lock().expect("not poisoned");
                    l.running = false;
                    l.pause = None;
                    if let Some((p, _)) = l.progress.take() {
                        l.past_lateness.add(&p.lateness);
                    }
                    l.error = result.as_ref().err().cloned();
                    (l.cancel_after, l.resume_after)
                };
                match &result {
                    Ok(()) => tracing::info!("run ends"),
                    Err(why) => tracing::warn!(%why, "run stopped"),
                }
                if cancel {
                    registry.cancel_now(&e);
                } else if resume && result.is_ok() {
                    registry.launch(e.clone());
                }
                let _ = e.overview(true, false);
            })
            .expect("a thread starts");
    }

    fn cancel_now(&self, e: &Execution) {
        let cancelled = match &e.place {
            Place::File(path) => {
                Store::open(path, Durability::BeforeEachDial).and_then(|mut s| s.cancel())
            }
            Place::Postgres(pool, name) => pool.with(|s| {
                s.select(name)?;
                s.cancel()
            }),
        };
        let mut l = e.live.lock().expect("not poisoned");
        l.cancel_after = false;
        match cancelled {
            Ok(n) => tracing::info!(execution = %e.id, contacts = n, "cancelled"),
            Err(why) => {
                tracing::error!(execution = %e.id, %why, "cannot cancel");
                l.error = Some(why.to_string());
            }
        }
        drop(l);
        let _ = e.overview(true, false);
    }

    /// Picks up, after a restart, the executions whose store says they
    /// were running.
    pub fn resume_interrupted(self: &Arc<Self>) -> usize {
        let mut n = 0;
        for e in self.all() {
            // In a database, the server's worker on it had the execution's
            // name, and another worker on it is no reason to stay away.
            let database = matches!(e.place, Place::Postgres(..));
            if e.files.is_some()
                && matches!(e.overview(true, false), Ok(o) if o.state == CampaignState::Running && (database || !o.run_by_someone))
            {
                tracing::info!(execution = %e.id, "picking up the run the store says was running");
                self.launch(e);
                n += 1;
            }
        }
        n
    }

    fn driven(&self, id: &str) -> Result<(Arc<Execution>, Snapshot), Refused> {
        let e = self.get(id).ok_or(Refused::NotFound)?;
        let s = e.snapshot().map_err(Refused::Conflict)?;
        if !s.driven {
            return Err(Refused::Conflict(format!(
                "execution {id} is run by `flowc run`, not by this server: pause it where it runs (Ctrl-C)"
            )));
        }
        Ok((e, s))
    }

    /// Pause: no new dial from now on; calls under way finish.
    pub fn pause(self: &Arc<Self>, id: &str) -> Result<Snapshot, Refused> {
        let (e, s) = self.driven(id)?;
        if let Place::Postgres(pool, name) = &e.place {
            return in_database(&e, pool, name, true);
        }
        let mut l = e.live.lock().expect("not poisoned");
        match (s.status, &l.pause) {
            (Status::Running | Status::Scheduled, Some(pause)) => {
                let _ = pause.send(true);
                l.pausing = true;
                l.resume_after = false;
            }
            (status, _) => {
                return Err(Refused::Conflict(format!(
                    "execution {id} is {}: only a running or scheduled execution pauses",
                    status.name()
                )))
            }
        }
        drop(l);
        e.snapshot().map_err(Refused::Conflict)
    }

    pub fn resume(self: &Arc<Self>, id: &str) -> Result<Snapshot, Refused> {
        let (e, s) = self.driven(id)?;
        if let Place::Postgres(pool, name) = &e.place {
            // Stopped (running, and nobody on it): this server goes on with
            // what it began; otherwise the state changes in the database,
            // and every worker goes on.
            let ours = e.files.is_some();
            if !(ours && s.status == Status::Stopped) {
                in_database(&e, pool, name, false)?;
            }
            let running = e.live.lock().expect("not poisoned").running;
            if ours && !running {
                self.launch(e.clone());
            }
            return e.snapshot().map_err(Refused::Conflict);
        }
        if !matches!(s.status, Status::Paused | Status::Stopped) {
            return Err(Refused::Conflict(format!(
                "execution {id} is {}: only a paused or stopped execution resumes",
                s.status.name()
            )));
        }
        let mut l = e.live.lock().expect("not poisoned");
        if l.running {
            // Its calls are still finishing: it starts again once they have.
            l.resume_after = true;
            l.pausing = false;
        } else {
            drop(l);
            self.launch(e.clone());
        }
        e.snapshot().map_err(Refused::Conflict)
    }

    pub fn cancel(self: &Arc<Self>, id: &str) -> Result<Snapshot, Refused> {
        let (e, s) = self.driven(id)?;
        if matches!(s.status, Status::Completed | Status::Cancelled) {
            return Err(Refused::Conflict(format!(
                "execution {id} is {}: there is nothing left to cancel",
                s.status.name()
            )));
        }
        if matches!(e.place, Place::Postgres(..)) {
            self.cancel_now(&e);
            let failed = e.live.lock().expect("not poisoned").error.take();
            return match failed {
                Some(why) => Err(Refused::Conflict(why)),
                None => e.snapshot().map_err(Refused::Conflict),
            };
        }
        let mut l = e.live.lock().expect("not poisoned");
        if l.running {
            l.cancel_after = true;
            l.resume_after = false;
            l.pausing = true;
            if let Some(pause) = &l.pause {
                let _ = pause.send(true);
            }
            drop(l);
        } else {
            l.cancel_after = true;
            drop(l);
            self.cancel_now(&e);
        }
        e.snapshot().map_err(Refused::Conflict)
    }
}

/// Pauses or resumes a campaign of the database: refused when it was not
/// running (to pause) or not paused (to resume).
fn in_database(e: &Execution, pool: &Pool, name: &str, pause: bool) -> Result<Snapshot, Refused> {
    let was = pool
        .with(|s| {
            s.select(name)?;
            s.pause_or_resume(pause)
        })
        .map_err(|why| Refused::Conflict(why.to_string()))?;
    let (wanted, action) = if pause {
        (CampaignState::Running, "pause")
    } else {
        (CampaignState::Paused, "resume")
    };
    if was != wanted {
        return Err(Refused::Conflict(format!(
            "execution {} is {}: only a {} execution {action}s",
            e.id,
            was.name(),
            wanted.name()
        )));
    }
    e.overview(true, false).map_err(Refused::Conflict)?;
    e.snapshot().map_err(Refused::Conflict)
}

/// A campaign's name that names a folder beside the others, nothing else.
fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
