//! Command line of the `labelgen-eval` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;

/// labelgen evaluation: measures a run's label maps against a real dataset (`labels`),
/// the run's utility for training a segmentation model (`utility`, the paper's Table 1),
/// label quality by label model and sampler (`sampling`), and the segmentation model's
/// cost (`bench-seg`).
///
/// Typical use, after `worker run configs/local.toml`:
///   labelgen-eval labels --real REAL_DIR --synthetic out/local/RUN --out out/eval/labels
///   labelgen-eval utility --real REAL_DIR --synthetic out/local/RUN --replace 0.1 --seeds 3 --out out/eval/utility
#[derive(Debug, Parser)]
#[command(name = "labelgen-eval", version, verbatim_doc_comment)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "LABELGEN_LOG_JSON")]
    pub log_json: bool,

    /// More log detail (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // No doc comments here: `labelgen-eval labels --help` shows the one on `Args`.
    Labels(commands::labels::Args),
    Utility(commands::utility::Args),
    Sampling(commands::sampling::Args),
    BenchSeg(commands::bench_seg::SegArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Labels(args) => commands::labels::run(args),
        Command::Utility(args) => commands::utility::run(args),
        Command::Sampling(args) => commands::sampling::run(args),
        Command::BenchSeg(args) => commands::bench_seg::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_argument_and_command_has_help() {
        let cli = super::Cli::command();
        labelgen_tests::cli::check_help(&cli, "labelgen evaluation: measures a run's label maps");
        // A subcommand's description is its own, not a flattened flag group's.
        let about = cli.find_subcommand("bench-seg").and_then(|c| c.get_about()).map(|a| a.to_string()).unwrap_or_default();
        assert!(about.starts_with("The segmentation model's size and speed"), "{about}");
    }
}
