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
/// building pipelines with `factory`, follows the run to its end and finalizes it. Ctrl-C
/// cancels the run (the shards already committed stay; the same run id resumes).
pub async fn run_embedded(spec: RunSpec, run_id: &str, workers: usize, factory: Arc<dyn PipelineFactory>) -> Result<WatchEnd> {
    let queue: Arc<dyn JobQueue> = Arc::new(MemoryQueue::new());
    ops::submit(queue.as_ref(), &spec, run_id).await?;
    tracing::info!(run = run_id, samples = spec.run.count, shards = spec.shards(), workers, output = %spec.output.url, "embedded run started");
    let opts = WorkerOptions { owner: "embedded".into(), concurrency: workers, exit_when_idle: true, poll: Duration::from_millis(50), ..Default::default() };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut workers = tokio::spawn(serve(queue.clone(), factory, opts, async move {
        let _ = stop_rx.await;
    }));
    let joined = |r: std::result::Result<Result<()>, tokio::task::JoinError>| r.map_err(|e| crate::Error::Job(format!("embedded workers: {e}")))?;
    let mut workers_done = false;
    let watching = watch::watch(queue.as_ref(), run_id, Duration::from_millis(200), true, None);
    tokio::pin!(watching);
    let end = tokio::select! {
        end = &mut watching => end,
        _ = super::shutdown_signal() => {
            tracing::warn!("interrupted: stopping workers; run again with the same --run-id to resume");
            queue.cancel(run_id).await?;
            Ok(WatchEnd::Cancelled)
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
    let _ = stop_tx.send(());
    if !workers_done {
        joined(workers.await)?;
    }
    end
}
