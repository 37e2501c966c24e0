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
