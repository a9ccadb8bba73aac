//! The `dialgate` binary: parses the command line and reports errors on one line.

use clap::Parser;

// glibc's malloc consolidates fastbins on allocations over 1 KiB, a
// visible cost on the decision path; mimalloc's thread-local free lists
// avoid it (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // mimalloc asks for transparent huge pages on its arenas, so each time the
    // heap grows into a fresh 2 MiB region (the idempotency cache grows with
    // every request id), the thread that touches it waits while the kernel
    // zeroes a whole huge page, and every call in flight waits with it
    // (the tail latency this costs is in docs/performance.md). Off for this
    // process only, but for the contact records' load at start-up
    // (`huge_pages::allowed_while`); a failure just keeps the system's
    // setting.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = dialgate::cli::Cli::parse();
    match dialgate::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
