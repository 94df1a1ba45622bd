//! `flowc serve`: campaigns operated over HTTP. The `--db` folder holds
//! one store per execution and the server's own database (keys, audit);
//! or `--db` is a PostgreSQL database whose campaigns are the executions,
//! and the server's own database is in the `--keys` folder.
//! `executions` runs and controls them, `api` is the routes, and the
//! dashboard is one page served by the server itself.

pub mod api;
pub mod executions;
pub mod keys;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use executions::{Control, Refusal, Runner, Settings};

/// How `flowc serve` was started.
pub struct Options {
    /// The folder of the executions and of the server's own database.
    pub folder: PathBuf,
    /// The database whose campaigns are the executions (then `folder`
    /// holds the server's own database only).
    pub postgres: Option<String>,
    pub listen: SocketAddr,
    pub data_dir: Option<PathBuf>,
    pub allowed_dialers: Vec<String>,
}

/// Serves until `stopping` says so, then waits for the runs under way to
/// end (their own signal watchers pause them: calls under way finish).
/// `ready` is told the address once the server listens.
pub async fn serve(
    options: Options,
    runner: Arc<dyn Runner>,
    stopping: impl Fn() -> bool + Send + Sync + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let keys = keys::Keys::open(&options.folder)?;
    if !keys.any()? {
        tracing::warn!(
            "no key exists yet: every route but /healthz answers 401; make one with `flowc keys create --db {} --name NAME`",
            options.folder.display()
        );
    }
    // The database is reached off the async threads (its client blocks).
    let folder = options.folder.clone();
    let database = options.postgres.clone();
    let (registry, picked) = tokio::task::spawn_blocking(move || {
        let pool = match database {
            Some(url) => Some(
                executions::Pool::open(&url)
                    .map_err(|e| format!("{}: {e}", crate::store::postgres::redact(&url)))?,
            ),
            None => None,
        };
        let registry = executions::Registry::new(folder, pool, runner);
        let picked = registry.resume_interrupted();
        Ok::<_, String>((registry, picked))
    })
    .await
    .map_err(|e| e.to_string())??;
    if picked > 0 {
        tracing::info!(
            executions = picked,
            "picked up the runs that were under way"
        );
    }
    let app = Arc::new(api::App {
        registry: registry.clone(),
        keys: Mutex::new(keys),
        data_dir: options.data_dir,
        allowed_dialers: options.allowed_dialers,
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%address, folder = %options.folder.display(), "serving");
    ready(address);
    let stopping = Arc::new(stopping);
    let s = stopping.clone();
    axum::serve(listener, api::router(app))
        .with_graceful_shutdown(async move {
            while !s() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tracing::info!("stopping: the runs under way pause, their calls finish");
        })
        .await
        .map_err(|e| e.to_string())?;
    while registry.running() > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
