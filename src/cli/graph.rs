//! `flowc graph FILE [--format mermaid|dot] [--arm NAME]`

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The .flow file
    file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    format: Format,
    /// The experiment arm to draw (default: the first); each arm may have
    /// its own strategy, so its own retry loops
    #[arg(long, value_name = "NAME")]
    arm: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Mermaid `flowchart` text (GitHub and many editors draw it)
    Mermaid,
    /// Graphviz DOT (`dot -Tsvg`)
    Dot,
}

pub fn run(args: Args) -> ExitCode {
    let program = match super::flow_program(&args.file, "nothing to draw") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flow = program.flow.as_ref().expect("flow_program returns a flow");
    let arm = match &args.arm {
        None => 0,
        Some(name) => match flow.arms.iter().position(|a| &a.name == name) {
            Some(i) => i,
            None => {
                let names: Vec<&str> = flow.arms.iter().map(|a| a.name.as_str()).collect();
                return super::campaign::usage(format!(
                    "the flow has no arm `{name}`; its arms are: {}",
                    names.join(", ")
                ));
            }
        },
    };
    let graph = crate::graph::graph(flow, arm);
    match args.format {
        Format::Mermaid => out!("{}", graph.mermaid()),
        Format::Dot => out!("{}", graph.dot()),
    }
    ExitCode::SUCCESS
}
