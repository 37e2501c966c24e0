//! The `worker` binary: parses the command line, sets up logging, runs, maps the result to
//! an exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = worker::cli::Cli::parse();
    shared::logging::init_tracing(cli.log_json, cli.verbose);
    match worker::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", shared::logging::error_text(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
