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

/// The largest flow file read, in bytes; a larger one (or an endless one,
/// such as a device) is refused before it is read whole.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

impl Loader for FsLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        use std::io::Read;
        let file = std::fs::File::open(path)?;
        if file.metadata()?.is_dir() {
            return Err(std::io::Error::other("it is a folder"));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(std::io::Error::other(format!(
                "it is larger than {} MiB, the most a flow file may hold",
                MAX_FILE_BYTES / (1024 * 1024)
            )));
        }
        // Text with control characters (a binary file) is not flow text:
        // it is named in the error, never quoted.
        String::from_utf8(bytes)
            .ok()
            .filter(|t| {
                !t.chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            })
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "it is not flow text (not UTF-8, or it holds control characters)",
                )
            })
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

/// A flow's identity is its content: the root file's text, and each used
/// file's text under its path relative to the root file's folder. How the
/// root was named (`./a.flow`, an absolute path, another working folder)
/// does not change it.
fn source_hash(sources: &SourceMap) -> String {
    let mut hasher = Sha256::new();
    let mut files = sources.files();
    let root_dir = match files.next() {
        Some((_, root)) => {
            hasher.update(root.text.as_bytes());
            hasher.update([0]);
            root.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        }
        None => PathBuf::new(),
    };
    for (_, file) in files {
        hasher.update(relative_to(&file.path, &root_dir).as_bytes());
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

/// `path` as seen from the folder `dir` (both as `load` spells them: the
/// same base, `.` and `a/..` removed), with `/` between parts.
fn relative_to(path: &Path, dir: &Path) -> String {
    let p: Vec<_> = path.components().collect();
    let d: Vec<_> = dir.components().collect();
    let common = p.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); d.len() - common];
    parts.extend(
        p[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}
