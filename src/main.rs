//! The `pfgate` binary: parse the command line, run it, and report an error once (see `cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match pfgate::cli::run(pfgate::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}
