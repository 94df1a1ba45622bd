//! `flowc check FILE…`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::calendar::phone;
use crate::check::{self, FsLoader};
use crate::contacts;
use crate::diagnostic::render::{escape_data, escape_property};
use crate::diagnostic::{self, render::IoFailure, Diagnostic, Format};
use crate::ir;
use crate::source::SourceMap;

#[derive(clap::Args)]
pub struct Args {
    /// The .flow files to check
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Treat warnings as errors: `--deny warnings`
    #[arg(long, value_name = "LINT", value_parser = ["warnings"])]
    deny: Option<String>,
    /// Also validate a contact list (CSV with a header row, or JSON lines
    /// when the name ends in .jsonl) against the flow's contact schema
    #[arg(long, value_name = "LIST")]
    contacts: Option<PathBuf>,
    /// Where rejected rows go (default: LIST.rejects.csv beside the list)
    #[arg(long, value_name = "FILE", requires = "contacts")]
    rejects: Option<PathBuf>,
    /// How numbers without a country code are read, such as US (default: the flow's `region`)
    #[arg(long, value_name = "REGION", requires = "contacts")]
    region: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    if args.contacts.is_some() && args.files.len() != 1 {
        eprintln!("error: --contacts checks a list against one flow: give exactly one FILE");
        return ExitCode::from(super::EXIT_USAGE);
    }
    let mut sources = SourceMap::default();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut failures: Vec<IoFailure> = Vec::new();
    let mut list: Option<ListReport> = None;
    for path in &args.files {
        match check::check(path, &FsLoader) {
            Ok(c) => {
                if let Some(contacts) = &args.contacts {
                    match c.program.as_ref().and_then(|p| p.flow.as_ref()) {
                        Some(flow) => match import_list(
                            flow,
                            contacts,
                            args.rejects.as_deref(),
                            args.region.as_deref(),
                        ) {
                            Ok(report) => list = Some(report),
                            Err(f) => failures.push(f),
                        },
                        None if !c.has_errors() => failures.push(IoFailure {
                            path: contacts.display().to_string(),
                            message: format!(
                                "{} holds no flow to check the list against",
                                path.display()
                            ),
                        }),
                        None => {}
                    }
                }
                // `check` needs no IR; the process ends soon, so it is not worth freeing.
                std::mem::forget(c.program);
                let offset = sources.absorb(c.sources);
                diags.extend(c.diagnostics.into_iter().map(|mut d| {
                    for l in &mut d.labels {
                        l.span.file.0 += offset;
                    }
                    d
                }));
            }
            Err(e) => failures.push(IoFailure {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
    match args.format {
        Format::Human => {
            eprint!(
                "{}",
                diagnostic::render_human(&diags, &sources, super::color(), super::width())
            );
            for f in &failures {
                eprintln!("error: cannot read {}: {}", f.path, f.message);
            }
            let errors = diags.iter().filter(|d| d.is_error()).count();
            let warnings = diags.len() - errors;
            eprintln!(
                "checked {} file(s): {} error(s), {} warning(s)",
                sources.len(),
                errors,
                warnings
            );
            if let Some(l) = &list {
                eprint!("{}", l.human());
            }
        }
        Format::Json => {
            let mut doc: serde_json::Value =
                serde_json::from_str(&diagnostic::render_json(&diags, &sources, &failures))
                    .expect("our own JSON");
            if let Some(l) = &list {
                doc["contacts"] = l.json();
            }
            outln!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("a JSON value always serialises")
            );
        }
        Format::Github => {
            out!("{}", diagnostic::render_github(&diags, &sources, &failures));
            if let Some(l) = &list {
                out!("{}", l.github());
            }
        }
        Format::Sarif => outln!("{}", diagnostic::render_sarif(&diags, &sources, &failures)),
    }
    if !failures.is_empty() {
        return ExitCode::from(super::EXIT_USAGE);
    }
    let deny = args.deny.is_some();
    let list_failed = list.as_ref().is_some_and(|l| l.failed(deny));
    if list_failed || diags.iter().any(|d| d.is_error() || deny) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// What `--contacts` found in a list.
pub(super) struct ListReport {
    pub path: String,
    pub import: contacts::Import,
    pub rejects_file: Option<String>,
}

/// Reads a contact list against a flow, writing the rejected rows to their
/// file; shared by `check --contacts` and `simulate`.
pub(super) fn import_list(
    flow: &ir::Flow,
    path: &Path,
    rejects: Option<&Path>,
    region: Option<&str>,
) -> Result<ListReport, IoFailure> {
    let fail = |message: String| IoFailure {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(fail("it is a folder, not a contact list".into()));
    }
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let region = match region.or(flow.region.as_deref()) {
        Some(r) => Some(
            phone::region(r)
                .ok_or_else(|| fail(format!("\"{r}\" is not a region code such as US or FR")))?,
        ),
        None => None,
    };
    let rules = contacts::Rules::new(&flow.contact, &flow.timezone, region);
    let jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "ndjson");
    let out = rejects.map(Path::to_path_buf).unwrap_or_else(|| {
        let mut name = path.as_os_str().to_owned();
        name.push(".rejects.csv");
        PathBuf::from(name)
    });
    // Refused before the list is read: the rejects would replace it.
    super::files::not_an_input(&out, &[path]).map_err(|message| IoFailure {
        path: out.display().to_string(),
        message,
    })?;
    let import = if jsonl {
        contacts::read_jsonl(reader, &rules)
    } else {
        contacts::read_csv(reader, &rules)
    };
    let mut rejects_file = None;
    if !import.rejects.is_empty() {
        super::files::write_file(&out, &[path], contacts::rejects_csv(&import).as_bytes())
            .map_err(|message| IoFailure {
                path: out.display().to_string(),
                message,
            })?;
        rejects_file = Some(out.display().to_string());
    }
    Ok(ListReport {
        path: path.display().to_string(),
        import,
        rejects_file,
    })
}

/// Rejects listed one by one in the human report; the rest are in the file.
const SHOWN_REJECTS: usize = 20;

impl ListReport {
    fn failed(&self, deny_warnings: bool) -> bool {
        !self.import.rejects.is_empty()
            || !self.import.errors.is_empty()
            || (deny_warnings && !self.import.duplicates.is_empty())
    }

    fn human(&self) -> String {
        let i = &self.import;
        let mut out = String::new();
        for e in &i.errors {
            out.push_str(&format!("error: {}: {e}\n", self.path));
        }
        for r in i.rejects.iter().take(SHOWN_REJECTS) {
            out.push_str(&format!("error: {}:{}: {}\n", self.path, r.line, r.reason));
        }
        if i.rejects.len() > SHOWN_REJECTS {
            out.push_str(&format!(
                "… and {} more rejected rows\n",
                i.rejects.len() - SHOWN_REJECTS
            ));
        }
        for d in i.duplicates.iter().take(SHOWN_REJECTS) {
            out.push_str(&format!(
                "warning: {}:{}: {} is already on line {}; the rows are merged\n",
                self.path, d.line, d.phone, d.first_line
            ));
        }
        out.push_str(&format!(
            "contacts {}: {} valid, {} rejected, {} duplicate(s) merged",
            self.path,
            i.contacts.len(),
            i.rejects.len(),
            i.duplicates.len()
        ));
        if let Some(f) = &self.rejects_file {
            out.push_str(&format!("; rejected rows written to {f}"));
        }
        out.push('\n');
        out
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let i = &self.import;
        serde_json::json!({
            "file": self.path,
            "valid": i.contacts.len(),
            "rejected": i.rejects.len(),
            "duplicates": i.duplicates.iter().map(|d| serde_json::json!({"line": d.line, "firstLine": d.first_line, "phone": d.phone})).collect::<Vec<_>>(),
            "rejects": i.rejects.iter().map(|r| serde_json::json!({"line": r.line, "reason": r.reason})).collect::<Vec<_>>(),
            "errors": i.errors,
            "rejectsFile": self.rejects_file,
        })
    }

    fn github(&self) -> String {
        let i = &self.import;
        let mut out = String::new();
        let file = escape_property(&self.path);
        for e in &i.errors {
            out.push_str(&format!(
                "::error file={file},title=contacts::{}\n",
                escape_data(e)
            ));
        }
        for r in &i.rejects {
            out.push_str(&format!(
                "::error file={file},line={},title=contacts::{}\n",
                r.line,
                escape_data(&r.reason)
            ));
        }
        for d in &i.duplicates {
            out.push_str(&format!(
                "::warning file={file},line={},title=contacts::{}\n",
                d.line,
                escape_data(&format!("{} is already on line {}", d.phone, d.first_line))
            ));
        }
        out
    }
}
