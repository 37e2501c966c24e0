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

mod embedded;
pub mod ops;
pub mod runid;
mod signal;
mod watch;

pub use embedded::run_embedded;
pub use signal::shutdown_signal;
pub use watch::{exit_code, reconcile, report_end, watch, QueueMode, WatchEnd};
