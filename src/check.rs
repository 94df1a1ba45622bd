//! The checker: loads a flow and the files it uses, resolves names, types
//! every expression, analyses routing, calendars and compliance, and builds
//! the IR. It does no I/O of its own (files come in through a [`Loader`]),
//! never panics on user input, and reports every diagnostic it finds.

mod analysis;
mod calendar;
mod diagnostics;
mod flow;
mod items;
mod load;
mod scope;
mod tests;
mod timing;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::diagnostic::Diagnostic;
use crate::ir;
use crate::source::SourceMap;

pub use calendar::PRESETS;
pub use timing::human_duration;

/// Where source files come from: the file system for the CLI, memory for tests.
pub trait Loader {
    fn load(&self, path: &Path) -> std::io::Result<String>;
}

pub struct FsLoader;

impl Loader for FsLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

#[derive(Default)]
pub struct MemoryLoader {
    pub files: HashMap<PathBuf, String>,
}

impl Loader for MemoryLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

/// The result of checking one root file.
pub struct Compilation {
    pub sources: SourceMap,
    /// Present when there is no error.
    pub program: Option<ir::Program>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Checks the file at `root` and every file it uses. Fails only when the
/// root itself cannot be read.
pub fn check(root: &Path, loader: &dyn Loader) -> std::io::Result<Compilation> {
    let text = loader.load(root)?;
    let loaded = load::load(root, text, loader);
    let mut diagnostics = loaded.diagnostics;
    // The source hash goes into the IR; it is computed beside the checks.
    let (hash, (flow, tests)) = std::thread::scope(|s| {
        let hash = s.spawn(|| source_hash(&loaded.sources));
        let scope = scope::Scope::build(&loaded.files, &mut diagnostics);
        let checked = flow::check_program(&scope, &mut diagnostics);
        (hash.join().expect("hashing never panics"), checked)
    });
    diagnostics.sort_by_key(|d| (d.primary_span().map(|s| (s.file, s.start)), d.code));
    diagnostics.dedup();
    let ok = !diagnostics.iter().any(Diagnostic::is_error);
    let program = ok.then(|| ir::Program {
        format_version: ir::FORMAT_VERSION,
        compiler_version: env!("CARGO_PKG_VERSION").to_string(),
        source_hash: hash,
        flow,
        tests,
    });
    Ok(Compilation {
        sources: loaded.sources,
        program,
        diagnostics,
    })
}

/// Checks one in-memory source (uses resolve against nothing).
pub fn check_source(name: &str, text: &str) -> Compilation {
    let mut loader = MemoryLoader::default();
    loader.files.insert(PathBuf::from(name), text.to_string());
    check(Path::new(name), &loader).expect("the root is in memory")
}

fn source_hash(sources: &SourceMap) -> String {
    let mut hasher = Sha256::new();
    for (_, file) in sources.files() {
        hasher.update(file.name().as_bytes());
        hasher.update([0]);
        hasher.update(file.text.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
