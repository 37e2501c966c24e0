//! Verify: check a finalized run against what finalize wrote, reading everything as
//! streams (memory grows with a shard's samples, never with the run): `manifest.json`,
//! then `manifest.jsonl` line by line (one line per index `0..count` in order, keys as the
//! index makes them, its sha256 as `manifest.json` records it) beside
//! `dataset/shards.jsonl` (each tar's samples are the manifest's lines that point into it,
//! in order), then every published tar hashed (WebDataset) or every image and label hashed
//! (PNG runs) against the sha256 listed for it. A tar is read as it is hashed: each member
//! hashed against the sha256 its manifest line lists (every line's image, label and
//! `KEY.json` there, nothing else), and its side table `dataset/SHARD.parquet` read
//! against the same lines. What a user runs before handing a dataset on: exactly `count`
//! samples, no gaps, no duplicates, every byte as written.

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
    /// Tar members hashed (WebDataset runs), each against its manifest line.
    #[serde(default)]
    pub members: u64,
    /// Side tables (`dataset/SHARD.parquet`) read and matched against the manifest.
    #[serde(default)]
    pub tables: u64,
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

    /// A problem of the whole run (its count, its manifest's sha256): listed before the
    /// line-by-line ones, so it is shown however many of those there are.
    fn problem_first(&mut self, message: String) {
        self.problem_count += 1;
        self.problems.insert(0, message);
        self.problems.truncate(SHOWN_PROBLEMS);
    }
}

/// Checks the finalized run in `store` (rooted at the run directory). Err only when the
/// run cannot be read at all (no `manifest.json` or `manifest.jsonl`, storage
/// unreachable at the start); what does not match, a line that does not parse and an
/// object that cannot be read are listed in the report. `progress(done, total)` is told
/// each object hashed (one per tar, or two per sample of a PNG run).
pub async fn verify(store: &Store, progress: &dyn Fn(u64, u64)) -> Result<VerifyReport> {
    let where_ = store.describe(layout::MANIFEST_JSON);
    let Some(body) = store.get(layout::MANIFEST_JSON).await? else {
        // A mistyped path (or OUTPUT_URL without the run) has no run.json; a run not
        // finalized has one.
        let no_run = !store.exists(layout::RUN_JSON).await.unwrap_or(true);
        return Err(if no_run {
            Error::format(
                store.display(),
                format!("no run directory here: no {} (check the path: `coordinator watch` and `finalize` print it as OUTPUT_URL/RUN)", layout::RUN_JSON),
            )
        } else {
            Error::format(&where_, "missing: the run is not finalized (`coordinator finalize` writes it last)")
        });
    };
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
    // The index the next line should have: after a gap the lines that follow are judged
    // from the line read (one problem per gap, not one per later line).
    let mut expected = 0u64;
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
        report.samples += 1;
        if line.index > expected {
            let missing = if line.index - expected == 1 { format!("index {expected} is missing") } else { format!("indices {expected} to {} are missing", line.index - 1) };
            report.problem(format!("{at}: index {}, expected {expected}: {missing} here (absent, or later in the file)", line.index));
        } else if line.index < expected {
            report.problem(format!("{at}: index {}, expected {expected}: a line repeated or out of order", line.index));
        }
        if line.key != layout::key(line.index) {
            report.problem(format!("{at}: key {}, expected {} for index {}", line.key, layout::key(line.index), line.index));
        }
        // An index past the run's count (damage) does not move the expectation for the
        // lines after it.
        if line.index < summary.count {
            expected = expected.max(line.index + 1);
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
    if lines.sha256() != summary.manifest_jsonl_sha256 {
        report.problem_first(format!("{}: sha256 {}, {} records {}", lines.origin(), lines.sha256(), where_, summary.manifest_jsonl_sha256));
    }
    if report.samples != summary.count {
        report.problem_first(format!("{} has {} samples, {} says {}", lines.origin(), report.samples, where_, summary.count));
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

/// One object to check: a published tar with what the manifest says of its members (none
/// when the manifest could not be read that far), or a PNG run's image or label with its
/// listed sha256.
enum Item {
    Tar(ShardFile, Option<Vec<Expected>>),
    Plain(String, String),
}

/// What a manifest line says of a tar's members and side-table row.
struct Expected {
    /// Its line number in `manifest.jsonl`.
    no: u64,
    row: crate::manifest::TableRow,
    image_member: String,
    label_member: String,
}

impl Expected {
    fn of(no: u64, l: ManifestLine) -> Expected {
        let member = |p: &str| layout::split_member(p).map_or_else(|| p.to_string(), |(_, m)| m.to_string());
        Expected {
            no,
            image_member: member(&l.image),
            label_member: member(&l.label),
            row: crate::manifest::TableRow { key: l.key, index: l.index, image_sha256: l.image_sha256, label_sha256: l.label_sha256 },
        }
    }
}

/// What checking one [`Item`] found, merged into the report in order.
#[derive(Default)]
struct Checked {
    objects: u64,
    bytes: u64,
    members: u64,
    tables: u64,
    problems: Vec<String>,
}

/// Checks every tar (from `dataset/shards.jsonl`, with its members and side table) or
/// every image and label (from `manifest.jsonl`) a few at a time, streamed. What this
/// holds grows with the samples of a shard (a tar's expected members, its side table),
/// never with the run.
async fn hash_all(store: &Store, summary: &ManifestSummary, report: &mut VerifyReport, progress: &dyn Fn(u64, u64)) -> Result<()> {
    let total = summary.dataset.as_ref().map_or(2 * summary.count, |d| d.count);
    // A tar's item holds its shard's lines: one waits beside those being checked.
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(if summary.dataset.is_some() { 1 } else { 4 * HASH_CONCURRENCY });
    let lister = {
        let store = store.clone();
        let listing = summary.dataset.as_ref().map(|d| d.shards_jsonl.clone());
        tokio::spawn(async move {
            let mut lines = JsonLines::open(&store, layout::MANIFEST_JSONL).await?;
            match listing {
                Some(rel) => {
                    // Tar k (shard k, by its name; else its place in the listing) takes the
                    // lines that name it. A line of an earlier shard is dropped, a later
                    // one's waits for its tar: a line out of place (which the first pass
                    // names) costs its own checks and at most its tar's.
                    // Once the manifest or the listing stops parsing (also named by the
                    // first pass), tars are still hashed, without their lines.
                    let mut tars = JsonLines::open(&store, &rel).await?;
                    let mut pending: Option<(u64, ManifestLine)> = None;
                    let mut lines_ok = true;
                    let mut place = 0u64;
                    while let Ok(Some((_, file))) = tars.next::<ShardFile>("a published tar").await {
                        let k = layout::shard_of_published_tar(&file.path).unwrap_or(place);
                        place += 1;
                        let mut own = Vec::new();
                        while lines_ok {
                            let next = match pending.take() {
                                Some(l) => l,
                                None => match lines.next::<ManifestLine>(MANIFEST_LINE).await {
                                    Ok(Some(l)) => l,
                                    Ok(None) => break,
                                    Err(_) => {
                                        lines_ok = false;
                                        break;
                                    }
                                },
                            };
                            if layout::split_member(&next.1.image).is_some_and(|(t, _)| t == file.path) {
                                own.push(Expected::of(next.0, next.1));
                            } else if next.1.shard > k {
                                pending = Some(next);
                                break;
                            }
                        }
                        if tx.send(Item::Tar(file, lines_ok.then_some(own))).await.is_err() {
                            break;
                        }
                    }
                }
                None => {
                    while let Some((_, l)) = lines.next::<ManifestLine>(MANIFEST_LINE).await? {
                        if tx.send(Item::Plain(l.image, l.image_sha256)).await.is_err() || tx.send(Item::Plain(l.label, l.label_sha256)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Ok::<_, Error>(())
        })
    };
    let mut checked = tokio_stream_of(rx).map(|item| check(store, item)).buffered(HASH_CONCURRENCY);
    let mut done = 0u64;
    while let Some(c) = checked.next().await {
        done += 1;
        progress(done, total);
        report.objects += c.objects;
        report.bytes += c.bytes;
        report.members += c.members;
        report.tables += c.tables;
        for p in c.problems {
            report.problem(p);
        }
    }
    match lister.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.problem(format!("listing the objects to hash stopped: {e}")),
        Err(e) => report.problem(format!("listing the objects to hash failed: {e}")),
    }
    Ok(())
}

/// Checks one object: its sha256 (and size, when listed); a tar's members against the
/// manifest lines that point into it, and its side table. A tar no line points into (the
/// manifest ended before it: the first pass names it) is hashed only.
async fn check(store: &Store, item: Item) -> Checked {
    let mut c = Checked::default();
    let (path, sha, size, tar) = match item {
        Item::Plain(path, sha) => (path, sha, None, None),
        Item::Tar(file, lines) => (file.path.clone(), file.sha256.clone(), Some(file.bytes), Some((file, lines.filter(|l| !l.is_empty())))),
    };
    let hashed = match &tar {
        Some((_, Some(_))) => store.sha256_read(&path, tar_members).await.map(|h| h.map(|(h, members)| (h, Some(members)))),
        _ => store.sha256(&path).await.map(|h| h.map(|h| (h, None))),
    };
    let members = match hashed {
        Err(e) => {
            c.problems.push(e.to_string());
            None
        }
        Ok(None) => {
            c.problems.push(format!("{}: missing", store.describe(&path)));
            None
        }
        Ok(Some(((got_sha, got_size), members))) => {
            c.objects += 1;
            c.bytes += got_size;
            if got_sha != sha || size.is_some_and(|s| s != got_size) {
                c.problems.push(format!(
                    "{}: sha256 {got_sha} ({got_size} bytes), listed as {sha}{}",
                    store.describe(&path),
                    size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
                ));
            }
            members
        }
    };
    if let Some((file, Some(lines))) = tar {
        match members {
            Some(Ok(Ok(found))) => {
                c.members += found.len() as u64;
                check_members(store, &file, &lines, &found, &mut c.problems);
            }
            Some(Ok(Err(e))) => c.problems.push(format!("{}: {e}", store.describe(&path))),
            Some(Err(e)) => c.problems.push(e.to_string()),
            None => {}
        }
        check_table(store, &file, &lines, &mut c).await;
    }
    c
}

/// A tar's members as `(name, sha256, bytes)`, in order, each hashed as it is read.
fn tar_members(r: &mut dyn std::io::Read) -> std::result::Result<Vec<(String, String, u64)>, String> {
    use sha2::{Digest, Sha256};
    let mut found = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries().map_err(|e| format!("not a tar: {e}"))? {
        let mut entry = entry.map_err(|e| format!("bad tar entry after {} members: {e}", found.len()))?;
        let name = entry.path().map(|p| p.to_string_lossy().into_owned()).map_err(|e| format!("a member's name after {} members: {e}", found.len()))?;
        let (mut hasher, mut got) = (Sha256::new(), 0u64);
        loop {
            let n = std::io::Read::read(&mut entry, &mut buf).map_err(|e| format!("reading member {name}: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            got += n as u64;
        }
        // The tar reader ends a member quietly where the object ends.
        if got != entry.size() {
            return Err(format!("member {name} is cut short: the tar ends after {got} of its {} bytes", entry.size()));
        }
        found.push((name, hex::encode(hasher.finalize()), got));
    }
    Ok(found)
}

/// Each line's image and label are members of the tar with the sha256 the line lists, and
/// its `KEY.json` is there too; each member once, and none that no line names.
fn check_members(store: &Store, file: &ShardFile, lines: &[Expected], found: &[(String, String, u64)], problems: &mut Vec<String>) {
    use std::collections::{HashMap, HashSet};
    let manifest = layout::MANIFEST_JSONL;
    // member name → (manifest line number, sha256 listed; none for KEY.json)
    let mut wanted: HashMap<String, (u64, Option<&str>)> = HashMap::new();
    for e in lines {
        wanted.insert(e.image_member.clone(), (e.no, Some(e.row.image_sha256.as_str())));
        wanted.insert(e.label_member.clone(), (e.no, Some(e.row.label_sha256.as_str())));
        wanted.insert(format!("{}.json", e.row.key), (e.no, None));
    }
    let mut seen = HashSet::new();
    for (name, sha, _) in found {
        let at = store.describe(&layout::member_path(&file.path, name));
        if !seen.insert(name.as_str()) {
            problems.push(format!("{at}: a second member of that name"));
            continue;
        }
        match wanted.get(name) {
            None => problems.push(format!("{at}: no line of {manifest} names it")),
            Some((no, Some(listed))) if listed != sha => problems.push(format!("{at}: sha256 {sha}, {manifest} line {no} lists {listed}")),
            Some(_) => {}
        }
    }
    let mut absent: Vec<(u64, &String)> = wanted.iter().filter(|(name, _)| !seen.contains(name.as_str())).map(|(name, (no, _))| (*no, name)).collect();
    absent.sort();
    for (no, name) in absent {
        problems.push(format!("{}: has no member {name} ({manifest} line {no})", store.describe(&file.path)));
    }
}

/// The tar's side table holds one row per line, in order, with the line's key, index and
/// sha256s.
async fn check_table(store: &Store, file: &ShardFile, lines: &[Expected], c: &mut Checked) {
    let at = store.describe(&file.parquet);
    let rows = match store.get(&file.parquet).await {
        Err(e) => return c.problems.push(e.to_string()),
        Ok(None) => return c.problems.push(format!("{at}: missing (the side table of {})", file.path)),
        Ok(Some(data)) => match crate::manifest::table_rows(data, &at) {
            Ok(rows) => rows,
            Err(e) => return c.problems.push(e.to_string()),
        },
    };
    c.tables += 1;
    if rows.len() != lines.len() {
        c.problems.push(format!("{at}: {} rows, {} names {} samples in {}", rows.len(), layout::MANIFEST_JSONL, lines.len(), file.path));
    }
    for (n, (row, e)) in rows.iter().zip(lines).enumerate() {
        let want = &e.row;
        let differ: Vec<String> = [("key", &row.key, &want.key), ("image_sha256", &row.image_sha256, &want.image_sha256), ("label_sha256", &row.label_sha256, &want.label_sha256)]
            .into_iter()
            .filter(|(_, got, want)| got != want)
            .map(|(name, got, want)| format!("{name} {got:?} (line: {want:?})"))
            .chain((row.index != want.index).then(|| format!("index {} (line: {})", row.index, want.index)))
            .collect();
        if !differ.is_empty() {
            c.problems.push(format!("{at}: row {n} differs from {} line {}: {}", layout::MANIFEST_JSONL, e.no, differ.join(", ")));
        }
    }
}

/// A receiver as a stream.
fn tokio_stream_of<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
