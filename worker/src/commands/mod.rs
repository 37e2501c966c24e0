//! One file per subcommand: its clap arguments and its `run`.

pub mod bench;
pub mod bench_seg;
pub mod cleanup;
pub mod eval_labels;
pub mod eval_utility;
pub mod procedural;
pub mod run_shard;
pub mod sample_labels;
pub mod serve;
pub mod synthesize;
pub mod train_ddpm;
pub mod train_spade;
