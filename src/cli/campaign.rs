//! What `flowc run` and `flowc simulate` share: the flow and the list, the
//! do-not-call list, the store a run resumes from, the journal and the report.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::contacts::Contact;
use crate::ir;
use crate::record::{History, Kind};
use crate::report;
use crate::runtime::engine::Results;
use crate::runtime::interpreter;
use crate::runtime::journal::{Durability, Journal};
use crate::store::postgres::{self, PgStore};
use crate::store::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct Common {
    /// The .flow file
    pub file: PathBuf,
    /// The contact list: CSV with a header row, or JSON lines (.jsonl)
    #[arg(long, value_name = "LIST")]
    pub contacts: PathBuf,
    /// Write every attempt as JSON lines here
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Never dial the numbers of this list (one a line, any format the region
    /// reads); numbers that opt out during the run are added to it
    #[arg(long, value_name = "FILE")]
    pub dnc: Option<PathBuf>,
    /// Where rejected contact rows go (default: LIST.rejects.csv)
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// The most rows of the list that may be rejected before the campaign
    /// refuses to start: a count (`20`) or a share of the rows (`5%`)
    #[arg(long, value_name = "LIMIT", default_value = "5%", value_parser = parse_max_rejects)]
    pub max_rejects: MaxRejects,
    /// How numbers without a country code are read (default: the flow's `region`)
    #[arg(long)]
    pub region: Option<String>,
    /// Resume a run kept in the database with a changed flow: contacts keep
    /// their history, the new flow decides what comes next
    #[arg(long)]
    pub migrate: bool,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// `--max-rejects`: how many rejected rows a campaign accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxRejects {
    Count(usize),
    Percent(f64),
}

impl MaxRejects {
    pub(super) fn allows(self, rejected: usize, rows: usize) -> bool {
        match self {
            MaxRejects::Count(n) => rejected <= n,
            MaxRejects::Percent(p) => rejected as f64 <= rows as f64 * p / 100.0,
        }
    }
}

impl std::fmt::Display for MaxRejects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxRejects::Count(n) => write!(f, "{n}"),
            MaxRejects::Percent(p) => write!(f, "{p}%"),
        }
    }
}

pub(super) fn parse_max_rejects(text: &str) -> Result<MaxRejects, String> {
    let text = text.trim();
    let wrong =
        || format!("\"{text}\" is not a limit: write a count such as 20, or a share such as 5%");
    match text.strip_suffix('%') {
        Some(p) => p
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=100.0).contains(p))
            .map(MaxRejects::Percent)
            .ok_or_else(wrong),
        None => text.parse().map(MaxRejects::Count).map_err(|_| wrong()),
    }
}

/// Rejections grouped by what went wrong (the reason with its quoted
/// values left out), most frequent first: count, reason, first line.
fn reject_groups(rejects: &[crate::contacts::Reject]) -> Vec<(usize, String, usize)> {
    let mut groups: Vec<(usize, String, usize)> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in rejects {
        let key = generic_reason(&r.reason);
        match at.get(&key) {
            Some(&k) => groups[k].0 += 1,
            None => {
                at.insert(key.clone(), groups.len());
                groups.push((1, key, r.line));
            }
        }
    }
    groups.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
    groups
}

/// A reason with its quoted values shown as `"…"`, so that rows rejected
/// for the same cause fall in one group.
fn generic_reason(reason: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in reason.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

pub fn usage(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(super::EXIT_USAGE)
}

/// A campaign ready to run: its program, its contacts (the stored ones
/// first, when resuming), their histories and the numbers not to dial.
pub struct Prepared {
    pub program: ir::Program,
    pub contacts: crate::contacts::List,
    pub history: Vec<History>,
    pub do_not_call: HashSet<String>,
    pub start: DateTime<Utc>,
    pub store: Option<Box<dyn Journal>>,
    /// Where the stored campaign's clock stood when it last stopped: a
    /// report of the resumed run spans at least as far.
    pub finish: Option<DateTime<Utc>>,
}

impl Prepared {
    pub fn flow(&self) -> &ir::Flow {
        self.program.flow.as_ref().expect("a campaign has a flow")
    }
}

/// Checks the flow, imports the list (reporting rejects and duplicates),
/// reads the do-not-call list and opens the store; `start` is used unless
/// the store holds a run, which then resumes from its own start.
pub fn prepare(
    common: &Common,
    db: Option<(&Path, Kind)>,
    start: impl FnOnce(&ir::Flow) -> Result<DateTime<Utc>, String>,
    instead: &str,
) -> Result<Prepared, ExitCode> {
    if let Some(journal) = &common.journal {
        super::files::not_an_input(journal, &[&common.file, &common.contacts]).map_err(usage)?;
    }
    let program = super::flow_program(&common.file, instead)?;
    let flow = program.flow.as_ref().expect("flow_program returns a flow");
    let list = super::check::import_list(
        flow,
        &common.contacts,
        common.rejects.as_deref(),
        common.region.as_deref(),
    )
    .map_err(|f| usage(format!("{}: {}", f.path, f.message)))?;
    let import = &list.import;
    for e in &import.errors {
        eprintln!("error: {}: {e}", list.path);
    }
    if !import.errors.is_empty() {
        return Err(ExitCode::from(1));
    }
    let rows = import.contacts.len() + import.rejects.len() + import.duplicates.len();
    if !import.rejects.is_empty() {
        let allowed = common.max_rejects.allows(import.rejects.len(), rows);
        eprintln!(
            "{}: {} of {rows} row(s) rejected ({:.1}%){}:",
            if allowed { "warning" } else { "error" },
            import.rejects.len(),
            import.rejects.len() as f64 * 100.0 / rows.max(1) as f64,
            list.rejects_file
                .as_deref()
                .map_or(String::new(), |f| format!(", written to {f}"))
        );
        for (count, reason, line) in reject_groups(&import.rejects) {
            eprintln!("  {count:>7} × {reason} (first: line {line})");
        }
        if !allowed {
            eprintln!(
                "error: more rows were rejected than --max-rejects {} allows; nobody was dialled. \
                 Fix the rows (the rejects file keeps them as written), or raise --max-rejects",
                common.max_rejects
            );
            return Err(ExitCode::from(1));
        }
    }
    if !import.duplicates.is_empty() {
        eprintln!("{} duplicate number(s) merged", import.duplicates.len());
    }
    let do_not_call = match &common.dnc {
        Some(path) => read_dnc(path, common.region.as_deref().or(flow.region.as_deref()))?,
        None => HashSet::new(),
    };
    let start = start(flow).map_err(usage)?;
    let mut contacts = list.import.contacts;
    let (store, history, start, finish) = match db {
        None => (None, Vec::new(), start, None),
        Some((path, kind)) => {
            let durability = match kind {
                Kind::Run => Durability::BeforeEachDial,
                Kind::Simulation => Durability::Batched,
            };
            let mut store: Box<dyn Journal> = match path.to_str().filter(|p| postgres::is_url(p)) {
                Some(url) => Box::new(
                    PgStore::open(url).map_err(|e| usage(format!("{}: {e}", shown(path))))?,
                ),
                None => Box::new(
                    Store::open(path, durability)
                        .map_err(|e| usage(format!("{}: {e}", shown(path))))?,
                ),
            };
            let stored = store
                .begin(&program, start, common.migrate, kind)
                .map_err(|e| usage(format!("{}: {e}", shown(path))))?;
            if stored.migrated {
                eprintln!("the run continues with the changed flow (--migrate)");
            }
            if stored.restarted {
                eprintln!(
                    "the simulation in {} had not finished: it runs again from its start (the same seed gives the same campaign)",
                    shown(path)
                );
            }

            if !stored.contacts.is_empty() {
                // Resuming: the stored contacts keep their places; rows of
                // the list with a new number join the campaign.
                let known: HashSet<&str> = stored.contacts.iter().map(|c| &*c.phone).collect();
                let added: Vec<Contact> = contacts
                    .into_iter()
                    .filter(|c| !known.contains(&*c.phone))
                    .collect();
                if stored.finished && !stored.migrated && added.is_empty() {
                    eprintln!(
                        "the campaign in {} has finished: nobody is dialled again; its report follows",
                        shown(path)
                    );
                } else {
                    eprintln!(
                        "resuming the run in {} ({} contacts{})",
                        shown(path),
                        stored.contacts.len(),
                        if added.is_empty() {
                            String::new()
                        } else {
                            format!(", {} new from the list", added.len())
                        }
                    );
                }
                let mut all = stored.contacts;
                all.extend(added);
                contacts = all;
            }
            (
                Some(store),
                stored.history,
                stored.started_at,
                stored.finish,
            )
        }
    };
    if contacts.is_empty() {
        eprintln!(
            "error: {} holds no contact to call ({rows} row(s) read): a campaign needs at least one",
            common.contacts.display()
        );
        return Err(ExitCode::from(1));
    }
    Ok(Prepared {
        program,
        contacts: contacts.into(),
        history,
        do_not_call,
        start,
        store,
        finish,
    })
}

/// A campaign begun in PostgreSQL (`prepared`, from `prepare`) gets the
/// list's new contacts, is cut into parts and opened to workers; returns
/// the campaign's name and the URL without it. `prepared` keeps only what
/// its worker needs: the list is read back from the database a part at a
/// time.
pub fn open_to_workers(
    prepared: &mut Prepared,
    db: &Path,
    url: &str,
    simulation: Option<&crate::store::postgres::Simulation>,
    audio: &std::collections::HashMap<String, std::sync::Arc<Vec<i16>>>,
) -> Result<(String, String), ExitCode> {
    let flow = prepared.flow().clone();
    let failed = |e: crate::store::StoreError| usage(format!("{}: {e}", shown(db)));
    let journal = prepared.store.as_mut().expect("a database was given");
    for i in prepared.history.len()..prepared.contacts.len() {
        let c = &prepared.contacts[i];
        let arm = crate::runtime::interpreter::assign_arm(&flow, &c.phone);
        journal.contact_added(crate::runtime::journal::ContactId::at(i), c, arm);
    }
    journal.sync().map_err(failed)?;
    // Begun: from here on every worker shares it, this process too.
    drop(prepared.store.take());
    prepared.contacts = Default::default();
    prepared.history = Vec::new();
    // The do-not-call list and the audio go in before any worker may join.
    PgStore::open(url)
        .and_then(|mut s| {
            s.add_do_not_call(&flow.name, &prepared.do_not_call)?;
            s.add_prompts(&flow.name, audio)?;
            s.open_to_workers(&flow.name, simulation)
        })
        .map_err(failed)?;
    let (base, name) = match url.split_once('#') {
        Some((base, n)) if !n.is_empty() => (base, n.to_string()),
        Some((base, _)) => (base, flow.name.clone()),
        None => (url, flow.name.clone()),
    };
    Ok((name, base.to_string()))
}

/// A `--db` as messages show it: a file's path, or a database's URL
/// without its password.
pub fn shown(db: &Path) -> String {
    let text = db.display().to_string();
    if postgres::is_url(&text) {
        postgres::redact(&text)
    } else {
        text
    }
}

/// The campaign's start: `--from` in the flow's zone, else the flow's
/// `start`, else `otherwise`.
pub fn start_of(
    flow: &ir::Flow,
    from: Option<&str>,
    otherwise: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let zone = interpreter::flow_zone(flow);
    match from {
        Some(t) => NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M")
            .ok()
            .and_then(|l| zone.from_local_datetime(&l).earliest())
            .map(|s| s.with_timezone(&Utc))
            .ok_or_else(|| {
                format!("cannot read --from \"{t}\": write a date and time such as \"2026-12-01 09:00\"")
            }),
        None => Ok(flow
            .start
            .as_ref()
            .and_then(|s| interpreter::local_instant(s, zone))
            .unwrap_or(otherwise)),
    }
}

/// Reads a do-not-call list: one number a line, `#` comments. A line that
/// cannot be read blocks nothing, and says so.
fn read_dnc(path: &Path, region: Option<&str>) -> Result<HashSet<String>, ExitCode> {
    let mut numbers = HashSet::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // A list that does not exist yet is empty: opt-outs will start it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(numbers),
        Err(e) => return Err(usage(format!("cannot read {}: {e}", path.display()))),
    };
    let region = region.and_then(crate::calendar::phone::region);
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match crate::calendar::phone::parse(line, region) {
            Ok(number) => {
                numbers.insert(number.e164);
            }
            Err(e) => eprintln!(
                "warning: {}:{}: \"{line}\" {e}; it blocks no number",
                path.display(),
                n + 1
            ),
        }
    }
    Ok(numbers)
}

/// Appends numbers that opted out to the do-not-call file.
pub fn opt_out_writer(path: Option<&Path>) -> impl FnMut(&str) + '_ {
    move |number: &str| {
        let Some(path) = path else { return };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| {
                writeln!(
                    f,
                    "{number}  # opted out {}",
                    Utc::now().format("%Y-%m-%d %H:%M UTC")
                )
            });
        if let Err(e) = written {
            eprintln!("warning: cannot add {number} to {}: {e}", path.display());
        }
    }
}

pub fn print_report(
    flow: &ir::Flow,
    list: &[crate::contacts::Contact],
    results: &Results,
    format: ReportFormat,
) {
    let report =
        report::report(flow, &results.contacts).with_patterns(flow, list, &results.contacts);
    match format {
        ReportFormat::Table => out!("{}", report.table()),
        ReportFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report always serialises")
        ),
    }
}

/// One JSON line per attempt; a contact's last line carries its path and end.
/// Writes the journal when `--journal` asks for one, never over an input.
pub fn write_journal(common: &Common, flow: &ir::Flow, results: &Results) -> Result<(), String> {
    let Some(path) = &common.journal else {
        return Ok(());
    };
    super::files::write_with(path, &[&common.file, &common.contacts], |out| {
        journal_lines(out, flow, results)
    })
}

fn journal_lines(out: &mut impl Write, flow: &ir::Flow, results: &Results) -> std::io::Result<()> {
    for c in &results.contacts {
        let arm = &flow.arms[c.arm];
        for (k, a) in c.attempts.iter().enumerate() {
            let last = k + 1 == c.attempts.len();
            let caller_id = arm.caller_id(a.number);
            let mut line = serde_json::json!({
                "contact": c.phone,
                "attempt": a.number,
                "step": flow.steps[a.step_id()].name,
                "started_at": a.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "local_time": a.started_at.with_timezone(&c.zone).format("%Y-%m-%dT%H:%M:%S").to_string(),
                "zone": c.zone.name(),
                "outcome": a.outcome.name(),
                "ended_at": a.ended_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "arm": arm.name,
                "caller_id": caller_id,
            });
            if last {
                line["path"] = serde_json::json!(c
                    .path
                    .iter()
                    .map(|s| flow.steps[*s].name.as_str())
                    .collect::<Vec<_>>());
                line["end"] = serde_json::json!({ "state": c.status().name(), "reason": c.end.as_ref().map(|e| &*e.reason) });
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
