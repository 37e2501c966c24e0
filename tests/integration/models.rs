//! The `ddpm-spade` pipeline with the committed demo models: embedded and Redis modes,
//! artifacts fetched from S3 and checked, bad artifacts refused before any job, a model
//! replaced after submit, a worker killed mid-job.

use std::process::Child;
use std::time::Duration;

use bytes::Bytes;
use labelgen_tests::bins::{cmd, run, signal, stderr, stdout};
use labelgen_tests::check;
use labelgen_tests::cluster::{wait_all, Cluster};
use labelgen_tests::spec::{demo_model, model_tables, SpecBuilder, TempDir};
use shared::storage::Store;
use shared::{ClassTable, LabelMap, RgbImage};

/// Copies a demo model into `store` (the S3 server) and returns its s3:// URI.
async fn upload_model(store: &Store, name: &str) -> String {
    let dir = demo_model(name);
    for f in ["model.json", if name == "ddpm" { "weights.mpk" } else { "generator.mpk" }] {
        store.child(name).put(f, Bytes::from(std::fs::read(dir.join(f)).unwrap())).await.unwrap();
    }
    format!("s3://data/models/{name}")
}

/// Both demo models uploaded to the S3 server, and a ddpm-spade spec of `count` samples in
/// shards of `shard_size` that names them; with the models' store and the label model's URI.
async fn spec_with_s3_models(cl: &Cluster, count: u64, shard_size: u64) -> (SpecBuilder, Store, String) {
    let models = cl.s3.store("data", "models");
    let (l_uri, i_uri) = (upload_model(&models, "ddpm").await, upload_model(&models, "spade").await);
    let mut spec = SpecBuilder::ddpm_spade("s3://data/runs");
    spec.count = count;
    spec.shard_size = shard_size;
    spec.pipeline_extra = model_tables(&l_uri, &i_uri);
    (spec, models, l_uri)
}

/// Labels hold only class codes, sizes match the spec, the manifest carries the model
/// fields, and the contact sheet is there.
async fn check_ddpm_spade_run(store: &Store, count: u64, size: u32) -> Vec<shared::manifest::ManifestLine> {
    let lines = check::exactly_n(store, count).await;
    let classes = ClassTable::ai_hub();
    for l in &lines {
        let label = LabelMap::from_png(&check::read_member(store, &l.label).await, &classes, &l.label).expect("labels hold only class codes");
        let image = RgbImage::from_png(&check::read_member(store, &l.image).await, &l.image).unwrap();
        assert_eq!((label.width, label.height, image.width, image.height), (size, size, size, size), "sample {}", l.index);
        assert!(label.data.iter().all(|&c| (c as usize) < classes.len()), "sample {} has non-class pixels", l.index);
        assert_eq!(l.extra["sampler"], "ddim");
        assert_eq!(l.extra["steps"], 20);
        assert_eq!(l.extra["label_size"], 32);
        assert_eq!(l.extra["label_model"].as_str().map(str::len), Some(64), "{:?}", l.extra);
        assert_eq!(l.extra["image_model"].as_str().map(str::len), Some(64));
        assert!(l.extra["islands_removed"].is_u64());
    }
    // Different seeds give different samples.
    let first = check::read_member(store, &lines[0].image).await;
    assert!(lines[1..].iter().any(|l| l.image_sha256 != lines[0].image_sha256), "every image is the same");
    assert!(!first.is_empty());
    let sheet = store.get("contact_sheet.png").await.unwrap().expect("contact_sheet.png");
    let sheet = RgbImage::from_png(&sheet, "contact_sheet.png").unwrap();
    assert!(sheet.width > 2 * size && sheet.height >= size, "contact sheet is {}×{}", sheet.width, sheet.height);
    lines
}

/// Mean staircase measure ([`LabelMap::grid_boundary_share`]) of a run's labels.
async fn mean_grid_share(store: &Store, lines: &[shared::manifest::ManifestLine], cell: u32) -> f64 {
    let mut shares = Vec::new();
    for l in lines {
        let map = LabelMap::from_png(&check::read_member(store, &l.label).await, &ClassTable::ai_hub(), &l.label).unwrap();
        shares.extend(map.grid_boundary_share(cell));
    }
    shares.iter().sum::<f64>() / shares.len() as f64
}

/// The done-when in small: the embedded mode and Redis + S3 (models fetched from
/// S3 through the cache) give the same valid samples from the demo models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddpm_spade_embedded_and_redis_give_the_same_valid_samples() {
    let cl = Cluster::start("models");
    let local = cl.dir.path().join("local");
    let mut spec = SpecBuilder::ddpm_spade(local.to_str().unwrap());
    spec.count = 6;
    spec.shard_size = 4;
    let cfg = spec.write(cl.dir.path(), "embedded.toml");
    let cache = cl.dir.path().join("cache");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--run-id", "m1"]).env("LABELGEN_MODEL_CACHE", &cache);
    let o = run(c);
    assert!(o.status.success(), "embedded ddpm-spade run failed: {}", stderr(&o));
    let estore = Store::open(local.to_str().unwrap()).unwrap().child("m1");
    let elines = check_ddpm_spade_run(&estore, 6, 64).await;
    // The digests were pinned into the stored spec.
    let run_json: serde_json::Value = serde_json::from_slice(&estore.get("run.json").await.unwrap().unwrap()).unwrap();
    let pinned = run_json.to_string();
    assert!(pinned.contains(elines[0].extra["label_model"].as_str().unwrap()), "run.json does not pin the label model: {pinned}");

    // The same samples with `upscale = "smooth"`: classes decided at 64×64 from the
    // upscaled probabilities, so borders leave the demo model's 2-px grid.
    let mut sspec = SpecBuilder::ddpm_spade(local.to_str().unwrap());
    sspec.count = 6;
    sspec.shard_size = 4;
    sspec.pipeline_extra = sspec.pipeline_extra.replace("steps = 20\n", "steps = 20\nupscale = \"smooth\"\n");
    assert!(sspec.text().contains("upscale = \"smooth\""), "{}", sspec.text());
    let scfg = sspec.write(cl.dir.path(), "smooth.toml");
    let mut c = cmd("worker");
    c.args(["run", scfg.to_str().unwrap(), "--run-id", "m1-smooth"]).env("LABELGEN_MODEL_CACHE", &cache);
    let o = run(c);
    assert!(o.status.success(), "embedded smooth ddpm-spade run failed: {}", stderr(&o));
    let sstore = Store::open(local.to_str().unwrap()).unwrap().child("m1-smooth");
    let slines = check_ddpm_spade_run(&sstore, 6, 64).await;
    assert!(slines.iter().all(|l| l.extra["upscale"] == "smooth") && elines.iter().all(|l| l.extra["upscale"] == "nearest"));
    let (nearest, smooth) = (mean_grid_share(&estore, &elines, 2).await, mean_grid_share(&sstore, &slines, 2).await);
    assert_eq!(nearest, 1.0, "nearest upscale puts every border on the model's grid");
    assert!(smooth < 0.8, "smooth upscale left {smooth:.2} of the borders on the grid");

    let (rspec, _, _) = spec_with_s3_models(&cl, 6, 4).await;
    let rcfg = rspec.write(cl.dir.path(), "redis.toml");
    let mut c = cl.coordinator(&["submit", rcfg.to_str().unwrap(), "--run-id", "m1"]);
    c.env("LABELGEN_MODEL_CACHE", &cache);
    let o = run(c);
    assert!(o.status.success(), "submit failed: {}", stderr(&o));
    let mut w = {
        let mut c = cmd("worker");
        c.args(["--exit-when-idle", "--metrics-addr", "127.0.0.1:0", "--device", "auto"]).env("REDIS_URL", cl.redis.url()).envs(cl.s3.env()).env("LABELGEN_MODEL_CACHE", &cache);
        vec![labelgen_tests::bins::spawn(c)]
    };
    let o = cl.watch("m1");
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(120));
    let rstore = cl.s3.store("data", "runs/m1");
    let rlines = check_ddpm_spade_run(&rstore, 6, 64).await;
    assert_eq!(check::sample_bytes(&rstore, &rlines).await, check::sample_bytes(&estore, &elines).await, "embedded and Redis ddpm-spade runs differ");
    assert_eq!(rlines[0].extra["label_model"], elines[0].extra["label_model"], "the same model bytes from S3 and disk");
    // The S3 artifacts were cached on local disk under their digests.
    let cached: Vec<String> = std::fs::read_dir(&cache).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(cached.iter().any(|d| d == elines[0].extra["label_model"].as_str().unwrap()), "cache holds {cached:?}");
}

/// A wrong pin, a missing artifact, a model of another size or other classes: each is an
/// error naming the key and the problem, before anything is queued or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_artifacts_are_refused_before_any_job() {
    let cl = Cluster::start("badmodels");
    let dir = TempDir::new("badmodels-out");
    let ddpm = demo_model("ddpm").display().to_string();
    let spade = demo_model("spade").display().to_string();
    let base = |extra: String, size: u32| {
        let mut s = SpecBuilder::ddpm_spade("s3://data/bad");
        s.count = 4;
        s.size = size;
        s.pipeline_extra = extra;
        s
    };
    let wrong_pin = model_tables(&ddpm, &spade).replace("steps = 20\n", &format!("steps = 20\nsha256 = \"{}\"\n", "0".repeat(64)));
    let with_classes = |s: &SpecBuilder| {
        // The AI Hub table with two classes' names swapped in order: another class table.
        let mut t = s.text();
        t.push_str("\n[classes]\nignore_code = 100\nclasses = [\n");
        let mut cls = ClassTable::ai_hub().classes;
        cls.swap(0, 1);
        for c in cls {
            t.push_str(&format!("  {{ name = \"{}\", code = {}, color = [{}, {}, {}] }},\n", c.name, c.code, c.color[0], c.color[1], c.color[2]));
        }
        t.push_str("]\n");
        t
    };
    let zeros = "0".repeat(64);
    // The demo DDPM with its weights cut short: hashed alone it would be pinned.
    let truncated = dir.path().join("truncated-ddpm");
    std::fs::create_dir_all(&truncated).unwrap();
    std::fs::copy(demo_model("ddpm").join("model.json"), truncated.join("model.json")).unwrap();
    let w = std::fs::read(demo_model("ddpm").join("weights.mpk")).unwrap();
    std::fs::write(truncated.join("weights.mpk"), &w[..w.len() * 2 / 3]).unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("wrong pin", base(wrong_pin, 64).text(), vec!["pipeline.labels.model", "digest mismatch", &zeros]),
        ("missing", base(model_tables(&format!("{}/nope", dir.path().display()), &spade), 64).text(), vec!["pipeline.labels.model", "nope/model.json", "does not exist"]),
        ("truncated", base(model_tables(&truncated.display().to_string(), &spade), 64).text(), vec!["pipeline.labels.model", "weights.mpk", "truncated"]),
        ("size", base(model_tables(&ddpm, &spade), 128).text(), vec!["pipeline.images.model", "64×64", "pipeline.image_size is 128"]),
        (
            "classes",
            with_classes(&base(model_tables(&ddpm, &spade), 64)),
            vec!["pipeline.labels.model", "trained with classes", "class 0 is building (code 10, colour [220, 60, 50]) in the model, parking lot (code 20"],
        ),
    ];
    for (name, text, want) in cases {
        let cfg = cl.dir.path().join(format!("{}.toml", name.replace(' ', "-")));
        std::fs::write(&cfg, &text).unwrap();
        let o = run(cl.coordinator(&["submit", cfg.to_str().unwrap(), "--run-id", "b1"]));
        assert!(!o.status.success(), "{name}: submit should fail");
        let e = stderr(&o);
        for w in &want {
            assert!(e.contains(w), "{name}: error should mention {w:?}: {e}");
        }
        assert!(e.contains(cfg.file_name().unwrap().to_str().unwrap()), "{name}: error should name the file: {e}");
        // The embedded mode refuses it the same way, writing nothing.
        let local = dir.path().join(name.replace(' ', "-"));
        std::fs::write(&cfg, text.replace("s3://data/bad", local.to_str().unwrap())).unwrap();
        let mut c = cmd("worker");
        c.args(["run", cfg.to_str().unwrap(), "--run-id", "b1"]);
        let o = run(c);
        assert!(!o.status.success(), "{name}: run should fail");
        assert!(!local.exists(), "{name}: the embedded run wrote {}", local.display());
    }
    // Nothing reached Redis or the bucket.
    let o = run(cl.coordinator(&["list"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("b1"), "a refused run is in Redis: {}", stdout(&o));
    assert!(cl.s3.store("data", "bad").list("").await.unwrap().is_empty());
}

/// A worker SIGKILLed in the middle of a ddpm-spade job: its shard is reclaimed after the
/// lease and the run still has exactly N samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_ddpm_spade_job_still_gives_exactly_n() {
    let cl = Cluster::start("modelkill");
    let mut spec = SpecBuilder::ddpm_spade("s3://data/runs");
    spec.count = 8;
    spec.shard_size = 4;
    spec.batch = 2;
    cl.submit(&spec, "mk");
    let slow = [("LABELGEN_BATCH_DELAY_MS", "1500")];
    let mut workers: Vec<Child> = (0..2).map(|_| cl.worker(&slow)).collect();
    // Both workers hold a shard once their pipelines are built (under load that takes a
    // while: wait for it rather than for a fixed time); kill one mid-job.
    cl.wait_leased("mk", 2, Duration::from_secs(120));
    signal(&workers[0], "KILL");
    let o = cl.watch("mk");
    assert!(o.status.success(), "watch failed: {}", stderr(&o));
    wait_all(&mut workers[1..], Duration::from_secs(120));
    let store = cl.s3.store("data", "runs/mk");
    check_ddpm_spade_run(&store, 8, 64).await;
    let summary: serde_json::Value = serde_json::from_slice(&store.get("manifest.json").await.unwrap().unwrap()).unwrap();
    assert!(summary["retried_shards"].as_u64().unwrap() >= 1, "the killed worker's shard should have been retried: {summary}");
}

/// A model replaced on S3 after submit fails its run, not the fleet: the run's shards go
/// dead at once naming the model (watch exits 4), the worker stays healthy, serves the
/// other run and exits idle (it used to count each job as its own fault and give up,
/// as every worker would, leaving the run unserved); once the model is restored,
/// retry-dead completes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_replaced_after_submit_fails_its_run_not_the_fleet() {
    let cl = Cluster::start("modelchanged");
    let (spec, models, l_uri) = spec_with_s3_models(&cl, 6, 2).await;
    cl.submit(&spec, "mc");
    let mut other = SpecBuilder::new("s3://data/runs");
    other.count = 4;
    other.shard_size = 2;
    cl.submit(&other, "ok");
    let ddpm = models.child("ddpm");
    let weights = ddpm.get("weights.mpk").await.unwrap().unwrap();
    let mut changed = weights.to_vec();
    *changed.last_mut().unwrap() ^= 1;
    ddpm.put("weights.mpk", Bytes::from(changed)).await.unwrap();

    let cache = cl.dir.path().join("cache");
    let env = [("LABELGEN_MODEL_CACHE", cache.to_str().unwrap())];
    let mut w = vec![cl.worker(&env)];
    let o = cl.watch("mc");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "watch should exit 4 (dead shards): {e}");
    assert!(e.contains("digest mismatch") && e.contains(&l_uri) && e.contains("retry-dead"), "{e}");
    let o = cl.watch("ok");
    assert!(o.status.success(), "the other run is served: {}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(60));
    assert!(w[0].try_wait().unwrap().is_some_and(|s| s.success()), "the worker exits idle, not giving up");
    let o = run(cl.coordinator(&["status", "mc", "--json"]));
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(st["shards"]["dead"], 3, "{st}");

    ddpm.put("weights.mpk", weights).await.unwrap();
    let o = run(cl.coordinator(&["retry-dead", "mc"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut w = vec![cl.worker(&env)];
    let o = cl.watch("mc");
    assert!(o.status.success(), "watch failed after the model was restored: {}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(120));
    check_ddpm_spade_run(&cl.s3.store("data", "runs/mc"), 6, 64).await;
}

/// Asking for CUDA where it cannot be had is an error that says why, before any job.
#[test]
fn unavailable_cuda_device_is_a_clear_error() {
    let dir = TempDir::new("nocuda");
    let out = dir.path().join("out");
    let cfg = SpecBuilder::ddpm_spade(out.to_str().unwrap()).write(dir.path(), "spec.toml");
    let mut c = cmd("worker");
    c.args(["run", cfg.to_str().unwrap(), "--device", "cuda:0"]);
    let o = run(c);
    assert!(!o.status.success());
    let e = stderr(&o);
    // This test binary is built without the cuda feature; a CUDA build on a machine
    // without the driver says "no NVIDIA driver" instead (unit-tested in worker::device).
    assert!(e.contains("cuda:0") && (e.contains("without CUDA support") || e.contains("no NVIDIA driver")), "{e}");
    assert!(!out.exists(), "nothing should be written");
    // cuda:all is taken by run and serve (one pipeline per GPU): here it fails for want
    // of CUDA, not as a single-device command would; run-shard refuses it, saying why.
    for args in [vec!["run", cfg.to_str().unwrap(), "--device", "cuda:all"], vec!["--device", "cuda:all", "--redis", "redis://127.0.0.1:1", "--no-metrics"]] {
        let mut c = cmd("worker");
        c.args(&args);
        let e = stderr(&run(c));
        assert!(e.contains("cuda:all") && (e.contains("without CUDA support") || e.contains("no NVIDIA driver")) && !e.contains("one device"), "{args:?}: {e}");
    }
    let mut c = cmd("worker");
    c.args(["run-shard", cfg.to_str().unwrap(), "--shard", "0", "--device", "cuda:all"]);
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("one shard at a time"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing should be written");
    let mut c = cmd("worker");
    c.args(["--device", "cuda", "--redis", "redis://127.0.0.1:1", "--no-metrics"]);
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--device"), "{}", stderr(&o));
    let mut c = cmd("worker");
    c.args(["--device", "tpu"]);
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cuda:N"), "{}", stderr(&o));
}

/// Static sharding with models: each `run-shard` checks and pins the models itself, so
/// every task derives the same run id, and `finalize --config` agrees with the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_shards_with_models_finalize() {
    let cl = Cluster::start("staticmodels");
    let mut spec = SpecBuilder::ddpm_spade("s3://data/static");
    spec.count = 5;
    spec.shard_size = 3;
    let cfg = spec.write(cl.dir.path(), "static.toml");
    let cfg_s = cfg.to_str().unwrap();
    let mut ids = Vec::new();
    for shard in [1u64, 0] {
        let mut c = cmd("worker");
        c.args(["run-shard", cfg_s, "--shard", &shard.to_string()]).envs(cl.s3.env());
        let o = run(c);
        assert!(o.status.success(), "run-shard {shard}: {}", stderr(&o));
        ids.push(stdout(&o).trim().to_string());
    }
    assert_eq!(ids[0], ids[1], "tasks disagree on the run id");
    let o = run(cl.coordinator(&["finalize", &ids[0], "--config", cfg_s]));
    assert!(o.status.success(), "{}", stderr(&o));
    check_ddpm_spade_run(&cl.s3.store("data", &format!("static/{}", ids[0])), 5, 64).await;
}
