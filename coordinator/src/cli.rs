//! Command line of the `coordinator` binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared::lifecycle::{ops, report_end, runid, watch, QueueMode, WatchEnd};
use shared::queue::{RunState, Submitted};
use shared::spec::RunSpec;

/// labelgen coordinator: shards a dataset into jobs in Redis, follows the run and writes
/// its manifest. It links no model code: models are checked from their model.json and a
/// streamed sha256 of their weights. (One machine, no services: `worker run CONFIG`.)
///
/// Typical use:
///   coordinator submit configs/minio.toml              # prints the run id
///   coordinator watch RUN                              # progress; finalizes at the end
#[derive(Debug, Parser)]
#[command(name = "coordinator", version, verbatim_doc_comment)]
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

#[derive(Debug, clap::Args)]
pub struct RedisArg {
    /// Redis URL: redis://[:PASSWORD@]HOST:PORT[/DB], or rediss://… for TLS. The password
    /// may come from a file instead ($REDIS_PASSWORD_FILE, e.g. a mounted Secret); a CA
    /// that is not in the system trust store from $REDIS_TLS_CA_FILE (PEM).
    #[arg(long = "redis", env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", hide_env_values = true)]
    pub url: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Moved: the embedded mode is `worker run CONFIG` (the worker holds the models).
    #[command(hide = true)]
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Shard a run into jobs in Redis. Prints the run id as the last line of stdout.
    Submit {
        /// The run spec (TOML), e.g. configs/minio.toml.
        config: PathBuf,
        /// Run id; submitting the same id and spec again changes nothing, except that
        /// shards whose commit record exists are counted committed (a run Redis lost is
        /// rebuilt that way, as `resume` does).
        #[arg(long, value_parser = runid::parse_arg)]
        run_id: Option<String>,
        /// Print one JSON object instead: run_id, created (false when the same run was
        /// already submitted), samples, shards, committed_shards (those with a commit
        /// record already), output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Follow a run until it ends; finalize it when every shard is committed.
    /// Exit 0 when the manifest lists every sample (with --no-finalize: when every shard is
    /// committed), 4 when shards are dead, 3 if cancelled,
    /// 130 on SIGTERM/SIGINT (the run goes on), 1 on any other error, 2 on a usage error. If Redis loses the run, watch rebuilds it
    /// from storage (as `resume` does) and carries on.
    Watch {
        /// The run id `submit` printed.
        #[arg(value_parser = runid::parse_arg)]
        run: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0, value_parser = shared::lifecycle::parse_seconds)]
        interval: f64,
        /// Do not write the manifest at the end (`coordinator finalize RUN` does it later).
        #[arg(long)]
        no_finalize: bool,
        /// Warn once shards have been claimable this long (never claimed, given back,
        /// retries past their backoff, leases whose worker stopped heartbeating) with no
        /// worker holding a lease and nothing committed: no worker serves the run. 0: never.
        #[arg(long, default_value_t = 300.0, value_parser = shared::lifecycle::parse_seconds)]
        stall_warning_seconds: f64,
        /// Serve the run's queue gauges (labelgen_queue_shards) at http://ADDR/metrics.
        #[arg(long, env = "LABELGEN_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Show a run's counts (shards pending, leased, retrying, committed, dead).
    Status {
        /// The run id.
        #[arg(value_parser = runid::parse_arg)]
        run: String,
        /// Print one JSON object, the same fields for Redis and static runs (run_id, mode,
        /// state, samples, shards, output, pipeline, spec_digest, created_ms,
        /// dead_shards); what a static run cannot know is null.
        #[arg(long)]
        json: bool,
        /// A static run (made by `worker run-shard`, no Redis): count its commit records.
        #[arg(long, value_name = "CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Rebuild a run Redis lost (restart without its data, eviction, FLUSHALL) from its
    /// output store: run.json and the commit records. Exactly the shards without a commit
    /// record are queued again; nothing committed is generated twice.
    ///
    /// Example: coordinator resume s3://bucket/runs/run-20261201-101500-ab12
    Resume {
        /// The run's directory, as `watch` and `finalize` print it: OUTPUT_URL/RUN.
        run_uri: String,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Check a finalized run against what finalize wrote, every byte: one manifest line
    /// per index 0..count in order (no gap, no duplicate), manifest.jsonl and
    /// dataset/shards.jsonl as manifest.json records them, each tar's sha256 and size, each
    /// tar member's sha256 against its manifest line (every line's image, label and
    /// KEY.json present, nothing else) and each side table's rows against the same lines
    /// (or, for PNG runs, each image's and label's sha256). Streams everything: memory does
    /// not grow with the run.
    /// Exit 0 when all holds, 1 listing the first problems (each naming the object) when
    /// not. Needs no Redis.
    ///
    /// Example: coordinator verify s3://bucket/runs/run-20261201-101500-ab12
    Verify {
        /// The run's directory, as `watch` and `finalize` print it: OUTPUT_URL/RUN.
        run_uri: String,
        /// Print one JSON object instead: samples, tars, objects, bytes, members, tables,
        /// problem_count, problems; or {"error": …} (exit 1) when the run cannot be read at
        /// all.
        #[arg(long)]
        json: bool,
    },
    /// List the runs Redis knows, oldest first.
    List {
        /// Print a JSON array of `status --json` objects instead of one line per run.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Serve the queue's gauges over every active run at http://ADDR/metrics, for as long
    /// as it runs: labelgen_queue_work (shards pending or leased over all active runs: the
    /// workers wanted; KEDA scales on it), labelgen_active_runs and labelgen_queue_shards
    /// by run and state. A long-lived Deployment (k8s/base/queue-metrics.yaml): starting a
    /// run needs no manifest edit. /readyz is 503 while Redis cannot be read.
    Metrics {
        /// Address to serve on.
        #[arg(long, env = "LABELGEN_METRICS_ADDR", default_value = "0.0.0.0:9465")]
        addr: std::net::SocketAddr,
        /// Seconds between reads of the queue.
        #[arg(long, default_value_t = 5.0, value_parser = shared::lifecycle::parse_seconds)]
        interval: f64,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Print what a run would be, for scripts and schedulers: samples, shards, the spec
    /// digest (models checked by streaming, as submit does), the run id a static run gets
    /// by default, and an array size that covers every shard: `worker run-shard CONFIG
    /// --task K --tasks TASKS` for K in 0..TASKS runs shards K, K+TASKS, …
    ///
    /// Example: coordinator plan configs/aerial-512.toml --json --max-tasks 1000
    Plan {
        /// The run spec (TOML).
        config: PathBuf,
        /// Most tasks one array may have (Slurm's default MaxArraySize is 1001, so 1000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        max_tasks: u64,
        /// Print one JSON object: samples, shard_size, shards, spec_digest, static_run_id,
        /// output, tasks, shards_per_task.
        #[arg(long, conflicts_with = "shell")]
        json: bool,
        /// Print the same fields as NAME='VALUE' lines a shell script can `eval`.
        #[arg(long)]
        shell: bool,
    },
    /// Stop new claims of a run and free its queue state; jobs in flight may still
    /// commit, and stop at their next heartbeat.
    Cancel {
        /// The run id.
        #[arg(value_parser = runid::parse_arg)]
        run: String,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Give every dead shard of a run a fresh attempt budget.
    RetryDead {
        /// The run id.
        #[arg(value_parser = runid::parse_arg)]
        run: String,
        #[command(flatten)]
        redis: RedisArg,
    },
    /// Write manifest.jsonl and manifest.json of a fully committed run (safe to repeat).
    Finalize {
        /// The run id.
        #[arg(value_parser = runid::parse_arg)]
        run: String,
        /// Print one JSON object instead: run_id, samples, shards, removed_objects,
        /// aborted_uploads, manifest (its location).
        #[arg(long)]
        json: bool,
        /// A static run (made by `worker run-shard`, no Redis): the config it was made
        /// from, read only for output.url; the spec used is the run's own run.json there.
        #[arg(long, value_name = "CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        redis: RedisArg,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(dispatch(cli.command))
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run { rest } => {
            anyhow::bail!("`coordinator run` moved to the worker, which holds the models: run `worker run {}` (`cargo run -p worker -- run …`)", rest.join(" "))
        }
        Command::Submit { config, run_id, json, redis } => {
            let spec = load_prepared(&config).await?;
            ops::require_shared_output(&spec).with_context(|| config.display().to_string())?;
            for (key, path) in ops::relative_paths(&spec) {
                tracing::warn!(
                    "{}: {key} = {path:?} is a relative path: every worker reads it from its own working directory, not this one; use an absolute path or s3:// unless all workers start here",
                    config.display()
                );
            }
            let run_id = runid::pick(run_id, "--run-id")?;
            let queue = ops::connect(&redis.url).await?;
            let ops::Submission { submitted, committed, state } = ops::submit(queue.as_ref(), &spec, &run_id).await?;
            match submitted {
                Submitted::Created if committed > 0 => eprintln!(
                    "run {run_id}: the queue did not know it but storage holds its commit records: {committed} of {} shards committed, {} queued",
                    spec.shards(),
                    spec.shards() - committed
                ),
                Submitted::Created => eprintln!("submitted {} samples in {} shards", spec.run.count, spec.shards()),
                Submitted::AlreadyExists if state == RunState::Cancelled => eprintln!(
                    "run {run_id} was already submitted with this spec and is cancelled: nothing changed, and nothing serves it (submit the spec under a new run id to generate it)"
                ),
                Submitted::AlreadyExists => eprintln!("run {run_id} was already submitted with this spec; nothing changed (it is {})", state.as_str()),
            }
            if json {
                let output = shared::job::run_store(&spec, &run_id)?.display().to_string();
                let v = serde_json::json!({"run_id": run_id, "created": submitted == Submitted::Created, "state": state.as_str(), "samples": spec.run.count, "shards": spec.shards(), "committed_shards": committed, "output": output});
                println!("{v}");
            } else {
                println!("{run_id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { run, interval, no_finalize, stall_warning_seconds, metrics_addr, redis } => {
            let queue = ops::connect(&redis.url).await?;
            let metrics = shared::metrics::Metrics::coordinator();
            if let Some(addr) = metrics_addr {
                let bound = shared::metrics::serve_http(addr, metrics.clone()).await?;
                metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("metrics on http://{bound}/metrics");
            }
            let end = tokio::select! {
                end = watch(queue.as_ref(), &run, Duration::from_secs_f64(interval.max(0.05)), !no_finalize, stall_after(stall_warning_seconds), Some(&metrics)) => end?,
                // As PID 1 in a container: stop at once on SIGTERM rather than wait for SIGKILL.
                _ = shared::lifecycle::shutdown_signal() => WatchEnd::Interrupted,
            };
            Ok(report_end(&run, &end, QueueMode::Redis))
        }
        Command::Status { run, json, config, redis } => {
            let status = match config {
                Some(config) => ops::static_status(&static_spec(&config, &run).await?, &run).await?,
                None => {
                    let queue = ops::connect(&redis.url).await?;
                    let (rec, spec) = ops::load_run(queue.as_ref(), &run).await?;
                    let store = shared::job::run_store(&spec, &run)?;
                    let dead = queue.dead(&run).await?;
                    // Storage unreachable (no credentials here, an outage): the queue's
                    // counts are still worth showing.
                    if let Err(e) = shared::lifecycle::reconcile(queue.as_ref(), &store, &run, dead.iter().map(|d| d.shard)).await {
                        tracing::warn!(error = %e, "could not look for late commits of the dead shards in storage; showing the queue's counts as they are");
                    }
                    ops::redis_status(&rec, &spec, &queue.counts(&run).await?, queue.overdue(&run).await?, queue.dead(&run).await?)
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { run_uri, redis } => {
            let store = shared::storage::Store::open(&run_uri).with_context(|| format!("run directory {run_uri}"))?;
            let queue = ops::connect(&redis.url).await?;
            let r = ops::resume(queue.as_ref(), &store).await?;
            match r.submitted {
                Submitted::Created => eprintln!("run {}: rebuilt from storage: {} of {} shards committed, {} queued", r.run_id, r.committed, r.shards, r.shards - r.committed),
                Submitted::AlreadyExists => {
                    eprintln!("run {}: Redis still knows this run; its {} committed shards are counted as committed, nothing else changed", r.run_id, r.committed)
                }
            }
            println!("{}", r.run_id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { run_uri, json } => {
            let bar = shared::progress::bar(0, "objects hashed");
            let report = async {
                let store = shared::storage::Store::open(&run_uri)?;
                let report = shared::job::verify(&store, &|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await?;
                Ok::<_, shared::Error>((store, report))
            }
            .await;
            bar.finish_and_clear();
            let (store, report) = match report {
                Ok(r) => r,
                // What reads the JSON gets JSON even when the run cannot be read at all.
                Err(e) if json => {
                    println!("{}", serde_json::json!({ "error": e.to_string() }));
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else if report.ok() {
                let what = if report.tars > 0 {
                    format!(
                        "{} tars ({} bytes) match their sha256, their {} members the manifest's, and {} side tables its lines",
                        report.tars, report.bytes, report.members, report.tables
                    )
                } else {
                    format!("{} images and labels ({} bytes) match their sha256", report.objects, report.bytes)
                };
                println!("{}: OK: {} samples, indices 0..{} each once and in order; {what}", store.display(), report.samples, report.samples);
            } else {
                eprintln!("{}: {} problem(s):", store.display(), report.problem_count);
                for p in &report.problems {
                    eprintln!("  {p}");
                }
                if report.problem_count > report.problems.len() as u64 {
                    eprintln!("  … and {} more", report.problem_count - report.problems.len() as u64);
                }
            }
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::List { json, redis } => {
            let queue = ops::connect(&redis.url).await?;
            let mut all = Vec::new();
            for run in queue.list().await? {
                let c = queue.counts(&run).await?;
                if json {
                    let (rec, spec) = ops::load_run(queue.as_ref(), &run).await?;
                    all.push(ops::redis_status(&rec, &spec, &c, queue.overdue(&run).await?, queue.dead(&run).await?));
                } else {
                    println!("{run}\t{}\t{}/{} shards committed\t{} dead", c.state.as_str(), c.committed, c.total, c.dead);
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Metrics { addr, interval, redis } => {
            let queue = ops::connect(&redis.url).await?;
            let metrics = shared::metrics::Metrics::coordinator();
            let bound = shared::metrics::serve_http(addr, metrics.clone()).await?;
            eprintln!("queue metrics on http://{bound}/metrics (every {interval} s)");
            let serve = async {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(interval.max(0.05)));
                loop {
                    tick.tick().await;
                    match ops::active_counts(queue.as_ref()).await {
                        Ok(runs) => {
                            metrics.set_active(&runs);
                            metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        // The last figures stay (workers keep running); readiness says so.
                        Err(e) => {
                            metrics.ready.store(false, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(error = %e, "cannot read the queue; keeping the last figures");
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => unreachable!("the metrics loop never ends"),
                _ = shared::lifecycle::shutdown_signal() => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Plan { config, max_tasks, json, shell } => {
            let spec = load_prepared(&config).await?;
            let plan = ops::plan(&spec, max_tasks);
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else if shell {
                let serde_json::Value::Object(fields) = serde_json::to_value(&plan)? else { unreachable!("a plan is an object") };
                for (name, value) in fields {
                    let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                    println!("{name}='{}'", text.replace('\'', "'\\''"));
                }
            } else {
                println!("samples          {}", plan.samples);
                println!("shards           {} of {} samples", plan.shards, plan.shard_size);
                println!("spec digest      {}", plan.spec_digest);
                println!("static run id    {}", plan.static_run_id);
                println!("output           {}", plan.output);
                println!("array            {} tasks of up to {} shards: worker run-shard CONFIG --task K --tasks {}", plan.tasks, plan.shards_per_task, plan.tasks);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { run, redis } => {
            let queue = ops::connect(&redis.url).await?;
            ops::load_run(queue.as_ref(), &run).await?;
            if queue.counts(&run).await?.state == RunState::Cancelled {
                eprintln!("run {run} is already cancelled: nothing changed");
            } else if queue.cancel(&run).await? == RunState::Finalized {
                eprintln!("run {run} is already finalized (its manifest is written): nothing to cancel");
            } else {
                eprintln!("run {run} cancelled: no new claims; jobs in flight stop at their next heartbeat");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::RetryDead { run, redis } => {
            let queue = ops::connect(&redis.url).await?;
            let (_, spec) = ops::load_run(queue.as_ref(), &run).await?;
            // Storage first: a dead shard whose data was committed late is done, not retried.
            let store = shared::job::run_store(&spec, &run)?;
            let dead = queue.dead(&run).await?;
            let fixed = shared::lifecycle::reconcile(queue.as_ref(), &store, &run, dead.iter().map(|d| d.shard)).await?;
            if fixed > 0 {
                eprintln!("run {run}: {fixed} dead shard(s) had a commit record in storage: marked committed");
            }
            let n = queue.retry_dead(&run).await?;
            eprintln!("run {run}: {n} dead shard(s) queued again");
            Ok(ExitCode::SUCCESS)
        }
        Command::Finalize { run, json, redis, config } => {
            let (report, store) = match config {
                Some(config) => {
                    let spec = static_spec(&config, &run).await?;
                    let store = shared::job::run_store(&spec, &run)?;
                    (shared::job::finalize(&store, &run, &spec).await?, store)
                }
                None => {
                    let queue = ops::connect(&redis.url).await?;
                    ops::finalize_run(queue.as_ref(), &run).await?
                }
            };
            let manifest = store.describe(shared::manifest::layout::MANIFEST_JSONL);
            if json {
                let v = serde_json::json!({"run_id": run, "samples": report.samples, "shards": report.shards, "removed_objects": report.removed_objects, "aborted_uploads": report.aborted_uploads, "manifest": manifest});
                println!("{v}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "run {run}: manifest of {} samples in {} shards written to {} ({} objects of losing attempts removed, {} open uploads aborted)",
                report.samples, report.shards, manifest, report.removed_objects, report.aborted_uploads
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--stall-warning-seconds`: 0 turns the warning off.
fn stall_after(seconds: f64) -> Option<Duration> {
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// `status` for people.
fn print_status(s: &ops::RunStatus) {
    println!("run {} ({}, {})", s.run_id, s.mode, s.state);
    println!("  samples   {}/{} committed", s.samples.committed, s.samples.total);
    let sh = &s.shards;
    match (sh.pending, sh.delayed, sh.leased, sh.dead) {
        (Some(p), Some(d), Some(l), Some(x)) => {
            let expired = match sh.expired {
                Some(e) if e > 0 => format!(" ({e} past their deadline: workers that stopped heartbeating)"),
                _ => String::new(),
            };
            println!("  shards    {} total: {} committed, {p} pending ({d} waiting to retry), {l} leased{expired}, {x} dead", sh.total, sh.committed)
        }
        _ => println!("  shards    {}/{} committed", sh.committed, sh.total),
    }
    println!("  output    {}", s.output);
    for d in &s.dead_shards {
        println!("  dead shard {} after {} failures: {}", d.shard, d.failures, d.error);
    }
}

/// Loads a run spec and checks its models from their `model.json` and a streamed sha256
/// of their weights (pinning the digests), so a missing, changed or mismatched model is an
/// error before anything is queued. No weights are held in memory.
async fn load_prepared(config: &std::path::Path) -> anyhow::Result<RunSpec> {
    let mut spec = RunSpec::load(config)?;
    shared::artifact::prepare(&mut spec).await.with_context(|| format!("{}", config.display()))?;
    Ok(spec)
}

/// A static run's spec from its `run.json` (the config gives its location): no model is
/// fetched or hashed to know the digest.
async fn static_spec(config: &std::path::Path, run: &str) -> anyhow::Result<RunSpec> {
    let origin = config.display().to_string();
    let spec = RunSpec::load(config)?;
    Ok(ops::static_spec(&spec, &origin, run).await?)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_argument_and_command_has_help() {
        labelgen_tests::cli::check_help(&super::Cli::command(), "labelgen coordinator: shards a dataset");
    }

    /// Waits are finite seconds (a Duration of NaN or infinity panics): refused by name.
    #[test]
    fn intervals_are_checked_when_parsed() {
        use clap::Parser;
        for bad in ["inf", "NaN", "-1", "1e20"] {
            let flag = format!("--interval={bad}");
            for cmd in ["watch", "metrics"] {
                let args: Vec<&str> = if cmd == "watch" { vec!["coordinator", "watch", "r1", &flag] } else { vec!["coordinator", "metrics", &flag] };
                let e = super::Cli::try_parse_from(args).unwrap_err().to_string();
                assert!(e.contains("--interval") && e.contains("expected seconds from 0 to 86400"), "{cmd} {bad}: {e}");
            }
        }
        assert!(super::Cli::try_parse_from(["coordinator", "watch", "r1", "--interval", "0.5"]).is_ok());
    }
}
