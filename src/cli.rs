//! The command line. Only this module prints, reads arguments, picks colours
//! and exit codes.

/// `print!` that ends the command quietly when standard output is a
/// closed pipe (`flowc report … | head`), and with a message on another
/// write error, instead of panicking.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::write_stdout(format_args!($($t)*)) };
}

/// `println!`, as [`out!`].
macro_rules! outln {
    () => { $crate::cli::write_stdout(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($t)*))) };
}

mod campaign;
mod check;
mod compile;
mod control;
mod explain;
mod files;
mod fmt;
mod graph;
mod plan;
mod report;
mod run;
mod serve;
mod signals;
mod simulate;
mod test;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flowc",
    version,
    about = "Outbound call campaigns as code: check, compile and run .flow files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check flows; exit 0 when clean, 1 on errors, 2 on usage or I/O problems
    Check(check::Args),
    /// Explain a diagnostic code, with a wrong and a fixed example
    Explain(explain::Args),
    /// Check a flow and write its IR as JSON
    Compile(compile::Args),
    /// Print each strategy's attempt timeline and the callable windows of the coming week
    Plan(plan::Args),
    /// Draw a flow: steps, routes, retries and ends, as Mermaid or Graphviz DOT
    Graph(graph::Args),
    /// Lay flows out the canonical way (indentation, spacing, aligned routes)
    Fmt(fmt::Args),
    /// A language server over standard input and output, for editors
    Lsp,
    /// Run the `test` items of flows on a virtual clock with a scripted dialer
    Test(test::Args),
    /// Run a campaign on a virtual clock with the simulated dialer and print its report
    Simulate(simulate::Args),
    /// Run a campaign on the wall clock through a dialer, journalled in a database; resumable
    Run(run::Args),
    /// Print the report of a run kept in a database
    Report(report::Args),
    /// Serve the executions API and the dashboard over HTTP, running campaigns
    Serve(serve::Args),
    /// Make, list and revoke the API keys of `flowc serve`
    Keys(serve::KeysArgs),
    /// Place the calls of every running campaign of a PostgreSQL database, beside other workers
    Worker(worker::Args),
    /// Pause, resume or cancel a campaign that workers run (PostgreSQL)
    Campaign(control::Args),
}

/// Exit status 2: the command could not do its job (usage, unreadable file).
pub const EXIT_USAGE: u8 = 2;

pub fn main() -> ExitCode {
    // `flowc run` pauses on SIGINT and SIGTERM from its first instant, even
    // while its arguments are read.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "run" || a == "serve" || a == "worker")
    {
        signals::install();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Lsp => {
            crate::lsp::serve();
            ExitCode::SUCCESS
        }
        Command::Test(args) => test::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Campaign(args) => control::run(args),
        Command::Run(args) => run::run(args),
        Command::Report(args) => report::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Keys(args) => serve::keys(args),
    }
}

/// Colours on stderr unless `NO_COLOR` is set or stderr is not a terminal.
fn color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// The checked program of a flow file, for the commands that run a flow:
/// diagnostics go to standard error; a file that cannot be read, has errors
/// or holds no flow ends the command with the matching exit code. A `.json`
/// file is a program `flowc compile` wrote.
fn flow_program(path: &std::path::Path, instead: &str) -> Result<crate::ir::Program, ExitCode> {
    if path.extension().is_some_and(|e| e == "json") {
        return compiled_program(path).map_err(|e| {
            eprintln!("error: {}: {e}; {instead}", path.display());
            ExitCode::from(EXIT_USAGE)
        });
    }
    let c = crate::check::check(path, &crate::check::FsLoader).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        ExitCode::from(EXIT_USAGE)
    })?;
    if !c.diagnostics.is_empty() {
        eprint!(
            "{}",
            crate::diagnostic::render_human(&c.diagnostics, &c.sources, color(), width())
        );
    }
    match c.program {
        Some(p) if p.flow.is_some() => Ok(p),
        _ => {
            eprintln!("error: {} has errors or no flow; {instead}", path.display());
            Err(ExitCode::from(1))
        }
    }
}

/// A program as `flowc compile` wrote it, of this flowc's IR format, with a flow.
pub(crate) fn compiled_program(path: &std::path::Path) -> Result<crate::ir::Program, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    compiled_program_of(&text)
}

pub(crate) fn compiled_program_of(text: &str) -> Result<crate::ir::Program, String> {
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let version: Version = serde_json::from_str(text)
        .map_err(|e| format!("it is not a compiled flow (the JSON `flowc compile` writes): {e}"))?;
    if version.format_version != crate::ir::FORMAT_VERSION {
        return Err(format!(
            "it was compiled to IR format {}, and this flowc runs format {}: compile the flow again with this flowc",
            version.format_version,
            crate::ir::FORMAT_VERSION
        ));
    }
    let program: crate::ir::Program = serde_json::from_str(text)
        .map_err(|e| format!("it is not a compiled flow of this flowc: {e}"))?;
    if program.flow.is_none() {
        return Err("the compiled program holds no flow".into());
    }
    Ok(program)
}

fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(100)
}

/// Writes to standard output; see [`out!`].
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader has what it wanted: nothing is wrong.
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(i32::from(EXIT_USAGE));
    }
}
