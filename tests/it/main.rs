//! The integration test binary: UI fixtures, example flows, the CLI, tidiness
//! checks, random inputs, and a ledger of messages known to be poor.

mod bad_messages;
mod calendar;
mod cli;
mod contacts;
mod docs;
mod flows;
mod fmt;
mod fuzz;
mod graph;
mod lsp;
mod real;
mod run;
mod scenarios;
mod serve;
mod simulate;
mod sip;
mod stores;
mod tidy;
mod trust;
mod trust_lists;
mod ui;

use std::path::{Path, PathBuf};

/// Held by the tests that load the machine most (several flowc processes
/// and a database server) and by the one whose timers a starved machine
/// breaks (SIP under packet loss): they run one at a time, whatever
/// `cargo test` runs beside them.
pub fn one_heavy_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Paths relative to the crate root, so that snapshots and messages are stable.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `.flow` files directly inside a directory, sorted, as paths relative to the crate root.
pub fn flow_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .map(|p| {
            p.strip_prefix(root())
                .expect("inside the crate")
                .to_path_buf()
        })
        .collect();
    files.sort();
    files
}

/// Checks a file given relative to the crate root.
pub fn check(path: &Path) -> flowc::check::Compilation {
    std::env::set_current_dir(root()).expect("the crate root exists");
    flowc::check::check(path, &flowc::check::FsLoader)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn render(c: &flowc::check::Compilation) -> String {
    flowc::diagnostic::render_human(&c.diagnostics, &c.sources, false, 80)
}
