//! Command-line interface of the `worker` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;

/// labelgen worker: generates labeled samples for every active run in Redis, runs a whole
/// dataset on this machine with no services (`run`), and the model tools (train, sample,
/// cleanup, synthesize, bench).
///
/// With no subcommand the worker serves the queue: it claims jobs of every active run,
/// generates their samples, commits each shard to object storage and acks it.
#[derive(Debug, Parser)]
#[command(name = "worker", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: commands::serve::ServeArgs,

    /// Log as JSON lines (for log collectors) instead of text.
    #[arg(long, global = true, env = "LABELGEN_LOG_JSON")]
    pub log_json: bool,

    /// More log detail (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the queue (the default when no subcommand is given).
    Serve(commands::serve::ServeArgs),
    /// Generate a dataset on this machine: in-memory queue, in-process workers, no Redis.
    Run(commands::run::Args),
    /// Generate and commit one shard of a run without Redis (Indexed Jobs, Slurm arrays).
    RunShard(commands::run_shard::RunShardArgs),
    /// Write a procedural land-cover dataset: DIR/images, DIR/labels, DIR/previews.
    Procedural(commands::procedural::ProceduralArgs),
    /// Train a model on a dataset directory (images/ + labels/).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Sample label maps from a trained DDPM.
    SampleLabels(commands::sample_labels::Args),
    /// Remove label islands and ramp edges, then upscale (plain Rust, no model).
    Cleanup(commands::cleanup::Args),
    /// Paint images for label maps with a trained SPADE generator.
    Synthesize(commands::synthesize::Args),
    /// Measure the ddpm-spade pipeline (per-stage times, images/s; CPU versus CUDA).
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train the DDPM label-map generator.
    Ddpm(commands::train_ddpm::Args),
    /// Train the SPADE image generator.
    Spade(commands::train_spade::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => commands::serve::run(cli.serve),
        Some(Command::Serve(args)) => commands::serve::run(args),
        Some(Command::Run(args)) => commands::run::run(args),
        Some(Command::RunShard(args)) => commands::run_shard::run(args),
        Some(Command::Procedural(args)) => commands::procedural::run(args),
        Some(Command::Train(TrainCommand::Ddpm(args))) => commands::train_ddpm::run(args),
        Some(Command::Train(TrainCommand::Spade(args))) => commands::train_spade::run(args),
        Some(Command::SampleLabels(args)) => commands::sample_labels::run(args),
        Some(Command::Cleanup(args)) => commands::cleanup::run(args),
        Some(Command::Synthesize(args)) => commands::synthesize::run(args),
        Some(Command::Bench(cmd)) => commands::bench::run(cmd),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_argument_and_command_has_help() {
        labelgen_tests::cli::check_help(&super::Cli::command(), "labelgen worker: generates labeled samples");
    }
}
