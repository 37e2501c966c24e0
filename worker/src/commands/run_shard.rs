//! `worker run-shard`: generate and commit one shard with no Redis, for schedulers that
//! index their own tasks (Kubernetes Indexed Jobs, Slurm job arrays). Same commit protocol:
//! a shard run twice is committed once; `coordinator finalize RUN --config CONFIG` then
//! writes the manifest.

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

    /// Shard to generate, 0-based [default: $JOB_COMPLETION_INDEX or $SLURM_ARRAY_TASK_ID].
    #[arg(long)]
    pub shard: Option<u64>,

    /// Run id shared by every task of the run [default: static-DIGEST, from the spec, so
    /// every task agrees without being told].
    #[arg(long, env = "LABELGEN_RUN_ID", value_parser = shared::lifecycle::runid::parse_arg)]
    pub run_id: Option<String>,

    /// Where models run: auto, cpu, cuda or cuda:N (overrides pipeline.device).
    #[arg(long, env = "LABELGEN_DEVICE", value_name = "DEVICE")]
    pub device: Option<shared::spec::DeviceChoice>,
}

fn shard_from_env() -> anyhow::Result<Option<u64>> {
    for var in ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"] {
        if let Ok(v) = std::env::var(var) {
            let k = v.trim().parse::<u64>().with_context(|| format!("${var}: expected a shard number, found {v:?}"))?;
            return Ok(Some(k));
        }
    }
    Ok(None)
}

pub fn run(args: RunShardArgs) -> anyhow::Result<ExitCode> {
    let mut spec = RunSpec::load(&args.config)?;
    let Some(shard) = args.shard.map(Ok).or_else(|| shard_from_env().transpose()).transpose()? else {
        bail!("no shard given: pass --shard K or set JOB_COMPLETION_INDEX / SLURM_ARRAY_TASK_ID");
    };
    if shard >= spec.shards() {
        bail!("--shard {shard}: the run has {} shards (0 to {})", spec.shards(), spec.shards() - 1);
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
    rt.block_on(async move {
        let store = prepare_output(&spec, &run_id).await?;
        let pipeline = {
            let (spec, device) = (spec.clone(), args.device);
            tokio::task::spawn_blocking(move || crate::Factory::new(device).build(&spec)).await??
        };
        let owner = shared::job::default_owner();
        let abort = Arc::new(Abort::default());
        let job = ShardJob {
            run_id: run_id.clone(),
            spec_digest: spec.digest(),
            spec: Arc::new(spec),
            store,
            pipeline,
            shard,
            // A static attempt holds no lease; its data is named by a random attempt id.
            token: 0,
            owner,
            retried: false,
            abort: abort.clone(),
        };
        let mut task = tokio::spawn(execute_shard(job));
        let outcome = tokio::select! {
            r = &mut task => r,
            _ = shared::lifecycle::shutdown_signal() => {
                // SIGTERM (the scheduler preempts the task) or Ctrl-C: stop at the next
                // batch, abort the uploads in flight and remove this attempt's objects.
                eprintln!("run {run_id}: shard {shard}: signal received; stopping without committing");
                abort.stop();
                task.await
            }
        };
        match outcome?? {
            ShardOutcome::Committed(rec) => eprintln!("run {run_id}: shard {shard} committed ({} samples)", rec.samples.len()),
            ShardOutcome::AlreadyCommitted => eprintln!("run {run_id}: shard {shard} was already committed; nothing to do"),
            ShardOutcome::Stopped | ShardOutcome::LeaseLost => {
                eprintln!("run {run_id}: shard {shard} stopped before its commit; run the task again");
                return Ok(ExitCode::from(130));
            }
        }
        println!("{run_id}");
        Ok(ExitCode::SUCCESS)
    })
}
