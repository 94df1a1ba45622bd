//! Following `use` lines: every file is loaded once, paths resolve relative
//! to the importing file, and cycles and missing files are reported with a
//! label in each file involved.

use std::path::{Component, Path, PathBuf};

use super::diagnostics as diag;
use super::Loader;
use crate::calendar::ics;
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, SourceFile, SourceMap, Span, Spanned};
use crate::syntax::{self, ast};

pub struct Loaded {
    pub sources: SourceMap,
    pub files: Vec<(FileId, ast::File)>,
    pub diagnostics: Vec<Diagnostic>,
}

pub fn load(root: &Path, text: String, loader: &dyn Loader) -> Loaded {
    let mut loaded = Loaded {
        sources: SourceMap::default(),
        files: Vec::new(),
        diagnostics: Vec::new(),
    };
    let mut stack: Vec<(PathBuf, Option<Span>)> = Vec::new();
    visit(&mut loaded, loader, normalise(root), text, None, &mut stack);
    loaded
}

fn visit(
    loaded: &mut Loaded,
    loader: &dyn Loader,
    path: PathBuf,
    text: String,
    via: Option<Span>,
    stack: &mut Vec<(PathBuf, Option<Span>)>,
) {
    let id = loaded.sources.add(SourceFile::new(path.clone(), text));
    let (tree, mut diags) = syntax::parse(id, &loaded.sources.get(id).text);
    loaded.diagnostics.append(&mut diags);
    stack.push((path.clone(), via));
    let uses: Vec<(String, Span)> = tree
        .items
        .iter()
        .filter_map(|i| match i {
            ast::Item::Use(p) => Some((p.node.clone(), p.span)),
            _ => None,
        })
        .collect();
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut tree = tree;
    for item in &mut tree.items {
        if let ast::Item::Calendar(cal) = item {
            calendar_file(loaded, loader, &dir, cal);
        }
    }
    loaded.files.push((id, tree));
    for (rel, span) in uses {
        let refused =
            if Path::new(&rel).is_absolute() || rel.starts_with('/') || rel.starts_with('\\') {
                Some("an absolute path")
            } else if Path::new(&rel).extension().is_none_or(|e| e != "flow") {
                Some("not a `.flow` file")
            } else {
                None
            };
        if let Some(why) = refused {
            loaded.diagnostics.push(diag::use_path(&rel, span, why));
            continue;
        }
        let target = normalise(&dir.join(&rel));
        if let Some(pos) = stack.iter().position(|(p, _)| *p == target) {
            // The `use` that brought the target's successor in lies in the target file.
            let back = stack.get(pos + 1).and_then(|(_, s)| *s).unwrap_or(span);
            let mut chain: Vec<String> = stack[pos..]
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            chain.push(target.display().to_string());
            loaded.diagnostics.push(diag::use_cycle(span, back, &chain));
            continue;
        }
        if loaded.sources.find(&target).is_some() {
            continue;
        }
        match loader.load(&target) {
            Ok(text) => visit(loaded, loader, target, text, Some(span), stack),
            Err(e) => loaded
                .diagnostics
                .push(diag::use_not_found(&rel, span, &io_reason(&e))),
        }
    }
    stack.pop();
}

/// `calendar NAME from "file.ics"`: reads the file through the loader (it is
/// part of the flow's text, and of its identity) and adds its events to the
/// calendar as `closed` lines that point into the file.
fn calendar_file(loaded: &mut Loaded, loader: &dyn Loader, dir: &Path, cal: &mut ast::Calendar) {
    let Some(from) = &cal.from else {
        return;
    };
    let (rel, span) = (&from.node, from.span);
    let refused = if Path::new(rel).is_absolute() || rel.starts_with('/') || rel.starts_with('\\') {
        Some("an absolute path")
    } else if Path::new(rel)
        .extension()
        .is_none_or(|e| !e.eq_ignore_ascii_case("ics"))
    {
        Some("not an iCalendar (`.ics`) file")
    } else {
        None
    };
    if let Some(why) = refused {
        loaded
            .diagnostics
            .push(diag::calendar_file_path(rel, span, why));
        return;
    }
    let target = normalise(&dir.join(rel));
    let id = match loaded.sources.find(&target) {
        Some(id) => id,
        None => match loader.load(&target) {
            Ok(text) => loaded.sources.add(SourceFile::new(target, text)),
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::InvalidData => {
                        "the file is not text (not UTF-8, or it holds control characters)"
                            .to_string()
                    }
                    _ => io_reason(&e),
                };
                loaded
                    .diagnostics
                    .push(diag::calendar_file_unread(rel, span, &why));
                return;
            }
        },
    };
    let read = ics::read(&loaded.sources.get(id).text);
    for p in read.problems {
        let at = Span::new(id, p.at.start, p.at.end);
        loaded.diagnostics.push(diag::calendar_file_problem(
            p.error, at, span, p.message, p.label, p.help,
        ));
    }
    for c in read.closures {
        let at = Span::new(id, c.at.start, c.at.end);
        let window = c.window.map(|(start, end)| ast::Window {
            span: at,
            start: Spanned::new(start, at),
            end: Spanned::new(end, at),
        });
        cal.entries.push(ast::CalendarEntry::Closed {
            span: at,
            dates: vec![Spanned::new(c.date, at)],
            window,
            label: c.label,
        });
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::InvalidData => {
            "the file is not flow text (not UTF-8, or it holds control characters)".to_string()
        }
        _ => e.to_string(),
    }
}

/// Removes `.` and `a/..` without touching the file system, so that one file
/// reached by two spellings is loaded once.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
