//! Command-line interface of the `worker` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;

/// labelgen worker: generates labeled samples for every active run in Redis, runs a whole
/// dataset on this machine with no services (`run`) or a run's shards without Redis
/// (`run-shard`), and the model tools (train, sample, cleanup, synthesize, procedural
/// tiles, bench).
///
/// With no subcommand the worker serves the queue: it claims jobs of every active run,
/// generates their samples, commits each shard to object storage and acks it.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
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

impl Cli {
    /// Parses the command line. The queue worker's flags (no subcommand) given with a
    /// subcommand are refused, naming the flag; the global flags (`-v`, `--log-json`) go
    /// anywhere, before the subcommand too (clap's `args_conflicts_with_subcommands` would
    /// refuse `worker -v run …`). Flags set from the environment (`LABELGEN_*` in a pod)
    /// never conflict.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let mut cmd = Cli::command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        if let Some(sub) = matches.subcommand_name() {
            let given = cmd.get_arguments().filter(|a| !a.is_global_set()).find(|a| matches.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine));
            if let Some(arg) = given {
                let flag = arg.get_long().map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                return Err(cmd.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{flag} is a flag of the queue worker (`worker` with no subcommand), not of `worker {sub}`; give it after `worker {sub}` if that command has it"),
                ));
            }
        }
        Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the queue (the default when no subcommand is given).
    Serve(commands::serve::ServeArgs),
    // No doc comment on a variant whose `Args` has one: clap would let the variant's line
    // replace the whole long help (exit codes, examples) of `worker CMD --help`.
    Run(commands::run::Args),
    /// Generate and commit a shard of a run without Redis, or a task's share of them
    /// (Indexed Jobs, Slurm arrays).
    RunShard(commands::run_shard::RunShardArgs),
    Procedural(commands::procedural::ProceduralArgs),
    /// Train a model on a dataset directory (images/ + labels/).
    #[command(subcommand)]
    Train(TrainCommand),
    SampleLabels(commands::sample_labels::Args),
    Cleanup(commands::cleanup::Args),
    Synthesize(commands::synthesize::Args),
    /// Benchmarks: the ddpm-spade pipeline (per-stage times, images/s, CPU versus CUDA),
    /// upscaling, the training loader, encoding.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    // The help is on each `Args` (see `Command`).
    Ddpm(commands::train_ddpm::Args),
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

    /// Global flags go before the subcommand too; the queue worker's own flags do not go
    /// with a subcommand (refused, naming the flag, exit 2); environment values never clash.
    #[test]
    fn global_flags_go_anywhere_and_serve_flags_only_without_a_subcommand() {
        use super::{Cli, Command};
        let cli = Cli::parse_args(["worker", "-v", "--log-json", "run", "c.toml"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Run(_))) && cli.verbose == 1 && cli.log_json);
        let cli = Cli::parse_args(["worker", "run", "c.toml", "-vv"]).unwrap();
        assert_eq!(cli.verbose, 2);
        let e = Cli::parse_args(["worker", "--concurrency", "2", "run", "c.toml"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(e.to_string().contains("--concurrency is a flag of the queue worker") && e.to_string().contains("worker run"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(Cli::parse_args(["worker", "--concurrency", "2"]).unwrap().command.is_none());
    }

    #[test]
    fn every_argument_and_command_has_help() {
        labelgen_tests::cli::check_help(&super::Cli::command(), "labelgen worker: generates labeled samples");
    }

    /// `worker CMD --help` shows the whole text on the command's `Args` (exit codes,
    /// what it writes, an example), not one line of it.
    #[test]
    fn long_help_keeps_the_examples() {
        let mut cli = super::Cli::command();
        for path in [&["run"][..], &["procedural"], &["sample-labels"], &["cleanup"], &["synthesize"], &["train", "ddpm"], &["train", "spade"]] {
            let mut cmd = &mut cli;
            for name in path {
                cmd = cmd.find_subcommand_mut(name).unwrap_or_else(|| panic!("no subcommand {name}"));
            }
            let help = cmd.render_long_help().to_string();
            assert!(help.contains("Example: worker "), "`worker {} --help` lost its long text:\n{help}", path.join(" "));
        }
    }

    /// Every `$W …` line of the demo scripts parses (a flag pair clap refuses once broke
    /// three of them, which only an hour-long rerun would have shown).
    #[test]
    fn the_demo_scripts_worker_commands_parse() {
        let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        let read = |name: &str| std::fs::read_to_string(scripts.join(name)).unwrap_or_else(|e| panic!("scripts/{name}: {e}"));
        let recipe = read("demo-recipe.sh");
        let demo_ddpm = recipe.split_once("DEMO_DDPM=(").and_then(|(_, rest)| rest.split_once(')')).expect("DEMO_DDPM=( … ) in demo-recipe.sh").0.to_string();
        // Substituted in this order ($WORK last: DEMO_DDPM holds it).
        let vars = [("\"${DEMO_DDPM[@]}\"", demo_ddpm.as_str()), ("$DDPM_STEPS", "10"), ("$SPADE_STEPS", "10"), ("$STEPS", "10"), ("$FRACTION", "0.6"), ("$WORK", "/w")];
        let mut checked = 0;
        for name in ["demo-recipe.sh", "make-demo-models.sh", "sampling-table.sh", "scarce-data.sh"] {
            let text = read(name).replace("\\\n", " ");
            for line in text.lines().map(str::trim).filter(|l| l.starts_with("$W ")) {
                let mut command = line["$W ".len()..].trim_end_matches('&').to_string();
                for (var, value) in vars {
                    command = command.replace(var, value);
                }
                assert!(!command.contains('$'), "scripts/{name}: `{line}`: a variable this test does not set");
                let args = std::iter::once("worker").chain(command.split_whitespace().map(|a| a.trim_matches('"')));
                if let Err(e) = super::Cli::parse_args(args) {
                    panic!("scripts/{name}: `{line}` does not parse:\n{e}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} worker command lines found");
    }
}
