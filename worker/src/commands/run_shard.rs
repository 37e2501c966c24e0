//! `worker run-shard`: generate and commit shards with no Redis, for schedulers that index
//! their own tasks (Kubernetes Indexed Jobs, Slurm job arrays): one shard (`--shard K`),
//! or every TASKS-th shard from K (`--task K --tasks TASKS`), so an array of at most a
//! thousand tasks covers any run. Same commit protocol: a shard run twice is committed
//! once; `coordinator finalize RUN --config CONFIG` then writes the manifest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use shared::job::{execute_shard, prepare_output, Abort, PipelineFactory, ShardJob, ShardOutcome};
use shared::spec::RunSpec;

#[derive(Debug, clap::Args)]
pub struct RunShardArgs {
    /// Run spec (TOML).
    pub config: PathBuf,

    /// One shard to generate, 0-based (wins over --tasks and $LABELGEN_TASKS, so a pod of
    /// an array can rerun one shard) [default without --tasks: $JOB_COMPLETION_INDEX or
    /// $SLURM_ARRAY_TASK_ID].
    #[arg(long, conflicts_with = "task")]
    pub shard: Option<u64>,

    /// This task's index K: generate shards K, K+TASKS, K+2·TASKS, … one after another
    /// [default: $JOB_COMPLETION_INDEX or $SLURM_ARRAY_TASK_ID].
    #[arg(long, requires = "tasks")]
    pub task: Option<u64>,

    /// How many tasks share the run (the array's size; `coordinator plan --json` suggests
    /// one) [default: $LABELGEN_TASKS].
    #[arg(long, env = "LABELGEN_TASKS", value_parser = clap::value_parser!(u64).range(1..))]
    pub tasks: Option<u64>,

    /// Run id shared by every task of the run [default: static-DIGEST, from the spec, so
    /// every task agrees without being told].
    #[arg(long, env = "LABELGEN_RUN_ID", value_parser = shared::lifecycle::runid::parse_arg)]
    pub run_id: Option<String>,

    /// Where models run: auto, cpu, cuda or cuda:N (overrides pipeline.device). Not
    /// cuda:all: a task makes one shard at a time, so give each task one GPU.
    #[arg(long, env = "LABELGEN_DEVICE", value_name = "DEVICE")]
    pub device: Option<shared::spec::DeviceChoice>,

    #[command(flatten)]
    pub fit: crate::args::FitArgs,
}

/// The task index the scheduler gives (an Indexed Job's or a Slurm array's), and the
/// variable it came from.
fn index_from_env() -> anyhow::Result<Option<(u64, String)>> {
    for var in ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"] {
        if let Ok(v) = std::env::var(var) {
            let k = v.trim().parse::<u64>().with_context(|| format!("${var}: expected a task index, found {v:?}"))?;
            return Ok(Some((k, format!("${var}"))));
        }
    }
    Ok(None)
}

/// The shards this process runs: `--shard K`, or K, K+N, … for `--task K --tasks N`.
fn shards_to_run(args: &RunShardArgs, shards: u64) -> anyhow::Result<Vec<u64>> {
    if let Some(shard) = args.shard {
        if shard >= shards {
            bail!("--shard {shard}: the run has {shards} shards (0 to {})", shards - 1);
        }
        return Ok(vec![shard]);
    }
    let index = match args.task {
        Some(k) => Some((k, "--task".to_string())),
        None => index_from_env()?,
    };
    let Some((index, source)) = index else {
        bail!("no shard given: pass --shard K, or --task K --tasks N, or set JOB_COMPLETION_INDEX / SLURM_ARRAY_TASK_ID (with --tasks N or $LABELGEN_TASKS)");
    };
    match args.tasks {
        None => {
            if index >= shards {
                bail!("{source} {index} is a shard number without --tasks: the run has {shards} shards (0 to {})", shards - 1);
            }
            Ok(vec![index])
        }
        Some(tasks) => {
            if index >= tasks {
                bail!("{source} {index}: expected less than --tasks / $LABELGEN_TASKS {tasks}");
            }
            Ok((index..shards).step_by(tasks as usize).collect())
        }
    }
}

pub fn run(args: RunShardArgs) -> anyhow::Result<ExitCode> {
    let mut spec = RunSpec::load(&args.config)?;
    shared::lifecycle::ops::require_shared_output(&spec).with_context(|| args.config.display().to_string())?;
    if args.device.unwrap_or(spec.pipeline.device) == shared::spec::DeviceChoice::CudaAll {
        // It would load the models on every GPU and use one: shards run one at a time.
        bail!("{}: device cuda:all: run-shard makes one shard at a time, so it would use one GPU; give each task one GPU (cuda:N, or cuda with one GPU per task), or use `worker serve --device cuda:all`", args.config.display());
    }
    let shards = shards_to_run(&args, spec.shards())?;
    if shards.is_empty() {
        // More tasks than shards: this one has nothing to do.
        eprintln!("{}: this task has no shard (the run has {} shards)", args.config.display(), spec.shards());
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Models are checked and their digests pinned before the run id is derived, so every
    // shard of a static run verifies the same model bytes (a changed model is a new run).
    rt.block_on(shared::artifact::prepare(&mut spec)).with_context(|| format!("{}", args.config.display()))?;
    let run_id = match args.run_id {
        Some(id) => {
            shared::lifecycle::runid::check(&id, "--run-id / $LABELGEN_RUN_ID")?;
            id
        }
        None => shared::lifecycle::runid::static_run_id(&spec.digest()),
    };
    super::block_on_then_leave(rt, async move {
        let store = prepare_output(&spec, &run_id).await?;
        let pipeline = {
            let (spec, device, fit) = (spec.clone(), args.device, args.fit);
            tokio::task::spawn_blocking(move || crate::Factory::new(device).with_fit(fit).build(&spec)).await??
        };
        let owner = shared::job::default_owner();
        let spec = Arc::new(spec);
        let abort = Arc::new(Abort::default());
        // SIGTERM (the scheduler preempts the task) or Ctrl-C: stop at the next batch,
        // abort the uploads in flight and remove this attempt's objects.
        let signalled = {
            let (abort, run_id) = (abort.clone(), run_id.clone());
            tokio::spawn(async move {
                shared::lifecycle::shutdown_signal().await;
                eprintln!("run {run_id}: signal received; stopping without committing the shard in hand");
                abort.stop();
            })
        };
        let total = shards.len();
        let (mut committed, mut skipped, mut failed) = (0usize, 0usize, Vec::new());
        for (i, &shard) in shards.iter().enumerate() {
            let job = ShardJob {
                run_id: run_id.clone(),
                spec_digest: spec.digest(),
                spec: spec.clone(),
                store: store.clone(),
                pipeline: pipeline.clone(),
                shard,
                // A static attempt holds no lease; its data is named by a random attempt id.
                token: 0,
                owner: owner.clone(),
                retried: false,
                abort: abort.clone(),
            };
            match tokio::spawn(execute_shard(job)).await? {
                Ok(ShardOutcome::Committed(rec)) => {
                    committed += 1;
                    eprintln!("run {run_id}: shard {shard} committed ({} samples) [{}/{total}]", rec.samples.len(), i + 1);
                }
                Ok(ShardOutcome::AlreadyCommitted) => {
                    skipped += 1;
                    eprintln!("run {run_id}: shard {shard} was already committed; nothing to do [{}/{total}]", i + 1);
                }
                Ok(ShardOutcome::Stopped | ShardOutcome::LeaseLost) => {
                    eprintln!("run {run_id}: shard {shard} stopped before its commit; run the task again ({committed} committed, {skipped} already were, {} left)", total - i);
                    return Ok(ExitCode::from(130));
                }
                // One bad shard does not stop the task's others; the exit status says so.
                Err(e) => {
                    eprintln!("run {run_id}: shard {shard} failed: {e:#}");
                    failed.push(shard);
                }
            }
        }
        signalled.abort();
        if !failed.is_empty() {
            let list: Vec<String> = failed.iter().map(u64::to_string).collect();
            eprintln!(
                "run {run_id}: {} of {total} shards failed ({}); {committed} committed, {skipped} already were. Run the task again: committed shards are skipped",
                failed.len(),
                list.join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
        if total > 1 {
            eprintln!("run {run_id}: task done: {committed} shards committed, {skipped} already were");
        }
        println!("{run_id}");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn args(a: &[&str]) -> clap::error::Result<super::RunShardArgs> {
        let cli = Cli::try_parse_from(["worker", "run-shard", "run.toml"].iter().chain(a))?;
        let Some(Command::RunShard(a)) = cli.command else { panic!("not run-shard") };
        Ok(a)
    }

    /// `--shard K` reruns one shard even where `--tasks` is set (as `$LABELGEN_TASKS` is
    /// in an array's pods); with `--task` it is a usage error.
    #[test]
    fn one_shard_wins_over_the_task_count() {
        let a = args(&["--shard", "3", "--tasks", "10"]).unwrap();
        assert_eq!(super::shards_to_run(&a, 50).unwrap(), [3]);
        assert!(args(&["--shard", "3", "--task", "1", "--tasks", "10"]).is_err());
        let a = args(&["--task", "2", "--tasks", "10"]).unwrap();
        assert_eq!(super::shards_to_run(&a, 25).unwrap(), [2, 12, 22]);
        let a = args(&["--task", "12", "--tasks", "10"]).unwrap();
        let e = super::shards_to_run(&a, 25).unwrap_err().to_string();
        assert!(e.contains("--task 12") && e.contains("less than --tasks"), "{e}");
    }
}
