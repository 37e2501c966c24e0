//! The `worker` binary: parses the command line, sets up logging, runs, maps the result to
//! an exit code.

fn main() -> std::process::ExitCode {
    let cli = worker::cli::Cli::parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    shared::logging::init_tracing(cli.log_json, cli.verbose);
    match worker::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", shared::logging::error_text(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
