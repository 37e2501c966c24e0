//! A run's lifecycle as the coordinator drives it: run ids, submit, status figures,
//! watching a run to its end, finalize — and the embedded mode, which does all of it in
//! one process over an in-memory queue.
//!
//! # Layout
//! - `runid.rs` — run ids: checked, generated, and a static run's id from its spec.
//! - `ops.rs` — connect, submit, look up a run, finalize it, status figures.
//! - `watch.rs` — progress until the run ends, then finalize; the exit code of an end.
//! - `embedded.rs` — [`run_embedded`]: the embedded mode, given a pipeline factory.
//! - `signal.rs` — [`shutdown_signal`]: SIGTERM or SIGINT, for every long-running command.
//! - here: the command-line parsers of waits ([`parse_seconds`], [`parse_backoff_seconds`])
//!   and of job slots ([`parse_slots`]).

mod embedded;
pub mod ops;
pub mod runid;
mod signal;
mod watch;

pub use embedded::run_embedded;
pub use signal::shutdown_signal;
pub use watch::{exit_code, reconcile, report_end, watch, QueueMode, WatchEnd};

/// A command-line value in seconds (`--interval`, `--grace-seconds`…): a finite number
/// from 0 to a day. (`Duration::from_secs_f64` panics on NaN and infinity.)
pub fn parse_seconds(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        Ok(_) => Err(format!("{s}: expected seconds from 0 to 86400")),
        Err(e) => Err(format!("{s:?}: {e}; expected seconds from 0 to 86400")),
    }
}

/// A command-line backoff in seconds (`--local-backoff-seconds`): 0 to 60, the cap its
/// doubling stops at.
pub fn parse_backoff_seconds(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=60.0).contains(&v) => Ok(v),
        Ok(_) => Err(format!("{s}: expected seconds from 0 to 60 (the doubling stops at 60)")),
        Err(e) => Err(format!("{s:?}: {e}; expected seconds from 0 to 60")),
    }
}

/// A count of job slots (`--workers`, `--concurrency`): 1 to 1024.
pub fn parse_slots(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if (1..=1024).contains(&v) => Ok(v),
        Ok(_) => Err(format!("{s}: expected 1 to 1024 job slots")),
        Err(e) => Err(format!("{s:?}: {e}; expected 1 to 1024 job slots")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slots_and_backoffs_are_in_range() {
        assert_eq!(super::parse_slots("4"), Ok(4));
        assert!(super::parse_slots("0").unwrap_err().contains("expected 1 to 1024"));
        assert_eq!(super::parse_backoff_seconds("60"), Ok(60.0));
        for bad in ["300", "-1", "nan", "soon"] {
            assert!(super::parse_backoff_seconds(bad).unwrap_err().contains("expected seconds from 0 to 60"), "{bad}");
        }
    }

    #[test]
    fn seconds_are_finite_and_at_most_a_day() {
        assert_eq!(super::parse_seconds("0.5"), Ok(0.5));
        for bad in ["nan", "inf", "-1", "1e20", "soon"] {
            let err = super::parse_seconds(bad).unwrap_err();
            assert!(err.contains(bad) && err.contains("expected seconds from 0 to 86400"), "{err}");
        }
    }
}
