//! No leaks, enforced: the real test split must lie inside the held-out split of every
//! model that made the run. The run's `run.json` names its models (`pipeline.labels.model`,
//! `pipeline.images.model`); each training command wrote the stems it held out to
//! `test_stems.txt` beside its `model.json`. A test tile a generator trained on would let
//! the synthetic arm score on data it has, through the generator, already seen. Where
//! `run.json` pins a model's digest, the model found there must still be that one: a model
//! retrained in place since writes a new `test_stems.txt` that says nothing of the run's.

use std::collections::BTreeSet;

use anyhow::Context;
use shared::dataset::TEST_STEMS_FILE;
use shared::manifest::layout::RUN_JSON;
use shared::spec::RunSpec;
use shared::storage::Store;

/// Stems named in an error before "and N more".
const SHOWN: usize = 5;

/// Checks `test` against the held-out stems of the models `run` used. Returns what was
/// checked, for the report (`"not checked: …"` when the run has no `run.json`, as a
/// hand-assembled directory of samples). Errors name the model, its `test_stems.txt` and
/// the first stems it trained on.
pub(super) fn check(run: &Store, test: &[String]) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the I/O runtime")?;
    rt.block_on(async {
        let Some(bytes) = run.get(RUN_JSON).await.with_context(|| format!("reading {}", run.describe(RUN_JSON)))? else {
            tracing::warn!("{} does not exist: cannot check that the test split was held out from the run's models", run.describe(RUN_JSON));
            return Ok(format!("not checked: no {RUN_JSON} names the run's models"));
        };
        let doc: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", run.describe(RUN_JSON)))?;
        let spec: RunSpec = serde_json::from_value(doc.get("spec").cloned().unwrap_or_default()).with_context(|| format!("{}: its \"spec\" is not a run spec", run.describe(RUN_JSON)))?;
        let labels = spec.pipeline.labels.as_ref().map(|l| (l.model.as_str(), l.sha256.as_deref()));
        let images = spec.pipeline.images.as_ref().map(|i| (i.model.as_str(), i.sha256.as_deref()));
        let models: Vec<(&str, &str, Option<&str>)> =
            [("pipeline.labels.model", labels), ("pipeline.images.model", images)].into_iter().filter_map(|(key, m)| m.map(|(m, pin)| (key, m, pin))).collect();
        if models.is_empty() {
            return Ok(format!("no trained model made the run ({:?} pipeline)", spec.pipeline.kind));
        }
        for &(key, uri, pin) in &models {
            let store = Store::open(uri).with_context(|| format!("{}: {key} = {uri:?}", run.describe(RUN_JSON)))?;
            if store.get("model.json").await.with_context(|| format!("reading {}", store.describe("model.json")))?.is_none() {
                let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "?".into());
                anyhow::bail!("{key} {uri}: {} does not exist (a relative path is read from the current directory, {cwd}: run from where the run was launched)", store.describe("model.json"));
            }
            if let Some(pin) = pin {
                // Read where it is (never a local cache's copy, which would still match).
                let found = shared::artifact::inspect(uri, None).await.with_context(|| format!("{key} {uri}: checking it against the digest {} pins", run.describe(RUN_JSON)))?;
                anyhow::ensure!(
                    found.digest == pin,
                    "{key} {uri} is not the model that made the run ({} pins digest {pin}, the model there now has {}): it was retrained or replaced since, so its {TEST_STEMS_FILE} does not say what the run's model held out",
                    run.describe(RUN_JSON),
                    found.digest
                );
            }
            let held_out = match store.get(TEST_STEMS_FILE).await.with_context(|| format!("reading {}", store.describe(TEST_STEMS_FILE)))? {
                Some(b) => String::from_utf8_lossy(&b).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<BTreeSet<String>>(),
                None => anyhow::bail!(
                    "{key} {uri}: {} does not exist, so the model's held-out split is unknown and every real tile may have trained it; retrain it with --test-fraction above 0 and evaluate on the stems it writes (--test-stems {})",
                    store.describe(TEST_STEMS_FILE),
                    store.describe(TEST_STEMS_FILE)
                ),
            };
            let leaked: Vec<&String> = test.iter().filter(|s| !held_out.contains(*s)).collect();
            if !leaked.is_empty() {
                let shown: Vec<&str> = leaked.iter().take(SHOWN).map(|s| s.as_str()).collect();
                let more = if leaked.len() > SHOWN { format!(" and {} more", leaked.len() - SHOWN) } else { String::new() };
                anyhow::bail!(
                    "{key} {uri} trained on {} of the {} test stems ({}{more}): they are not in its {}; evaluate on its held-out stems (--test-stems {}) or retrain the models holding these out",
                    leaked.len(),
                    test.len(),
                    shown.join(", "),
                    store.describe(TEST_STEMS_FILE),
                    store.describe(TEST_STEMS_FILE)
                );
            }
        }
        let names: Vec<&str> = models.iter().map(|(_, uri, _)| *uri).collect();
        Ok(format!("every test stem is held out by {}", names.join(" and ")))
    })
}
