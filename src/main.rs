//! The `pfgate` binary: parse the command line, run it, and report an error once (see `cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match pfgate::run(pfgate::Cli::parse()) {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}
