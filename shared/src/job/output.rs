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
            return Err(Error::Run {
                run: run_id.into(),
                message: format!(
                    "already exists at {} with a different spec (digest {digest}, this spec {}); choose another run id",
                    store.describe(layout::RUN_JSON),
                    spec.digest()
                ),
            });
        }
    }
    Ok(store)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
