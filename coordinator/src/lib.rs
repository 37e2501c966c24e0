//! labelgen coordinator: the run lifecycle.
//!
//! # Layout
//! - `cli.rs` — the command line (clap) and dispatch.
//! - `ops.rs` — submit, status, list, cancel, retry-dead, finalize.
//! - `watch.rs` — progress until the run ends, then finalize.
//! - `embedded.rs` — `run`: an in-memory queue and in-process workers, no Redis.
//! - `runid.rs` — run ids: generated or checked.

mod cli;
mod embedded;
mod ops;
mod runid;
mod watch;

pub use cli::{init_tracing, run, Cli};
