//! Verify: check a finalized run against what finalize wrote, reading everything as
//! streams (memory does not grow with the run): `manifest.json`, then `manifest.jsonl`
//! line by line (one line per index `0..count` in order, keys as the index makes them,
//! its sha256 as `manifest.json` records it) beside `dataset/shards.jsonl` (each tar's
//! samples are the manifest's lines that point into it, in order), then every published
//! tar hashed (WebDataset) or every image and label hashed (PNG runs) against the sha256
//! listed for it. What a user runs before handing a dataset on: exactly `count` samples,
//! no gaps, no duplicates, every byte as written.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::finalize::{ManifestSummary, ShardFile};
use crate::error::{Error, Result};
use crate::manifest::{layout, JsonLines, ManifestLine, MANIFEST_LINE};
use crate::storage::Store;

/// Problems reported by name; the rest are counted.
const SHOWN_PROBLEMS: usize = 20;
/// Objects hashed at once.
const HASH_CONCURRENCY: usize = 8;

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Lines of `manifest.jsonl`.
    pub samples: u64,
    /// Published tars listed in `dataset/shards.jsonl` (WebDataset runs).
    pub tars: u64,
    /// Objects hashed: tars, or images and labels.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Every problem found, counted.
    pub problem_count: u64,
    /// The first problems, each naming the object (and line) and what was expected.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, message: String) {
        self.problem_count += 1;
        if self.problems.len() < SHOWN_PROBLEMS {
            self.problems.push(message);
        }
    }
}

/// Checks the finalized run in `store` (rooted at the run directory). Err only when the
/// run cannot be read at all (no `manifest.json` or `manifest.jsonl`, storage
/// unreachable at the start); what does not match, a line that does not parse and an
/// object that cannot be read are listed in the report. `progress(done, total)` is told
/// each object hashed (one per tar, or two per sample of a PNG run).
pub async fn verify(store: &Store, progress: &dyn Fn(u64, u64)) -> Result<VerifyReport> {
    let where_ = store.describe(layout::MANIFEST_JSON);
    let body = store.get(layout::MANIFEST_JSON).await?.ok_or_else(|| Error::format(&where_, "missing: the run is not finalized (`coordinator finalize` writes it last)"))?;
    let summary: ManifestSummary = serde_json::from_slice(&body).map_err(|e| Error::format(&where_, format!("not a run summary: {e}")))?;
    let mut report = VerifyReport::default();
    let mut lines = JsonLines::open(store, layout::MANIFEST_JSONL).await?;
    let mut tars = match &summary.dataset {
        Some(d) if d.shards_jsonl.is_empty() => {
            report.problem(format!("{where_}: written before tars were listed in {} (run `coordinator finalize` again to rewrite it)", layout::SHARDS_JSONL));
            return Ok(report);
        }
        Some(d) => Some(JsonLines::open(store, &d.shards_jsonl).await?),
        None => None,
    };
    // The tar the current lines point into and how many of its samples are still due;
    // whether the listing ran out before the manifest did.
    let mut tar: Option<(ShardFile, u64)> = None;
    let mut tar_count = 0u64;
    let mut listing_ended = false;
    loop {
        // A line that does not parse ends the pass as a problem (the report so far stays).
        let (no, line) = match lines.next::<ManifestLine>(MANIFEST_LINE).await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                report.problem(e.to_string());
                break;
            }
        };
        let at = format!("{} line {no}", lines.origin());
        let index = report.samples;
        report.samples += 1;
        if line.index != index || line.key != layout::key(index) {
            report.problem(format!("{at}: index {} key {}, expected index {index} key {}", line.index, line.key, layout::key(index)));
        }
        let Some(listing) = tars.as_mut() else { continue };
        if listing_ended {
            continue;
        }
        // The next tar with samples; a tar listed with none is a problem of its own.
        while tar.as_ref().is_none_or(|(_, due)| *due == 0) {
            match listing.next::<ShardFile>("a published tar").await {
                Ok(Some((tar_no, file))) => {
                    tar_count += 1;
                    if file.samples == 0 {
                        report.problem(format!("{} line {tar_no}: tar {} lists no samples", listing.origin(), file.path));
                    }
                    let due = file.samples;
                    tar = Some((file, due));
                }
                Ok(None) => {
                    report.problem(format!("{at}: past the last tar of {}", listing.origin()));
                    listing_ended = true;
                    break;
                }
                Err(e) => {
                    report.problem(e.to_string());
                    listing_ended = true;
                    break;
                }
            }
        }
        if listing_ended {
            continue;
        }
        let (file, due) = tar.as_mut().expect("a tar with samples due");
        *due -= 1;
        for (what, path) in [("image", &line.image), ("label", &line.label)] {
            if layout::split_member(path).map(|(t, _)| t) != Some(file.path.as_str()) {
                report.problem(format!("{at}: {what} {path} is not in {}, the tar {} lists next", file.path, listing.origin()));
            }
        }
    }
    if report.samples != summary.count {
        report.problem(format!("{} has {} samples, {} says {}", lines.origin(), report.samples, where_, summary.count));
    }
    if lines.sha256() != summary.manifest_jsonl_sha256 {
        report.problem(format!("{}: sha256 {}, {} records {}", lines.origin(), lines.sha256(), where_, summary.manifest_jsonl_sha256));
    }
    if let (Some(d), Some(mut listing)) = (&summary.dataset, tars) {
        if tar.as_ref().is_some_and(|(_, due)| *due > 0) {
            report.problem(format!(
                "{}: tar {} lists more samples than {} holds",
                listing.origin(),
                tar.as_ref().map(|(f, _)| f.path.as_str()).unwrap_or_default(),
                lines.origin()
            ));
        }
        if !listing_ended {
            loop {
                match listing.next::<ShardFile>("a published tar").await {
                    Ok(Some((no, file))) => {
                        tar_count += 1;
                        report.problem(format!("{} line {no}: tar {} holds samples {} does not list", listing.origin(), file.path, lines.origin()));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        report.problem(e.to_string());
                        break;
                    }
                }
            }
        }
        report.tars = tar_count;
        if tar_count != d.count {
            report.problem(format!("{} lists {tar_count} tars, {where_} says {}", listing.origin(), d.count));
        }
        if !listing_ended && listing.sha256() != d.shards_jsonl_sha256 {
            report.problem(format!("{}: sha256 {}, {where_} records {}", listing.origin(), listing.sha256(), d.shards_jsonl_sha256));
        }
    }
    hash_all(store, &summary, &mut report, progress).await?;
    Ok(report)
}

/// Hashes every tar (from `dataset/shards.jsonl`) or every image and label (from
/// `manifest.jsonl`) a few at a time, streamed, against its listed sha256 and size.
async fn hash_all(store: &Store, summary: &ManifestSummary, report: &mut VerifyReport, progress: &dyn Fn(u64, u64)) -> Result<()> {
    let total = summary.dataset.as_ref().map_or(2 * summary.count, |d| d.count);
    // (object, sha256, size if listed)
    let (tx, rx) = tokio::sync::mpsc::channel::<(String, String, Option<u64>)>(4 * HASH_CONCURRENCY);
    let lister = {
        let store = store.clone();
        let listing = summary.dataset.as_ref().map(|d| d.shards_jsonl.clone());
        tokio::spawn(async move {
            match listing {
                Some(rel) => {
                    let mut tars = JsonLines::open(&store, &rel).await?;
                    while let Some((_, f)) = tars.next::<ShardFile>("a published tar").await? {
                        if tx.send((f.path, f.sha256, Some(f.bytes))).await.is_err() {
                            break;
                        }
                    }
                }
                None => {
                    let mut lines = JsonLines::open(&store, layout::MANIFEST_JSONL).await?;
                    while let Some((_, l)) = lines.next::<ManifestLine>(MANIFEST_LINE).await? {
                        if tx.send((l.image, l.image_sha256, None)).await.is_err() || tx.send((l.label, l.label_sha256, None)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Ok::<_, Error>(())
        })
    };
    let mut hashed = tokio_stream_of(rx)
        .map(|(path, sha, size)| async move {
            let got = store.sha256(&path).await;
            (path, sha, size, got)
        })
        .buffered(HASH_CONCURRENCY);
    let mut done = 0u64;
    while let Some((path, sha, size, got)) = hashed.next().await {
        done += 1;
        progress(done, total);
        match got {
            Err(e) => report.problem(e.to_string()),
            Ok(None) => report.problem(format!("{}: missing", store.describe(&path))),
            Ok(Some((got_sha, got_size))) => {
                report.objects += 1;
                report.bytes += got_size;
                if got_sha != sha || size.is_some_and(|s| s != got_size) {
                    report.problem(format!(
                        "{}: sha256 {got_sha} ({got_size} bytes), listed as {sha}{}",
                        store.describe(&path),
                        size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
                    ));
                }
            }
        }
    }
    match lister.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.problem(format!("listing the objects to hash stopped: {e}")),
        Err(e) => report.problem(format!("listing the objects to hash failed: {e}")),
    }
    Ok(())
}

/// A receiver as a stream.
fn tokio_stream_of<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
