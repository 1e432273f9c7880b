//! The `portcullis` binary: parse the command line and run it (each command
//! sets up its own logging); exit 69 when the database is unavailable.

use std::process::ExitCode;

use clap::Parser;
use portcullis::cli::Cli;

/// mimalloc gives freed memory back to the system within milliseconds;
/// glibc's malloc raises its mmap threshold after the first large free and
/// then keeps argon2's 19 MiB blocks in its heap for good (an idle server
/// measured 78 MiB with it). The library leaves the choice to its users.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(portcullis::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // sysexits' EX_UNAVAILABLE, so supervisors can tell "database
            // down, retry" from a configuration mistake.
            if e.chain().any(|cause| cause.is::<portcullis::store::Unavailable>()) {
                return ExitCode::from(69);
            }
            ExitCode::FAILURE
        }
    }
}
