//! `flowc explain CODE`

use std::process::ExitCode;

use crate::diagnostic::{explanation, Code};

#[derive(clap::Args)]
pub struct Args {
    /// A diagnostic code such as E0201
    code: String,
}

pub fn run(args: Args) -> ExitCode {
    let Some(code) = Code::parse(&args.code) else {
        eprintln!("error: there is no diagnostic code `{}`", args.code);
        let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        eprintln!("the codes are: {}", codes.join(", "));
        return ExitCode::from(super::EXIT_USAGE);
    };
    out!("{}", explanation(code).render());
    ExitCode::SUCCESS
}
