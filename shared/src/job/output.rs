//! The run's directory in its output store, and `run.json`, written create-only when a run
//! starts (by submit, the embedded mode or a static shard).

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::manifest::layout;
use crate::spec::RunSpec;
use crate::storage::{Created, Store};

/// The run's directory (`OUTPUT/RUN`) in its output store.
pub fn run_store(spec: &RunSpec, run_id: &str) -> Result<Store> {
    // One run-id rule wherever a run directory is named: an empty or odd id never writes
    // into the output root.
    crate::lifecycle::runid::check(run_id, "run id")?;
    Ok(Store::open(&spec.output.url)?.child(run_id))
}

/// Checks the output store works and writes `run.json` create-only. An existing `run.json`
/// with the same spec is accepted (idempotent); another spec is an error. Returns the run
/// directory.
pub async fn prepare_output(spec: &RunSpec, run_id: &str) -> Result<Store> {
    crate::lifecycle::runid::check(run_id, "run id")?;
    let root = Store::open(&spec.output.url)?;
    root.check_reachable().await?;
    let store = root.child(run_id);
    store.check_create_only().await?;
    let doc = serde_json::json!({
        "run_id": run_id,
        "spec_digest": spec.digest(),
        "created_ms": now_ms(),
        "labelgen_version": env!("CARGO_PKG_VERSION"),
        "spec": spec,
    });
    let body = Bytes::from(serde_json::to_vec_pretty(&doc).expect("run.json serialises"));
    if store.put_create(layout::RUN_JSON, body).await? == Created::AlreadyExists {
        let existing = store.get(layout::RUN_JSON).await?.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&existing).map_err(|e| Error::format(store.describe(layout::RUN_JSON), format!("not JSON: {e}")))?;
        let digest = v.get("spec_digest").and_then(|d| d.as_str()).unwrap_or("");
        if digest != spec.digest() {
            let now = serde_json::to_value(spec).expect("a spec serialises");
            let mut keys = Vec::new();
            if let Some(was) = v.get("spec") {
                json_differences(was, &now, "", &mut keys);
            }
            let mut what: Vec<String> = keys.iter().take(3).map(|k| format!("{k} is {} in run.json, {} in this spec", at(&v["spec"], k), at(&now, k))).collect();
            if keys.len() > 3 {
                what.push(format!("and {} more keys", keys.len() - 3));
            }
            if keys.iter().any(|k| k.ends_with(".sha256")) {
                what.push("a model pinned at submit has changed since: restore it, or generate with the new one under a new run id".into());
            }
            let what: String = what.iter().map(|w| format!("; {w}")).collect();
            return Err(Error::Run {
                run: run_id.into(),
                message: format!(
                    "already exists at {} with a different spec (digest {digest}, this spec {}){what}; choose another run id",
                    store.describe(layout::RUN_JSON),
                    spec.digest()
                ),
            });
        }
    }
    Ok(store)
}

/// The dotted keys whose values differ between two JSON objects, in key order: leaves,
/// and arrays as a whole; a key on one side only counts unless its value is null.
fn json_differences(a: &serde_json::Value, b: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                json_differences(x.get(key).unwrap_or(&Value::Null), y.get(key).unwrap_or(&Value::Null), &path, out);
            }
        }
        _ if a != b && !prefix.is_empty() => out.push(prefix.to_string()),
        _ => {}
    }
}

/// The value at a dotted key of [`json_differences`], for a message (`null` where absent).
fn at(v: &serde_json::Value, key: &str) -> serde_json::Value {
    key.split('.').try_fold(v, |v, k| v.get(k)).cloned().unwrap_or(serde_json::Value::Null)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run id taken by another spec: the error names the keys that differ, and a changed
    /// model pin says so.
    #[tokio::test]
    async fn a_run_id_of_another_spec_names_the_keys_that_differ() {
        let text = |count: u64| format!("[run]\ncount = {count}\nshard_size = 2\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 16\n");
        let run_id = format!("taken-{}", rand::random::<u32>());
        let spec = RunSpec::parse(&text(4), "t.toml").unwrap();
        prepare_output(&spec, &run_id).await.unwrap();
        prepare_output(&spec, &run_id).await.expect("the same spec again");
        let other = RunSpec::parse(&text(6), "t.toml").unwrap();
        let e = prepare_output(&other, &run_id).await.unwrap_err().to_string();
        assert!(e.contains("run.count is 4 in run.json, 6 in this spec") && e.contains("choose another run id") && !e.contains("pinned"), "{e}");

        let mut a = serde_json::json!({"pipeline": {"images": {"model": "m", "sha256": "aa"}}, "run": {"count": 1}});
        let b = serde_json::json!({"pipeline": {"images": {"model": "m", "sha256": "bb"}}, "run": {"count": 1, "seed": 2}});
        let mut keys = Vec::new();
        json_differences(&a, &b, "", &mut keys);
        assert_eq!(keys, ["pipeline.images.sha256", "run.seed"]);
        assert_eq!(at(&b, "run.seed"), serde_json::json!(2));
        a["run"]["seed"] = serde_json::json!(2);
        a["pipeline"]["images"]["sha256"] = serde_json::json!("bb");
        keys.clear();
        json_differences(&a, &b, "", &mut keys);
        assert!(keys.is_empty());
    }
}
