//! `flowc fmt [--check] [--diff] FILE…` (`-` for standard input; a folder
//! for every `.flow` file in it)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::diagnostic::Code;

#[derive(clap::Args)]
pub struct Args {
    /// Files or folders (every .flow file below); `-` reads standard input
    /// and writes the result to standard output
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Change nothing: list the files whose layout differs, exit 1 if any
    #[arg(long)]
    check: bool,
    /// Change nothing: print what would change, as a unified diff
    #[arg(long)]
    diff: bool,
}

pub fn run(args: Args) -> ExitCode {
    let mut files = Vec::new();
    for path in &args.files {
        if path.as_os_str() == "-" {
            files.push(path.clone());
        } else if path.is_dir() {
            collect(path, &mut files);
        } else {
            files.push(path.clone());
        }
    }
    let mut failed = false;
    let mut differs = 0;
    for path in &files {
        let stdin = path.as_os_str() == "-";
        let text = if stdin {
            let mut t = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut t) {
                Ok(_) => t,
                Err(e) => {
                    eprintln!("error: cannot read standard input: {e}");
                    failed = true;
                    continue;
                }
            }
        } else {
            match crate::check::Loader::load(&crate::check::FsLoader, path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", path.display());
                    failed = true;
                    continue;
                }
            }
        };
        let (_, diagnostics) = crate::syntax::parse(crate::source::FileId(0), &text);
        if diagnostics.iter().any(|d| d.code == Code::Syntax) {
            let mut sources = crate::source::SourceMap::default();
            let name = if stdin {
                PathBuf::from("<stdin>")
            } else {
                path.clone()
            };
            sources.add(crate::source::SourceFile::new(name, text));
            eprint!(
                "{}",
                crate::diagnostic::render_human(
                    &diagnostics,
                    &sources,
                    super::color(),
                    super::width()
                )
            );
            eprintln!(
                "error: {} does not parse; it is left as it is",
                path.display()
            );
            failed = true;
            continue;
        }
        let formatted = crate::syntax::fmt::format(&text);
        if stdin && !args.check && !args.diff {
            out!("{formatted}");
            continue;
        }
        if formatted == text {
            continue;
        }
        differs += 1;
        if args.diff {
            let name = path.display().to_string();
            let diff = similar::TextDiff::from_lines(&text, &formatted);
            out!(
                "{}",
                diff.unified_diff()
                    .context_radius(2)
                    .header(&name, &format!("{name} (formatted)"))
            );
        } else if args.check {
            outln!("{}", path.display());
        } else if let Err(e) = super::files::write_file(path, &[], formatted.as_bytes()) {
            eprintln!("error: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::from(super::EXIT_USAGE)
    } else if (args.check || args.diff) && differs > 0 {
        eprintln!("{differs} file(s) are not formatted: run `flowc fmt` on them");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Every `.flow` file below a folder, sorted.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect(&p, files);
        } else if p.extension().is_some_and(|e| e == "flow") {
            files.push(p);
        }
    }
}
