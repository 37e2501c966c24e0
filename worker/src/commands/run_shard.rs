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
    #[arg(long, env = "LABELGEN_RUN_ID")]
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
        // A static attempt has no lease token: a fresh random id keeps its data apart.
        let attempt = shared::mix64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64 ^ ((std::process::id() as u64) << 40)) >> 1;
        let owner = shared::job::default_owner();
        let job = ShardJob {
            run_id: run_id.clone(),
            spec_digest: spec.digest(),
            spec: Arc::new(spec),
            store,
            pipeline,
            shard,
            attempt,
            owner,
            retried: false,
            abort: Arc::new(Abort::default()),
        };
        match execute_shard(job).await? {
            ShardOutcome::Committed(rec) => eprintln!("run {run_id}: shard {shard} committed ({} samples)", rec.samples.len()),
            ShardOutcome::AlreadyCommitted => eprintln!("run {run_id}: shard {shard} was already committed; nothing to do"),
            other => bail!("shard {shard} stopped: {other:?}"),
        }
        println!("{run_id}");
        Ok(ExitCode::SUCCESS)
    })
}
