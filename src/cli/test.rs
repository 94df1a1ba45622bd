//! `flowc test FILE…`: run the `test` items of flows on a virtual clock.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::check::{self, FsLoader};
use crate::diagnostic;
use crate::runtime::scenario;

#[derive(clap::Args)]
pub struct Args {
    /// The .flow files whose tests to run
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    let mut broken = false;
    for path in &args.files {
        let c = match check::check(path, &FsLoader) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(super::EXIT_USAGE);
            }
        };
        let Some(program) = c.program.as_ref() else {
            eprint!(
                "{}",
                diagnostic::render_human(
                    &c.diagnostics,
                    &c.sources,
                    super::color(),
                    super::width()
                )
            );
            eprintln!(
                "error: {} has errors; its tests did not run",
                path.display()
            );
            broken = true;
            continue;
        };
        let Some(flow) = program.flow.as_ref() else {
            continue;
        };
        for test in &program.tests {
            let result = scenario::run_test(flow, test);
            if result.passed() {
                passed += 1;
                outln!("test {} :: {} ... ok", path.display(), result.name);
            } else {
                failed += 1;
                outln!("test {} :: {} ... FAILED", path.display(), result.name);
                for f in &result.failures {
                    outln!("    {f}");
                }
                outln!("    what happened:");
                for line in &result.timeline {
                    outln!("      {line}");
                }
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    if failed > 0 || broken {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
