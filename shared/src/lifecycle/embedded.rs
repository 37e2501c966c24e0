//! The embedded mode: an in-memory queue and in-process workers run the same job loop,
//! commit protocol and finalize as a Redis deployment, with no services. The pipeline
//! factory is an argument, so this crate stays free of models: `worker run` passes the
//! one that builds the `ddpm-spade` pipeline.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::job::{serve, PipelineFactory, WorkerOptions};
use crate::queue::{JobQueue, MemoryQueue};
use crate::spec::RunSpec;

use super::ops;
use super::watch::{self, WatchEnd};

/// Submits `spec` as `run_id` to a fresh in-memory queue, runs `workers` job slots
/// building pipelines with `factory`, follows the run to its end and finalizes it. SIGINT
/// or SIGTERM stops the jobs in hand at once (the batch under way is dropped) and returns
/// [`WatchEnd::Interrupted`] (the shards already committed stay; the same run id resumes);
/// a second signal exits at once.
pub async fn run_embedded(spec: RunSpec, run_id: &str, workers: usize, factory: Arc<dyn PipelineFactory>) -> Result<WatchEnd> {
    let queue: Arc<dyn JobQueue> = Arc::new(MemoryQueue::new());
    let committed = ops::submit(queue.as_ref(), &spec, run_id).await?.committed;
    tracing::info!(run = run_id, samples = spec.run.count, shards = spec.shards(), committed, workers, output = %spec.output.url, "embedded run started");
    // No grace: a stop (the run's end or a signal) stops the jobs in hand at their next
    // batch; nothing here outlives the process to finish them.
    let opts = WorkerOptions { owner: "embedded".into(), concurrency: workers, exit_when_idle: true, poll: Duration::from_millis(50), grace: Duration::ZERO, ..Default::default() };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let mut workers = tokio::spawn(serve(queue.clone(), factory, opts, async move {
        let _ = stop_rx.await;
    }));
    let joined = |r: std::result::Result<Result<()>, tokio::task::JoinError>| r.map_err(|e| crate::Error::Job(format!("embedded workers: {e}")))?;
    let mut workers_done = false;
    let watching = watch::watch(queue.as_ref(), run_id, Duration::from_millis(200), true, Some(watch::STALL_WARN), None);
    tokio::pin!(watching);
    let end = tokio::select! {
        end = &mut watching => end,
        _ = super::shutdown_signal() => {
            tracing::warn!("interrupted: stopping the jobs in hand (a second signal exits at once)");
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
            tokio::spawn(async {
                super::shutdown_signal().await;
                eprintln!("second signal: exiting without waiting for the jobs in hand");
                std::process::exit(i32::from(super::watch::exit_code::INTERRUPTED));
            });
            Ok(WatchEnd::Interrupted)
        }
        done = &mut workers => {
            workers_done = true;
            if let Err(e) = joined(done) {
                // The job slots gave up (models that do not load, storage refusing this
                // machine): no one is left to do the work.
                queue.cancel(run_id).await?;
                return Err(e);
            }
            // Idle: every shard is committed or dead; the watch sees it next.
            watching.await
        }
    };
    if let Some(tx) = stop_tx.take() {
        let _ = tx.send(());
    }
    if !workers_done {
        joined(workers.await)?;
    }
    end
}
