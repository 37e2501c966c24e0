//! labelgen worker library: the command line, pipelines and the job loop.
//!
//! # Layout
//! - `cli.rs` — the `worker` command line.
//! - `commands/` — one file per subcommand.

pub mod cli;
mod commands;
