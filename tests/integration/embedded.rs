//! The embedded mode (`worker run`): no services, same commit protocol and manifest.

use labelgen_tests::bins::{cmd, run, stderr, stdout};
use labelgen_tests::check;
use labelgen_tests::spec::{SpecBuilder, TempDir};
use shared::storage::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_writes_exactly_n_and_resumes() {
    let dir = TempDir::new("embedded");
    let out = dir.path().join("out");
    let mut spec = SpecBuilder::new(out.to_str().unwrap());
    spec.count = 23;
    spec.shard_size = 5;
    let cfg = spec.write(dir.path(), "spec.toml");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--workers", "3", "--run-id", "e1"]);
    let o = run(c);
    assert!(o.status.success(), "worker run failed: {}", stderr(&o));
    assert!(stdout(&o).contains("23 samples"), "{}", stdout(&o));
    let store = Store::open(out.to_str().unwrap()).unwrap().child("e1");
    let lines = check::exactly_n(&store, 23).await;
    assert!(lines.iter().all(|l| l.width == 32 && l.height == 32));
    let first = check::sample_bytes(&store, &lines).await;

    // Running the same id again keeps what is committed and rewrites the same manifest.
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--run-id", "e1"]);
    let o = run(c);
    assert!(o.status.success(), "second run failed: {}", stderr(&o));
    let lines2 = check::exactly_n(&store, 23).await;
    assert_eq!(lines, lines2);
    assert_eq!(first, check::sample_bytes(&store, &lines2).await);
}

/// A shard that keeps failing in the embedded mode: the message says how to go on without
/// Redis (the same command with the run id), never `retry-dead`; doing so completes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_dead_shard_names_the_way_on_without_redis() {
    let dir = TempDir::new("embedded-dead");
    let out = dir.path().join("out");
    let fault = dir.path().join("fault");
    std::fs::write(&fault, "2\n").unwrap();
    let mut spec = SpecBuilder::new(out.to_str().unwrap());
    spec.count = 12;
    spec.shard_size = 4;
    spec.max_attempts = 2;
    let cfg = spec.write(dir.path(), "spec.toml");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--run-id", "ed1"]).env("LABELGEN_FAULT_FILE", &fault);
    let o = run(c);
    assert_eq!(o.status.code(), Some(4), "worker run should exit 4 (dead shards): {}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("shard 2") && e.contains("--run-id ed1") && !e.contains("retry-dead"), "{e}");
    std::fs::remove_file(&fault).unwrap();
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--run-id", "ed1"]);
    let o = run(c);
    assert!(o.status.success(), "the second run failed: {}", stderr(&o));
    check::exactly_n(&Store::open(out.to_str().unwrap()).unwrap().child("ed1"), 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_webdataset_holds_every_sample() {
    let dir = TempDir::new("wds");
    let out = dir.path().join("out");
    let mut spec = SpecBuilder::new(&format!("file://{}", out.display()));
    spec.format = "webdataset";
    spec.count = 9;
    spec.shard_size = 4;
    let cfg = spec.write(dir.path(), "spec.toml");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--run-id", "w1"]);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let store = Store::open(out.to_str().unwrap()).unwrap().child("w1");
    let lines = check::exactly_n(&store, 9).await;
    // Finalize published each shard's tar under a flat name and moved it out of data/.
    assert_eq!(lines[0].image, "dataset/000000.tar#00000000.png");
    assert_eq!(lines[8].label, "dataset/000002.tar#00000008.label.png");
    assert_eq!(store.list("data").await.unwrap(), Vec::<String>::new());
    check::no_orphans(&store).await;
    let summary: serde_json::Value = serde_json::from_slice(&store.get("manifest.json").await.unwrap().unwrap()).unwrap();
    assert_eq!(summary["dataset"]["pattern"], "dataset/{000000..000002}.tar");
    assert_eq!((summary["dataset"]["count"].as_u64(), summary["dataset"]["shards_jsonl"].as_str()), (Some(3), Some("dataset/shards.jsonl")));
    let shards = shared::job::published_tars(&store).await.unwrap();
    assert_eq!(shards.iter().map(|s| s.samples).collect::<Vec<_>>(), vec![4, 4, 1]);
    for s in &shards {
        let (sha, bytes) = store.sha256(&s.path).await.unwrap().unwrap();
        assert_eq!((s.sha256.as_str(), s.bytes), (sha.as_str(), bytes), "{s:?}");
    }
    assert_eq!(summary["class_table"]["classes"][2]["code"], 30);
    // `coordinator verify` passes the run as written and names a tar whose bytes changed.
    let run_dir = out.join("w1");
    let mut c = cmd("coordinator");
    c.args(["verify", run_dir.to_str().unwrap()]);
    let o = run(c);
    assert!(o.status.success() && stdout(&o).contains("OK: 9 samples") && stdout(&o).contains("3 tars"), "{}{}", stdout(&o), stderr(&o));
    let tar = run_dir.join("dataset/000001.tar");
    let mut bytes = std::fs::read(&tar).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&tar, bytes).unwrap();
    let mut c = cmd("coordinator");
    c.args(["verify", run_dir.to_str().unwrap()]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // The tar's own sha256, and the member the byte is in against its manifest line.
    assert!(stderr(&o).contains("2 problem") && stderr(&o).contains("dataset/000001.tar: sha256"), "{}", stderr(&o));
    assert!(stderr(&o).contains("dataset/000001.tar#00000004.png: sha256") && stderr(&o).contains("manifest.jsonl line 5 lists"), "{}", stderr(&o));
    // A mistyped run directory is named as such, in JSON too; a mistyped URL is refused.
    let mut c = cmd("coordinator");
    c.args(["verify", out.join("w1-typo").to_str().unwrap(), "--json"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let answer: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("w1-typo") && e.contains("no run directory here")), "{answer}");
    let mut c = cmd("coordinator");
    c.args(["verify", "s3:/bucket/runs/w1"]);
    let o = run(c);
    assert!(o.status.code() == Some(1) && stderr(&o).contains("two slashes"), "{}", stderr(&o));
    // Each sample's JSON is in the tar too: the manifest line without the paths, the seed
    // a string.
    let meta = check::read_member(&store, &lines[5].image.replace(".png", ".json")).await;
    let v: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    assert_eq!(v["index"], 5);
    assert_eq!(v["seed"].as_str(), Some(lines[5].seed.to_string().as_str()));
    assert!(v.get("image").is_none(), "{v}");
}

/// Ops conventions in a pipe (Slurm `.out` files, `kubectl logs`): log lines carry no
/// ANSI colour codes, and an error prints each cause once.
#[test]
fn piped_output_has_no_colour_codes_and_errors_name_each_cause_once() {
    let dir = TempDir::new("pipe");
    let out = dir.path().join("out");
    let mut spec = SpecBuilder::new(out.to_str().unwrap());
    spec.count = 2;
    spec.shard_size = 2;
    let cfg = spec.write(dir.path(), "spec.toml");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--run-id", "p1"]).env("RUST_LOG", "info");
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("INFO") && e.contains("embedded run started"), "the run logs to stderr: {e}");
    assert!(!e.contains('\u{1b}'), "ANSI escape codes in piped logs: {e:?}");

    let missing = dir.path().join("no-such-spec.toml");
    for bin in ["worker", "coordinator"] {
        let mut c = cmd(bin);
        if bin == "worker" {
            c.args(["run", missing.to_str().unwrap()]);
        } else {
            c.args(["submit", missing.to_str().unwrap(), "--redis", "redis://127.0.0.1:1"]);
        }
        let o = run(c);
        assert_eq!(o.status.code(), Some(1), "{bin}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("no-such-spec.toml"), "{bin}: the error names the file: {e}");
        assert_eq!(e.matches("os error 2").count(), 1, "{bin}: the cause is printed once: {e}");
        assert!(!e.contains('\u{1b}'), "{bin}: ANSI escape codes in a piped error: {e:?}");
    }
}

#[test]
fn bad_config_names_file_and_key_and_writes_nothing() {
    let dir = TempDir::new("badcfg");
    let out = dir.path().join("out");
    let mut spec = SpecBuilder::new(out.to_str().unwrap());
    spec.shard_size = 0;
    let cfg = spec.write(dir.path(), "bad.toml");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap()]);
    let o = run(c);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("bad.toml") && e.contains("run.shard_size") && e.contains("expected"), "{e}");
    assert!(!out.exists(), "a rejected spec must not create its output");

    std::fs::write(dir.path().join("syntax.toml"), "[run]\ncount = \n").unwrap();
    let mut c = cmd("worker");
    c.args(["run", dir.path().join("syntax.toml").to_str().unwrap()]);
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("syntax.toml"), "{}", stderr(&o));

    let mut c = cmd("worker");
    c.args(["run", dir.path().join("missing.toml").to_str().unwrap()]);
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.toml"), "{}", stderr(&o));
}

/// Ctrl-C (SIGINT) on `worker run`: the jobs in hand stop at their next batch, the exit
/// code is 130 (interrupted, not 3: cancelled), the message says how to resume, and the
/// same command with the run id completes the run, keeping what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_interrupt_exits_130_and_resumes() {
    let dir = TempDir::new("embedded-int");
    let out = dir.path().join("out");
    let mut spec = SpecBuilder::new(out.to_str().unwrap());
    spec.count = 40;
    spec.shard_size = 4;
    let cfg = spec.write(dir.path(), "spec.toml");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--workers", "2", "--run-id", "i1"]).env("LABELGEN_BATCH_DELAY_MS", "300");
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("spawn worker run");
    let shards = out.join("i1").join("shards");
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&shards).map_or(0, |d| d.count()) == 0 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(120), "no shard committed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    labelgen_tests::bins::signal(&child, "INT");
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(e.contains("interrupted") && e.contains("--run-id i1"), "{e}");
    let committed = std::fs::read_dir(&shards).unwrap().count();
    assert!((1..10).contains(&committed), "stopped before the end: {committed} of 10 shards");
    assert!(!out.join("i1").join("manifest.json").exists(), "no manifest for an interrupted run");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--run-id", "i1"]);
    let o = run(c);
    assert!(o.status.success(), "resuming failed: {}", stderr(&o));
    check::exactly_n(&Store::open(out.to_str().unwrap()).unwrap().child("i1"), 40).await;
}
