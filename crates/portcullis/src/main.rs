//! The `portcullis` binary: parse the command line and run it (each command
//! sets up its own logging); exit 69 when the database is unavailable.

use std::process::ExitCode;

use clap::Parser;
use portcullis::cli::Cli;

fn main() -> ExitCode {
    tune_malloc();
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

/// glibc's malloc raises its mmap threshold after the first large free, and
/// from then on keeps argon2's 19 MiB working blocks in its heaps for good
/// (an idle server measured 78 MiB so). A fixed threshold keeps every block
/// of 1 MiB or more in its own mapping, returned to the system when freed;
/// two arenas bound how much the other threads' heaps can spread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    // Free memory inside the heaps (not only at their tops) goes back to
    // the system every few seconds: after a burst, the server shrinks.
    let trim = std::thread::Builder::new().name("malloc-trim".into()).spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            // SAFETY: malloc_trim is thread-safe and only releases free pages.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    drop(trim);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
