//! Logging set-up shared by every binary: logs go to stderr (stdout carries results other
//! programs read: run ids, status, tables), as text or JSON lines.

/// `verbose`: 0 info, 1 debug, 2+ trace; `RUST_LOG` overrides. `json`: one JSON object a
/// line, for log collectors.
pub fn init_tracing(json: bool, verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
