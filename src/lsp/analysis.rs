//! What the language server knows of a document, without the protocol:
//! diagnostics, the names defined across the `use`d files and where they
//! are used, hover text, completion candidates, symbols, renames and quick
//! fixes. Positions here are byte offsets in a file's text.

use std::path::{Path, PathBuf};

use crate::check::{Compilation, Loader};
use crate::diagnostic::Diagnostic;
use crate::ir;
use crate::source::SourceMap;
use crate::syntax::ast;

/// What a name defined in a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Step,
    Calendar,
    Strategy,
    Compliance,
    Field,
    Arm,
    Flow,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Step => "step",
            Kind::Calendar => "calendar",
            Kind::Strategy => "strategy",
            Kind::Compliance => "compliance policy",
            Kind::Field => "contact field",
            Kind::Arm => "experiment arm",
            Kind::Flow => "flow",
        }
    }
}

/// A name's definition.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub name: String,
    pub kind: Kind,
    pub path: PathBuf,
    pub start: usize,
    pub end: usize,
}

/// A place in a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub path: PathBuf,
    pub start: usize,
    pub end: usize,
}

/// A document checked with the files it uses.
pub struct Analysis {
    pub compilation: Compilation,
    pub definitions: Vec<Definition>,
}

/// Checks `path` (its text and the files it uses come from `loader`).
pub fn analyse(path: &Path, loader: &dyn Loader) -> Option<Analysis> {
    let compilation = crate::check::check(path, loader).ok()?;
    let mut definitions = Vec::new();
    for (id, file) in compilation.sources.files() {
        let (tree, _) = crate::syntax::parse(id, &file.text);
        collect(&tree, &file.path, &mut definitions);
    }
    Some(Analysis {
        compilation,
        definitions,
    })
}

fn collect(tree: &ast::File, path: &Path, out: &mut Vec<Definition>) {
    let mut add = |name: &ast::Ident, kind: Kind| {
        out.push(Definition {
            name: name.node.clone(),
            kind,
            path: path.to_path_buf(),
            start: name.span.start as usize,
            end: name.span.end as usize,
        })
    };
    for item in &tree.items {
        match item {
            ast::Item::Calendar(c) => add(&c.name, Kind::Calendar),
            ast::Item::Strategy(s) => add(&s.name, Kind::Strategy),
            ast::Item::Compliance(c) => add(&c.name, Kind::Compliance),
            ast::Item::Contact(schema) => {
                for f in &schema.fields {
                    add(&f.name, Kind::Field);
                }
            }
            ast::Item::Flow(flow) => {
                add(&flow.name, Kind::Flow);
                for step in &flow.steps {
                    add(&step.name, Kind::Step);
                }
                for e in &flow.experiments {
                    for arm in &e.arms {
                        add(&arm.name, Kind::Arm);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The identifier around byte `at` of `text`: its bounds, and whether it
/// is read as a contact field (`contact.NAME`).
pub fn word_at(text: &str, at: usize) -> Option<(usize, usize, bool)> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let at = at.min(text.len());
    let start = text[..at]
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_word(*c))
        .last()
        .map_or(at, |(i, _)| i);
    let end = text[at..]
        .char_indices()
        .find(|(_, c)| !is_word(*c))
        .map_or(text.len(), |(i, _)| at + i);
    if start == end || in_string_or_comment(text, start) {
        return None;
    }
    let field = text[..start].ends_with("contact.");
    Some((start, end, field))
}

/// Whether byte `at` of `text` lies in a string or a comment of its line
/// (block comments over several lines are not tracked).
fn in_string_or_comment(text: &str, at: usize) -> bool {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    // Inside a string, an interpolation `{…}` is code again.
    let mut quoted = false;
    let mut interpolating = false;
    let mut chars = text[line_start..at].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted && !interpolating => {
                chars.next();
            }
            '{' if quoted && !interpolating => {
                if chars.peek() == Some(&'{') {
                    chars.next();
                } else {
                    interpolating = true;
                }
            }
            '}' if interpolating => interpolating = false,
            '"' if !interpolating => quoted = !quoted,
            '/' if !quoted && chars.peek() == Some(&'/') => return true,
            _ => {}
        }
    }
    quoted && !interpolating
}

impl Analysis {
    /// The definition the identifier at `at` of `path` names.
    pub fn definition_at(&self, path: &Path, text: &str, at: usize) -> Option<&Definition> {
        let (start, end, field) = word_at(text, at)?;
        let name = &text[start..end];
        let candidates: Vec<&Definition> = self
            .definitions
            .iter()
            .filter(|d| d.name == name)
            .filter(|d| !field || d.kind == Kind::Field)
            .collect();
        // On a definition itself: that one.
        candidates
            .iter()
            .find(|d| d.path == path && d.start == start)
            .or_else(|| candidates.iter().find(|d| d.kind != Kind::Field || field))
            .or(candidates.first())
            .copied()
    }

    /// Every place the name of `def` stands for it, definition included,
    /// in every loaded file: identifiers outside strings and comments
    /// (fields only as `contact.NAME`, in tests' contacts and where they
    /// are declared).
    pub fn references(&self, def: &Definition) -> Vec<Place> {
        let mut places = Vec::new();
        for (_, file) in self.compilation.sources.files() {
            let text = &file.text;
            let mut from = 0;
            while let Some(found) = text[from..].find(def.name.as_str()) {
                let start = from + found;
                let end = start + def.name.len();
                from = end;
                let boundary =
                    |c: Option<char>| !c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if !boundary(text[..start].chars().next_back())
                    || !boundary(text[end..].chars().next())
                {
                    continue;
                }
                if in_string_or_comment(text, start) {
                    continue;
                }
                let as_field = text[..start].ends_with("contact.");
                let declared = file.path == def.path && start == def.start;
                let ok = match def.kind {
                    Kind::Field => {
                        as_field || declared || text[end..].trim_start().starts_with(':')
                    }
                    _ => !as_field && !text[..start].ends_with('.'),
                };
                if ok {
                    places.push(Place {
                        path: file.path.clone(),
                        start,
                        end,
                    });
                }
            }
        }
        places.sort();
        places
    }

    /// Hover text for the identifier at `at`: a field's type, a strategy's
    /// attempt timeline, a calendar's week, a step's place. `last_good` is
    /// the IR of the last version of the file that checked clean.
    pub fn hover(
        &self,
        path: &Path,
        text: &str,
        at: usize,
        last_good: Option<&ir::Program>,
    ) -> Option<String> {
        let def = self.definition_at(path, text, at)?;
        let flow = self
            .compilation
            .program
            .as_ref()
            .or(last_good)
            .and_then(|p| p.flow.as_ref());
        let body = match (def.kind, flow) {
            (Kind::Field, Some(flow)) => flow
                .contact
                .fields
                .iter()
                .find(|f| f.name == def.name)
                .map(|f| {
                    format!(
                        "contact field `{}`: {}",
                        f.name,
                        type_name(&f.ty, f.optional)
                    )
                }),
            (Kind::Strategy, Some(flow)) => plan_section(flow, &format!("strategy {} ", def.name)),
            (Kind::Calendar, Some(flow)) => {
                plan_section(flow, &format!("callable windows, calendar {} ", def.name))
            }
            _ => None,
        };
        Some(body.unwrap_or_else(|| format!("{} `{}`", def.kind.word(), def.name)))
    }
}

fn type_name(ty: &ir::Type, optional: bool) -> String {
    let base = match ty {
        ir::Type::Enum(values) => format!("enum({})", values.join(", ")),
        ir::Type::Optional(inner) => return type_name(inner, true),
        other => format!("{other:?}").to_lowercase(),
    };
    if optional {
        format!("{base}, optional")
    } else {
        base
    }
}

/// The part of `flowc plan`'s text that starts with `header`.
fn plan_section(flow: &ir::Flow, header: &str) -> Option<String> {
    let zone = crate::runtime::interpreter::flow_zone(flow);
    let from = flow
        .start
        .as_ref()
        .and_then(|s| crate::runtime::interpreter::local_instant(s, zone))
        .unwrap_or_else(chrono::Utc::now);
    let text = crate::plan::plan(flow, zone, from, None).render();
    let start = text.find(header)?;
    let section = &text[start..];
    let end = section.find("\n\n").unwrap_or(section.len());
    Some(format!("```text\n{}\n```", section[..end].trim_end()))
}

/// Keywords offered at the start of a line.
pub const KEYWORDS: &[&str] = &[
    "use",
    "contact",
    "calendar",
    "strategy",
    "compliance",
    "flow",
    "test",
    "step",
    "experiment",
    "dial",
    "say",
    "play",
    "gather",
    "record",
    "transfer",
    "set",
    "send sms",
    "send email",
    "flag",
    "opt out",
    "wait",
    "if",
    "else",
    "goto",
    "retry",
    "end completed",
    "end failed",
    "on",
    "hours",
    "pause",
    "closed",
    "max attempts",
    "min gap",
    "jitter",
    "quiet hours",
    "require consent",
    "allowed",
    "min ring",
    "no holidays",
    "title",
    "timezone",
    "region",
    "caller id",
    "concurrency",
    "rate",
    "start",
    "stop",
    "expect",
    "now",
    "arm",
];

/// What may be written at byte `at` of `text`: `(label, detail)`.
pub fn completions(analysis: Option<&Analysis>, text: &str, at: usize) -> Vec<(String, String)> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = text[line_start..at].trim_start();
    let defs = |kind: Kind| -> Vec<(String, String)> {
        analysis
            .map(|a| {
                a.definitions
                    .iter()
                    .filter(|d| d.kind == kind)
                    .map(|d| (d.name.clone(), kind.word().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    if before.ends_with("contact.") {
        return defs(Kind::Field);
    }
    let last = before.split_whitespace().last().unwrap_or("");
    if before.starts_with("timezone") && (before.ends_with('"') || last.starts_with('"')) {
        return chrono_tz::TZ_VARIANTS
            .iter()
            .map(|z| (z.name().to_string(), "IANA time zone".to_string()))
            .collect();
    }
    if before.starts_with("compliance") && !before.contains('{') {
        let mut out: Vec<(String, String)> = crate::check::PRESETS
            .iter()
            .map(|p| (p.name.to_string(), p.summary.to_string()))
            .collect();
        out.extend(defs(Kind::Compliance));
        return out;
    }
    if before.starts_with("strategy ") && before.split_whitespace().count() <= 2 {
        return defs(Kind::Strategy);
    }
    if before.starts_with("calendar ") && before.split_whitespace().count() <= 2 {
        return defs(Kind::Calendar);
    }
    if before.ends_with("->") || before.ends_with("-> ") || before.starts_with("goto") {
        return defs(Kind::Step);
    }
    if before == "on" || before.starts_with("on ") && !before.contains("->") {
        let routed = routed_in_step(text, line_start);
        return ir::Outcome::DIAL
            .iter()
            .map(|o| o.name())
            .chain(["exhausted", "other"])
            .filter(|o| !routed.iter().any(|r| r == o))
            .map(|o| (o.to_string(), "outcome not routed yet".to_string()))
            .collect();
    }
    let mut out: Vec<(String, String)> = KEYWORDS
        .iter()
        .map(|k| (k.to_string(), "keyword".to_string()))
        .collect();
    out.extend(defs(Kind::Step));
    out
}

/// The outcomes the `on` lines of the step around `line_start` route.
fn routed_in_step(text: &str, line_start: usize) -> Vec<String> {
    let step_start = text[..line_start].rfind("step ").unwrap_or(0);
    let step_end = text[line_start..]
        .find("\n  step ")
        .map_or(text.len(), |i| line_start + i);
    text[step_start..step_end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("on "))
        .filter_map(|l| l.split("->").next())
        .flat_map(|outcomes| outcomes.split(',').map(|o| o.trim().to_string()))
        .collect()
}

/// A quick fix for a diagnostic: a title and the text to put in place of
/// a range of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    pub title: String,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// The quick fixes of `d` (a did-you-mean; the missing routes of a dial).
pub fn fixes(d: &Diagnostic, text: &str) -> Vec<Fix> {
    let Some(span) = d.primary_span() else {
        return Vec::new();
    };
    let (start, end) = (span.start as usize, span.end as usize);
    let mut fixes = Vec::new();
    if let Some(name) = d
        .help
        .as_deref()
        .and_then(|h| h.strip_prefix("did you mean `"))
        .and_then(|h| h.split('`').next())
    {
        fixes.push(Fix {
            title: format!("replace with `{name}`"),
            start,
            end,
            text: name.to_string(),
        });
    }
    if d.code == crate::diagnostic::Code::MissingRoutes {
        let listed = d.message.split(" under ").next().unwrap_or("");
        let missing: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        // After the last route line of the step the dial is in.
        let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
        let indent: String = {
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            text[line_start..]
                .chars()
                .take_while(|c| *c == ' ')
                .collect()
        };
        let mut insert = line_end;
        let mut rest = &text[line_end..];
        while let Some(line) = rest
            .strip_prefix('\n')
            .map(|r| r.split('\n').next().unwrap_or(""))
        {
            if !line.trim_start().starts_with("on ") {
                break;
            }
            insert += 1 + line.len();
            rest = &text[insert..];
        }
        if !missing.is_empty() {
            let lines: String = missing
                .iter()
                .map(|o| format!("\n{indent}on {o} -> end failed \"{o}\""))
                .collect();
            fixes.push(Fix {
                title: format!("add routes for {}", missing.join(", ")),
                start: insert,
                end: insert,
                text: lines,
            });
        }
    }
    fixes
}

/// The document's items and steps: `(name, kind, start, end)`.
pub fn symbols(analysis: &Analysis, path: &Path) -> Vec<(String, Kind, usize, usize)> {
    analysis
        .definitions
        .iter()
        .filter(|d| d.path == path && d.kind != Kind::Field && d.kind != Kind::Arm)
        .map(|d| (d.name.clone(), d.kind, d.start, d.end))
        .collect()
}

/// The diagnostics of `path` among a compilation's.
pub fn diagnostics_of<'c>(
    compilation: &'c Compilation,
    path: &Path,
) -> Vec<(&'c Diagnostic, usize, usize)> {
    let sources: &SourceMap = &compilation.sources;
    let Some(file) = sources.find(path) else {
        return Vec::new();
    };
    compilation
        .diagnostics
        .iter()
        .filter_map(|d| {
            let span = d.primary_span()?;
            (span.file == file).then_some((d, span.start as usize, span.end as usize))
        })
        .collect()
}
