//! labelgen worker library: the command line, pipelines and the job loop.
//!
//! # Layout
//! - `cli.rs` — the `worker` command line.
//! - `commands/` — one file per subcommand (`serve`, `procedural`).
//! - `pipelines.rs` — [`Factory`]: the pipeline a run spec asks for.

pub mod cli;
mod commands;
mod pipelines;

pub use pipelines::Factory;
