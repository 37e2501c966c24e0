//! labelgen coordinator: the run lifecycle over Redis — submit, watch, status, list,
//! cancel, retry-dead, finalize. It depends on `shared` alone (no Burn): the operations
//! live in `shared::lifecycle`, this crate is their command line.
//!
//! # Layout
//! - `cli.rs` — the command line (clap) and dispatch.

mod cli;

pub use cli::{run, Cli};
