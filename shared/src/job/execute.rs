//! One shard, one attempt: generate → encode → upload under `data/SHARD/ATTEMPT/` → write
//! the commit record create-only. The first attempt to create the record wins; a later one
//! verifies the record and discards its own data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::pipeline::{Pipeline, Sample};
use crate::artifact::sha256_hex;
use crate::error::{Error, Result};
use crate::manifest::{existing_record, layout, CommitRecord, ManifestLine, StageTimes};
use crate::spec::{OutputFormat, RunSpec};
use crate::storage::{Created, Store};

/// Why a shard should stop early; checked between batches (before a batch's writes) and
/// before the commit. A batch's writes already under way go on: they land in the
/// attempt's own directory, which a stopped attempt removes.
///
/// It also holds the lease's local deadline: a holder that has not heard the queue confirm
/// its lease within the lease duration (a frozen process, a partition) treats the lease as
/// lost on its own clock, before any other worker can have reclaimed it, and writes nothing
/// more.
#[derive(Debug, Default)]
pub struct Abort {
    state: AtomicU8,
    /// Milliseconds after [`origin`] until which the lease is known held; 0: no lease.
    valid_until_ms: AtomicU64,
    /// Woken by [`Abort::lost`] and [`Abort::stop`], so a job waiting on a long batch or a
    /// pipeline build ends at once ([`Abort::ended`]).
    wake: tokio::sync::Notify,
    /// Whether the last heartbeat failed to reach the queue (no answer, an error): a lease
    /// then lost by the local deadline was cut off, not frozen ([`Abort::cut_off`]).
    unreachable: AtomicBool,
    /// Whether the heartbeat ever woke far past its time: the process stalled.
    stalled: AtomicBool,
    /// The model and encoder threads of a job that ended without waiting for them
    /// ([`Abort::leftover`]).
    leftover: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<()>>>>,
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Abort {
    const GO: u8 = 0;
    const LOST: u8 = 1;
    const STOP: u8 = 2;

    /// The lease is gone: stop, touch nothing more.
    pub fn lost(&self) {
        self.state.store(Self::LOST, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Shutdown or cancel: stop now, not waiting for the batch being computed (its thread
    /// ends at the pipeline's next step, its result unused); the job is released.
    pub fn stop(&self) {
        let _ = self.state.compare_exchange(Self::GO, Self::STOP, Ordering::SeqCst, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Resolves once [`Abort::lost`] or [`Abort::stop`] was called (at once if already).
    /// A lease past its local deadline is noticed at the next batch, or at the next failed
    /// heartbeat (which calls [`Abort::go`]).
    pub async fn ended(&self) {
        loop {
            // A wake before this wait left a permit: `notified` takes it.
            if self.state.load(Ordering::SeqCst) != Self::GO {
                return;
            }
            self.wake.notified().await;
        }
    }

    /// The lease is known held until `until` (the send time of the confirming call plus
    /// the lease duration); past it the job counts as lost.
    pub fn held_until(&self, until: Instant) {
        let ms = until.saturating_duration_since(origin()).as_millis().max(1) as u64;
        self.valid_until_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// Records whether the last heartbeat reached the queue.
    pub fn set_reachable(&self, reached: bool) {
        self.unreachable.store(!reached, Ordering::SeqCst);
    }

    /// Whether the queue was unreachable at the last heartbeat and the process did not
    /// stall during the job: a lease lost by the local deadline then went unconfirmed
    /// through an outage (the lease may well be in the queue still), not through this
    /// process freezing (a shard that freezes its worker must go on spending attempts, or
    /// it would be retried forever).
    pub fn cut_off(&self) -> bool {
        self.unreachable.load(Ordering::SeqCst) && !self.stalled.load(Ordering::SeqCst)
    }

    /// The heartbeat woke far past its time: the process itself stalled, so a lease lost
    /// during this job does not count as cut off.
    pub fn set_stalled(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Waits for the threads a stopped or lost job left computing its last batch, so the
    /// next job does not share the device with them. Their failure is only logged.
    pub async fn leftover(&self) {
        let handle = self.leftover.lock().unwrap().take();
        if let Some(handle) = handle {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the abandoned batch's threads failed"),
                Err(e) => tracing::warn!(error = %e, "the abandoned batch's threads panicked"),
            }
        }
    }

    /// Whether [`Abort::stop`] ended the job (not a lost lease).
    pub fn is_stopped(&self) -> bool {
        self.state() == Self::STOP
    }

    /// Whether the job may go on (not lost, not stopped, lease not past its deadline).
    pub fn go(&self) -> bool {
        self.state() == Self::GO
    }

    fn state(&self) -> u8 {
        let s = self.state.load(Ordering::SeqCst);
        let until = self.valid_until_ms.load(Ordering::SeqCst);
        if s == Self::GO && until > 0 && origin().elapsed().as_millis() as u64 > until {
            self.lost();
            return Self::LOST;
        }
        s
    }
}

/// Everything one attempt at one shard needs.
pub struct ShardJob {
    pub run_id: String,
    pub spec: Arc<RunSpec>,
    pub spec_digest: String,
    /// Rooted at the run directory (`OUTPUT/RUN`).
    pub store: Store,
    pub pipeline: Arc<dyn Pipeline>,
    pub shard: u64,
    /// The lease token (0 without a queue): recorded, never used to name data. Tokens
    /// repeat when Redis loses its data, so each attempt names its data with a fresh
    /// random id instead.
    pub token: u64,
    pub owner: String,
    /// Whether an earlier attempt at this shard had been made.
    pub retried: bool,
    pub abort: Arc<Abort>,
}

#[derive(Debug)]
pub enum ShardOutcome {
    /// This attempt's record was written.
    Committed(Box<CommitRecord>),
    /// Another attempt had committed the shard; this one's data (if any) was removed.
    AlreadyCommitted,
    /// The lease was lost mid-way; nothing was committed.
    LeaseLost,
    /// Stopped for shutdown or cancel; nothing was committed.
    Stopped,
}

struct Encoded {
    line: ManifestLine,
    image: Bytes,
    label: Bytes,
    meta: Bytes,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A fresh attempt id: 63 random bits, so attempts stay apart even when lease tokens repeat
/// (Redis restarted without its data and the run submitted again).
pub fn new_attempt_id() -> u64 {
    rand::random::<u64>() >> 1
}

/// Runs one attempt at one shard.
pub async fn execute_shard(job: ShardJob) -> Result<ShardOutcome> {
    if existing_record(&job.store, &job.run_id, job.shard).await?.is_some() {
        return Ok(ShardOutcome::AlreadyCommitted);
    }
    super::faults::check_injected_fault(job.shard)?;
    let attempt = new_attempt_id();

    let started_ms = now_ms();
    let spec = job.spec.clone();
    let indices: Vec<u64> = spec.shard_range(job.shard).collect();
    let batch = spec.pipeline.generate_batch(spec.run.shard_size);
    // Opened before the threads start: no early return may leave them computing with no
    // one to wait for them (see `Abort::leftover`).
    let mut tar = match spec.output.format {
        OutputFormat::Webdataset => Some((job.store.writer(&layout::tar_path(job.shard, attempt)).await?, Sha256::new())),
        OutputFormat::Png => None,
    };
    // Three stages joined by bounded channels: model compute (a blocking thread, and for
    // `ddpm-spade` a second one sampling labels a batch ahead: `Pipeline::generate_batches`)
    // → PNG encoding and hashing (another) → uploads (async). Compute of batch k+1 overlaps
    // encoding and upload of batch k; a slow store holds the others back.
    let (gen_tx, gen_rx) = std::sync::mpsc::sync_channel::<Result<(Vec<Sample>, f64)>>(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(Vec<Encoded>, f64, f64)>>(2);
    // Set once this job takes no more batches (a failed upload, a stop, the end): with a
    // stopped or lost job it halts the pipeline between its steps.
    let unwanted = Arc::new(AtomicBool::new(false));
    let gen = {
        let pipeline = job.pipeline.clone();
        let abort = job.abort.clone();
        let unwanted = unwanted.clone();
        tokio::task::spawn_blocking(move || {
            if !abort.go() {
                return;
            }
            super::faults::batch_delay();
            // A batch's time: from the previous batch handed on (or the start) to this one.
            let mut t0 = Instant::now();
            let halted = || unwanted.load(Ordering::SeqCst) || !abort.go();
            pipeline.generate_batches(&indices, batch, &halted, &mut |result| {
                let result = result.map(|s| (s, t0.elapsed().as_secs_f64()));
                let failed = result.is_err();
                if gen_tx.send(result).is_err() || failed || halted() {
                    return false;
                }
                super::faults::batch_delay();
                t0 = Instant::now();
                true
            });
        })
    };
    let enc = {
        let spec = spec.clone();
        let shard = job.shard;
        tokio::task::spawn_blocking(move || {
            for msg in gen_rx {
                let out = msg.map(|(samples, t_gen)| {
                    let t1 = Instant::now();
                    let encoded: Vec<Encoded> = samples.into_par_iter().map(|s| encode(&spec, shard, attempt, s)).collect();
                    (encoded, t_gen, t1.elapsed().as_secs_f64())
                });
                if tx.blocking_send(out).is_err() {
                    return;
                }
            }
        })
    };

    let mut times = StageTimes::default();
    let mut lines = Vec::new();
    let mut failed = None;
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            // Lost or stopped: not waiting for the batch under way.
            _ = job.abort.ended() => break,
        };
        let Some(msg) = msg else { break };
        // Nothing more is written once the lease is gone or a stop was asked for.
        if !job.abort.go() {
            break;
        }
        let (batch, t_gen, t_enc) = match msg {
            Ok(m) => m,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        times.generate += t_gen;
        times.encode += t_enc;
        let t0 = Instant::now();
        match &mut tar {
            Some((writer, hasher)) => {
                for e in &batch {
                    let k = &e.line.key;
                    let mut buf = Vec::new();
                    tar_entry(&mut buf, member(&e.line.image), &e.image);
                    tar_entry(&mut buf, member(&e.line.label), &e.label);
                    tar_entry(&mut buf, &format!("{k}.json"), &e.meta);
                    hasher.update(&buf);
                    times.bytes += buf.len() as u64;
                    if let Err(e) = writer.write(&buf).await {
                        failed = Some(e);
                        break;
                    }
                }
            }
            None => {
                let mut uploads: Vec<(String, Bytes)> = Vec::with_capacity(batch.len() * 2);
                for e in &batch {
                    uploads.push((e.line.image.clone(), e.image.clone()));
                    uploads.push((e.line.label.clone(), e.label.clone()));
                    times.bytes += (e.image.len() + e.label.len()) as u64;
                }
                let store = job.store.clone();
                let mut results = futures::stream::iter(uploads.into_iter().map(move |(path, data)| {
                    let store = store.clone();
                    async move { store.put(&path, data).await }
                }))
                .buffer_unordered(8);
                while let Some(r) = results.next().await {
                    if let Err(e) = r {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        if failed.is_some() {
            break;
        }
        times.upload += t0.elapsed().as_secs_f64();
        lines.extend(batch.into_iter().map(|e| e.line));
    }
    // Unblocks the model and encoder threads if the loop ended early, and halts the
    // pipeline's batch under way.
    unwanted.store(true, Ordering::SeqCst);
    drop(rx);
    let mut threads = tokio::spawn(async {
        gen.await.map_err(|e| Error::Panicked(format!("model thread panicked: {e}")))?;
        enc.await.map_err(|e| Error::Panicked(format!("encoder thread panicked: {e}")))
    });
    // A lost or stopped job does not wait for the batch under way (a shutdown's grace
    // would run out first): its threads end at the pipeline's next step (it asks `halted`
    // between steps), their result unused, and are left in the abort switch for the slot
    // to wait for before its next job.
    let finished = if job.abort.go() {
        tokio::select! {
            r = &mut threads => Some(r.unwrap_or_else(|e| Err(Error::Panicked(format!("the model and encoder threads' task failed: {e}"))))),
            _ = job.abort.ended() => None,
        }
    } else {
        None
    };
    let threads = match finished {
        Some(r) => r,
        None => {
            *job.abort.leftover.lock().unwrap() = Some(threads);
            Ok(())
        }
    };
    let stop = match job.abort.state() {
        Abort::LOST => Some(ShardOutcome::LeaseLost),
        Abort::STOP => Some(ShardOutcome::Stopped),
        _ => None,
    };
    // Checked as finalize checks the record, which cannot change once written.
    if failed.is_none() && stop.is_none() {
        if let Some(m) = super::finalize::index_mismatch(spec.shard_range(job.shard), &lines) {
            failed = Some(Error::Job(format!("shard {} produced {m}", job.shard)));
        }
    }
    if stop.is_some() || failed.is_some() || threads.is_err() {
        abandon(&job.store, job.shard, attempt, tar.map(|(writer, _)| writer)).await;
        // A stop (released) and a fault of this worker's (given back) go before a panic
        // (an attempt spent).
        return match (stop, failed, threads) {
            (Some(outcome), _, _) => Ok(outcome),
            (None, Some(e), _) if e.is_worker_fault() => Err(e),
            (None, _, Err(panic)) => Err(panic),
            (None, Some(e), Ok(())) => Err(e),
            (None, None, Ok(())) => unreachable!("an early end has a reason"),
        };
    }
    let tar_info = match tar {
        Some((mut writer, hasher)) => {
            let end = [0u8; 1024];
            let mut hasher = hasher;
            hasher.update(end);
            times.bytes += end.len() as u64;
            // After a failed write, finish aborts the upload instead of completing it.
            let wrote = writer.write(&end).await;
            if let Err(e) = wrote.and(writer.finish().await) {
                abandon(&job.store, job.shard, attempt, None).await;
                return Err(e);
            }
            Some((layout::tar_path(job.shard, attempt), hex::encode(hasher.finalize())))
        }
        None => None,
    };
    super::faults::before_commit(job.shard).await;
    // The last chance to notice a lost lease before the commit.
    if !job.abort.go() {
        let _ = discard_attempt(&job.store, job.shard, attempt).await;
        return Ok(if job.abort.state() == Abort::STOP { ShardOutcome::Stopped } else { ShardOutcome::LeaseLost });
    }

    let record = CommitRecord {
        run_id: job.run_id.clone(),
        shard: job.shard,
        attempt,
        token: job.token,
        owner: job.owner.clone(),
        retried: job.retried,
        spec_digest: job.spec_digest.clone(),
        format: spec.output.format,
        started_ms,
        committed_ms: now_ms(),
        stage_seconds: times,
        tar: tar_info,
        samples: lines,
    };
    let body = Bytes::from(serde_json::to_vec(&record).expect("a record always serialises"));
    let record_path = layout::record_path(job.shard);
    for conflict in 1.. {
        match job.store.put_create(&record_path, body.clone()).await? {
            Created::Created => return Ok(ShardOutcome::Committed(Box::new(record))),
            Created::AlreadyExists => match existing_record(&job.store, &job.run_id, job.shard).await? {
                // Our own put went through and its answer was lost; the retry found it.
                Some(r) if r.attempt == attempt => return Ok(ShardOutcome::Committed(Box::new(record))),
                Some(_) => {
                    // Another attempt's record stands: the shard is committed whatever
                    // becomes of this attempt's data (finalize removes what is left).
                    if let Err(e) = discard_attempt(&job.store, job.shard, attempt).await {
                        tracing::warn!(shard = job.shard, error = %e, "removing the losing attempt's data failed; finalize removes it");
                    }
                    return Ok(ShardOutcome::AlreadyCommitted);
                }
                // "Already exists" with no record to read: S3's answer (409) to two creates
                // racing, whose other may yet fail. Only a record seen ends this attempt:
                // try again, and never ack without one.
                None if conflict < COMMIT_CONFLICT_TRIES => {
                    tracing::warn!(shard = job.shard, record = %job.store.describe(&record_path), "the store answered that the commit record exists, but it cannot be read; trying the commit again");
                    tokio::time::sleep(Duration::from_millis(200 * conflict as u64)).await;
                }
                // This attempt's data stays: the record may yet land and name it (the
                // store's own retry of our create); finalize removes it if it loses.
                None => {
                    return Err(Error::Job(format!(
                        "{}: the store answered {COMMIT_CONFLICT_TRIES} times that the commit record exists, but none can be read; the shard is retried",
                        job.store.describe(&record_path)
                    )));
                }
            },
        }
    }
    unreachable!("the loop returns")
}

/// Commit tries when the store says the record exists but shows none (see above).
const COMMIT_CONFLICT_TRIES: u32 = 4;

/// Abandons an attempt that cannot commit: aborts its tar upload, if any (no half-written
/// tar is left open), and removes its objects (in its own directory, never the winner's).
/// Best effort: what is left, finalize removes.
async fn abandon(store: &Store, shard: u64, attempt: u64, tar: Option<crate::storage::StoreWriter>) {
    if let Some(writer) = tar {
        let _ = writer.abort().await;
    }
    let _ = discard_attempt(store, shard, attempt).await;
}

pub async fn discard_attempt(store: &Store, shard: u64, attempt: u64) -> Result<()> {
    for path in store.list(&layout::attempt_dir(shard, attempt)).await? {
        store.discard(&path).await?;
    }
    Ok(())
}

fn encode(spec: &RunSpec, shard: u64, attempt: u64, s: Sample) -> Encoded {
    let classes = &spec.classes;
    let image = Bytes::from(s.image.encode(spec.output.image_encoding()));
    let label = Bytes::from(s.label.to_png(classes));
    let ext = spec.output.image_format.extension();
    let counts = s.label.class_counts(classes.len());
    let class_pixels: BTreeMap<String, u64> = classes.classes.iter().zip(counts).map(|(c, n)| (c.name.clone(), n)).collect();
    let key = layout::key(s.index);
    let (image_path, label_path) = match spec.output.format {
        OutputFormat::Png => (layout::image_path(shard, attempt, s.index, ext), layout::label_path(shard, attempt, s.index)),
        OutputFormat::Webdataset => {
            let tar = layout::tar_path(shard, attempt);
            (layout::member_path(&tar, &layout::image_name(s.index, ext)), layout::member_path(&tar, &layout::label_name(s.index)))
        }
    };
    let line = ManifestLine {
        index: s.index,
        key,
        image: image_path,
        label: label_path,
        seed: s.seed,
        shard,
        width: s.image.width,
        height: s.image.height,
        class_pixels,
        image_sha256: sha256_hex(&image),
        label_sha256: sha256_hex(&label),
        extra: s.extra,
    };
    let meta = Bytes::from(line.sample_json());
    Encoded { line, image, label, meta }
}

/// The member name of `TAR#MEMBER`.
fn member(path: &str) -> &str {
    layout::split_member(path).map_or(path, |(_, m)| m)
}

/// Appends one ustar entry (header, data, padding) with fixed metadata, so the same samples
/// always give the same tar bytes.
fn tar_entry(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).expect("sample names are short ASCII");
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + (512 - data.len() % 512) % 512, 0);
}
