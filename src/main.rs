//! The `dialgate` binary: parses the command line and reports errors on one line.

use clap::Parser;

// glibc's malloc spent ~7% of the server's CPU on the decision path
// (consolidating fastbins on every allocation over 1 KiB); mimalloc's
// thread-local free lists avoid that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // mimalloc asks for transparent huge pages on its arenas, so each time the
    // heap grows into a fresh 2 MiB region (the idempotency cache grows with
    // every request id), the thread that touches it stops while the kernel
    // zeroes, and sometimes compacts, a whole huge page: stalls of several
    // milliseconds for every call in flight (CheckCall p999 7 ms instead of
    // 2.5 ms at concurrency 16, measured with `cargo bench --bench checkcall`).
    // Off for this process only; failure just keeps the system's setting.
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
