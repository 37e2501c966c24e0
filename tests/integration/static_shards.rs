//! Static sharding: `worker run-shard` per shard index (as Indexed Jobs or Slurm arrays run
//! it), no Redis; then `coordinator finalize RUN --config CONFIG`.

use std::time::Duration;

use labelgen_tests::bins::{cmd, run, stderr, stdout};
use labelgen_tests::check;
use labelgen_tests::cluster::{wait_all, Cluster};
use labelgen_tests::spec::SpecBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_and_repeated_shards_give_exactly_n_same_as_redis() {
    let cl = Cluster::start("static");
    let mut spec = SpecBuilder::new("s3://data/static");
    spec.count = 17;
    spec.shard_size = 4;
    let cfg = spec.write(cl.dir.path(), "static.toml");
    let cfg_s = cfg.to_str().unwrap();

    let mut run_id = String::new();
    // Shuffled order; shard 3 twice; indices from flags and from the schedulers' variables.
    for (i, shard) in [3u64, 0, 4, 3, 1, 2].into_iter().enumerate() {
        let mut c = cmd("worker");
        c.args(["run-shard", cfg_s]).envs(cl.s3.env());
        match i % 3 {
            0 => {
                c.args(["--shard", &shard.to_string()]);
            }
            1 => {
                c.env("JOB_COMPLETION_INDEX", shard.to_string());
            }
            _ => {
                c.env("SLURM_ARRAY_TASK_ID", shard.to_string());
            }
        }
        let o = run(c);
        assert!(o.status.success(), "run-shard {shard}: {}", stderr(&o));
        let id = stdout(&o).trim().to_string();
        assert!(run_id.is_empty() || run_id == id, "tasks disagree on the run id: {run_id} vs {id}");
        run_id = id;
    }
    assert!(run_id.starts_with("static-"), "{run_id}");

    let o = run(cl.coordinator(&["status", &run_id, "--config", cfg_s, "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(st["shards"]["committed"], 5, "{st}");

    // A shard index out of range is refused.
    let mut c = cmd("worker");
    c.args(["run-shard", cfg_s, "--shard", "5"]).envs(cl.s3.env());
    let o = run(c);
    assert!(!o.status.success() && stderr(&o).contains("5 shards"), "{}", stderr(&o));

    let o = run(cl.coordinator(&["finalize", &run_id, "--config", cfg_s]));
    assert!(o.status.success(), "{}", stderr(&o));
    // Finalize twice is safe; --json prints one object.
    let o = run(cl.coordinator(&["finalize", &run_id, "--config", cfg_s, "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let fin: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((fin["samples"].as_u64(), fin["shards"].as_u64(), fin["run_id"].as_str()), (Some(17), Some(5), Some(run_id.as_str())), "{fin}");
    let o = run(cl.coordinator(&["status", &run_id, "--config", cfg_s, "--json"]));
    let static_status: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (static_status["mode"].as_str(), static_status["state"].as_str(), static_status["samples"]["committed"].as_u64()),
        (Some("static"), Some("finalized"), Some(17)),
        "{static_status}"
    );
    assert!(static_status["shards"]["leased"].is_null(), "a static run cannot know leases: {static_status}");
    let store = cl.s3.store("data", &format!("static/{run_id}"));
    let lines = check::exactly_n(&store, 17).await;
    // The repeated shard's second attempt left no data behind.
    let data = store.list("data/000003").await.unwrap();
    assert_eq!(data.len(), 8, "shard 3 should hold one attempt's 4 pairs: {data:?}");

    // The same run through Redis gives the same samples; submit, list and status speak
    // JSON, status in the same schema as for the static run.
    let rcfg = spec.write(cl.dir.path(), "via-redis.toml");
    let o = run(cl.coordinator(&["submit", rcfg.to_str().unwrap(), "--run-id", "via-redis", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let sub: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((sub["run_id"].as_str(), sub["created"].as_bool(), sub["shards"].as_u64()), (Some("via-redis"), Some(true), Some(5)), "{sub}");
    let o = run(cl.coordinator(&["list", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(listed[0]["run_id"], "via-redis", "{listed}");
    let o = run(cl.coordinator(&["status", "via-redis", "--json"]));
    let redis_status: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&redis_status), keys(&static_status), "one schema for static and Redis runs");
    assert_eq!(keys(&redis_status["shards"]), keys(&static_status["shards"]));
    assert_eq!((redis_status["mode"].as_str(), redis_status["shards"]["pending"].as_u64()), (Some("redis"), Some(5)), "{redis_status}");
    let mut w = vec![cl.worker(&[])];
    let o = cl.watch("via-redis");
    assert!(o.status.success(), "{}", stderr(&o));
    wait_all(&mut w, Duration::from_secs(30));
    let rstore = cl.s3.store("data", "static/via-redis");
    let rlines = check::exactly_n(&rstore, 17).await;
    assert_eq!(check::sample_bytes(&store, &lines).await, check::sample_bytes(&rstore, &rlines).await);
}

/// `scripts/slurm-array.sh` without Slurm: a fake `sbatch` records each submission; the
/// test then runs what Slurm would (every array task with its SLURM_ARRAY_TASK_ID, then
/// the finalize job). Five shards in at most three tasks: task K runs shards K, K+3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slurm_script_covers_a_run_with_fewer_tasks_than_shards() {
    let cl = Cluster::start("slurm");
    let mut spec = SpecBuilder::new("s3://data/slurm");
    spec.count = 17;
    spec.shard_size = 4;
    let cfg = spec.write(cl.dir.path(), "slurm.toml");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/slurm-array.sh");
    let bin_dir = labelgen_tests::bins::bin("worker").parent().unwrap().to_path_buf();
    let log = cl.dir.path().join("sbatch.log");
    let sbatch = cl.dir.path().join("sbatch");
    std::fs::write(&sbatch, format!("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\037' \"$a\" >> {log}; done\necho >> {log}\necho 4242\n", log = log.display())).unwrap();
    std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script_cmd = |args: &[&str]| {
        let mut c = std::process::Command::new("bash");
        c.arg(script).args(args).envs(cl.s3.env()).env("LABELGEN_BIN", &bin_dir).env("SBATCH", &sbatch).env("MAX_TASKS", "3").env("RUST_LOG", "warn");
        c.stdin(std::process::Stdio::null());
        c
    };
    let o = run(script_cmd(&[cfg.to_str().unwrap(), "slurm-run"]));
    assert!(o.status.success(), "launcher: {}", stderr(&o));
    assert!(stdout(&o).contains("5 shards in 3 tasks"), "{}", stdout(&o));
    let submissions =
        || -> Vec<Vec<String>> { std::fs::read_to_string(&log).unwrap().lines().map(|l| l.split('\u{1f}').filter(|a| !a.is_empty()).map(str::to_string).collect()).collect() };
    let subs = submissions();
    assert_eq!(subs.len(), 2, "an array and a finalize job: {subs:?}");
    let array = subs[0].iter().find_map(|a| a.strip_prefix("--array=")).expect("--array");
    assert!(subs[1].iter().any(|a| a == "--dependency=afterok:4242"), "{:?}", subs[1]);
    let (range, _parallel) = array.split_once('%').expect("0-N%P");
    assert_eq!(range, "0-2");
    // What each array task runs: this script (`$0` after the options) with its arguments.
    let job = |sub: &[String]| sub.iter().position(|a| a.ends_with("slurm-array.sh")).map(|i| sub[i + 1..].to_vec()).expect("the script in the submission");
    for k in 0..3 {
        let args = job(&subs[0]);
        let mut c = script_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        c.env("SLURM_ARRAY_TASK_ID", k.to_string()).env_remove("LABELGEN_BIN");
        let o = run(c);
        assert!(o.status.success(), "task {k}: {}", stderr(&o));
    }
    // A failed task is rerun by index, with the task count the launcher printed (here
    // under another MAX_TASKS, which would otherwise give 2 tasks and other shards).
    assert!(stdout(&o).contains("TASKS=3 "), "{}", stdout(&o));
    let mut c = script_cmd(&["resubmit", cfg.to_str().unwrap(), "slurm-run", "1"]);
    c.env("MAX_TASKS", "2").env("TASKS", "3");
    let o = run(c);
    assert!(o.status.success(), "resubmit: {}", stderr(&o));
    let rerun = submissions().pop().unwrap();
    assert!(rerun.iter().any(|a| a == "--array=1") && rerun.last().map(String::as_str) == Some("3"), "{rerun:?}");
    let mut c = script_cmd(&job(&rerun).iter().map(String::as_str).collect::<Vec<_>>());
    c.env("SLURM_ARRAY_TASK_ID", "1").env_remove("LABELGEN_BIN");
    let o = run(c);
    assert!(o.status.success() && stderr(&o).contains("0 shards committed, 2 already were"), "rerun: {}", stderr(&o));

    let args = job(&subs[1]);
    let o = run(script_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(o.status.success(), "finalize job: {}", stderr(&o));
    check::exactly_n(&cl.s3.store("data", "slurm/slurm-run"), 17).await;

    // plan --json for other scripts: the same figures.
    let o = run(cl.coordinator(&["plan", cfg.to_str().unwrap(), "--json", "--max-tasks", "3"]));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((plan["shards"].as_u64(), plan["tasks"].as_u64(), plan["shards_per_task"].as_u64()), (Some(5), Some(3), Some(2)), "{plan}");
}
