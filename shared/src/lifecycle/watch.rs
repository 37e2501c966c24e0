//! `watch`: a progress bar (samples done/total, images/s, ETA, leased/retrying/dead) until
//! the run ends; then finalize. On a terminal the bar redraws; elsewhere (logs, CI) a
//! progress line is logged every few seconds.

use std::time::{Duration, Instant};

use crate::manifest::layout::MANIFEST_JSONL;
use crate::queue::{JobQueue, RunState};

use super::ops;
use crate::error::Result;

/// How a watched run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// Every shard committed and the manifest written.
    Complete {
        samples: u64,
        manifest: String,
    },
    /// No work left but some shards are dead.
    Dead {
        shards: Vec<(u64, String)>,
    },
    Cancelled,
}

pub async fn watch(queue: &dyn JobQueue, run_id: &str, interval: Duration, finalize: bool, metrics: Option<&crate::metrics::Metrics>) -> Result<WatchEnd> {
    let (_, spec) = ops::load_run(queue, run_id).await?;
    let total = spec.run.count;
    let bar = crate::progress::styled(Some(total), "{spinner} {pos}/{len} samples [{bar:30}] {per_sec} · ETA {eta} · {msg}");
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    let mut last_log = Instant::now();
    let mut queue_errors = 0u32;
    loop {
        let c = match queue.counts(run_id).await {
            Ok(c) => {
                queue_errors = 0;
                c
            }
            // Redis restarting or a network blip: keep watching for a while.
            Err(e) if queue_errors < 60 => {
                queue_errors += 1;
                tracing::warn!(error = %e, "reading the run's counts failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(m) = metrics {
            m.set_queue(run_id, &c);
        }
        let done = ops::committed_samples(&spec, &c);
        let first_seen = *first.get_or_insert((Instant::now(), done));
        bar.set_position(done);
        let msg = format!("leased {} · retrying {} · dead {}", c.leased, c.delayed, c.dead);
        bar.set_message(msg.clone());
        if bar.is_hidden() && last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            let secs = first_seen.0.elapsed().as_secs_f64();
            let rate = if secs > 0.0 { (done - first_seen.1) as f64 / secs } else { 0.0 };
            let eta = if rate > 0.0 { format!("{:.0}s", (total - done) as f64 / rate) } else { "?".into() };
            tracing::info!("progress: {done}/{total} samples, {rate:.1} images/s, ETA {eta}, {msg}");
        }
        match c.state {
            RunState::Cancelled => {
                bar.abandon_with_message("cancelled");
                return Ok(WatchEnd::Cancelled);
            }
            RunState::Finalized if !finalize || c.committed == c.total => {
                bar.finish_with_message("finalized");
                let store = crate::job::run_store(&spec, run_id)?;
                return Ok(WatchEnd::Complete { samples: total, manifest: store.describe(MANIFEST_JSONL) });
            }
            _ => {}
        }
        if c.committed == c.total {
            bar.finish_with_message("all shards committed");
            if !finalize {
                let store = crate::job::run_store(&spec, run_id)?;
                return Ok(WatchEnd::Complete { samples: total, manifest: store.describe(MANIFEST_JSONL) });
            }
            let (report, store) = ops::finalize_run(queue, run_id).await?;
            tracing::info!(samples = report.samples, removed = report.removed_objects, seconds = started.elapsed().as_secs_f64(), "finalized");
            return Ok(WatchEnd::Complete { samples: report.samples, manifest: store.describe(MANIFEST_JSONL) });
        }
        if c.dead > 0 && c.pending == 0 && c.leased == 0 {
            bar.abandon_with_message("dead shards");
            let dead = queue.dead(run_id).await?;
            return Ok(WatchEnd::Dead { shards: dead.into_iter().map(|d| (d.shard, d.error)).collect() });
        }
        tokio::time::sleep(interval).await;
    }
}

/// Prints how a run ended and returns the exit code: 0 complete, 2 dead shards, 3 cancelled.
pub fn report_end(run_id: &str, end: &WatchEnd) -> std::process::ExitCode {
    match end {
        WatchEnd::Complete { samples, manifest } => {
            println!("run {run_id}: {samples} samples; manifest {manifest}");
            std::process::ExitCode::SUCCESS
        }
        WatchEnd::Dead { shards } => {
            eprintln!("run {run_id}: {} shard(s) are dead; fix the cause, then `coordinator retry-dead {run_id}`:", shards.len());
            for (shard, err) in shards {
                eprintln!("  shard {shard}: {err}");
            }
            std::process::ExitCode::from(2)
        }
        WatchEnd::Cancelled => {
            eprintln!("run {run_id}: cancelled");
            std::process::ExitCode::from(3)
        }
    }
}
