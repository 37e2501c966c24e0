//! The commit protocol and the worker loop under the failures that used to break them:
//! repeated lease tokens, a lost lease, a slow pipeline build, a worker that cannot work, claims whose answers are lost.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::*;
use crate::queue::{JobQueue, MemoryQueue};
use crate::spec::RunSpec;
use crate::storage::Store;

fn spec(count: u64, shard_size: u64, seed: u64) -> RunSpec {
    let text = format!("[run]\ncount = {count}\nshard_size = {shard_size}\nseed = {seed}\nlease_seconds = 1\nretry_backoff_seconds = 0\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\nbatch_size = 2\n");
    RunSpec::parse(&text, "test").unwrap()
}

/// A pipeline that waits for its gate before each batch.
struct Gated {
    inner: ProceduralPipeline,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Pipeline for Gated {
    fn generate(&self, indices: &[u64]) -> crate::Result<Vec<Sample>> {
        let (lock, cv) = &*self.gate;
        let _open = cv.wait_while(lock.lock().unwrap(), |open| !*open).unwrap();
        self.inner.generate(indices)
    }
}

fn open(gate: &Arc<(Mutex<bool>, Condvar)>) {
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

fn job(spec: &RunSpec, store: &Store, pipeline: Arc<dyn Pipeline>, token: u64, owner: &str) -> ShardJob {
    ShardJob {
        run_id: "r".into(),
        spec: Arc::new(spec.clone()),
        spec_digest: spec.digest(),
        store: store.clone(),
        pipeline,
        shard: 0,
        token,
        owner: owner.into(),
        retried: false,
        abort: Arc::new(Abort::default()),
    }
}

async fn objects_under(store: &Store, dir: &str) -> Vec<String> {
    store.list(dir).await.unwrap()
}

/// Redis lost its data and the run was submitted again: a second worker got the same lease
/// token as one still running. Each attempt writes under its own random id; the one that
/// loses the commit removes only its own objects; the manifest's hashes match the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_token_twice_never_touches_the_winners_files() {
    let spec = spec(4, 4, 7);
    let store = Store::memory().child("r");
    // The two workers make different bytes for the same samples (a mixed CPU/GPU fleet).
    let other_bytes = ProceduralPipeline::new(&self::spec(4, 4, 8));
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let slow = tokio::spawn(execute_shard(job(&spec, &store, Arc::new(Gated { inner: other_bytes, gate: gate.clone() }), 1, "old-worker")));
    // The old worker has checked for a record and is generating; the new one commits.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fast = execute_shard(job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "new-worker")).await.unwrap();
    let ShardOutcome::Committed(winner) = fast else { panic!("the first to commit wins: {fast:?}") };
    open(&gate);
    let late = slow.await.unwrap().unwrap();
    assert!(matches!(late, ShardOutcome::AlreadyCommitted), "the late attempt must see the winner's record: {late:?}");

    let objects = objects_under(&store, "data").await;
    let winner_dir = crate::manifest::layout::attempt_dir(0, winner.attempt);
    assert!(!objects.is_empty() && objects.iter().all(|p| p.starts_with(&winner_dir)), "only the winner's objects remain: {objects:?}");
    let report = finalize(&store, "r", &spec).await.unwrap();
    assert_eq!((report.samples, report.removed_objects), (4, 0));
    let lines = crate::manifest::read_manifest(&store).await.unwrap();
    assert_eq!(lines.len(), 4);
    for l in &lines {
        let bytes = store.get(&l.image).await.unwrap().unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), l.image_sha256, "{} does not match the manifest", l.image);
    }
}

/// A holder whose lease deadline passed on its own clock (frozen, partitioned) writes
/// nothing more and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_past_its_deadline_writes_nothing() {
    let spec = spec(4, 4, 7);
    let store = Store::memory().child("r");
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let j = job(&spec, &store, Arc::new(Gated { inner: ProceduralPipeline::new(&spec), gate: gate.clone() }), 1, "w");
    j.abort.held_until(Instant::now() + Duration::from_millis(50));
    let abort = j.abort.clone();
    let t = tokio::spawn(execute_shard(j));
    tokio::time::sleep(Duration::from_millis(200)).await;
    open(&gate);
    let out = t.await.unwrap().unwrap();
    assert!(matches!(out, ShardOutcome::LeaseLost), "{out:?}");
    assert!(!abort.go());
    assert_eq!(objects_under(&store, "").await, Vec::<String>::new(), "a lost lease leaves no object");
}

/// Builds pipelines slowly (as a model download would), or fails to build them at all.
struct SlowFactory {
    delay: Duration,
    fail: bool,
    builds: std::sync::atomic::AtomicU32,
}

impl PipelineFactory for SlowFactory {
    fn build(&self, spec: &RunSpec) -> crate::Result<Arc<dyn Pipeline>> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        if self.fail {
            return Err(crate::Error::Job("model weights do not decode (test)".into()));
        }
        Ok(Arc::new(ProceduralPipeline::new(spec)))
    }
}

/// A fresh pipeline cache, a [`SlowFactory`] (also as a factory) and a spec of 2 samples.
fn cache_with_slow_builds(delay: Duration, fail: bool) -> (Arc<RunCache>, Arc<SlowFactory>, Arc<dyn PipelineFactory>, Arc<RunSpec>) {
    let slow = Arc::new(SlowFactory { delay, fail, builds: Default::default() });
    (Arc::new(RunCache::default()), slow.clone(), slow, Arc::new(spec(2, 2, 1)))
}

async fn submit(queue: &MemoryQueue, spec: &RunSpec, run_id: &str) {
    crate::lifecycle::ops::submit(queue, spec, run_id).await.unwrap();
}

/// The lease is kept alive from the claim on: a pipeline build that takes three leases
/// does not cost an attempt, even with a second slot ready to reclaim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_pipeline_build_keeps_the_lease() {
    let dir = std::env::temp_dir().join(format!("labelgen-slow-build-{}", rand::random::<u64>()));
    let mut spec = spec(2, 2, 1);
    spec.output.url = dir.display().to_string();
    // Two-second leases (heartbeats every 2/3 s): a pause of a loaded machine stays
    // well inside one.
    spec.run.lease_seconds = 2;
    let queue = Arc::new(MemoryQueue::new());
    submit(&queue, &spec, "slow").await;
    let factory = Arc::new(SlowFactory { delay: Duration::from_millis(6000), fail: false, builds: Default::default() });
    let opts = WorkerOptions { concurrency: 2, exit_when_idle: true, poll: Duration::from_millis(20), ..Default::default() };
    let metrics = opts.metrics.clone();
    serve(queue.clone(), factory, opts, std::future::pending()).await.unwrap();
    let rec = crate::manifest::existing_record(&run_store(&spec, "slow").unwrap(), "slow", 0).await.unwrap().expect("committed");
    assert_eq!((rec.token, rec.retried), (1, false), "the first lease must have held through the build");
    assert_eq!(metrics.leases_lost.get(), 0);
    // The worker's counters name the run; the bytes are the shard's files.
    let body = metrics.encode();
    assert!(body.contains("labelgen_jobs_committed_total{run=\"slow\"} 1") && body.contains("labelgen_shard_seconds_count{run=\"slow\"} 1"), "{body}");
    let files: u64 =
        rec.samples.iter().map(|l| std::fs::metadata(dir.join("slow").join(&l.image)).unwrap().len() + std::fs::metadata(dir.join("slow").join(&l.label)).unwrap().len()).sum();
    assert_eq!((metrics.uploaded_bytes.get(), rec.stage_seconds.bytes), (files, files));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker that cannot build the run's pipeline gives each job back without spending an
/// attempt, backs off, turns unready, and exits after `max_local_failures` in a row with
/// an error naming the cause; the run's shards stay claimable by a healthy worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_work_gives_jobs_back_and_exits() {
    let spec = spec(6, 2, 1);
    let queue = Arc::new(MemoryQueue::new());
    submit(&queue, &spec, "poison").await;
    let factory = Arc::new(SlowFactory { delay: Duration::ZERO, fail: true, builds: Default::default() });
    let opts = WorkerOptions { max_local_failures: 3, local_backoff: Duration::from_millis(10), poll: Duration::from_millis(10), ..Default::default() };
    let metrics = opts.metrics.clone();
    metrics.ready.store(true, Ordering::Relaxed);
    let err = serve(queue.clone(), factory.clone(), opts, std::future::pending()).await.unwrap_err();
    assert!(err.is_worker_fault(), "{err}");
    assert!(err.to_string().contains("3 failures of this worker in a row") && err.to_string().contains("do not decode"), "{err}");
    assert_eq!(factory.builds.load(Ordering::SeqCst), 3);
    assert!(!metrics.ready.load(Ordering::Relaxed), "a worker backing off is not ready");
    let c = queue.counts("poison").await.unwrap();
    assert_eq!((c.pending, c.dead, c.leased, c.delayed), (3, 0, 0, 0), "no attempt spent: {c:?}");
    let lease = queue.claim("healthy").await.unwrap().unwrap();
    assert_eq!(lease.failures, 0, "given back, not failed");
}

/// Finalize publishes each WebDataset shard's winning tar as `dataset/SHARD.tar` (same
/// bytes, the original removed), lists them in manifest.json and points the manifest
/// there; run again — also after dying between a copy and its removal — it gives the same
/// result; a tar that is gone from both places is an error naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_publishes_webdataset_tars_under_flat_names() {
    let mut spec = spec(5, 2, 7);
    spec.output.format = crate::spec::OutputFormat::Webdataset;
    let store = Store::memory().child("r");
    let mut originals = Vec::new();
    for shard in 0..spec.shards() {
        let mut j = job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "w");
        j.shard = shard;
        let ShardOutcome::Committed(rec) = execute_shard(j).await.unwrap() else { panic!("shard {shard} did not commit") };
        let (path, sha) = rec.tar.clone().unwrap();
        originals.push((path.clone(), sha, store.get(&path).await.unwrap().unwrap()));
    }
    // Finalize with another spec refuses before moving anything.
    let mut other = spec.clone();
    other.run.seed = 8;
    let e = finalize(&store, "r", &other).await.unwrap_err().to_string();
    assert!(e.contains("record was made for spec"), "{e}");
    assert_eq!(objects_under(&store, "dataset").await, Vec::<String>::new(), "a wrong spec publishes nothing");
    let report = finalize(&store, "r", &spec).await.unwrap();
    assert_eq!((report.samples, report.shards), (5, 3));
    assert_eq!(objects_under(&store, "data").await, Vec::<String>::new(), "the originals are moved, not copied");
    // Two finalizes at once take turns (finalize.lock): both end well, with the same
    // manifest, and leave no lock.
    let manifest = store.get("manifest.jsonl").await.unwrap().unwrap();
    let (a, b) = tokio::join!(finalize(&store, "r", &spec), finalize(&store, "r", &spec));
    assert_eq!((a.unwrap().samples, b.unwrap().samples), (5, 5));
    assert_eq!(store.get("manifest.jsonl").await.unwrap().unwrap(), manifest);
    assert!(!store.exists("finalize.lock").await.unwrap());
    let published =
        ["dataset/000000.parquet", "dataset/000000.tar", "dataset/000001.parquet", "dataset/000001.tar", "dataset/000002.parquet", "dataset/000002.tar", "dataset/shards.jsonl"];
    assert_eq!(objects_under(&store, "dataset").await, published);
    let summary: ManifestSummary = serde_json::from_slice(&store.get("manifest.json").await.unwrap().unwrap()).unwrap();
    let published = summary.dataset.expect("a WebDataset run lists its tars");
    assert_eq!((published.pattern.as_str(), published.count, published.shards_jsonl.as_str()), ("dataset/{000000..000002}.tar", 3, "dataset/shards.jsonl"));
    let listing = store.get("dataset/shards.jsonl").await.unwrap().unwrap();
    assert_eq!(published.shards_jsonl_sha256, hex::encode(sha2::Sha256::digest(&listing)));
    let tars = super::published_tars(&store).await.unwrap();
    assert_eq!(tars.len(), 3);
    for (i, (f, (_, sha, bytes))) in tars.iter().zip(&originals).enumerate() {
        assert_eq!((f.path.as_str(), f.samples, f.bytes, &f.sha256), (format!("dataset/{i:06}.tar").as_str(), if i < 2 { 2 } else { 1 }, bytes.len() as u64, sha));
        assert_eq!(&store.get(&f.path).await.unwrap().unwrap(), bytes, "{} holds the winner's bytes", f.path);
        assert_eq!(f.parquet, format!("dataset/{i:06}.parquet"));
    }
    assert_eq!(summary.class_table, spec.classes);
    let lines = crate::manifest::read_manifest(&store).await.unwrap();
    assert_eq!(lines[4].image, "dataset/000002.tar#00000004.png");
    let first = store.get("manifest.jsonl").await.unwrap().unwrap();

    // Died after copying shard 1 but before removing its original: the original is back.
    store.put(&originals[1].0, originals[1].2.clone()).await.unwrap();
    finalize(&store, "r", &spec).await.unwrap();
    assert_eq!(store.get("manifest.jsonl").await.unwrap().unwrap(), first, "a repeat writes the same manifest");
    assert_eq!(objects_under(&store, "data").await, Vec::<String>::new());

    store.delete("dataset/000001.tar").await.unwrap();
    let e = finalize(&store, "r", &spec).await.unwrap_err().to_string();
    assert!(e.contains("shards/000001.json") && e.contains(&originals[1].0) && e.contains("dataset/000001.tar"), "{e}");
}

/// `output.image_format` reaches the files: JPEG images as `KEY.jpg` (plain files and tar
/// members), labels still PNG, the contact sheet drawn from the JPEGs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_images_are_written_as_jpg_with_png_labels() {
    for format in [crate::spec::OutputFormat::Png, crate::spec::OutputFormat::Webdataset] {
        let mut spec = spec(3, 3, 7);
        spec.output.format = format;
        spec.output.image_format = crate::spec::ImageFormat::Jpeg;
        let store = Store::memory().child("r");
        let ShardOutcome::Committed(_) = execute_shard(job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "w")).await.unwrap() else { panic!("no commit") };
        finalize(&store, "r", &spec).await.unwrap();
        let lines = crate::manifest::read_manifest(&store).await.unwrap();
        assert!(lines[2].image.ends_with("/00000002.jpg") || lines[2].image.ends_with("#00000002.jpg"), "{format:?}: {}", lines[2].image);
        assert!(lines[2].label.ends_with("00000002.label.png"), "{}", lines[2].label);
        let paths: Vec<String> = lines.iter().flat_map(|l| [l.image.clone(), l.label.clone()]).collect();
        let mut decoded = 0;
        crate::manifest::read_files::<crate::Error>(&store, &paths, |origin, bytes| {
            if origin.ends_with(".jpg") {
                assert!(bytes.starts_with(&[0xFF, 0xD8]), "{origin} is not a JPEG");
                let img = crate::RgbImage::decode(&bytes, origin)?;
                assert_eq!((img.width, img.height), (16, 16));
                decoded += 1;
            }
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(decoded, 3);
        assert!(store.exists("contact_sheet.png").await.unwrap(), "{format:?}: the contact sheet reads JPEG images");
    }
}

async fn finished_run(format: crate::spec::OutputFormat) -> (Store, RunSpec) {
    let mut spec = spec(5, 2, 3);
    spec.output.format = format;
    let store = Store::memory().child("r");
    for shard in 0..spec.shards() {
        let mut j = job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "w");
        j.shard = shard;
        assert!(matches!(execute_shard(j).await.unwrap(), ShardOutcome::Committed(_)));
    }
    finalize(&store, "r", &spec).await.unwrap();
    (store, spec)
}

/// A finalized run verifies; each kind of damage is found and named: a tar's bytes, a
/// PNG's bytes, a missing file, a line dropped or duplicated in the manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_every_kind_of_damage_and_passes_a_clean_run() {
    for format in [crate::spec::OutputFormat::Webdataset, crate::spec::OutputFormat::Png] {
        let (store, _) = finished_run(format).await;
        let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
        assert!(r.ok(), "{format:?}: {:?}", r.problems);
        assert_eq!((r.samples, r.objects), (5, if format == crate::spec::OutputFormat::Webdataset { 3 } else { 10 }), "{format:?}");

        // One object's bytes changed.
        let lines = crate::manifest::read_manifest(&store).await.unwrap();
        let victim = crate::manifest::layout::split_member(&lines[2].image).map(|(t, _)| t.to_string()).unwrap_or(lines[2].image.clone());
        let original = store.get(&victim).await.unwrap().unwrap();
        let mut bad = original.to_vec();
        // The image's first byte: in a tar, the first byte of its member's data.
        let at = match crate::manifest::layout::split_member(&lines[2].image) {
            None => 0,
            Some((_, member)) => {
                let mut archive = tar::Archive::new(original.as_ref());
                let entry = archive.entries().unwrap().map(|e| e.unwrap()).find(|e| e.path().unwrap().to_string_lossy() == member).unwrap();
                entry.raw_file_position() as usize
            }
        };
        bad[at] ^= 1;
        store.put(&victim, bytes::Bytes::from(bad)).await.unwrap();
        let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
        assert!(r.problems[0].contains(&victim) && r.problems[0].contains("listed as"), "{:?}", r.problems);
        if format == crate::spec::OutputFormat::Webdataset {
            // The member is named, against its manifest line.
            assert_eq!(r.problem_count, 2, "{:?}", r.problems);
            assert!(r.problems[1].contains(&lines[2].image) && r.problems[1].contains("manifest.jsonl line 3 lists"), "{:?}", r.problems);
        } else {
            assert_eq!(r.problem_count, 1, "{format:?}: {:?}", r.problems);
        }
        store.delete(&victim).await.unwrap();
        let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
        assert!(r.problems[0].contains(&victim) && r.problems[0].contains("missing"), "{:?}", r.problems);
        store.put(&victim, original).await.unwrap();

        // A line duplicated in place of the next: the order, the count of lines in its tar
        // and the manifest's sha256 no longer hold.
        let mut text: Vec<String> = lines.iter().map(|l| l.to_jsonl().trim_end().to_string()).collect();
        text[3] = text[2].clone();
        let original = store.get("manifest.jsonl").await.unwrap().unwrap();
        store.put("manifest.jsonl", bytes::Bytes::from(text.join("\n") + "\n")).await.unwrap();
        let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
        assert!(r.problems.iter().any(|p| p.contains("manifest.jsonl line 4: index 2, expected 3: a line repeated or out of order")), "{:?}", r.problems);
        assert!(r.problems.iter().any(|p| p.contains("sha256")), "{:?}", r.problems);
        // A line dropped: four samples where five were written.
        text.remove(3);
        store.put("manifest.jsonl", bytes::Bytes::from(text.join("\n") + "\n")).await.unwrap();
        let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
        // The count first; the gap once, not once for every line after it.
        assert!(r.problems[0].contains("has 4 samples") && r.problems[0].contains("says 5"), "{:?}", r.problems);
        let about_indices: Vec<&String> = r.problems.iter().filter(|p| p.contains(", expected ")).collect();
        assert!(about_indices.len() == 1 && about_indices[0].contains("line 4: index 4, expected 3: index 3 is missing here"), "{:?}", r.problems);
        // A line that is not JSON is a problem naming it, not an error losing the report.
        text[1] = "{not json".into();
        store.put("manifest.jsonl", bytes::Bytes::from(text.join("\n") + "\n")).await.unwrap();
        let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
        assert!(r.problems.iter().any(|p| p.contains("manifest.jsonl") && p.contains("line 2") && p.contains("not a manifest line")), "{:?}", r.problems);
        store.put("manifest.jsonl", original).await.unwrap();
        if format == crate::spec::OutputFormat::Webdataset {
            // A tar listed with no samples is named, and the check goes on.
            let listing = store.get("dataset/shards.jsonl").await.unwrap().unwrap();
            let text = String::from_utf8(listing.to_vec()).unwrap();
            let mut zero: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            zero["samples"] = 0.into();
            store.put("dataset/shards.jsonl", bytes::Bytes::from(format!("{zero}\n{text}"))).await.unwrap();
            let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
            assert!(r.problems.iter().any(|p| p.contains("shards.jsonl line 1") && p.contains("lists no samples")), "{:?}", r.problems);
            store.put("dataset/shards.jsonl", listing).await.unwrap();

            // A manifest line whose label hash is not its member's: the member and the side
            // table row are named (and the manifest's own sha256 no longer holds).
            let manifest = store.get("manifest.jsonl").await.unwrap().unwrap();
            let mut text: Vec<String> = lines.iter().map(|l| l.to_jsonl().trim_end().to_string()).collect();
            let mut changed = lines[1].clone();
            changed.label_sha256 = "0".repeat(64);
            text[1] = changed.to_jsonl().trim_end().to_string();
            store.put("manifest.jsonl", bytes::Bytes::from(text.join("\n") + "\n")).await.unwrap();
            let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
            assert!(r.problems.iter().any(|p| p.contains(&lines[1].label) && p.contains("manifest.jsonl line 2 lists 0000")), "{:?}", r.problems);
            assert!(r.problems.iter().any(|p| p.contains("000000.parquet: row 1 differs from manifest.jsonl line 2: label_sha256")), "{:?}", r.problems);
            assert_eq!(r.members, 15, "3 members a sample");

            // Two lines of neighbouring tars swapped: named where they are, and the tars
            // after them are still checked against their own lines (no cascade).
            let mut text: Vec<String> = lines.iter().map(|l| l.to_jsonl().trim_end().to_string()).collect();
            text.swap(1, 2);
            store.put("manifest.jsonl", bytes::Bytes::from(text.join("\n") + "\n")).await.unwrap();
            let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
            assert!(r.problems.iter().any(|p| p.contains("manifest.jsonl line 2: index 2, expected 1")), "{:?}", r.problems);
            assert!(r.problems.iter().any(|p| p.contains("000000.tar#00000001.png: no line of manifest.jsonl names it")), "{:?}", r.problems);
            assert!(!r.problems.iter().any(|p| p.contains("r/dataset/000001.tar#") || p.contains("r/dataset/000002.tar#") || p.contains("000001.parquet")), "{:?}", r.problems);
            // A line that does not parse: later tars are still hashed (their members unchecked).
            text[1] = "{not json".into();
            store.put("manifest.jsonl", bytes::Bytes::from(text.join("\n") + "\n")).await.unwrap();
            let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
            assert_eq!((r.objects, r.members, r.tables), (3, 0, 0), "{:?}", r.problems);
            store.put("manifest.jsonl", manifest).await.unwrap();

            // A tar with a member no line names, or without one a line names.
            let tar0 = store.get("dataset/000000.tar").await.unwrap().unwrap();
            let mut extra = tar::Builder::new(Vec::new());
            let mut archive = tar::Archive::new(tar0.as_ref());
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let (mut header, name) = (entry.header().clone(), entry.path().unwrap().into_owned());
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                if !name.to_string_lossy().ends_with("00000001.json") {
                    extra.append_data(&mut header, &name, data.as_slice()).unwrap();
                }
            }
            let mut header = tar::Header::new_ustar();
            header.set_size(3);
            header.set_cksum();
            extra.append_data(&mut header, "stray.txt", b"abc".as_slice()).unwrap();
            store.put("dataset/000000.tar", bytes::Bytes::from(extra.into_inner().unwrap())).await.unwrap();
            let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
            assert!(r.problems.iter().any(|p| p.contains("dataset/000000.tar#stray.txt") && p.contains("no line of manifest.jsonl names it")), "{:?}", r.problems);
            assert!(r.problems.iter().any(|p| p.contains("dataset/000000.tar: has no member 00000001.json (manifest.jsonl line 2)")), "{:?}", r.problems);
            store.put("dataset/000000.tar", tar0).await.unwrap();

            // A side table gone, or another shard's.
            let table = store.get("dataset/000001.parquet").await.unwrap().unwrap();
            store.delete("dataset/000001.parquet").await.unwrap();
            let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
            assert_eq!(r.problem_count, 1, "{:?}", r.problems);
            assert!(r.problems[0].contains("dataset/000001.parquet: missing"), "{:?}", r.problems);
            store.put("dataset/000001.parquet", store.get("dataset/000000.parquet").await.unwrap().unwrap()).await.unwrap();
            let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
            assert!(r.problems.iter().any(|p| p.contains("dataset/000001.parquet: row 0") && p.contains("\"00000000\"")), "{:?}", r.problems);
            store.put("dataset/000001.parquet", table).await.unwrap();
        }
        assert!(super::verify::verify(&store, &|_, _| {}).await.unwrap().ok());
    }
    let e = super::verify::verify(&Store::memory().child("nothing"), &|_, _| {}).await.unwrap_err().to_string();
    assert!(e.contains("no run directory here") && e.contains("run.json"), "{e}");
    let unfinished = Store::memory().child("unfinished");
    unfinished.put("run.json", bytes::Bytes::from_static(b"{}")).await.unwrap();
    let e = super::verify::verify(&unfinished, &|_, _| {}).await.unwrap_err().to_string();
    assert!(e.contains("manifest.json") && e.contains("not finalized"), "{e}");
}

/// Finalize of an incomplete run names what is missing (counted from a streamed listing)
/// and publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_of_an_incomplete_run_names_the_missing_shards() {
    let mut spec = spec(7, 2, 5);
    spec.output.format = crate::spec::OutputFormat::Webdataset;
    let store = Store::memory().child("r");
    for shard in [0, 2] {
        let mut j = job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "w");
        j.shard = shard;
        assert!(matches!(execute_shard(j).await.unwrap(), ShardOutcome::Committed(_)));
    }
    let e = finalize(&store, "r", &spec).await.unwrap_err().to_string();
    assert!(e.contains("2 of 4 shards are not committed (shards 1, 3)"), "{e}");
    assert_eq!(objects_under(&store, "dataset").await, Vec::<String>::new());
    let counted = crate::manifest::count_committed(&store, &spec).await.unwrap();
    assert_eq!((counted.shards, counted.samples), (2, 4));
    let (missing, first) = crate::manifest::uncommitted_shards(&store, 4, 1).await.unwrap();
    assert_eq!((missing, first), (2, vec![1]));
}

/// A record whose samples are not its shard's is refused, naming the first wrong index
/// (not printing both lists: at 100,000 samples a shard that was a message of megabytes),
/// and so is one with samples missing at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_names_the_first_wrong_index_of_a_record() {
    let spec = spec(6, 2, 5);
    for (tamper, expected) in [
        (
            &(|s: &mut Vec<serde_json::Value>| s[1]["index"] = 9.into()) as &dyn Fn(&mut Vec<serde_json::Value>),
            "record lists index 9 at position 1, expected 3 (the shard holds samples 2..4)",
        ),
        (&|s: &mut Vec<serde_json::Value>| drop(s.pop()), "record lists 1 samples, expected 2 (samples 2..4)"),
    ] {
        let store = Store::memory().child("r");
        for shard in 0..3 {
            let mut j = job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "w");
            j.shard = shard;
            assert!(matches!(execute_shard(j).await.unwrap(), ShardOutcome::Committed(_)));
        }
        let path = crate::manifest::layout::record_path(1);
        let mut rec: serde_json::Value = serde_json::from_slice(&store.get(&path).await.unwrap().unwrap()).unwrap();
        let mut samples = rec["samples"].as_array().unwrap().clone();
        tamper(&mut samples);
        rec["samples"] = samples.into();
        store.delete(&path).await.unwrap();
        store.put(&path, serde_json::to_vec(&rec).unwrap().into()).await.unwrap();
        let e = finalize(&store, "r", &spec).await.unwrap_err().to_string();
        assert!(e.contains(expected) && e.contains("000001"), "{e}");
    }
}

/// `manifest.json` does not grow with the run: the published tars are listed in
/// `dataset/shards.jsonl`, one line each, so finalize holds none of them. 300 shards
/// against 3: the summary is the same size but for the digits of its counts and times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_json_stays_the_same_size_however_many_tars() {
    let mut sizes = Vec::new();
    for shards in [3u64, 300] {
        let mut spec = spec(shards, 1, 9);
        spec.pipeline.image_size = 8;
        spec.output.format = crate::spec::OutputFormat::Webdataset;
        let store = Store::memory().child("r");
        let pipeline: Arc<dyn Pipeline> = Arc::new(ProceduralPipeline::new(&spec));
        for shard in 0..shards {
            let mut j = job(&spec, &store, pipeline.clone(), 1, "w");
            j.shard = shard;
            assert!(matches!(execute_shard(j).await.unwrap(), ShardOutcome::Committed(_)));
        }
        finalize(&store, "r", &spec).await.unwrap();
        let summary = store.get("manifest.json").await.unwrap().unwrap();
        let listing = store.get("dataset/shards.jsonl").await.unwrap().unwrap();
        assert_eq!(listing.iter().filter(|&&b| b == b'\n').count() as u64, shards);
        sizes.push((summary.len(), listing.len()));
    }
    let ((small, small_list), (large, large_list)) = (sizes[0], sizes[1]);
    assert!(large.abs_diff(small) < 64, "manifest.json: {small} bytes for 3 tars, {large} for 300");
    assert!(large_list > 90 * small_list, "the tars are listed in dataset/shards.jsonl instead: {small_list} and {large_list} bytes");
}

/// A queue whose every other claim runs but loses its answer, as when the connection
/// drops after Redis ran the claim script.
struct LosingAnswers {
    inner: MemoryQueue,
    calls: std::sync::atomic::AtomicU64,
    /// Lose every other claim's answer.
    lose_claims: bool,
    /// Heartbeats still to fail (Redis away), before any is answered.
    failing_heartbeats: std::sync::atomic::AtomicU64,
    /// Acks still to panic (a bug in a queue client), before any is answered.
    panicking_acks: std::sync::atomic::AtomicU64,
    /// The queue has lost every run (Redis restarted empty): it knows none, lists none
    /// and hands out no job, until this is cleared (a rebuild).
    forgotten: std::sync::atomic::AtomicBool,
    /// Acks after which the queue forgets its runs (0: never).
    forget_after_acks: std::sync::atomic::AtomicU64,
}

fn lost() -> crate::Error {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "answer lost (test)")).into()
}

impl LosingAnswers {
    fn new(lose_claims: bool, failing_heartbeats: u64) -> Self {
        LosingAnswers {
            inner: MemoryQueue::new(),
            calls: Default::default(),
            lose_claims,
            failing_heartbeats: failing_heartbeats.into(),
            panicking_acks: Default::default(),
            forgotten: Default::default(),
            forget_after_acks: Default::default(),
        }
    }

    /// The claim's answer, or (every other call, when losing claims) an I/O error in its place.
    fn answer<T>(&self, got: crate::Result<T>) -> crate::Result<T> {
        let got = got?;
        if self.lose_claims && self.calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            return Err(lost());
        }
        Ok(got)
    }
}

#[async_trait::async_trait]
impl JobQueue for LosingAnswers {
    async fn submit_restored(&self, run: &crate::queue::RunRecord, committed: &[u64]) -> crate::Result<crate::queue::Submitted> {
        self.inner.submit_restored(run, committed).await
    }
    async fn mark_committed(&self, run_id: &str, shard: u64) -> crate::Result<bool> {
        self.inner.mark_committed(run_id, shard).await
    }
    async fn run(&self, run_id: &str) -> crate::Result<Option<crate::queue::RunRecord>> {
        if self.forgotten.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.run(run_id).await
    }
    async fn list(&self) -> crate::Result<Vec<String>> {
        if self.forgotten.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        self.inner.list().await
    }
    async fn active_runs(&self) -> crate::Result<Vec<String>> {
        self.inner.active_runs().await
    }
    async fn claim(&self, owner: &str) -> crate::Result<Option<crate::queue::Lease>> {
        if self.forgotten.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.answer(self.inner.claim(owner).await)
    }
    async fn heartbeat(&self, lease: &crate::queue::Lease) -> crate::Result<crate::queue::LeaseStatus> {
        if self.failing_heartbeats.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(lost());
        }
        self.inner.heartbeat(lease).await
    }
    async fn ack(&self, lease: &crate::queue::Lease) -> crate::Result<bool> {
        self.inner.ack(lease).await
    }
    async fn ack_and_claim(&self, lease: &crate::queue::Lease, owner: &str) -> crate::Result<(bool, Option<crate::queue::Lease>)> {
        if self.panicking_acks.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            panic!("ack panicked (test)");
        }
        if self.forget_after_acks.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) == Ok(1) {
            // The last ack before the loss lands; its claim finds nothing.
            let acked = self.inner.ack(lease).await?;
            self.forgotten.store(true, Ordering::SeqCst);
            return Ok((acked, None));
        }
        self.answer(self.inner.ack_and_claim(lease, owner).await)
    }
    async fn overdue(&self, run_id: &str) -> crate::Result<crate::queue::Overdue> {
        self.inner.overdue(run_id).await
    }
    async fn fail(&self, lease: &crate::queue::Lease, error: &str, retryable: bool) -> crate::Result<crate::queue::FailOutcome> {
        self.inner.fail(lease, error, retryable).await
    }
    async fn release(&self, lease: &crate::queue::Lease) -> crate::Result<bool> {
        self.inner.release(lease).await
    }
    async fn release_owned(&self, owner: &str) -> crate::Result<u64> {
        self.inner.release_owned(owner).await
    }
    async fn cancel(&self, run_id: &str) -> crate::Result<crate::queue::RunState> {
        self.inner.cancel(run_id).await
    }
    async fn retry_dead(&self, run_id: &str) -> crate::Result<u64> {
        self.inner.retry_dead(run_id).await
    }
    async fn counts(&self, run_id: &str) -> crate::Result<crate::queue::Counts> {
        self.inner.counts(run_id).await
    }
    async fn dead(&self, run_id: &str) -> crate::Result<Vec<crate::queue::DeadJob>> {
        self.inner.dead(run_id).await
    }
    async fn mark_finalized(&self, run_id: &str) -> crate::Result<()> {
        self.inner.mark_finalized(run_id).await
    }
    async fn relist(&self, run_id: &str) -> crate::Result<bool> {
        self.inner.relist(run_id).await
    }
    async fn requeue_stranded(&self, run_id: &str) -> crate::Result<crate::queue::Stranded> {
        self.inner.requeue_stranded(run_id).await
    }
}

/// Half the claims (plain and with an ack) run but lose their answers. With hour-long
/// leases, the run finishes only because each slot gives back what it may hold before it
/// claims again; no attempt is spent on the way (waiting the leases out would spend one
/// each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_whose_answers_are_lost_are_given_back_not_waited_out() {
    let text =
        "[run]\ncount = 8\nshard_size = 1\nseed = 1\nlease_seconds = 3600\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\nbatch_size = 2\n";
    let spec = RunSpec::parse(text, "test").unwrap();
    let queue = Arc::new(LosingAnswers::new(true, 0));
    submit(&queue.inner, &spec, "lossy").await;
    let factory = Arc::new(SlowFactory { delay: Duration::ZERO, fail: false, builds: Default::default() });
    let opts = WorkerOptions { concurrency: 2, exit_when_idle: true, poll: Duration::from_millis(10), ..Default::default() };
    let metrics = opts.metrics.clone();
    tokio::time::timeout(Duration::from_secs(120), serve(queue.clone(), factory, opts, std::future::pending()))
        .await
        .expect("the run must finish long before its leases would expire")
        .unwrap();
    let c = queue.inner.counts("lossy").await.unwrap();
    assert_eq!((c.committed, c.leased, c.delayed, c.dead), (8, 0, 0, 0), "{c:?}");
    assert!(queue.calls.load(Ordering::SeqCst) >= 8, "claims were made and half their answers lost");
    assert_eq!((metrics.jobs_dead.get(), metrics.leases_lost.get()), (0, 0));
    for shard in 0..8 {
        let lease = queue.inner.claim("check").await.unwrap();
        assert!(lease.is_none(), "nothing left to claim, got {lease:?} (shard {shard})");
    }
}

/// An in-memory store whose first create of a commit record answers "already exists"
/// without writing it: S3's 409 when two creates race and the other then fails. With
/// `ignore_create`, it ignores create-only instead (a server without If-None-Match); with
/// `lose_first_answer`, its first create of anything writes and then answers "already
/// exists" (the answer lost, the client's retry finding its own write). With `cut_tars`
/// set, a tar's read ends with a dropped connection after its first 700 bytes.
#[derive(Debug, Default)]
struct ConflictOnce {
    inner: object_store::memory::InMemory,
    conflicts: std::sync::atomic::AtomicU32,
    ignore_create: bool,
    lose_first_answer: bool,
    cut_tars: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for ConflictOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConflictOnce")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for ConflictOnce {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if self.ignore_create {
            return self.inner.put_opts(location, payload, object_store::PutOptions { mode: object_store::PutMode::Overwrite, ..opts }).await;
        }
        if self.lose_first_answer && opts.mode == object_store::PutMode::Create && self.conflicts.fetch_add(1, Ordering::SeqCst) == 0 {
            self.inner.put_opts(location, payload, opts).await?;
            return Err(object_store::Error::AlreadyExists { path: location.to_string(), source: "412 Precondition Failed (a retry)".into() });
        }
        if opts.mode == object_store::PutMode::Create && location.as_ref().contains("shards/") && self.conflicts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(object_store::Error::AlreadyExists { path: location.to_string(), source: "409 Conflict".into() });
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &object_store::path::Path, options: object_store::GetOptions) -> object_store::Result<object_store::GetResult> {
        use futures::{StreamExt, TryStreamExt};
        let got = self.inner.get_opts(location, options).await?;
        if !(self.cut_tars.load(Ordering::SeqCst) && location.as_ref().ends_with(".tar")) {
            return Ok(got);
        }
        let (meta, range, attributes) = (got.meta.clone(), got.range.clone(), got.attributes.clone());
        let whole = got.into_stream().try_collect::<Vec<bytes::Bytes>>().await?.concat();
        let head = bytes::Bytes::from(whole[..700.min(whole.len())].to_vec());
        let dropped = object_store::Error::Generic { store: "S3", source: "connection reset by peer".into() };
        let stream = futures::stream::iter([Ok(head), Err(dropped)]).boxed();
        Ok(object_store::GetResult { payload: object_store::GetResultPayload::Stream(stream), meta, range, attributes, extensions: Default::default() })
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&object_store::path::Path>) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&object_store::path::Path>) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &object_store::path::Path, to: &object_store::path::Path, options: object_store::CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// "Already exists" with no record to show is not a commit by another attempt: the
/// attempt tries again and commits its own data (it used to discard it and report the
/// shard committed, so the queue acked a shard no record stood for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_answer_without_a_record_is_not_taken_for_a_commit() {
    let spec = spec(4, 4, 7);
    let raw = Arc::new(ConflictOnce::default());
    let store = Store::from_object_store(raw.clone(), "r", "conflict://r");
    let out = execute_shard(job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "w")).await.unwrap();
    let ShardOutcome::Committed(rec) = out else { panic!("the retry commits this attempt: {out:?}") };
    assert_eq!(raw.conflicts.load(Ordering::SeqCst), 2, "one refused create, one that wrote");
    let stored = crate::manifest::existing_record(&store, "r", 0).await.unwrap().expect("the record is there");
    assert_eq!(stored.attempt, rec.attempt);
    let report = finalize(&store, "r", &spec).await.unwrap();
    assert_eq!(report.samples, 4);
}

/// A pipeline that takes `.1` per call.
struct Sleepy(ProceduralPipeline, Duration);

impl Pipeline for Sleepy {
    fn generate(&self, indices: &[u64]) -> crate::Result<Vec<Sample>> {
        std::thread::sleep(self.1);
        self.0.generate(indices)
    }
}

struct SleepyFactory(Duration);

impl PipelineFactory for SleepyFactory {
    fn build(&self, spec: &RunSpec) -> crate::Result<Arc<dyn Pipeline>> {
        Ok(Arc::new(Sleepy(ProceduralPipeline::new(spec), self.0)))
    }
}

/// Serves run `run_id` of spec `text` to its end (at most a minute) with `slots` job slots
/// whose batches take `batch`, through a queue whose next `failing` heartbeats fail.
async fn serve_with_failing_heartbeats(text: &str, run_id: &str, failing: u64, slots: usize, batch: Duration) -> (Arc<LosingAnswers>, Arc<crate::metrics::Metrics>) {
    let spec = RunSpec::parse(text, "test").unwrap();
    let queue = Arc::new(LosingAnswers::new(false, failing));
    submit(&queue.inner, &spec, run_id).await;
    let opts = WorkerOptions { concurrency: slots, exit_when_idle: true, poll: Duration::from_millis(10), ..Default::default() };
    let metrics = opts.metrics.clone();
    tokio::time::timeout(Duration::from_secs(60), serve(queue.clone(), Arc::new(SleepyFactory(batch)), opts, std::future::pending())).await.expect("the run finishes").unwrap();
    (queue, metrics)
}

/// Redis away for three heartbeats (a restart): a failed heartbeat is tried again within
/// a second or two, not a third of the lease later, so a 10 s job on a 9 s lease keeps it
/// and commits with no attempt spent (the fourth try lands by 6.5 s at the latest). (Tried only every third of the lease, the fourth try
/// came after the lease ran out and the second slot, polling, took the job over.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_lost_for_a_moment_cost_no_job() {
    let text = "[run]\ncount = 2\nshard_size = 2\nseed = 1\nlease_seconds = 9\nretry_backoff_seconds = 0\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\nbatch_size = 2\n";
    let (queue, metrics) = serve_with_failing_heartbeats(text, "blip", 3, 2, Duration::from_secs(10)).await;
    assert_eq!(queue.failing_heartbeats.load(Ordering::SeqCst), 0, "three heartbeats failed");
    let c = queue.inner.counts("blip").await.unwrap();
    assert_eq!((c.committed, c.dead), (1, 0), "{c:?}");
    assert_eq!((metrics.leases_lost.get(), metrics.jobs_claimed.get()), (0, 1), "the job kept its lease");
}

/// Redis away for longer than a lease: the job counts its lease lost by its own clock and
/// stops, and gives the lease back when the queue answers again, so the outage spends no
/// attempt. With one attempt allowed the shard would otherwise go dead: the next claim
/// counts an expired lease as a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_to_a_long_outage_is_given_back_without_spending_an_attempt() {
    let text = "[run]\ncount = 3\nshard_size = 3\nseed = 1\nlease_seconds = 2\nmax_attempts = 1\nretry_backoff_seconds = 0\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\nbatch_size = 1\n";
    // Heartbeats fail for about 3 s (retried every 0.25 to 0.67 s), past the 2 s lease.
    let (queue, metrics) = serve_with_failing_heartbeats(text, "outage", 6, 1, Duration::from_millis(1200)).await;
    let c = queue.inner.counts("outage").await.unwrap();
    assert_eq!((c.committed, c.dead), (1, 0), "{c:?}");
    assert!(metrics.leases_lost.get() >= 1, "the outage outlasted the lease");
}

/// Shutdown while a batch computes for longer than the grace period: once the grace is
/// over the job is released at once, not after the batch (a scheduler's SIGKILL would
/// otherwise come first and the lease would run out, spending an attempt).
#[test]
fn a_stop_does_not_wait_for_the_batch_under_way() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let text =
        "[run]\ncount = 2\nshard_size = 2\nseed = 1\nlease_seconds = 30\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\nbatch_size = 1\n";
    let spec = RunSpec::parse(text, "test").unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let opts = WorkerOptions { concurrency: 1, grace: Duration::from_millis(200), poll: Duration::from_millis(10), ..Default::default() };
    let metrics = opts.metrics.clone();
    rt.block_on(async {
        submit(&queue, &spec, "long").await;
        let shutdown = tokio::time::sleep(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(30), serve(queue.clone(), Arc::new(SleepyFactory(Duration::from_secs(120))), opts, shutdown))
            .await
            .expect("the worker waited for the 120 s batch")
            .unwrap();
        let c = queue.counts("long").await.unwrap();
        assert_eq!((c.leased, c.pending, c.dead), (0, 1, 0), "{c:?}");
        assert_eq!(metrics.jobs_released.get(), 1);
    });
    // The model thread sleeps on; nothing waits for it.
    rt.shutdown_background();
}

/// A bug that panics a slot (here the queue client's ack) stops the worker with an error
/// naming it, and the job's heartbeat dies with the slot: the lease runs out and another
/// worker claims the job. (The heartbeat used to outlive the slot and renew the lease
/// for as long as the process lived, and the worker exited 0.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_slot_stops_the_worker_and_lets_its_lease_expire() {
    let spec = spec(4, 2, 1);
    let queue = Arc::new(LosingAnswers::new(false, 0));
    queue.panicking_acks.store(1, Ordering::SeqCst);
    submit(&queue.inner, &spec, "bug").await;
    let opts = WorkerOptions { exit_when_idle: true, poll: Duration::from_millis(10), ..Default::default() };
    let err = tokio::time::timeout(Duration::from_secs(60), serve(queue.clone(), Arc::new(SleepyFactory(Duration::ZERO)), opts, std::future::pending()))
        .await
        .expect("the worker stops")
        .unwrap_err();
    assert!(err.to_string().contains("a worker slot panicked") && err.to_string().contains("ack panicked (test)"), "{err}");
    // The lease is 1 s and heartbeats come every third of it: wait out three leases.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut shards = Vec::new();
    while let Some(lease) = queue.inner.claim("other").await.unwrap() {
        shards.push(lease.shard);
    }
    assert!(shards.contains(&0), "the panicked job's lease ran out and shard 0 is claimable again: {shards:?}");
}

/// An `exit_when_idle` worker whose queue lost the run it served (Redis restarted empty)
/// keeps polling instead of exiting as idle, and finishes the run once it is rebuilt;
/// with nothing rebuilt it exits after `lost_run_wait`. (It used to exit at once: the
/// queue listed no run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_waits_for_a_lost_run_to_be_rebuilt() {
    let spec = spec(4, 1, 1);
    let queue = Arc::new(LosingAnswers::new(false, 0));
    queue.forget_after_acks.store(1, Ordering::SeqCst);
    submit(&queue.inner, &spec, "lost").await;
    let opts = WorkerOptions { exit_when_idle: true, poll: Duration::from_millis(10), ..Default::default() };
    let worker = tokio::spawn(serve(queue.clone(), Arc::new(SleepyFactory(Duration::ZERO)), opts.clone(), std::future::pending()));
    let t0 = std::time::Instant::now();
    while !queue.forgotten.load(Ordering::SeqCst) {
        assert!(t0.elapsed() < Duration::from_secs(60), "the first shard never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!worker.is_finished(), "the worker exited while its run was lost");
    queue.forgotten.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(60), worker).await.expect("the worker finishes the run and exits").unwrap().unwrap();
    assert_eq!(queue.inner.counts("lost").await.unwrap().committed, 4);

    // Nothing rebuilds it: the worker exits once the wait is over.
    let queue = Arc::new(LosingAnswers::new(false, 0));
    queue.forget_after_acks.store(1, Ordering::SeqCst);
    submit(&queue.inner, &spec, "gone").await;
    let opts = WorkerOptions { lost_run_wait: Duration::from_millis(300), ..opts };
    let t0 = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), serve(queue.clone(), Arc::new(SleepyFactory(Duration::ZERO)), opts, std::future::pending()))
        .await
        .expect("the worker gives up waiting")
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(300), "the worker exited before the wait was over");
    assert_eq!(queue.inner.counts("gone").await.unwrap().committed, 1);
}

/// A run the worker saw finalized is not waited for once the queue loses it (nothing
/// would rebuild it): with another run's job held elsewhere the worker stays up, sees
/// its run finalized; then Redis restarts empty and the worker exits as idle at once,
/// not after `lost_run_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_does_not_wait_for_a_lost_run_it_saw_finalized() {
    let spec = spec(1, 1, 1);
    let queue = Arc::new(LosingAnswers::new(false, 0));
    // Another worker holds the one job of "elsewhere" throughout.
    submit(&queue.inner, &spec, "elsewhere").await;
    let held = queue.inner.claim("another-worker").await.unwrap().expect("a job");
    assert_eq!(held.run_id, "elsewhere");
    submit(&queue.inner, &spec, "done").await;
    let opts = WorkerOptions { exit_when_idle: true, poll: Duration::from_millis(10), lost_run_wait: Duration::from_secs(3600), ..Default::default() };
    let worker = tokio::spawn(serve(queue.clone(), Arc::new(SleepyFactory(Duration::ZERO)), opts, std::future::pending()));
    let t0 = std::time::Instant::now();
    while queue.inner.counts("done").await.unwrap().committed < 1 {
        assert!(t0.elapsed() < Duration::from_secs(60), "the shard never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    queue.inner.mark_finalized("done").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!worker.is_finished(), "another run is leased: not idle");
    queue.forgotten.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(30), worker).await.expect("the worker exits without waiting for the finalized run").unwrap().unwrap();
}

/// On a local disk a writer killed mid-object leaves `NAME#N`, which listings skip:
/// finalize removes the losing attempt's directory whole, and keeps the winner's, and the
/// stale temporaries of killed finalizes and commits in the run directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_removes_a_killed_writers_temporaries_on_a_local_disk() {
    let dir = std::env::temp_dir().join(format!("labelgen-temps-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = spec(4, 4, 7);
    let store = Store::open(dir.to_str().unwrap()).unwrap().child("r");
    let out = execute_shard(job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "w")).await.unwrap();
    let ShardOutcome::Committed(rec) = out else { panic!("{out:?}") };
    let loser = store.local_path(&crate::manifest::layout::attempt_dir(0, rec.attempt + 1)).unwrap();
    std::fs::create_dir_all(&loser).unwrap();
    std::fs::write(loser.join("00000000.png#1"), b"half an image").unwrap();
    assert!(objects_under(&store, "data").await.iter().all(|p| !p.contains('#')), "listings skip temporaries");
    // A killed finalize's partial manifest and a killed commit's record, an hour old, go;
    // one being written now (a finalize beside this one) stays.
    let root = store.local_path("").unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for old in [root.join("manifest.jsonl#12"), root.join("shards/000001.json#3")] {
        std::fs::write(&old, b"half").unwrap();
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(hour_ago).unwrap();
    }
    std::fs::write(root.join("dataset#5"), b"fresh").unwrap();
    let report = finalize(&store, "r", &spec).await.unwrap();
    assert_eq!(report.samples, 4);
    assert!(!root.join("manifest.jsonl#12").exists() && !root.join("shards/000001.json#3").exists(), "stale temporaries are removed");
    assert!(root.join("dataset#5").exists(), "a fresh temporary stays");
    assert!(!loser.exists(), "the losing attempt's directory is gone");
    assert!(store.local_path(&crate::manifest::layout::attempt_dir(0, rec.attempt)).unwrap().is_dir(), "the winner's stays");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A pipeline that hands back the last sample twice in place of the first (a bug).
struct Repeating(ProceduralPipeline);

impl Pipeline for Repeating {
    fn generate(&self, indices: &[u64]) -> crate::Result<Vec<Sample>> {
        let mut out = self.0.generate(indices)?;
        if let Some(last) = out.last().cloned() {
            out[0] = last;
        }
        Ok(out)
    }
}

/// Wrong indices fail the attempt before its record is written (a record cannot change,
/// and finalize would refuse it for good), naming the first difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_indices_are_refused_before_the_commit() {
    let spec = spec(4, 4, 11);
    let store = Store::memory().child("wrong-indices");
    let e = execute_shard(job(&spec, &store, Arc::new(Repeating(ProceduralPipeline::new(&spec))), 1, "w")).await.unwrap_err().to_string();
    assert!(e.contains("shard 0 produced index 1 at position 0, expected 0"), "{e}");
    assert!(crate::manifest::existing_record(&store, "r", 0).await.unwrap().is_none(), "no record");
}

/// A store that ignores create-only writes is refused before a run starts: the commit
/// records' "first one wins" would not hold there. One that honours them leaves no trace,
/// also when the answer to its first write was lost.
#[tokio::test]
async fn a_store_without_create_only_writes_is_refused() {
    let ignoring = Store::from_object_store(Arc::new(ConflictOnce { ignore_create: true, ..Default::default() }), "runs", "s3://old-server/runs");
    let e = ignoring.check_create_only().await.unwrap_err().to_string();
    assert!(e.contains("s3://old-server/runs/.labelgen-create-check-") && e.contains("If-None-Match"), "{e}");
    let good = Store::memory().child("runs");
    good.check_create_only().await.unwrap();
    assert!(good.list("").await.unwrap().is_empty(), "the probe is removed");
    // A good store whose first answer was lost (the retry found the probe written) passes.
    let lossy = Store::from_object_store(Arc::new(ConflictOnce { lose_first_answer: true, ..Default::default() }), "runs", "s3://lossy/runs");
    lossy.check_create_only().await.unwrap();
    assert!(ignoring.list("").await.unwrap().is_empty(), "the probe is removed");
}

/// A worker serving run after run keeps the pipelines (and so the models) of the runs it
/// used last, not of every run it ever saw: the least recently used one is dropped and
/// built again if its run comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_cache_keeps_the_runs_used_last() {
    let (cache, slow, factory, spec) = cache_with_slow_builds(Duration::ZERO, false);
    for run in 0..=MAX_CACHED_PIPELINES {
        cache.pipeline(&factory, &format!("r{run}"), &spec).await.unwrap();
    }
    let builds = || slow.builds.load(Ordering::SeqCst) as usize;
    assert_eq!(builds(), MAX_CACHED_PIPELINES + 1);
    cache.pipeline(&factory, &format!("r{MAX_CACHED_PIPELINES}"), &spec).await.unwrap();
    cache.pipeline(&factory, "r1", &spec).await.unwrap();
    assert_eq!(builds(), MAX_CACHED_PIPELINES + 1, "the runs used last are kept");
    cache.pipeline(&factory, "r0", &spec).await.unwrap();
    assert_eq!(builds(), MAX_CACHED_PIPELINES + 2, "the least recently used run's pipeline was dropped");
    // r1, built before r2 but used again since, stayed; r2 went (FIFO would keep r2).
    cache.pipeline(&factory, "r1", &spec).await.unwrap();
    assert_eq!(builds(), MAX_CACHED_PIPELINES + 2, "r1 was used lately");
    cache.pipeline(&factory, "r2", &spec).await.unwrap();
    assert_eq!(builds(), MAX_CACHED_PIPELINES + 3, "r2 was the least recently used");
}

/// Slots waiting for one build share its failure: three slots of a run whose models do
/// not load cost one build, not one each in turn; the run's next job tries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_waiting_for_a_failing_build_share_its_failure() {
    let (cache, slow, factory, spec) = cache_with_slow_builds(Duration::from_secs(2), true);
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (cache, factory, spec) = (cache.clone(), factory.clone(), spec.clone());
            tokio::spawn(async move { cache.pipeline(&factory, "failing", &spec).await.err().expect("the build fails").to_string() })
        })
        .collect();
    for w in waiters {
        let e = w.await.unwrap();
        assert!(e.contains("do not decode"), "{e}");
    }
    assert_eq!(slow.builds.load(Ordering::SeqCst), 1, "one build for the three slots waiting for it");
    assert!(cache.pipeline(&factory, "failing", &spec).await.is_err());
    assert_eq!(slow.builds.load(Ordering::SeqCst), 2, "the next job builds again");
}

/// A build whose only waiter stopped (its job cancelled while the models load) still
/// counts toward the cache's limit once done, and is dropped as the least recently used:
/// a pipeline built for nobody does not hold its models for the life of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_nobody_waits_for_is_counted_and_dropped() {
    let (cache, slow, factory, spec) = cache_with_slow_builds(Duration::from_millis(300), false);
    // The waiter goes before the build ends.
    let waited = tokio::time::timeout(Duration::from_millis(50), cache.pipeline(&factory, "orphan", &spec)).await;
    assert!(waited.is_err(), "the build takes 300 ms");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for run in 0..MAX_CACHED_PIPELINES {
        cache.pipeline(&factory, &format!("r{run}"), &spec).await.unwrap();
    }
    let builds = || slow.builds.load(Ordering::SeqCst) as usize;
    assert_eq!(builds(), MAX_CACHED_PIPELINES + 1);
    cache.pipeline(&factory, "orphan", &spec).await.unwrap();
    assert_eq!(builds(), MAX_CACHED_PIPELINES + 2, "the orphan build was the least recently used and was dropped");
}

/// Builds procedural pipelines, but for runs of seed 7 while `changed`: their model
/// changed since submit.
#[derive(Default)]
struct ChangedModelFactory {
    changed: std::sync::atomic::AtomicBool,
    builds: std::sync::atomic::AtomicU32,
}

impl PipelineFactory for ChangedModelFactory {
    fn build(&self, spec: &RunSpec) -> crate::Result<Arc<dyn Pipeline>> {
        if spec.run.seed == 7 {
            self.builds.fetch_add(1, Ordering::SeqCst);
            if self.changed.load(Ordering::SeqCst) {
                return Err(crate::Error::ModelChanged("s3://m/ddpm: model changed since submit (test)".into()));
            }
        }
        Ok(Arc::new(ProceduralPipeline::new(spec)))
    }
}

/// A model replaced on shared storage after submit fails its run, not the fleet: each of
/// the run's jobs spends an attempt and its shard goes dead after `max_attempts` naming
/// the model (no job given back), the worker stays healthy and serves the other run, and
/// the run's jobs share one fetch of the changed model instead of one each. Once
/// `model_recheck` has passed, a restored model builds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_changed_since_submit_fails_its_run_not_the_worker() {
    let queue = Arc::new(MemoryQueue::new());
    submit(&queue, &spec(12, 2, 7), "model-changed").await;
    submit(&queue, &spec(4, 2, 8), "model-fine").await;
    let factory = Arc::new(ChangedModelFactory::default());
    factory.changed.store(true, Ordering::SeqCst);
    let opts = WorkerOptions {
        concurrency: 2,
        exit_when_idle: true,
        max_local_failures: 2,
        poll: Duration::from_millis(10),
        local_backoff: Duration::from_millis(10),
        ..Default::default()
    };
    let metrics = opts.metrics.clone();
    let served = tokio::time::timeout(Duration::from_secs(60), serve(queue.clone(), factory.clone(), opts, std::future::pending())).await.expect("the worker ends");
    served.expect("a changed model is not this worker's fault: it does not give up");
    let (changed, fine) = (queue.counts("model-changed").await.unwrap(), queue.counts("model-fine").await.unwrap());
    assert_eq!((changed.dead, changed.committed, fine.committed), (6, 0, 2), "{changed:?} {fine:?}");
    let dead = queue.dead("model-changed").await.unwrap();
    assert!(dead.iter().all(|d| d.failures == 3 && d.error.contains("s3://m/ddpm") && d.error.contains("changed since submit")), "{dead:?}");
    assert_eq!((metrics.jobs_retried.get(), metrics.jobs_released.get()), (12, 0), "two retries a shard, no job given back");
    assert_eq!(factory.builds.load(Ordering::SeqCst), 1, "the run's 18 jobs share one look at the changed model");

    // Within the recheck the failure is handed on without a build; after it, a restored
    // model builds.
    let cache = RunCache::with_model_recheck(Duration::from_secs(2));
    let (any, spec): (Arc<dyn PipelineFactory>, _) = (factory.clone(), Arc::new(spec(2, 2, 7)));
    for _ in 0..3 {
        let e = cache.pipeline(&any, "model-changed", &spec).await.err().expect("changed");
        assert!(matches!(e, crate::Error::ModelChanged(_)) && !e.is_worker_fault() && e.is_retryable(), "{e}");
    }
    assert_eq!(factory.builds.load(Ordering::SeqCst), 2);
    factory.changed.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    cache.pipeline(&any, "model-changed", &spec).await.expect("the restored model builds");
    assert_eq!(factory.builds.load(Ordering::SeqCst), 3);
}

/// A new run's slow build holds up only that run's jobs: a run already built is served
/// while it runs (its slots used to wait for the build, leases held, producing nothing),
/// and two slots of the new run share the one build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_build_holds_up_only_its_own_run() {
    let cache = Arc::new(RunCache::default());
    let fast: Arc<dyn PipelineFactory> = Arc::new(SlowFactory { delay: Duration::ZERO, fail: false, builds: Default::default() });
    let spec = Arc::new(spec(2, 2, 1));
    cache.pipeline(&fast, "built", &spec).await.unwrap();
    let slow = Arc::new(SlowFactory { delay: Duration::from_secs(5), fail: false, builds: Default::default() });
    let building: Vec<_> = (0..2)
        .map(|_| {
            let (cache, factory, spec): (_, Arc<dyn PipelineFactory>, _) = (cache.clone(), slow.clone(), spec.clone());
            tokio::spawn(async move { cache.pipeline(&factory, "new", &spec).await.map(|_| ()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(3), cache.pipeline(&fast, "built", &spec)).await.expect("the built run waited for another run's build").unwrap();
    assert!(building.iter().all(|b| !b.is_finished()), "the new run's build is still under way");
    for b in building {
        b.await.unwrap().unwrap();
    }
    assert_eq!(slow.builds.load(Ordering::SeqCst), 1, "the new run's two slots shared one build");
}

/// A pipeline that logs when each call ran, tagged with its run's seed; `started` counts
/// the calls begun.
struct Logged(ProceduralPipeline, u64, Duration, Arc<LogBook>);

#[derive(Default)]
struct LogBook {
    started: std::sync::atomic::AtomicUsize,
    calls: Mutex<Vec<(Instant, Instant, u64)>>,
}

impl Pipeline for Logged {
    fn generate(&self, indices: &[u64]) -> crate::Result<Vec<Sample>> {
        self.3.started.fetch_add(1, Ordering::SeqCst);
        let t0 = Instant::now();
        std::thread::sleep(self.2);
        let out = self.0.generate(indices);
        self.3.calls.lock().unwrap().push((t0, Instant::now(), self.1));
        out
    }
}

struct LoggedFactory(Duration, Arc<LogBook>);

impl PipelineFactory for LoggedFactory {
    fn build(&self, spec: &RunSpec) -> crate::Result<Arc<dyn Pipeline>> {
        Ok(Arc::new(Logged(ProceduralPipeline::new(spec), spec.run.seed, self.0, self.1.clone())))
    }
}

/// Serves run `first` (seed 1) with one job slot until its first batch started
/// (`started`), then submits `second` (seed 2), which waits behind it, and cancels
/// `first`; the worker must end within `within`. Two shards of 2 samples, batches of 1.
async fn cancel_mid_batch(factory: Arc<dyn PipelineFactory>, started: &std::sync::atomic::AtomicUsize, (first, second): (&str, &str), within: Duration) -> Arc<MemoryQueue> {
    let text = |seed: u64| {
        format!("[run]\ncount = 2\nshard_size = 2\nseed = {seed}\nlease_seconds = 3\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\nbatch_size = 1\n")
    };
    let queue = Arc::new(MemoryQueue::new());
    submit(&queue, &RunSpec::parse(&text(1), "test").unwrap(), first).await;
    let opts = WorkerOptions { concurrency: 1, exit_when_idle: true, poll: Duration::from_millis(10), ..Default::default() };
    let worker = tokio::spawn(serve(queue.clone(), factory, opts, std::future::pending()));
    let t0 = Instant::now();
    while started.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "the first run's batch never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    submit(&queue, &RunSpec::parse(&text(2), "test").unwrap(), second).await;
    queue.cancel(first).await.unwrap();
    tokio::time::timeout(within, worker).await.expect("the worker ends in time").unwrap().unwrap();
    queue
}

/// A run cancelled mid-batch: its job is released at once, and the slot waits for the
/// batch it left computing before it starts the next run's job, so two jobs never share
/// the device (on a GPU, both batches' activations at once could run out of memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_job_waits_for_the_batch_a_cancelled_one_left() {
    let book = Arc::new(LogBook::default());
    let factory = Arc::new(LoggedFactory(Duration::from_secs(3), book.clone()));
    let queue = cancel_mid_batch(factory, &book.started, ("first", "second"), Duration::from_secs(60)).await;
    assert_eq!(queue.counts("second").await.unwrap().committed, 1);
    let mut calls = book.calls.lock().unwrap().clone();
    calls.sort();
    let of = |seed| calls.iter().filter(|c| c.2 == seed).count();
    assert!(of(1) >= 1 && of(2) == 2, "the cancelled run's batch(es), then the second run's two: {calls:?}");
    for pair in calls.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two batches ran at once: {calls:?}");
    }
}

/// A pipeline whose batches run for a minute of short steps unless halted in between
/// (a DDPM batch asking between denoising steps); `started` counts batches begun.
struct UntilHalted(ProceduralPipeline, Arc<std::sync::atomic::AtomicUsize>);

impl Pipeline for UntilHalted {
    fn generate(&self, indices: &[u64]) -> crate::Result<Vec<Sample>> {
        self.0.generate(indices)
    }

    fn generate_batches(&self, indices: &[u64], batch: usize, halted: Halted<'_>, sink: &mut dyn FnMut(crate::Result<Vec<Sample>>) -> bool) {
        for chunk in indices.chunks(batch.max(1)) {
            self.1.fetch_add(1, Ordering::SeqCst);
            for _ in 0..6000 {
                if halted() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if !sink(self.0.generate(chunk)) {
                return;
            }
        }
    }
}

/// Run seed 1 gets [`UntilHalted`]; any other the plain procedural pipeline.
struct UntilHaltedFactory(Arc<std::sync::atomic::AtomicUsize>);

impl PipelineFactory for UntilHaltedFactory {
    fn build(&self, spec: &RunSpec) -> crate::Result<Arc<dyn Pipeline>> {
        Ok(match spec.run.seed {
            1 => Arc::new(UntilHalted(ProceduralPipeline::new(spec), self.0.clone())),
            _ => Arc::new(ProceduralPipeline::new(spec)),
        })
    }
}

/// A cancelled run's batch is halted between its steps, so the slot's next job (which
/// waits for the batch left behind) starts within a step, not after the batch's minute.
/// (Run ids of its own: `memory://` stores are shared by the process's tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_batch_is_halted_between_its_steps() {
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The worker ends well within the halted batch's minute.
    let queue = cancel_mid_batch(Arc::new(UntilHaltedFactory(started.clone())), &started, ("halted-first", "halted-second"), Duration::from_secs(30)).await;
    assert_eq!(queue.counts("halted-second").await.unwrap().committed, 1);
    assert_eq!(started.load(Ordering::SeqCst), 1, "the cancelled run's second batch never started");
}

/// A pipeline whose every call panics, as the CUDA backend does on a failing device.
struct Panicky;

impl Pipeline for Panicky {
    fn generate(&self, _: &[u64]) -> crate::Result<Vec<Sample>> {
        panic!("device lost (test)")
    }
}

/// Builds [`Panicky`] pipelines; with `broken_after: Some(n)`, builds after the n-th fail
/// (the device is gone).
struct PanickyFactory {
    builds: std::sync::atomic::AtomicU32,
    broken_after: Option<u32>,
}

impl PipelineFactory for PanickyFactory {
    fn build(&self, _: &RunSpec) -> crate::Result<Arc<dyn Pipeline>> {
        let n = self.builds.fetch_add(1, Ordering::SeqCst) + 1;
        if self.broken_after.is_some_and(|k| n > k) {
            return Err(crate::Error::Worker("device lost (test)".into()));
        }
        Ok(Arc::new(Panicky))
    }
}

/// A model that panics on every call (a sample that triggers a bug): each attempt is
/// spent, so the shards die after max_attempts and the worker, healthy, goes on; the run's
/// pipeline is built again after each panic (the check that catches a broken device).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_panics_spend_attempts_and_rebuild_the_pipeline() {
    let text = "[run]\ncount = 4\nshard_size = 2\nseed = 1\nmax_attempts = 3\nlease_seconds = 5\nretry_backoff_seconds = 0\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\nbatch_size = 2\n";
    let queue = Arc::new(MemoryQueue::new());
    submit(&queue, &RunSpec::parse(text, "test").unwrap(), "panics").await;
    let factory = Arc::new(PanickyFactory { builds: Default::default(), broken_after: None });
    let opts = WorkerOptions { exit_when_idle: true, max_local_failures: 2, local_backoff: Duration::from_millis(10), poll: Duration::from_millis(10), ..Default::default() };
    tokio::time::timeout(Duration::from_secs(60), serve(queue.clone(), factory.clone(), opts, std::future::pending())).await.expect("the worker ends").unwrap();
    let c = queue.counts("panics").await.unwrap();
    assert_eq!((c.dead, c.committed), (2, 0), "{c:?}");
    assert_eq!(factory.builds.load(Ordering::SeqCst), 6, "one build per attempt");
}

/// A device that fails for good after a panic: the rebuild after the panic fails, which is
/// this worker's own fault, so it gives jobs back and exits; one attempt is spent, not the
/// attempts of every shard it would go on claiming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_broken_after_a_panic_costs_one_attempt_and_the_worker_exits() {
    let text = "[run]\ncount = 8\nshard_size = 2\nseed = 1\nmax_attempts = 3\nlease_seconds = 5\nretry_backoff_seconds = 0\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\nbatch_size = 2\n";
    let queue = Arc::new(MemoryQueue::new());
    submit(&queue, &RunSpec::parse(text, "test").unwrap(), "broken").await;
    let factory = Arc::new(PanickyFactory { builds: Default::default(), broken_after: Some(1) });
    let opts = WorkerOptions { max_local_failures: 3, local_backoff: Duration::from_millis(10), poll: Duration::from_millis(10), ..Default::default() };
    let metrics = opts.metrics.clone();
    let err = tokio::time::timeout(Duration::from_secs(60), serve(queue.clone(), factory, opts, std::future::pending())).await.expect("the worker exits").unwrap_err();
    assert!(err.is_worker_fault() && err.to_string().contains("device lost"), "{err}");
    assert_eq!(metrics.jobs_retried.get(), 1, "only the panic spent an attempt");
    let c = queue.counts("broken").await.unwrap();
    assert_eq!((c.dead, c.leased), (0, 0), "{c:?}");
}

/// A connection dropped in the middle of a tar is reported as the storage error it is
/// (retryable, naming the tar), not as a damaged tar: by the reader of a run's files and
/// by verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_read_cut_by_the_network_is_a_storage_error_not_damage() {
    let mut spec = spec(5, 2, 3);
    spec.output.format = crate::spec::OutputFormat::Webdataset;
    let inner = Arc::new(ConflictOnce::default());
    let store = Store::from_object_store(inner.clone(), "runs/cut", "s3://flaky/runs/cut");
    for shard in 0..spec.shards() {
        let mut j = job(&spec, &store, Arc::new(ProceduralPipeline::new(&spec)), 1, "w");
        j.shard = shard;
        assert!(matches!(execute_shard(j).await.unwrap(), ShardOutcome::Committed(_)));
    }
    finalize(&store, "r", &spec).await.unwrap();
    let lines = crate::manifest::read_manifest(&store).await.unwrap();
    assert!(super::verify::verify(&store, &|_, _| {}).await.unwrap().ok());
    inner.cut_tars.store(true, Ordering::SeqCst);

    // The last member of the first tar lies past the cut.
    let e = crate::manifest::read_files(&store, &[lines[1].label.clone()], |_, _| Ok::<_, crate::Error>(())).await.unwrap_err();
    let text = e.to_string();
    assert!(e.is_retryable() && text.contains("connection reset") && text.contains("dataset/000000.tar"), "{text}");
    assert!(!text.contains("cut short") && !text.contains("bad tar"), "{text}");

    let r = super::verify::verify(&store, &|_, _| {}).await.unwrap();
    assert_eq!(r.problem_count, 3, "one per tar: {:?}", r.problems);
    assert!(r.problems.iter().all(|p| p.contains("connection reset") && p.contains(".tar")), "{:?}", r.problems);
    assert!(!r.problems.iter().any(|p| p.contains("cut short") || p.contains("no member")), "{:?}", r.problems);
}
