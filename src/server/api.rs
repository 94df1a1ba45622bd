//! The routes of `flowc serve`, their JSON types and the OpenAPI document
//! generated from them.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::executions::{Refused, Registry, Settings, Snapshot, Status};
use super::keys::{Key, Keys};
use crate::report;
use crate::runtime::engine::{Lateness, LATENESS_BOUNDS_MS};
use crate::store::{Reader, StoreError};

/// What every handler shares.
pub struct App {
    pub registry: Arc<Registry>,
    pub keys: Mutex<Keys>,
    /// The folder whose files `contactsPath` and `script:` may name.
    pub data_dir: Option<PathBuf>,
    /// Adapters an execution may name besides `sim` and `script:`.
    pub allowed_dialers: Vec<String>,
}

type Shared = Arc<App>;

/// The largest request body: a contact list sent inline.
const BODY_LIMIT: usize = 256 << 20;

pub fn router(app: Shared) -> Router {
    let guarded = Router::new()
        .route("/program-executions", post(create).get(list))
        .route("/program-executions/{id}", get(one))
        .route("/program-executions/{id}/pause", post(pause))
        .route("/program-executions/{id}/resume", post(resume))
        .route("/program-executions/{id}/cancel", post(cancel))
        .route("/program-executions/{id}/calls", get(calls))
        .route("/program-executions/{id}/report", get(report_json))
        .route("/program-executions/{id}/report.csv", get(report_csv))
        .route("/program-executions/{id}/report.html", get(report_html))
        .route("/program-executions/{id}/events", get(events))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(app.clone(), authorise));
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .merge(guarded)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

// ---------------------------------------------------------------- types

/// An RFC 9457 problem: what went wrong, for people and programs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The checker's diagnostics or the list's rejected rows (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub errors: Option<serde_json::Value>,
}

impl Problem {
    fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(self)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

fn refused(id: &str, why: Refused) -> Problem {
    match why {
        Refused::NotFound => {
            Problem::new(StatusCode::NOT_FOUND, format!("there is no execution {id}"))
        }
        Refused::Conflict(why) => Problem::new(StatusCode::CONFLICT, why),
    }
}

/// An execution and its counters, which always add up to `totalContacts`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub id: String,
    /// The flow's name.
    pub flow: String,
    pub status: Status,
    pub total_contacts: u64,
    pub contacts_completed: u64,
    pub contacts_failed: u64,
    pub contacts_skipped: u64,
    pub contacts_pending: u64,
    pub contacts_in_progress: u64,
    /// Dials placed so far.
    pub calls_used: u64,
    /// Completed contacts per 100 contacts.
    pub connection_rate: f64,
    /// The adapter placing the calls; absent for runs of `flowc run`.
    pub dialer: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Why a stopped execution stopped.
    pub error: Option<String>,
}

impl From<Snapshot> for Execution {
    fn from(s: Snapshot) -> Execution {
        let [total, completed, failed, skipped, pending, in_progress] = s.counters;
        Execution {
            id: s.id,
            flow: s.flow,
            status: s.status,
            total_contacts: total,
            contacts_completed: completed,
            contacts_failed: failed,
            contacts_skipped: skipped,
            contacts_pending: pending,
            contacts_in_progress: in_progress,
            calls_used: s.calls,
            connection_rate: report::percent(completed, total),
            dialer: s.dialer,
            started_at: s.started_at,
            updated_at: s.updated_at,
            ended_at: s.ended_at,
            error: s.error,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPage {
    pub items: Vec<Execution>,
    pub page: u64,
    pub page_size: u64,
    /// Executions matching the filter, all pages.
    pub total: u64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContactsFormat {
    #[default]
    Csv,
    Jsonl,
}

/// A campaign to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewExecution {
    /// The flow's source text (a `.flow` file)…
    pub flow: Option<String>,
    /// …or the flow compiled (`flowc compile`'s JSON).
    #[schema(value_type = Option<Object>)]
    pub ir: Option<serde_json::Value>,
    /// The contact list itself: CSV with a header row, or JSON lines.
    pub contacts: Option<String>,
    #[serde(default)]
    pub contacts_format: ContactsFormat,
    /// Or a list the server reads, relative to its `--data-dir`.
    pub contacts_path: Option<String>,
    /// `sim` (default), `script:FILE` (under `--data-dir`), or an adapter
    /// the server allows (`--allow-dialer`).
    pub dialer: Option<String>,
    /// The seed of `sim`.
    pub seed: Option<u64>,
    /// How numbers without a country code are read (default: the flow's).
    pub region: Option<String>,
    /// The most rejected rows accepted: `20` or `5%` (default `5%`).
    pub max_rejects: Option<String>,
    /// The campaign's first instant, in the flow's zone: `2026-12-01 09:00`.
    pub from: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Only executions of this status.
    pub status: Option<Status>,
    /// From 1.
    pub page: Option<u64>,
    /// 50 unless asked; 500 at most.
    pub page_size: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct CallsQuery {
    /// The contact's number, E.164 (`+33612345678`).
    pub contact: Option<String>,
    /// Only attempts with this outcome (`unknown`: started, never ended).
    pub outcome: Option<String>,
    pub page: Option<u64>,
    pub page_size: Option<u64>,
}

/// One attempt of a contact, with the contact's path once it has ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// The number dialled, E.164.
    pub contact: String,
    pub attempt: u32,
    /// The flow step that dialled.
    pub step: String,
    pub started_at: DateTime<Utc>,
    /// The same instant on the contact's clock, with `zone`.
    pub local_time: String,
    pub zone: String,
    pub ended_at: Option<DateTime<Utc>>,
    /// `unknown` when the dial started and nothing recorded its end.
    pub outcome: String,
    pub sip_status: Option<u16>,
    pub sip_reason: Option<String>,
    /// What each gather heard (`null` where nothing was pressed).
    #[schema(value_type = Option<Object>)]
    pub keys: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub transfers: Option<serde_json::Value>,
    pub caller_id: Option<String>,
    /// How the contact ended (completed, failed, skipped); absent while it goes on.
    pub contact_state: Option<String>,
    pub contact_reason: Option<String>,
    /// The steps the contact visited, once it has ended.
    #[schema(value_type = Option<Vec<String>>)]
    pub path: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallPage {
    pub items: Vec<Call>,
    pub page: u64,
    pub page_size: u64,
    pub total: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: String,
    pub executions_running: u64,
}

// ---------------------------------------------------------------- keys

/// The key a request came with.
#[derive(Clone)]
struct Caller(Key);

async fn authorise(State(app): State<Shared>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(presented) = presented else {
        return unauthorised("this route needs a key: send `Authorization: Bearer KEY` (make one with `flowc keys create`)");
    };
    let found = app.keys.lock().expect("not poisoned").find(presented);
    match found {
        Ok(Some(key)) => {
            request.extensions_mut().insert(Caller(key));
            next.run(request).await
        }
        Ok(None) => unauthorised("this key is unknown or revoked"),
        Err(e) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the keys cannot be read: {e}"),
        )
        .into_response(),
    }
}

fn unauthorised(detail: &str) -> Response {
    let mut r = Problem::new(StatusCode::UNAUTHORIZED, detail).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// A control action: refused to a read-only key, written to the audit
/// with the status it got.
fn control(
    app: &App,
    caller: &Caller,
    action: &str,
    execution: Option<&str>,
    act: impl FnOnce() -> Response,
) -> Response {
    let response = if caller.0.read_only {
        Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "the key \"{}\" is read-only: {action} needs a key made without --read-only",
                caller.0.name
            ),
        )
        .into_response()
    } else {
        act()
    };
    app.keys.lock().expect("not poisoned").audit(
        &caller.0.name,
        action,
        execution,
        response.status().as_u16(),
    );
    tracing::info!(key = %caller.0.name, action, execution, status = response.status().as_u16(), "control");
    response
}

async fn log_request(request: Request, next: Next) -> Response {
    let span =
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path());
    let started = std::time::Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let _entered = span.enter();
    tracing::debug!(
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "answered"
    );
    response
}

// ---------------------------------------------------------------- routes

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "there is no such route: GET /openapi.json lists them",
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)), security(()))]
async fn healthz(State(app): State<Shared>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        executions_running: app.registry.running() as u64,
    })
}

fn in_data_dir(app: &App, relative: &str, what: &str) -> Result<PathBuf, Problem> {
    let Some(root) = &app.data_dir else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("{what} names a file, and this server reads none: start it with --data-dir, or send the file's content"),
        ));
    };
    let path = Path::new(relative);
    if path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("{what} \"{relative}\" must be a path inside the data folder, without `..`"),
        ));
    }
    let full = root.join(path);
    if !full.is_file() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("{what} \"{relative}\": there is no such file in the data folder"),
        ));
    }
    Ok(full)
}

/// Start a campaign.
#[utoipa::path(post, path = "/program-executions", request_body = NewExecution,
    responses((status = 201, body = Execution), (status = 400, body = Problem),
        (status = 422, description = "the flow has errors, or the list too many rejected rows", body = Problem)))]
async fn create(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewExecution>, JsonRejection>,
) -> Response {
    let ran = tokio::task::spawn_blocking(move || {
        control(&app, &caller, "create", None, || {
            let Json(new) = match body {
                Ok(b) => b,
                Err(e) => {
                    return Problem::new(StatusCode::BAD_REQUEST, e.body_text()).into_response()
                }
            };
            match start(&app, &caller, new) {
                Ok(e) => (StatusCode::CREATED, Json(e)).into_response(),
                Err(p) => p.into_response(),
            }
        })
    })
    .await;
    ran.unwrap_or_else(|e| {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
    })
}

fn start(app: &App, caller: &Caller, new: NewExecution) -> Result<Execution, Problem> {
    let dialer = new.dialer.clone().unwrap_or_else(|| "sim".into());
    let dialer = match dialer.split_once(':') {
        None if dialer == "sim" => dialer,
        Some(("script", file)) => format!("script:{}", in_data_dir(app, file, "the dialer's script")?.display()),
        _ if app.allowed_dialers.contains(&dialer) => dialer,
        _ => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the dialer \"{dialer}\" is not allowed here: use `sim`, `script:FILE` (a file of the data folder){}",
                    if app.allowed_dialers.is_empty() {
                        String::new()
                    } else {
                        format!(", or one of {}", app.allowed_dialers.join(", "))
                    }
                ),
            ))
        }
    };
    let contacts = match (&new.contacts, &new.contacts_path) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(StatusCode::BAD_REQUEST, "send `contacts` or `contactsPath`, not both"))
        }
        (None, None) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "an execution needs contacts: send the list in `contacts` (CSV or JSON lines) or name a file in `contactsPath`",
            ))
        }
        (None, Some(p)) => Some(in_data_dir(app, p, "contactsPath")?),
        (Some(_), None) => None,
    };
    let (id, files) = app
        .registry
        .reserve()
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let write = |name: &str, text: &str| {
        std::fs::write(files.join(name), text).map_err(|e| {
            let _ = std::fs::remove_dir_all(&files);
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot keep {name}: {e}"),
            )
        })
    };
    match (&new.flow, &new.ir) {
        (Some(source), None) => write("flow.flow", source)?,
        (None, Some(ir)) => write("flow.json", &ir.to_string())?,
        _ => {
            let _ = std::fs::remove_dir_all(&files);
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "send the flow as `flow` (its source text) or as `ir` (compiled by `flowc compile`), one of them",
            ));
        }
    }
    let contacts = match (contacts, &new.contacts) {
        (Some(path), _) => path,
        (None, Some(text)) => {
            let name = match new.contacts_format {
                ContactsFormat::Csv => "contacts.csv",
                ContactsFormat::Jsonl => "contacts.jsonl",
            };
            write(name, text)?;
            files.join(name)
        }
        (None, None) => unreachable!("refused above"),
    };
    let settings = Settings {
        contacts,
        dialer,
        seed: new.seed.unwrap_or(1),
        region: new.region,
        max_rejects: new.max_rejects,
        from: new.from,
        created_at: Utc::now(),
        created_by: caller.0.name.clone(),
    };
    let e = app
        .registry
        .create(id, files, settings)
        .map_err(|r| Problem {
            errors: Some(r.errors),
            ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY, r.detail)
        })?;
    e.snapshot()
        .map(Execution::from)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

fn page_of(page: Option<u64>, size: Option<u64>, max: u64) -> (u64, u64) {
    (page.unwrap_or(1).max(1), size.unwrap_or(50).clamp(1, max))
}

/// The executions, newest first.
#[utoipa::path(get, path = "/program-executions", params(ListQuery), responses((status = 200, body = ExecutionPage)))]
async fn list(
    State(app): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ExecutionPage>, Problem> {
    let (page, page_size) = page_of(q.page, q.page_size, 500);
    // Stores are read: off the request threads.
    let mut all: Vec<Execution> = tokio::task::spawn_blocking(move || {
        app.registry
            .all()
            .iter()
            .filter_map(|e| e.snapshot().ok())
            .map(Execution::from)
            .filter(|e| q.status.is_none_or(|s| s == e.status))
            .collect()
    })
    .await
    .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    let total = all.len() as u64;
    let items = all
        .into_iter()
        .skip(((page - 1) * page_size) as usize)
        .take(page_size as usize)
        .collect();
    Ok(Json(ExecutionPage {
        items,
        page,
        page_size,
        total,
    }))
}

fn snapshot(app: &App, id: &str) -> Result<Execution, Problem> {
    let e = app
        .registry
        .get(id)
        .ok_or_else(|| refused(id, Refused::NotFound))?;
    e.snapshot()
        .map(Execution::from)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

#[utoipa::path(get, path = "/program-executions/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Execution), (status = 404, body = Problem)))]
async fn one(
    State(app): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Execution>, Problem> {
    // A store may be read: off the request threads.
    tokio::task::spawn_blocking(move || snapshot(&app, &id).map(Json))
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// A control action, off the request threads: it reads and writes stores.
async fn act(
    app: Shared,
    caller: Caller,
    id: String,
    action: &'static str,
    f: fn(&Arc<Registry>, &str) -> Result<Snapshot, Refused>,
) -> Response {
    tokio::task::spawn_blocking(move || {
        control(&app, &caller, action, Some(&id), || {
            match f(&app.registry, &id) {
                Ok(s) => Json(Execution::from(s)).into_response(),
                Err(why) => refused(&id, why).into_response(),
            }
        })
    })
    .await
    .unwrap_or_else(|e| {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
    })
}

/// No new dial from now on; calls under way finish.
#[utoipa::path(post, path = "/program-executions/{id}/pause", params(("id" = String, Path)),
    responses((status = 200, body = Execution), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn pause(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    act(app, caller, id, "pause", Registry::pause).await
}

#[utoipa::path(post, path = "/program-executions/{id}/resume", params(("id" = String, Path)),
    responses((status = 200, body = Execution), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn resume(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    act(app, caller, id, "resume", Registry::resume).await
}

/// Calls under way finish; every contact still pending ends `skipped "cancelled"`.
#[utoipa::path(post, path = "/program-executions/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = Execution), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn cancel(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    act(app, caller, id, "cancel", Registry::cancel).await
}

/// Reads the store of execution `id` (off the request threads).
fn read_store<T>(
    app: &App,
    id: &str,
    f: impl FnOnce(&mut dyn Reader) -> Result<T, StoreError>,
) -> Result<T, Problem> {
    let e = app
        .registry
        .get(id)
        .ok_or_else(|| refused(id, Refused::NotFound))?;
    e.place
        .read(f)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Every attempt, in the order dialled.
#[utoipa::path(get, path = "/program-executions/{id}/calls", params(("id" = String, Path), CallsQuery),
    responses((status = 200, body = CallPage), (status = 404, body = Problem)))]
async fn calls(
    State(app): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<CallsQuery>,
) -> Result<Json<CallPage>, Problem> {
    let (page, page_size) = page_of(q.page, q.page_size, 1000);
    tokio::task::spawn_blocking(move || {
        let (total, rows) = read_store(&app, &id, |store| {
            store.calls(
                q.contact.as_deref(),
                q.outcome.as_deref(),
                (page - 1) * page_size,
                page_size,
            )
        })?;
        let items = rows
            .into_iter()
            .map(|r| Call {
                local_time: r
                    .started_at
                    .with_timezone(&r.zone)
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string(),
                zone: r.zone.name().to_string(),
                contact: r.contact,
                attempt: r.attempt,
                step: r.step,
                started_at: r.started_at,
                ended_at: r.ended_at,
                outcome: r.outcome.unwrap_or_else(|| "unknown".into()),
                sip_status: r.sip_status,
                sip_reason: r.sip_reason,
                keys: r.keys,
                transfers: r.transfers,
                caller_id: r.caller_id,
                contact_state: r.end,
                contact_reason: r.end_reason,
                path: r.path,
            })
            .collect();
        Ok(Json(CallPage {
            items,
            page,
            page_size,
            total,
        }))
    })
    .await
    .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

#[derive(Clone, Copy)]
enum ReportKind {
    Json,
    Csv,
    Html,
}

async fn report_of(app: Shared, id: String, kind: ReportKind) -> Response {
    let made = tokio::task::spawn_blocking(move || -> Result<Response, Problem> {
        let (flow, list, results) = read_store(&app, &id, |store| {
            let flow = store
                .program()?
                .flow
                .ok_or_else(|| StoreError::Corrupt("the run has no flow".into()))?;
            let (list, results) = store.results(&flow)?;
            Ok((flow, list, results))
        })?;
        Ok(match kind {
            ReportKind::Csv => (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                report::contacts_csv(&flow, &list, &results, false),
            )
                .into_response(),
            ReportKind::Json | ReportKind::Html => {
                let r = report::report(&flow, &results).with_patterns(&flow, &list, &results);
                match kind {
                    ReportKind::Html => {
                        Html(report::html::html(&flow, &r, &results)).into_response()
                    }
                    _ => Json(r).into_response(),
                }
            }
        })
    })
    .await;
    match made {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => p.into_response(),
        Err(e) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The report of `flowc report --format json`: metrics and failure patterns.
#[utoipa::path(get, path = "/program-executions/{id}/report", params(("id" = String, Path)),
    responses((status = 200, description = "the report", content_type = "application/json"), (status = 404, body = Problem)))]
async fn report_json(
    State(app): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    report_of(app, id, ReportKind::Json).await
}

/// Every contact with its attempt history, one CSV row each.
#[utoipa::path(get, path = "/program-executions/{id}/report.csv", params(("id" = String, Path)),
    responses((status = 200, description = "the contacts", content_type = "text/csv"), (status = 404, body = Problem)))]
async fn report_csv(
    State(app): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    report_of(app, id, ReportKind::Csv).await
}

/// One self-contained page with charts.
#[utoipa::path(get, path = "/program-executions/{id}/report.html", params(("id" = String, Path)),
    responses((status = 200, description = "the report page", content_type = "text/html"), (status = 404, body = Problem)))]
async fn report_html(
    State(app): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    report_of(app, id, ReportKind::Html).await
}

/// Server-Sent Events: `counters` every second (the execution's JSON), and
/// `state` when its status changes.
#[utoipa::path(get, path = "/program-executions/{id}/events", params(("id" = String, Path)),
    responses((status = 200, description = "an event stream", content_type = "text/event-stream"), (status = 404, body = Problem)))]
async fn events(
    State(app): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, Problem> {
    let registry = app.registry.clone();
    let wanted = id.clone();
    let e = tokio::task::spawn_blocking(move || registry.get(&wanted))
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| refused(&id, Refused::NotFound))?;
    let stream =
        futures_util::stream::unfold((e, None::<Status>, true), |(e, last, first)| async move {
            if !first {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let mut out: Vec<Result<Event, Infallible>> = Vec::new();
            // The store is read off the request threads.
            let read = e.clone();
            let snapshot = tokio::task::spawn_blocking(move || read.snapshot())
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            match snapshot {
                Ok(s) => {
                    let view = Execution::from(s);
                    let json = serde_json::to_string(&view).expect("an execution serialises");
                    if last != Some(view.status) {
                        out.push(Ok(Event::default().event("state").data(json.clone())));
                    }
                    out.push(Ok(Event::default().event("counters").data(json)));
                    let status = Some(view.status);
                    Some((futures_util::stream::iter(out), (e, status, false)))
                }
                Err(why) => {
                    out.push(Ok(Event::default().event("error").data(why)));
                    Some((futures_util::stream::iter(out), (e, last, false)))
                }
            }
        });
    let stream = futures_util::StreamExt::flatten(stream);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Prometheus text: executions by status, contacts by state, attempts by
/// outcome, dial lateness, dials in flight.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(app): State<Shared>) -> Response {
    let text = tokio::task::spawn_blocking(move || prometheus(&app))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn prometheus(app: &App) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut by_status: BTreeMap<&str, u64> = Status::ALL.iter().map(|s| (s.name(), 0)).collect();
    let mut contacts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_flight = 0;
    let mut lateness = Lateness::default();
    for e in app.registry.all() {
        let Ok(s) = e.snapshot() else { continue };
        lateness.add(&s.lateness);
        *by_status.entry(s.status.name()).or_default() += 1;
        for (state, n) in ["completed", "failed", "skipped", "pending", "in_progress"]
            .iter()
            .zip(&s.counters[1..])
        {
            *contacts.entry(state).or_default() += n;
        }
        if matches!(s.status, Status::Running | Status::Paused) {
            in_flight += s.counters[5];
        }
        for (o, n) in e.outcomes(s.status) {
            *outcomes.entry(o).or_default() += n;
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP flowc_executions Executions by status.\n# TYPE flowc_executions gauge"
    );
    for (s, n) in &by_status {
        let _ = writeln!(out, "flowc_executions{{status=\"{s}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP flowc_contacts Contacts of every execution by state.\n# TYPE flowc_contacts gauge"
    );
    for (s, n) in &contacts {
        let _ = writeln!(out, "flowc_contacts{{state=\"{s}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP flowc_calls_total Calls placed, by outcome (unknown: no end recorded).\n# TYPE flowc_calls_total counter");
    for (o, n) in &outcomes {
        let _ = writeln!(out, "flowc_calls_total{{outcome=\"{o}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP flowc_dial_lateness_seconds How late dials started after their due instant (runs of this server).\n\
         # TYPE flowc_dial_lateness_seconds histogram"
    );
    let mut below = 0;
    for (bound, n) in LATENESS_BOUNDS_MS.iter().zip(lateness.within) {
        below += n;
        let _ = writeln!(
            out,
            "flowc_dial_lateness_seconds_bucket{{le=\"{}\"}} {below}",
            *bound as f64 / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "flowc_dial_lateness_seconds_bucket{{le=\"+Inf\"}} {}\nflowc_dial_lateness_seconds_sum {}\nflowc_dial_lateness_seconds_count {}",
        lateness.count(),
        lateness.sum_us as f64 / 1e6,
        lateness.count()
    );
    let _ = writeln!(out, "# HELP flowc_dials_in_flight Calls under way now.\n# TYPE flowc_dials_in_flight gauge\nflowc_dials_in_flight {in_flight}");
    out
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}

struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a key of `flowc keys create`"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "flowc", description = "Outbound call campaigns run by `flowc serve`: executions, their calls, reports and events."),
    paths(healthz, create, list, one, pause, resume, cancel, calls, report_json, report_csv, report_html, events, metrics, openapi),
    components(schemas(Execution, ExecutionPage, NewExecution, ContactsFormat, Call, CallPage, Problem, Health, Status)),
    modifiers(&BearerKey),
    security(("key" = []))
)]
pub struct ApiDoc;

/// The routes the router serves, as the OpenAPI document names them
/// (`GET /` serves the dashboard page and is not part of the API).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("post", "/program-executions"),
    ("get", "/program-executions"),
    ("get", "/program-executions/{id}"),
    ("post", "/program-executions/{id}/pause"),
    ("post", "/program-executions/{id}/resume"),
    ("post", "/program-executions/{id}/cancel"),
    ("get", "/program-executions/{id}/calls"),
    ("get", "/program-executions/{id}/report"),
    ("get", "/program-executions/{id}/report.csv"),
    ("get", "/program-executions/{id}/report.html"),
    ("get", "/program-executions/{id}/events"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];
