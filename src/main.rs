//! The `pfgate` binary: parse the command line, run it, and report an error once (see `cli`).

use std::process::ExitCode;

use clap::Parser;

/// jemalloc on Linux: it leaves the untouched pages of an allocated buffer out of the resident
/// set, which is most of hyper's two 8 KB buffers while a caller waits for a person (BENCHMARKS.md,
/// "10,000 waiting callers and the allocator"). Elsewhere the system allocator.
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match pfgate::run(pfgate::Cli::parse()) {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}
