//! `run`: the embedded mode. An in-memory queue and in-process workers run the same job
//! loop, commit protocol and finalize as a Redis deployment, with no services.

use std::sync::Arc;
use std::time::Duration;

use shared::job::{serve, WorkerOptions};
use shared::queue::{JobQueue, MemoryQueue};
use shared::spec::RunSpec;

use crate::ops;
use crate::watch::{self, WatchEnd};

pub async fn run(spec: RunSpec, run_id: &str, workers: usize, device: Option<shared::spec::DeviceChoice>) -> anyhow::Result<WatchEnd> {
    let queue: Arc<dyn JobQueue> = Arc::new(MemoryQueue::new());
    ops::submit(queue.as_ref(), &spec, run_id).await?;
    tracing::info!(run = run_id, samples = spec.run.count, shards = spec.shards(), workers, output = %spec.output.url, "embedded run started");
    let opts = WorkerOptions { owner: "embedded".into(), concurrency: workers, exit_when_idle: true, poll: Duration::from_millis(50), ..Default::default() };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let workers = tokio::spawn(serve(queue.clone(), Arc::new(worker::Factory::new(device)), opts, async move {
        let _ = stop_rx.await;
    }));
    let end = tokio::select! {
        end = watch::watch(queue.as_ref(), run_id, Duration::from_millis(200), true, None) => end,
        _ = tokio::signal::ctrl_c() => {
            tracing::warn!("interrupted: stopping workers; run again with the same --run-id to resume");
            queue.cancel(run_id).await?;
            Ok(WatchEnd::Cancelled)
        }
    };
    let _ = stop_tx.send(());
    workers.await??;
    end
}
