//! `brski`: one binary for every role of the BRSKI / EST stack. This file only parses the
//! command line and hands over to `cli`; the roles live in their own crates.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_json || args.log_format == "json", args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // One line a person can act on; details went to the log.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
