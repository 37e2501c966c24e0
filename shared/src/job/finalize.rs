//! Finalize: turn the commit records of a run into `manifest.jsonl` (one line per sample,
//! in index order) and `manifest.json` (the summary, written last), publish WebDataset
//! shards under flat names (`dataset/SHARD.tar`, listed in `dataset/shards.jsonl`), remove the data of attempts that did not
//! win and abort the multipart uploads killed writers left open, shard by shard. Beside each published tar
//! goes `dataset/SHARD.parquet`, the shard's samples as a table. Safe to run again: every
//! output is rewritten from the records, which never change.
//!
//! Publishing a tar is a server-side copy of the winning attempt's tar to
//! `dataset/SHARD.tar`, then the removal of the original. Only finalize writes under
//! `dataset/`, and only from a commit record, so a zombie worker (which writes its own
//! attempt directory) can never replace a published tar; and the copy needs no conditional
//! write, which some S3 servers honour only partly (Ceph radosgw ignores `If-None-Match` on
//! `CompleteMultipartUpload`). A finalize killed between the copy and the removal finds
//! the original still there next time and copies it again (the same bytes).
//!
//! Memory does not grow with the run: the records are counted from a streamed listing,
//! read a few shards ahead, and `manifest.jsonl` and `dataset/shards.jsonl` are streamed
//! out in 1 MiB pieces (multipart uploads on S3).

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{layout, read_records, uncommitted_shards, CommitRecord, ManifestLine, StageTimes};
use crate::spec::RunSpec;
use crate::storage::Store;

/// What finalize did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalizeReport {
    pub samples: u64,
    pub shards: u64,
    /// Objects of losing attempts removed by this call.
    pub removed_objects: u64,
    /// Multipart uploads left open by killed writers (recorded in `….upload` objects)
    /// aborted by this call.
    #[serde(default)]
    pub aborted_uploads: u64,
}

/// The content of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestSummary {
    pub run_id: String,
    pub count: u64,
    pub shards: u64,
    pub format: crate::spec::OutputFormat,
    pub image_size: u32,
    pub pipeline: crate::spec::PipelineKind,
    pub spec_digest: String,
    pub manifest_jsonl_sha256: String,
    /// Class names in class-index order.
    pub classes: Vec<String>,
    pub class_pixels: BTreeMap<String, u64>,
    pub class_shares: BTreeMap<String, f64>,
    pub timings: Timings,
    /// Shards whose winning attempt was not their first.
    pub retried_shards: u64,
    /// Raw label code, name and preview colour of each class, and the ignore code: what a
    /// value in a label PNG means.
    #[serde(default)]
    pub class_table: crate::ClassTable,
    /// WebDataset runs: the published tars (`dataset/SHARD.tar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<PublishedShards>,
}

/// A WebDataset run's published tars, as `manifest.json` names them. The tars themselves
/// are listed in `dataset/shards.jsonl`, one [`ShardFile`] per line in shard order, so
/// `manifest.json` stays a few KB at any run size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedShards {
    /// Every tar as one brace pattern, relative to the run directory
    /// (`dataset/{000000..000012}.tar`), as `webdataset.WebDataset` takes it. Beyond a
    /// million shards, one range per name width joined by `::` (prefix each part).
    pub pattern: String,
    /// How many tars (the run's shard count).
    #[serde(default)]
    pub count: u64,
    /// Relative to the run directory: `dataset/shards.jsonl`. Empty in a summary written
    /// before the tars were listed there (which listed them inline).
    #[serde(default)]
    pub shards_jsonl: String,
    #[serde(default)]
    pub shards_jsonl_sha256: String,
}

/// One published tar: a line of `dataset/shards.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    /// Relative to the run directory: `dataset/000003.tar`.
    pub path: String,
    pub samples: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The shard's side table, one row per sample: `dataset/000003.parquet`.
    pub parquet: String,
}

/// The published tars of a finalized WebDataset run, from its `dataset/shards.jsonl`, in
/// shard order. Errors name the file and line.
pub async fn published_tars(store: &Store) -> Result<Vec<ShardFile>> {
    let mut lines = crate::manifest::JsonLines::open(store, layout::SHARDS_JSONL).await?;
    let mut tars = Vec::new();
    while let Some((_, tar)) = lines.next("a published tar (path, samples, bytes, sha256, parquet)").await? {
        tars.push(tar);
    }
    Ok(tars)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub first_started_ms: u64,
    pub last_committed_ms: u64,
    pub finalized_ms: u64,
    /// Sum over shards of the seconds each stage took.
    pub stage_seconds: StageTimes,
}

/// How `lines` differ from the shard's indices `expected`, in words, if they do: named by
/// the first difference (a whole shard's indices would make a message of megabytes).
pub(crate) fn index_mismatch(expected: std::ops::Range<u64>, lines: &[ManifestLine]) -> Option<String> {
    let (want, got) = (expected.end - expected.start, lines.len() as u64);
    if let Some((pos, (e, l))) = expected.clone().zip(lines).enumerate().find(|(_, (e, l))| l.index != *e) {
        return Some(format!("index {} at position {pos}, expected {e} (the shard holds samples {}..{})", l.index, expected.start, expected.end));
    }
    (got != want).then(|| format!("{got} samples, expected {want} (samples {}..{})", expected.start, expected.end))
}

/// A record belongs to this run's spec and lists exactly its shard's indices.
fn check_record(store: &Store, spec: &RunSpec, digest: &str, rec: &CommitRecord) -> Result<()> {
    let where_ = store.describe(&layout::record_path(rec.shard));
    if rec.spec_digest != digest {
        return Err(Error::format(where_, format!("record was made for spec {}, the run's spec is {digest}", rec.spec_digest)));
    }
    if let Some(m) = index_mismatch(spec.shard_range(rec.shard), &rec.samples) {
        return Err(Error::format(where_, format!("record lists {m}")));
    }
    Ok(())
}

/// Publishes a WebDataset shard's winning tar as `dataset/SHARD.tar` (copy, then remove the
/// original; see the module doc), writes its side table `dataset/SHARD.parquet`
/// ([`crate::manifest::shard_table`]) and returns the record with its lines pointing there.
/// A PNG run's record passes through.
async fn publish(store: &Store, classes: &crate::ClassTable, mut rec: CommitRecord) -> Result<(CommitRecord, Option<ShardFile>)> {
    let Some((src, sha256)) = rec.tar.clone() else { return Ok((rec, None)) };
    let dst = layout::published_tar(rec.shard);
    let src_bytes = store.size(&src).await?;
    let published = if store.copy(&src, &dst).await? {
        // The original goes only once the copy is seen whole: a store that answered the
        // copy without making it must not cost the run its only tar.
        let copied = store.size(&dst).await?;
        if copied.is_none() || copied != src_bytes {
            return Err(Error::format(
                store.describe(&dst),
                format!("the copy of {} reads {copied:?} bytes, the original {src_bytes:?}: the original is kept; run finalize again", store.describe(&src)),
            ));
        }
        store.delete(&src).await?;
        copied
    } else {
        // Published by an earlier finalize.
        store.size(&dst).await?
    };
    let Some(bytes) = published else {
        return Err(Error::format(
            store.describe(&layout::record_path(rec.shard)),
            format!("the winning attempt's tar {} is gone and was never published as {}", store.describe(&src), store.describe(&dst)),
        ));
    };
    rec.samples = std::mem::take(&mut rec.samples).into_iter().map(|l| l.in_tar(&dst)).collect();
    // The side table is made from the record alone, so a repeat writes the same bytes.
    let parquet = layout::published_parquet(rec.shard);
    let table = crate::manifest::shard_table(&rec.samples, classes, &store.describe(&layout::record_path(rec.shard)))?;
    store.put(&parquet, Bytes::from(table)).await?;
    let file = ShardFile { path: dst, samples: rec.samples.len() as u64, bytes, sha256, parquet };
    Ok((rec, Some(file)))
}

/// Removes the data of the shard's attempts that lost the commit race (or were abandoned),
/// which is not part of the dataset, and aborts the uploads killed writers left open (an
/// upload record: its writer died or lost its lease before completing it, so its parts
/// do not linger in the bucket). Lists the shard's own directory only. Returns (objects
/// removed, uploads aborted).
async fn remove_losers(store: &Store, shard: u64, winner: u64) -> Result<(u64, u64)> {
    let (mut removed, mut aborted) = (0, 0);
    for path in store.list(&layout::shard_data_dir(shard)).await? {
        let attempt = path.split('/').nth(2).and_then(|a| a.parse::<u64>().ok());
        let record = crate::storage::is_upload_record(&path);
        if record || attempt != Some(winner) {
            store.discard(&path).await?;
            if record {
                aborted += 1;
            } else {
                removed += 1;
            }
        }
    }
    // On a local disk, a writer killed mid-object leaves its temporary (`NAME#N`), which
    // listings skip: remove each losing attempt's directory whole.
    if let Some(dir) = store.local_path(&layout::shard_data_dir(shard)) {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let attempt = entry.file_name().to_str().and_then(|a| a.parse::<u64>().ok());
            if path.is_dir() && attempt != Some(winner) {
                // An attempt still writing (its lease lost, its process alive) may add a
                // file meanwhile: what is left is only litter, not a reason to fail.
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), error = %e, "could not remove a losing attempt's directory whole");
                }
            }
        }
    }
    Ok((removed, aborted))
}

/// A JSON-lines object while finalize writes it (`manifest.jsonl`, `dataset/shards.jsonl`):
/// lines buffered up to 1 MiB, then sent, hashed as they go. Without a writer (a PNG run's
/// tar list) it writes nothing.
struct Listing {
    writer: Option<crate::storage::StoreWriter>,
    buf: Vec<u8>,
    hasher: Sha256,
}

impl Listing {
    fn new(writer: Option<crate::storage::StoreWriter>) -> Self {
        Listing { writer, buf: Vec::new(), hasher: Sha256::new() }
    }

    async fn push(&mut self, line: &impl Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.buf, line).expect("a line always serialises");
        self.buf.push(b'\n');
        if self.buf.len() >= 1 << 20 {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if let Some(w) = self.writer.as_mut() {
            self.hasher.update(&self.buf);
            w.write(&self.buf).await?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Completes the object; its sha256, or `None` without a writer.
    async fn finish(mut self) -> Result<Option<String>> {
        self.flush().await?;
        match self.writer.take() {
            Some(w) => {
                w.finish().await?;
                Ok(Some(hex::encode(self.hasher.finalize())))
            }
            None => Ok(None),
        }
    }
}

/// How old a local temporary (`NAME#N`) must be before finalize removes it: a writer still
/// writing it (a finalize beside this one) is younger.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(600);

/// On a local disk, removes the temporaries (`NAME#N`, which listings skip) that killed
/// writers left in `dirs` of the run directory (a finalize's partial manifest, a commit
/// record's), once older than [`STALE_TEMPORARY`]. Litter only: failures are logged.
fn remove_stale_temporaries(store: &Store, dirs: &[&str]) {
    for dir in dirs {
        let Some(path) = store.local_path(dir) else { return };
        for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            // No object's file name holds '#' (object_store encodes it): only temporaries do.
            let name = entry.file_name();
            let temporary = name.to_str().and_then(|n| n.rsplit_once('#')).is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !temporary {
                continue;
            }
            let stale = entry.metadata().ok().filter(|m| m.is_file()).and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age > STALE_TEMPORARY);
            if stale {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), error = %e, "could not remove a killed writer's temporary");
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Writes the manifest of a run whose every shard is committed. `store` is rooted at the
/// run directory. One finalize of a run at a time: a second waits for the first's
/// `finalize.lock` ([`super::finalize_lock`]), then runs.
pub async fn finalize(store: &Store, run_id: &str, spec: &RunSpec) -> Result<FinalizeReport> {
    let n = spec.shards();
    // One streamed listing counts the records; only an incomplete run lists again to name
    // what is missing. Nothing here holds per-shard state. Before the lock: a run that
    // cannot be finalized (a mistyped id) gets nothing written, not even the lock.
    if crate::manifest::count_committed(store, spec).await?.shards < n {
        let (missing, first) = uncommitted_shards(store, n, 20).await?;
        let shown: Vec<String> = first.iter().map(|s| s.to_string()).collect();
        return Err(Error::Run {
            run: run_id.into(),
            message: format!("cannot finalize: {missing} of {n} shards are not committed (shards {}{})", shown.join(", "), if missing > first.len() as u64 { ", …" } else { "" }),
        });
    }
    let lock = super::finalize_lock::acquire(store).await?;
    let done = finalize_locked(store, run_id, spec, &|| lock.lost()).await;
    lock.release().await;
    done
}

/// A finalize that may have lost its lock ([`super::finalize_lock::Held::lost`]) stops
/// before its last writes: the manifest's upload completed and `manifest.json` are the new
/// holder's to write.
fn check_still_held(store: &Store, lost: &dyn Fn() -> bool) -> Result<()> {
    if lost() {
        return Err(Error::format(
            store.describe(super::finalize_lock::FINALIZE_LOCK),
            "no longer this finalize's: taken over by another finalize, or not rewritten for 45 s (this one stalled, or storage did not answer), so another may have taken it; nothing more is written here (run `coordinator finalize` again if no other finalize finishes the run)",
        ));
    }
    Ok(())
}

async fn finalize_locked(store: &Store, run_id: &str, spec: &RunSpec, lost: &dyn Fn() -> bool) -> Result<FinalizeReport> {
    let n = spec.shards();
    let digest = spec.digest();
    let k = spec.classes.len();
    let mut pixels = vec![0u64; k];
    let mut stage = StageTimes::default();
    let (mut first_started, mut last_committed, mut retried) = (u64::MAX, 0u64, 0u64);
    let mut samples = 0u64;

    // A finalize killed while writing the manifest or the tar list may have left its
    // upload open (or, on a local disk, its temporaries).
    if store.local_path("").is_some() {
        // A directory read per shard record: off the async threads.
        let local = store.clone();
        let _ = tokio::task::spawn_blocking(move || remove_stale_temporaries(&local, &["", layout::SHARDS_DIR, layout::DATASET_DIR])).await;
    }
    let mut aborted = 0u64;
    for listing in [layout::MANIFEST_JSONL, layout::SHARDS_JSONL] {
        let record = crate::storage::upload_record(listing);
        if store.exists(&record).await? {
            store.discard(&record).await?;
            aborted += 1;
        }
    }
    let webdataset = spec.output.format == crate::spec::OutputFormat::Webdataset;
    // A manifest line is about 600 bytes with 8 classes (paths, two sha256s, class
    // pixels): planned at 1 KiB plus 32 bytes a class, so a run of hundreds of millions
    // of samples still fits S3's part limit whatever its class table.
    let line_bytes = 1024 + 32 * k as u64;
    let mut manifest = Listing::new(Some(store.writer_sized(layout::MANIFEST_JSONL, spec.run.count.saturating_mul(line_bytes)).await?));
    let mut tars = Listing::new(if webdataset { Some(store.writer(layout::SHARDS_JSONL).await?) } else { None });
    // Each record is checked before its tar is published, so finalize with the wrong spec
    // moves nothing. Shard by shard: publish, then remove what lost (memory holds a few
    // shards, whatever the run's size).
    let digest_ref = &digest;
    let mut removed = 0u64;
    // Records read ahead and shards in progress (publishing, tidying): a few thousand
    // samples' lines in memory at once (16 and 8 shards of 256; 2 and 2 of 2,048 or more).
    let ahead = (4096 / spec.run.shard_size.max(1)).clamp(2, 16) as usize;
    let mut records = std::pin::pin!(read_records(store, run_id, 0..n, ahead)
        .map(|rec| async move {
            let rec = rec?;
            check_record(store, spec, digest_ref, &rec)?;
            let (rec, file) = publish(store, &spec.classes, rec).await?;
            let tidied = remove_losers(store, rec.shard, rec.attempt).await?;
            Ok::<_, Error>((rec, file, tidied))
        })
        .buffered(ahead.div_ceil(2).max(2)));
    let mut first_lines: Vec<ManifestLine> = Vec::new();
    while let Some(done) = records.next().await {
        let (rec, file, (lost, open)) = done?;
        removed += lost;
        aborted += open;
        if let Some(file) = file {
            tars.push(&file).await?;
        }
        if first_lines.len() < super::contact::CONTACT_SAMPLES {
            first_lines.extend(rec.samples.iter().take(super::contact::CONTACT_SAMPLES - first_lines.len()).cloned());
        }
        for line in &rec.samples {
            for (i, c) in spec.classes.classes.iter().enumerate() {
                pixels[i] += line.class_pixels.get(&c.name).copied().unwrap_or(0);
            }
            manifest.push(line).await?;
        }
        samples += rec.samples.len() as u64;
        stage.generate += rec.stage_seconds.generate;
        stage.encode += rec.stage_seconds.encode;
        stage.upload += rec.stage_seconds.upload;
        stage.bytes += rec.stage_seconds.bytes;
        first_started = first_started.min(rec.started_ms);
        last_committed = last_committed.max(rec.committed_ms);
        if rec.retried {
            retried += 1;
        }
    }
    check_still_held(store, lost)?;
    let manifest_sha256 = manifest.finish().await?.expect("manifest.jsonl has a writer");
    let tars_sha256 = tars.finish().await?;

    // A convenience, not part of the dataset: a failure is logged, not fatal.
    let sheet = async { store.put(layout::CONTACT_SHEET, Bytes::from(super::contact::contact_sheet(store, &first_lines, &spec.classes).await?)).await };
    if let Err(e) = sheet.await {
        // Finalize trusts the commit records; a listed file found missing here means
        // the run's objects need checking.
        tracing::warn!(run = run_id, error = %e, "could not draw or write the contact sheet (if a listed sample is missing, `coordinator verify` checks every object of the run)");
    }

    let total: u64 = pixels.iter().sum();
    let names: Vec<String> = spec.classes.classes.iter().map(|c| c.name.clone()).collect();
    let summary = ManifestSummary {
        run_id: run_id.to_string(),
        count: samples,
        shards: n,
        format: spec.output.format,
        image_size: spec.pipeline.image_size,
        pipeline: spec.pipeline.kind,
        spec_digest: digest.clone(),
        manifest_jsonl_sha256: manifest_sha256,
        classes: names.clone(),
        class_pixels: names.iter().cloned().zip(pixels.iter().copied()).collect(),
        class_shares: names.iter().cloned().zip(pixels.iter().map(|&p| if total > 0 { p as f64 / total as f64 } else { 0.0 })).collect(),
        timings: Timings { first_started_ms: first_started, last_committed_ms: last_committed, finalized_ms: now_ms(), stage_seconds: stage },
        retried_shards: retried,
        class_table: spec.classes.clone(),
        dataset: tars_sha256.map(|sha256| PublishedShards {
            pattern: layout::published_pattern(n),
            count: n,
            shards_jsonl: layout::SHARDS_JSONL.into(),
            shards_jsonl_sha256: sha256,
        }),
    };
    check_still_held(store, lost)?;
    store.put(layout::MANIFEST_JSON, Bytes::from(serde_json::to_vec_pretty(&summary).expect("summary serialises"))).await?;
    Ok(FinalizeReport { samples, shards: n, removed_objects: removed, aborted_uploads: aborted })
}
