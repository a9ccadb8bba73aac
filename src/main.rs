//! The `dialgate` binary: parses the command line and reports errors on one line.

use clap::Parser;

// glibc's malloc spent ~7% of the server's CPU on the decision path
// (consolidating fastbins on every allocation over 1 KiB); mimalloc's
// thread-local free lists avoid that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
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
