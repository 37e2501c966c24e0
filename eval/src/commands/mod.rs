//! One file per subcommand: its clap arguments and its `run`.

pub mod bench_seg;
pub mod labels;
pub mod sampling;
pub mod utility;
