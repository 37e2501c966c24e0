//! One file per subcommand: its clap arguments and its `run`.

pub mod procedural;
pub mod serve;
