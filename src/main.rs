//! The `pfgate` binary: parse the command line and run it (see `cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pfgate::cli::run(pfgate::cli::Cli::parse())
}
