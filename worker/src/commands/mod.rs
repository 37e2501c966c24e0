//! One file per subcommand: its clap arguments and its `run`.

pub mod procedural;
pub mod run_shard;
pub mod serve;
