//! `flowc compile FILE -o OUT`

use std::path::PathBuf;
use std::process::ExitCode;

use crate::check::{self, FsLoader};
use crate::diagnostic;

#[derive(clap::Args)]
pub struct Args {
    /// The .flow file to compile
    file: PathBuf,
    /// Where to write the IR (JSON); `-` for standard output
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    let compilation = match check::check(&args.file, &FsLoader) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    if !compilation.diagnostics.is_empty() {
        eprint!(
            "{}",
            diagnostic::render_human(
                &compilation.diagnostics,
                &compilation.sources,
                super::color(),
                super::width()
            )
        );
    }
    let Some(program) = compilation.program else {
        eprintln!("error: {} has errors; no IR written", args.file.display());
        return ExitCode::from(1);
    };
    let json = serde_json::to_string_pretty(&program).expect("the IR always serialises");
    let written = if args.output.as_os_str() == "-" {
        outln!("{json}");
        Ok(())
    } else {
        std::fs::write(&args.output, json + "\n")
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", args.output.display());
            ExitCode::from(super::EXIT_USAGE)
        }
    }
}
