//! The `dialgate` binary: parses the command line and reports errors on one line.

use clap::Parser;

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
