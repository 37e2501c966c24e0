//! One file per subcommand: its clap arguments and its `run`.

pub mod bench;
pub mod cleanup;
pub mod procedural;
pub mod run;
pub mod run_shard;
pub mod sample_labels;
pub mod serve;
pub mod synthesize;
pub mod train_ddpm;
pub mod train_spade;
