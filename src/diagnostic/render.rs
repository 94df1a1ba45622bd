//! Rendering diagnostics for people (miette's graphical report) and for
//! machines (JSON, GitHub workflow annotations, SARIF 2.1.0). Line and column
//! numbers come from `SourceFile::line_col` only.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde_json::{json, Value};

use super::{Code, Diagnostic, Label, Severity};
use crate::source::{SourceMap, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
    Sarif,
}

/// A file the command could not read: reported beside the diagnostics.
pub struct IoFailure {
    pub path: String,
    pub message: String,
}

/// miette's view of one diagnostic in one file; labels in other files become
/// related reports with their own source.
struct Report {
    code: &'static str,
    message: String,
    severity: Severity,
    /// A report that only shows another file's labels.
    related_only: bool,
    help: Option<String>,
    source: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (!self.code.is_empty()).then(|| Box::new(self.code) as Box<dyn fmt::Display>)
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            _ if self.related_only => miette::Severity::Advice,
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.related.iter().map(|r| r as &dyn miette::Diagnostic),
        ))
    }
}

fn labeled(label: &Label) -> LabeledSpan {
    let span = SourceSpan::from(label.span.start as usize..label.span.end as usize);
    let text = (!label.message.is_empty()).then(|| label.message.clone());
    if label.primary {
        LabeledSpan::new_primary_with_span(text, span)
    } else {
        LabeledSpan::new_with_span(text, span)
    }
}

fn report(diag: &Diagnostic, sources: &SourceMap) -> Report {
    let main_file = diag.primary_span().map(|s| s.file);
    let source_of = |file| {
        let f = sources.get(file);
        NamedSource::new(f.name(), f.text.clone())
    };
    let mut help = diag.help.clone();
    if let Some(note) = &diag.note {
        help = Some(match help {
            Some(h) => format!("{h}\nnote: {note}"),
            None => format!("note: {note}"),
        });
    }
    let mut related: Vec<Report> = Vec::new();
    for label in diag
        .labels
        .iter()
        .filter(|l| Some(l.span.file) != main_file)
    {
        match related
            .iter_mut()
            .find(|r| r.source.name() == sources.get(label.span.file).name())
        {
            Some(r) => r.labels.push(labeled(label)),
            None => related.push(Report {
                code: "",
                message: format!("in {}", sources.get(label.span.file).name()),
                severity: diag.severity,
                related_only: true,
                help: None,
                source: source_of(label.span.file),
                labels: vec![labeled(label)],
                related: vec![],
            }),
        }
    }
    Report {
        code: diag.code.as_str(),
        message: diag.message.clone(),
        severity: diag.severity,
        related_only: false,
        help,
        source: main_file
            .map(source_of)
            .unwrap_or_else(|| NamedSource::new("", String::new())),
        labels: diag
            .labels
            .iter()
            .filter(|l| Some(l.span.file) == main_file)
            .map(labeled)
            .collect(),
        related,
    }
}

/// miette's graphical report; `color` false gives the plain theme used for
/// snapshots, pipes and `NO_COLOR`.
pub fn render_human(
    diags: &[Diagnostic],
    sources: &SourceMap,
    color: bool,
    width: usize,
) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_links(false);
    let mut out = String::new();
    for diag in diags {
        let r = report(diag, sources);
        // Writing into a String cannot fail.
        let _ = handler.render_report(&mut out, &r);
        out.push('\n');
    }
    out
}

fn location(span: Span, sources: &SourceMap) -> Value {
    let file = sources.get(span.file);
    let start = file.line_col(span.start as usize);
    let end = file.line_col(span.end as usize);
    json!({
        "file": file.name(),
        "line": start.line,
        "column": start.column,
        "endLine": end.line,
        "endColumn": end.column,
    })
}

/// One JSON document, whatever happened: diagnostics, unreadable files and a summary.
pub fn render_json(diags: &[Diagnostic], sources: &SourceMap, failures: &[IoFailure]) -> String {
    let diagnostics: Vec<Value> = diags
        .iter()
        .map(|d| {
            let labels: Vec<Value> = d
                .labels
                .iter()
                .map(|l| {
                    let mut v = location(l.span, sources);
                    v["message"] = json!(l.message);
                    v["primary"] = json!(l.primary);
                    v
                })
                .collect();
            let mut v = d
                .primary_span()
                .map(|s| location(s, sources))
                .unwrap_or_else(|| json!({}));
            v["code"] = json!(d.code.as_str());
            v["severity"] = json!(d.severity);
            v["message"] = json!(d.message);
            v["help"] = json!(d.help);
            v["note"] = json!(d.note);
            v["labels"] = Value::Array(labels);
            v
        })
        .collect();
    let (errors, warnings) = count(diags);
    let doc = json!({
        "version": 1,
        "diagnostics": diagnostics,
        "ioErrors": failures.iter().map(|f| json!({"file": f.path, "message": f.message})).collect::<Vec<_>>(),
        "summary": { "errors": errors + failures.len(), "warnings": warnings },
    });
    serde_json::to_string_pretty(&doc).expect("a JSON value always serialises")
}

fn count(diags: &[Diagnostic]) -> (usize, usize) {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    (errors, diags.len() - errors)
}

/// A workflow command's message, encoded as GitHub documents (`%`, CR, LF).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value (also `:` and `,`).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub workflow commands: one `::error …::message` line per diagnostic.
pub fn render_github(diags: &[Diagnostic], sources: &SourceMap, failures: &[IoFailure]) -> String {
    let mut out = String::new();
    for f in failures {
        out.push_str(&format!(
            "::error file={},title=io::{}\n",
            escape_property(&f.path),
            escape_data(&f.message)
        ));
    }
    for d in diags {
        let level = if d.is_error() { "error" } else { "warning" };
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str(&format!("\nhelp: {help}"));
        }
        match d.primary_span() {
            Some(span) => {
                let file = sources.get(span.file);
                let (start, end) = (
                    file.line_col(span.start as usize),
                    file.line_col(span.end as usize),
                );
                out.push_str(&format!(
                    "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
                    escape_property(&file.name()),
                    start.line,
                    start.column,
                    end.line,
                    end.column,
                    d.code,
                    escape_data(&message)
                ));
            }
            None => out.push_str(&format!(
                "::{level} title={}::{}\n",
                d.code,
                escape_data(&message)
            )),
        }
    }
    out
}

fn sarif_location(span: Span, sources: &SourceMap, message: Option<&str>) -> Value {
    let file = sources.get(span.file);
    let (start, end) = (
        file.line_col(span.start as usize),
        file.line_col(span.end as usize),
    );
    let mut v = json!({
        "physicalLocation": {
            "artifactLocation": { "uri": file.name().replace('\\', "/") },
            "region": {
                "startLine": start.line, "startColumn": start.column,
                "endLine": end.line, "endColumn": end.column,
            }
        }
    });
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        v["message"] = json!({ "text": m });
    }
    v
}

/// SARIF 2.1.0; every code is a rule whose id is the code, in a stable order.
pub fn render_sarif(diags: &[Diagnostic], sources: &SourceMap, failures: &[IoFailure]) -> String {
    let level = |s: Severity| {
        if s == Severity::Error {
            "error"
        } else {
            "warning"
        }
    };
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(),
                "name": format!("{c:?}"),
                "shortDescription": { "text": c.title() },
                "fullDescription": { "text": super::explanation(*c).summary },
                "defaultConfiguration": { "level": level(c.severity()) },
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            if let Some(help) = &d.help {
                text.push_str(&format!("\nhelp: {help}"));
            }
            let primary = d.labels.iter().filter(|l| l.primary);
            let related = d.labels.iter().filter(|l| !l.primary);
            json!({
                "ruleId": d.code.as_str(),
                "ruleIndex": Code::ALL.iter().position(|c| *c == d.code),
                "level": level(d.severity),
                "message": { "text": text },
                "locations": primary.map(|l| sarif_location(l.span, sources, Some(&l.message))).collect::<Vec<_>>(),
                "relatedLocations": related
                    .enumerate()
                    .map(|(i, l)| {
                        let mut v = sarif_location(l.span, sources, Some(&l.message));
                        v["id"] = json!(i);
                        v
                    })
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let notifications: Vec<Value> = failures
        .iter()
        .map(|f| json!({ "level": "error", "message": { "text": format!("{}: {}", f.path, f.message) } }))
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "flowc",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": failures.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }]
    });
    serde_json::to_string_pretty(&doc).expect("a JSON value always serialises")
}
