//! `flowc check FILE…`

use std::path::PathBuf;
use std::process::ExitCode;

use crate::check::{self, FsLoader};
use crate::diagnostic::{self, render::IoFailure, Diagnostic, Format};
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
}

pub fn run(args: Args) -> ExitCode {
    let mut sources = SourceMap::default();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut failures: Vec<IoFailure> = Vec::new();
    for path in &args.files {
        match check::check(path, &FsLoader) {
            Ok(c) => {
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
        }
        Format::Json => println!("{}", diagnostic::render_json(&diags, &sources, &failures)),
        Format::Github => print!("{}", diagnostic::render_github(&diags, &sources, &failures)),
        Format::Sarif => println!("{}", diagnostic::render_sarif(&diags, &sources, &failures)),
    }
    if !failures.is_empty() {
        return ExitCode::from(super::EXIT_USAGE);
    }
    let deny = args.deny.is_some();
    if diags.iter().any(|d| d.is_error() || deny) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
