//! Logging set-up shared by every binary: logs go to stderr (stdout carries results other
//! programs read: run ids, status, tables), as text or JSON lines; and the one line a
//! binary prints for an error that ends it ([`error_text`]).

use std::io::IsTerminal;

/// `verbose`: 0 info, 1 debug, 2+ trace; `RUST_LOG` overrides. `json`: one JSON object a
/// line, for log collectors. Text logs are coloured only when stderr is a terminal (not
/// in Slurm's `.out` files or `kubectl logs`).
pub fn init_tracing(json: bool, verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// An error and its causes on one line, `outer: cause: root cause`, each text once: a
/// cause whose text the line already holds (an error that prints its source itself, as
/// thiserror's `{source}` does) is not repeated.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_text_names_each_cause_once() {
        let io = "No such file or directory (os error 2)";
        // thiserror style: the outer message already prints its source.
        let e = E("reading model.json: No such file or directory (os error 2)", Some(Box::new(E(io, None))));
        assert_eq!(error_text(&e), "reading model.json: No such file or directory (os error 2)");
        let e = E("--config run.toml", Some(Box::new(E("reading run.toml", Some(Box::new(E(io, None)))))));
        assert_eq!(error_text(&e), format!("--config run.toml: reading run.toml: {io}"));
        let shared = crate::Error::Io { path: "x/model.json".into(), source: std::io::Error::from(std::io::ErrorKind::NotFound) };
        let text = error_text(&shared);
        assert_eq!(text.matches("not found").count(), 1, "{text}");
    }
}
