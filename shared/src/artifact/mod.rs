//! Model artifacts as the pipeline uses them: fetched from a path, `file://` or `s3://`,
//! checked against a sha256 digest, and cached on local disk (for remote stores).
//!
//! An artifact is a location holding `model.json` and the weights file it names
//! (`weights`). Its **digest** covers both files the way `sha256sum` does:
//!
//! ```text
//! cd ARTIFACT && sha256sum $(ls model.json WEIGHTS | sort) | sha256sum
//! ```
//!
//! i.e. the sha256 of the lines `HEX  NAME\n` for the two files in name order. This module
//! reads only the fields every model's `model.json` shares ([`ArtifactInfo`]); the worker
//! parses the rest.
//!
//! Two ways in: [`inspect`] reads `model.json` and streams the weights through sha256 and
//! through a structural check of Burn's record format ([`weights`]) without holding them
//! (the coordinator's check at submit: [`prepare`]); [`fetch`] reads
//! both files into memory, verified, through the local cache (the worker, which loads
//! them). [`check_spec`] holds the spec-versus-model rules both use.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::spec::{LabelUpscale, PipelineKind, RunSpec};
use crate::storage::{Store, StoreUrl};

pub mod weights;

/// The metadata file of every artifact.
pub const MODEL_JSON: &str = "model.json";
/// `model.json`'s `kind` of a DDPM label model (`pipeline.labels.model`).
pub const LABEL_MODEL_KIND: &str = "labelgen-ddpm-labels";
/// `model.json`'s `kind` of a SPADE image model (`pipeline.images.model`).
pub const IMAGE_MODEL_KIND: &str = "spade";

/// The fields every `model.json` has.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ArtifactInfo {
    /// Which model (`labelgen-ddpm-labels`, `spade`).
    pub kind: String,
    /// Side of the maps or images the model makes, in pixels.
    pub size: u32,
    pub classes: ClassTable,
    /// Name of the weights file beside `model.json`.
    pub weights: String,
    /// Diffusion timesteps (label models only).
    #[serde(default)]
    pub timesteps: Option<usize>,
    /// Elements in all the weights' tensors, as the architecture has them (written by
    /// labelgen's training commands; artifacts from before it lack it).
    #[serde(default)]
    pub parameters: Option<u64>,
    /// sha256 (hex) of the weights file, written by labelgen's training commands with the
    /// weights: a save that stopped between its two files, or weights replaced after, do
    /// not pass for the model `model.json` describes. Artifacts from before it lack it.
    #[serde(default)]
    pub weights_sha256: Option<String>,
    /// How a label model encodes maps (`onehot`, `gray`; label models only).
    #[serde(default)]
    pub encoding: Option<String>,
}

/// An artifact checked without holding its weights: `model.json` read, the weights
/// streamed through sha256 and the record check of [`weights`].
#[derive(Debug, Clone)]
pub struct Inspected {
    /// Where it is (as given, without a trailing `/`).
    pub uri: String,
    pub info: ArtifactInfo,
    /// See the module docs.
    pub digest: String,
    /// Size of the weights file in bytes.
    pub weights_bytes: u64,
    /// What the weights hold.
    pub weights: weights::Summary,
}

/// An artifact's two files, in memory and verified.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Where it came from (as given).
    pub uri: String,
    pub info: ArtifactInfo,
    pub model_json: Vec<u8>,
    pub weights: Vec<u8>,
    /// See the module docs.
    pub digest: String,
    /// True when it was read from the local cache rather than `uri`.
    pub from_cache: bool,
}

/// True for 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// sha256 of `data`, in hex: a file's hash as `sha256sum` prints it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Checks a weights file's sha256 (hex) against the one `model.json` declares, if any.
pub fn check_weights_sha256(declared: Option<&str>, sha: &str) -> std::result::Result<(), String> {
    match declared {
        Some(d) if d != sha => Err(format!(
            "its sha256 is {sha}, model.json declares {d}: the weights are damaged, or not the ones model.json was written with (a save stopped between its two files, weights copied over by hand); train or copy the model again"
        )),
        _ => Ok(()),
    }
}

/// The digest of named files (see the module docs); order of `files` does not matter.
pub fn digest_files(files: &[(&str, &[u8])]) -> String {
    let hashed: Vec<(&str, String)> = files.iter().map(|(name, data)| (*name, sha256_hex(data))).collect();
    digest_of_hashes(&hashed)
}

/// The digest from each file's name and sha256 (hex), as `sha256sum` lists them.
pub fn digest_of_hashes(files: &[(&str, String)]) -> String {
    let mut lines: Vec<String> = files.iter().map(|(name, sha)| format!("{sha}  {name}\n")).collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    hex::encode(Sha256::digest(lines.concat().as_bytes()))
}

/// The local cache directory for remote artifacts: `$LABELGEN_MODEL_CACHE`, else
/// `$XDG_CACHE_HOME/labelgen/models`, else `$HOME/.cache/labelgen/models`, else a
/// directory under the system temp dir.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LABELGEN_MODEL_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("labelgen/models");
    }
    if let Some(d) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join(".cache/labelgen/models");
    }
    std::env::temp_dir().join("labelgen-models")
}

fn parse_info(bytes: &[u8], origin: &str) -> Result<ArtifactInfo> {
    serde_json::from_slice(bytes).map_err(|e| Error::format(origin, format!("not a labelgen model.json (need kind, size, classes, weights): {e}")))
}

fn mismatch(uri: &str, pin: &str, found: &str) -> Error {
    Error::Format {
        path: uri.to_string(),
        message: format!(
            "artifact digest mismatch: the run spec pins sha256 {pin}, the artifact has {found} (the model was replaced or corrupted; pin the new digest or restore the model)"
        ),
    }
}

/// Reads the artifact at `uri`, checks it against `pin` when given, and returns it. For
/// `s3://` artifacts a verified copy is kept under `cache_dir/DIGEST/` and used next time
/// the same pin is asked for (a cached copy that no longer verifies is fetched again).
/// Errors name the URI, the file and the problem. A pinned `s3://` artifact whose files
/// are gone or whose bytes differ from the pin is [`Error::ModelChanged`]: one object for
/// every worker, so the run's, not this worker's (a local path may differ from machine to
/// machine: there it stays a [`Error::Format`], this worker's copy; and a `model.json`
/// that is JSON this worker cannot read may be a newer version's: this worker's).
pub async fn fetch(uri: &str, pin: Option<&str>, cache_dir: &Path) -> Result<Artifact> {
    let uri = uri.trim_end_matches('/');
    let remote = matches!(StoreUrl::parse(uri), Ok(StoreUrl::S3 { .. }));
    if let (true, Some(pin)) = (remote, pin) {
        if let Some(a) = read_cached(uri, pin, &cache_dir.join(pin)) {
            return Ok(a);
        }
    }
    // A file gone, or bytes that are not the pinned ones.
    let changed = |e: Error| {
        match (remote, pin) {
        (true, Some(pin)) => Error::ModelChanged(format!(
            "{e}; the model pinned at submit (sha256 {pin}) is no longer at {uri}: restore it, wait a minute (a worker looks at a changed model again once a minute), then run `coordinator retry-dead RUN`; or submit the run again to pin the new one"
        )),
        _ => e,
    }
    };
    let store = Store::open(uri)?;
    let model_json: Vec<u8> = store.get(MODEL_JSON).await?.ok_or_else(|| changed(missing_model_json(&store)))?.into();
    // Not JSON at all (truncated, an error page) is damage; JSON this worker does not
    // understand may be a newer version's model.json.
    let info = parse_model_json(&store, &model_json).map_err(|e| if serde_json::from_slice::<serde::de::IgnoredAny>(&model_json).is_err() { changed(e) } else { e })?;
    // `Vec::from(Bytes)` takes the buffer over when it is not shared: no second copy.
    let weights: Vec<u8> = store.get(&info.weights).await?.ok_or_else(|| changed(missing_weights(&store, &info)))?.into();
    let weights_sha = sha256_hex(&weights);
    check_weights_sha256(info.weights_sha256.as_deref(), &weights_sha).map_err(|m| changed(Error::format(store.describe(&info.weights), m)))?;
    let digest = digest_of_hashes(&[(MODEL_JSON, sha256_hex(&model_json)), (&info.weights, weights_sha)]);
    if let Some(pin) = pin {
        if pin != digest {
            return Err(changed(mismatch(uri, pin, &digest)));
        }
    }
    if remote {
        if let Err(e) = write_cache(&cache_dir.join(&digest), &info.weights, &model_json, &weights) {
            tracing::warn!(cache = %cache_dir.display(), error = %e, "could not cache the model artifact (it will be fetched again next time)");
        }
    }
    Ok(Artifact { uri: uri.to_string(), info, model_json, weights, digest, from_cache: false })
}

/// `model.json` of the artifact in `store`, its bytes and common fields; the weights name
/// is checked to be a file beside it, named so that every store keeps the name as written
/// (object_store percent-encodes `~`, `#`, non-ASCII… in S3 keys, so such a name would
/// read from a directory but not from the same files copied to S3).
async fn read_model_json(store: &Store) -> Result<(Vec<u8>, ArtifactInfo)> {
    let model_json: Vec<u8> = store.get(MODEL_JSON).await?.ok_or_else(|| missing_model_json(store))?.into();
    let info = parse_model_json(store, &model_json)?;
    Ok((model_json, info))
}

fn missing_model_json(store: &Store) -> Error {
    Error::format(store.describe(MODEL_JSON), "does not exist (expected a model artifact: model.json and its weights)")
}

/// The common fields of `model.json`'s bytes, checked (see [`read_model_json`]).
fn parse_model_json(store: &Store, model_json: &[u8]) -> Result<ArtifactInfo> {
    let info = parse_info(model_json, &store.describe(MODEL_JSON))?;
    if info.weights.is_empty() || info.weights.contains('/') || info.weights == MODEL_JSON {
        return Err(Error::format(store.describe(MODEL_JSON), format!("weights {:?} must name a file beside model.json", info.weights)));
    }
    crate::storage::check_key_part(&info.weights).map_err(|m| Error::format(store.describe(MODEL_JSON), format!("weights: {m}")))?;
    Ok(info)
}

fn missing_weights(store: &Store, info: &ArtifactInfo) -> Error {
    Error::format(store.describe(&info.weights), "does not exist (named by model.json's weights)")
}

/// Reads the artifact's `model.json` and streams its weights through sha256 and the
/// record check of [`weights`] (never holding them), checks the digest against `pin` when
/// given, and returns what it found. Errors name the URI, the file and the problem.
pub async fn inspect(uri: &str, pin: Option<&str>) -> Result<Inspected> {
    let uri = uri.trim_end_matches('/');
    let store = Store::open(uri)?;
    let (model_json, info) = read_model_json(&store).await?;
    // The check reads the chunks the hash streams by.
    let ((weights_sha, weights_bytes), checked) = store.sha256_read(&info.weights, |r| weights::check(r)).await?.ok_or_else(|| missing_weights(&store, &info))?;
    // The record check first: it says what is wrong (truncated, another architecture).
    let summary = checked?
        .and_then(|s| weights::check_parameters(&s, info.parameters).map(|_| s))
        .map_err(|m| Error::format(store.describe(&info.weights), format!("not usable weights for {} ({m})", info.kind)))?;
    check_weights_sha256(info.weights_sha256.as_deref(), &weights_sha).map_err(|m| Error::format(store.describe(&info.weights), m))?;
    let digest = digest_of_hashes(&[(MODEL_JSON, sha256_hex(&model_json)), (&info.weights, weights_sha)]);
    if let Some(pin) = pin {
        if pin != digest {
            return Err(mismatch(uri, pin, &digest));
        }
    }
    Ok(Inspected { uri: uri.to_string(), info, digest, weights_bytes, weights: summary })
}

/// Checks the two models of a `ddpm-spade` spec against it: their kinds (a label model
/// given as the image model, or the reverse, would fail in every worker), classes, the image model's
/// size against `pipeline.image_size`, the label model's size against
/// `pipeline.labels.size` and as a whole divisor of the image size, the sampler against
/// the label model's timesteps. `labels` and `images` are `(uri, model.json fields)`.
/// Errors name the spec key, the artifact and the mismatch.
pub fn check_spec(spec: &RunSpec, labels: (&str, &ArtifactInfo), images: (&str, &ArtifactInfo)) -> Result<()> {
    let invalid = |key: &str, message: String| Error::Invalid { origin: "run spec".into(), key: key.into(), message };
    let Some(ls) = &spec.pipeline.labels else { return Err(invalid("pipeline.labels", "required for ddpm-spade".into())) };
    let names = |c: &ClassTable| c.classes.iter().map(|d| format!("{} ({})", d.name, d.code)).collect::<Vec<_>>().join(", ");
    for (key, (uri, info), want, what) in [
        ("pipeline.labels.model", labels, LABEL_MODEL_KIND, "a DDPM label model (`worker train ddpm`)"),
        ("pipeline.images.model", images, IMAGE_MODEL_KIND, "a SPADE image model (`worker train spade`)"),
    ] {
        if info.kind != want {
            return Err(invalid(key, format!("{uri}: model.json's kind is {:?}, expected {want:?}: {key} must be {what}", info.kind)));
        }
    }
    for (key, (uri, info)) in [("pipeline.labels.model", labels), ("pipeline.images.model", images)] {
        if let Some(what) = info.classes.difference(&spec.classes, ("the model", "the run spec")) {
            return Err(invalid(key, format!("{uri}: the model was trained with classes [{}], and the run spec's [classes] differ: {what}", names(&info.classes))));
        }
    }
    let size = spec.pipeline.image_size;
    let (iuri, isize) = (images.0, images.1.size);
    if isize != size {
        return Err(invalid("pipeline.images.model", format!("{iuri}: the model paints {isize}×{isize} images, pipeline.image_size is {size}")));
    }
    let (luri, lsize) = (labels.0, labels.1.size);
    if let Some(want) = ls.size {
        if want != lsize {
            return Err(invalid("pipeline.labels.size", format!("{want}, but the label model {luri} samples {lsize}×{lsize} maps")));
        }
    }
    if lsize == 0 || lsize > size || !size.is_multiple_of(lsize) {
        return Err(invalid("pipeline.labels.model", format!("{luri}: its {lsize}×{lsize} maps cannot be upscaled by a whole factor to pipeline.image_size {size}")));
    }
    let timesteps = labels.1.timesteps.ok_or_else(|| invalid("pipeline.labels.model", format!("{luri}: model.json has no timesteps (not a label model?)")))?;
    ls.check_sampler(timesteps).map_err(|m| invalid("pipeline.labels", m))?;
    if ls.upscale == LabelUpscale::Smooth && labels.1.encoding.as_deref() != Some("onehot") {
        let enc = labels.1.encoding.as_deref().unwrap_or("no encoding in model.json");
        return Err(invalid(
            "pipeline.labels.upscale",
            format!("\"smooth\" upscales class probabilities and needs a onehot label model; {luri} is {enc} (gray values interpolate through the classes between two neighbours: use upscale = \"nearest\")"),
        ));
    }
    Ok(())
}

/// Checks a spec's models and pins their digests (and the default DDIM step count, when
/// `steps` is absent) into it (for `ddpm-spade`; other kinds pass through), reading each `model.json` and streaming each weights file through
/// sha256: nothing is loaded and no weights are held in memory. Run before a spec is
/// submitted or a static shard runs, so a missing, changed, truncated or mismatched model
/// is an error before any job is claimed, and every worker then verifies the same bytes.
/// (Loading the weights into the architecture is the worker's: it happens where the model
/// code lives.)
pub async fn prepare(spec: &mut RunSpec) -> Result<()> {
    if spec.pipeline.kind != PipelineKind::DdpmSpade {
        return Ok(());
    }
    let (Some(ls), Some(is)) = (&spec.pipeline.labels, &spec.pipeline.images) else {
        return Err(Error::Invalid { origin: "run spec".into(), key: "pipeline".into(), message: "pipeline.labels and pipeline.images are required for ddpm-spade".into() });
    };
    let within = |key: &'static str, model: String| move |e: Error| Error::Invalid { origin: "run spec".into(), key: key.into(), message: format!("{model:?}: {e}") };
    let labels = inspect(&ls.model, ls.sha256.as_deref()).await.map_err(within("pipeline.labels.model", ls.model.clone()))?;
    let images = inspect(&is.model, is.sha256.as_deref()).await.map_err(within("pipeline.images.model", is.model.clone()))?;
    check_spec(spec, (&labels.uri, &labels.info), (&images.uri, &images.info))?;
    if let Some(l) = spec.pipeline.labels.as_mut() {
        l.sha256 = Some(labels.digest);
        // The step count too, so a run keeps the one it was submitted with when a later
        // version changes the default.
        if let (crate::spec::SamplerKind::Ddim, None, Some(t)) = (l.sampler, l.steps, labels.info.timesteps) {
            l.steps = Some(l.steps_for(t));
        }
    }
    if let Some(i) = spec.pipeline.images.as_mut() {
        i.sha256 = Some(images.digest);
    }
    Ok(())
}

/// The cache entry `dir` if it verifies against `pin`. One that is damaged (a file
/// missing from it, unparsable or not matching the pin: a crash left it so) is removed, so
/// the fetch that follows writes it afresh; one that cannot be read now (an I/O error on
/// a shared volume) is left for the others that may be reading it.
fn read_cached(uri: &str, pin: &str, dir: &Path) -> Option<Artifact> {
    enum Fault {
        Damaged,
        Unreadable,
    }
    let read = |name: &str| match std::fs::read(dir.join(name)) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Fault::Damaged),
        Err(_) => Err(Fault::Unreadable),
    };
    if !dir.exists() {
        return None;
    }
    let found = (|| {
        let model_json = read(MODEL_JSON)?;
        let info = parse_info(&model_json, "cache").map_err(|_| Fault::Damaged)?;
        let weights = read(&info.weights)?;
        let digest = digest_files(&[(MODEL_JSON, &model_json), (&info.weights, &weights)]);
        if digest != pin {
            return Err(Fault::Damaged);
        }
        Ok(Artifact { uri: uri.to_string(), info, model_json, weights, digest, from_cache: true })
    })();
    match found {
        Ok(a) => Some(a),
        Err(Fault::Damaged) => {
            tracing::warn!(dir = %dir.display(), "cached model artifact does not verify; removing it and fetching it again");
            if let Err(e) = std::fs::remove_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the damaged cache entry");
            }
            None
        }
        Err(Fault::Unreadable) => {
            tracing::warn!(dir = %dir.display(), "cannot read the cached model artifact now; fetching it without the cache");
            None
        }
    }
}

/// Writes a verified copy into `dir` via a temporary sibling (files synced), a rename and
/// a sync of the parent, so a reader never sees half a cache entry, nor a power loss
/// leaves one.
fn write_cache(dir: &Path, weights_name: &str, model_json: &[u8], weights: &[u8]) -> std::io::Result<()> {
    if dir.join(MODEL_JSON).exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&tmp)?;
    let result = (|| {
        crate::files::write_synced(&tmp.join(weights_name), weights)?;
        crate::files::write_synced(&tmp.join(MODEL_JSON), model_json)?;
        crate::files::sync_dir(&tmp)?;
        std::fs::rename(&tmp, dir)?;
        crate::files::sync_dir(parent)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if dir.join(MODEL_JSON).exists() {
            return Ok(()); // another process won the race with the same content
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn meta(weights: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "kind": "test", "size": 32, "weights": weights, "classes": ClassTable::ai_hub(), "extra": 1
        }))
        .unwrap()
    }

    fn sha(b: &[u8]) -> String {
        sha256_hex(b)
    }

    #[test]
    fn smooth_upscale_needs_a_onehot_label_model_and_kinds_must_match_their_keys() {
        let spec = |upscale: &str| {
            RunSpec::parse(
                &format!("[run]\ncount = 1\nshard_size = 1\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = 64\n[pipeline.labels]\nmodel = \"l\"\n{upscale}[pipeline.images]\nmodel = \"i\"\n"),
                "test",
            )
            .unwrap()
        };
        let info = |size: u32, encoding: Option<&str>| ArtifactInfo {
            kind: LABEL_MODEL_KIND.into(),
            size,
            classes: ClassTable::ai_hub(),
            weights: "w".into(),
            timesteps: Some(100),
            parameters: None,
            weights_sha256: None,
            encoding: encoding.map(str::to_string),
        };
        let images = ArtifactInfo { kind: IMAGE_MODEL_KIND.into(), ..info(64, None) };
        let smooth = spec("upscale = \"smooth\"\n");
        assert!(check_spec(&smooth, ("l", &info(32, Some("onehot"))), ("i", &images)).is_ok());
        let e = check_spec(&smooth, ("l", &info(32, Some("gray"))), ("i", &images)).unwrap_err().to_string();
        assert!(e.contains("pipeline.labels.upscale") && e.contains("l is gray") && e.contains("nearest"), "{e}");
        assert!(check_spec(&spec(""), ("l", &info(32, Some("gray"))), ("i", &images)).is_ok());
        // The label model given as the image model too (sizes and classes would pass).
        let e = check_spec(&spec(""), ("l", &info(32, Some("gray"))), ("l", &info(64, Some("gray")))).unwrap_err().to_string();
        assert!(e.contains("pipeline.images.model") && e.contains("\"labelgen-ddpm-labels\"") && e.contains("expected \"spade\""), "{e}");
        let e = check_spec(&spec(""), ("i", &ArtifactInfo { size: 32, ..images.clone() }), ("i", &images)).unwrap_err().to_string();
        assert!(e.contains("pipeline.labels.model") && !e.contains("SPADE") && e.contains("DDPM label model"), "{e}");
        // Nearest, the default, is left out of the spec's JSON (so digests of older specs hold).
        assert!(!serde_json::to_string(&spec("")).unwrap().contains("upscale"));
        assert!(serde_json::to_string(&smooth).unwrap().contains("\"upscale\":\"smooth\""));
    }

    #[test]
    fn digest_is_sha256sum_of_the_sorted_file_list() {
        let (a, b) = (b"{}".as_slice(), b"weights".as_slice());
        let want = hex::encode(Sha256::digest(format!("{}  model.json\n{}  weights.mpk\n", sha(a), sha(b)).as_bytes()));
        assert_eq!(digest_files(&[("weights.mpk", b), ("model.json", a)]), want);
        assert_eq!(digest_files(&[("model.json", a), ("weights.mpk", b)]), want);
        assert_ne!(digest_files(&[("model.json", a), ("weights.mpk", b"weightz")]), want);
        assert!(is_digest(&want));
        assert!(!is_digest(&want.to_uppercase()));
        assert!(!is_digest("abc"));
    }

    #[tokio::test]
    async fn fetch_checks_the_pin_and_names_missing_files() {
        let dir = std::env::temp_dir().join(format!("labelgen-artifact-test-{}", rand::random::<u64>()));
        let uri = dir.join("m").display().to_string();
        let store = Store::open(&uri).unwrap();
        let cache = dir.join("cache");

        let err = fetch(&uri, None, &cache).await.unwrap_err().to_string();
        assert!(err.contains("model.json") && err.contains("does not exist"), "{err}");

        store.put(MODEL_JSON, Bytes::from(meta("w.bin"))).await.unwrap();
        let err = fetch(&uri, None, &cache).await.unwrap_err().to_string();
        assert!(err.contains("w.bin") && err.contains("does not exist"), "{err}");

        store.put("w.bin", Bytes::from_static(b"1234")).await.unwrap();
        let a = fetch(&uri, None, &cache).await.unwrap();
        assert_eq!(a.info.size, 32);
        assert_eq!(a.info.kind, "test");
        assert_eq!(a.weights, b"1234");
        assert_eq!(a.digest, digest_files(&[(MODEL_JSON, &meta("w.bin")), ("w.bin", b"1234")]));
        assert!(fetch(&uri, Some(&a.digest), &cache).await.is_ok());

        store.put("w.bin", Bytes::from_static(b"1235")).await.unwrap();
        let err = fetch(&uri, Some(&a.digest), &cache).await.unwrap_err().to_string();
        assert!(err.contains("digest mismatch") && err.contains(&a.digest) && err.contains(&uri), "{err}");
        // Local artifacts are never cached.
        assert!(!cache.exists());

        // A weights name S3 keys would store percent-encoded: refused here too, by name.
        store.put(MODEL_JSON, Bytes::from(meta("w~ema.bin"))).await.unwrap();
        store.put("w~ema.bin", Bytes::from_static(b"1234")).await.unwrap();
        let err = fetch(&uri, None, &cache).await.unwrap_err().to_string();
        assert!(err.contains("model.json") && err.contains("weights") && err.contains("'~'"), "{err}");

        store.put(MODEL_JSON, Bytes::from_static(b"{\"kind\": 3}")).await.unwrap();
        let err = fetch(&uri, None, &cache).await.unwrap_err().to_string();
        assert!(err.contains("model.json") && err.contains("not a labelgen model.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cache_entries_verify_before_use() {
        let dir = std::env::temp_dir().join(format!("labelgen-cache-test-{}", rand::random::<u64>()));
        let json = meta("w.bin");
        let digest = digest_files(&[(MODEL_JSON, &json), ("w.bin", b"abc")]);
        write_cache(&dir.join(&digest), "w.bin", &json, b"abc").unwrap();
        let a = read_cached("s3://b/m", &digest, &dir.join(&digest)).expect("a verified cache entry");
        assert!(a.from_cache);
        assert_eq!(a.weights, b"abc");
        // A corrupted entry is not used, and is removed so it can be written afresh (the
        // write skips an entry that exists).
        std::fs::write(dir.join(&digest).join("w.bin"), b"abd").unwrap();
        assert!(read_cached("s3://b/m", &digest, &dir.join(&digest)).is_none());
        assert!(!dir.join(&digest).exists(), "the damaged entry is gone");
        write_cache(&dir.join(&digest), "w.bin", &json, b"abc").unwrap();
        assert!(read_cached("s3://b/m", &digest, &dir.join(&digest)).is_some(), "healed");
        // No temporary directories are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".tmp")).collect();
        assert!(leftovers.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A `model.json` with the fields the checks read: a label model's with timesteps,
    /// else an image model's.
    fn model_json(weights: &str, size: u32, timesteps: Option<usize>) -> Vec<u8> {
        let kind = if timesteps.is_some() { LABEL_MODEL_KIND } else { IMAGE_MODEL_KIND };
        let mut v = serde_json::json!({ "kind": kind, "size": size, "weights": weights, "classes": ClassTable::ai_hub() });
        if let Some(t) = timesteps {
            v["timesteps"] = t.into();
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn spec(labels: &str, images: &str, size: u32, sampler: &str) -> RunSpec {
        let text = format!(
            "[run]\ncount = 4\nshard_size = 2\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"ddpm-spade\"\nimage_size = {size}\n[pipeline.labels]\nmodel = \"{labels}\"\n{sampler}\n[pipeline.images]\nmodel = \"{images}\"\n"
        );
        RunSpec::parse(&text, "spec.toml").unwrap()
    }

    #[tokio::test]
    async fn inspect_streams_the_weights_and_matches_fetch() {
        let dir = std::env::temp_dir().join(format!("labelgen-inspect-test-{}", rand::random::<u64>()));
        let uri = dir.join("m").display().to_string();
        let store = Store::open(&uri).unwrap();
        store.put(MODEL_JSON, Bytes::from(model_json("w.bin", 32, Some(1000)))).await.unwrap();
        // Larger than one read chunk, so the hash and the check really stream over several.
        let weights = weights::tests::record(&[(&[750, 1000], 3_000_000), (&[4], 16)]);
        store.put("w.bin", Bytes::from(weights.clone())).await.unwrap();
        let seen = inspect(&uri, None).await.unwrap();
        let fetched = fetch(&uri, None, &dir.join("cache")).await.unwrap();
        assert_eq!(seen.digest, fetched.digest, "inspect and fetch must agree on the digest");
        assert_eq!(seen.weights_bytes, weights.len() as u64);
        assert_eq!(seen.info.timesteps, Some(1000));
        assert_eq!(seen.weights, weights::Summary { tensors: 2, parameters: 750_004 });
        assert!(inspect(&uri, Some(&seen.digest)).await.is_ok());
        let err = inspect(&uri, Some(&"0".repeat(64))).await.unwrap_err().to_string();
        assert!(err.contains("digest mismatch") && err.contains(&uri), "{err}");
        // Truncated weights are refused, naming the file, before anything is pinned.
        store.put("w.bin", Bytes::from(weights[..weights.len() - 100].to_vec())).await.unwrap();
        let err = inspect(&uri, None).await.unwrap_err().to_string();
        assert!(err.contains("w.bin") && err.contains("truncated"), "{err}");
        // So are weights of another size than model.json declares.
        store.put("w.bin", Bytes::from(weights.clone())).await.unwrap();
        let mut declared: serde_json::Value = serde_json::from_slice(&model_json("w.bin", 32, Some(1000))).unwrap();
        declared["parameters"] = 1234.into();
        store.put(MODEL_JSON, Bytes::from(serde_json::to_vec(&declared).unwrap())).await.unwrap();
        let err = inspect(&uri, None).await.unwrap_err().to_string();
        assert!(err.contains("w.bin") && err.contains("750004 parameters") && err.contains("declares 1234"), "{err}");
        declared["parameters"] = 750_004.into();
        store.put(MODEL_JSON, Bytes::from(serde_json::to_vec(&declared).unwrap())).await.unwrap();
        assert!(inspect(&uri, None).await.is_ok());
        // Weights that are not the ones model.json was written with (a save that stopped
        // between its two files): refused by both, naming the file.
        declared["weights_sha256"] = sha(&weights).into();
        store.put(MODEL_JSON, Bytes::from(serde_json::to_vec(&declared).unwrap())).await.unwrap();
        assert!(inspect(&uri, None).await.is_ok() && fetch(&uri, None, &dir.join("cache")).await.is_ok());
        declared["weights_sha256"] = sha(b"older weights").into();
        store.put(MODEL_JSON, Bytes::from(serde_json::to_vec(&declared).unwrap())).await.unwrap();
        for err in [inspect(&uri, None).await.unwrap_err().to_string(), fetch(&uri, None, &dir.join("cache")).await.unwrap_err().to_string()] {
            assert!(err.contains("w.bin") && err.contains("model.json declares") && err.contains("save stopped"), "{err}");
        }
        // Truncated weights are still named as truncated by inspect (the record check goes
        // first), whatever the sha256.
        store.put("w.bin", Bytes::from(weights[..weights.len() - 100].to_vec())).await.unwrap();
        let err = inspect(&uri, None).await.unwrap_err().to_string();
        assert!(err.contains("w.bin") && err.contains("truncated"), "{err}");
        store.put("w.bin", Bytes::from(weights.clone())).await.unwrap();
        store.delete("w.bin").await.unwrap();
        let err = inspect(&uri, None).await.unwrap_err().to_string();
        assert!(err.contains("w.bin") && err.contains("does not exist"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn prepare_checks_the_models_and_pins_their_digests() {
        let dir = std::env::temp_dir().join(format!("labelgen-prepare-test-{}", rand::random::<u64>()));
        let (l, i) = (dir.join("ddpm").display().to_string(), dir.join("spade").display().to_string());
        let (ls, is) = (Store::open(&l).unwrap(), Store::open(&i).unwrap());
        ls.put(MODEL_JSON, Bytes::from(model_json("weights.mpk", 32, Some(1000)))).await.unwrap();
        let ddpm_weights = Bytes::from(weights::tests::record(&[(&[8, 8], 256)]));
        ls.put("weights.mpk", ddpm_weights.clone()).await.unwrap();
        is.put(MODEL_JSON, Bytes::from(model_json("generator.mpk", 64, None))).await.unwrap();
        is.put("generator.mpk", Bytes::from(weights::tests::record(&[(&[3, 3], 36)]))).await.unwrap();

        let mut ok = spec(&l, &i, 64, "sampler = \"ddim\"\nsteps = 20");
        prepare(&mut ok).await.unwrap();
        let pinned = ok.pipeline.labels.as_ref().unwrap().sha256.clone().unwrap();
        assert_eq!(pinned, inspect(&l, None).await.unwrap().digest);
        assert!(ok.pipeline.images.as_ref().unwrap().sha256.as_deref().is_some_and(is_digest));
        // A spec without steps gets the default pinned, so a later default cannot change it.
        let mut bare = spec(&l, &i, 64, "sampler = \"ddim\"");
        assert_eq!(bare.pipeline.labels.as_ref().unwrap().steps, None);
        prepare(&mut bare).await.unwrap();
        assert_eq!(bare.pipeline.labels.as_ref().unwrap().steps, Some(crate::spec::DEFAULT_DDIM_STEPS));
        // A pinned spec passes again; a changed model no longer does.
        prepare(&mut ok.clone()).await.unwrap();
        ls.put("weights.mpk", Bytes::from(weights::tests::record(&[(&[8, 4], 128)]))).await.unwrap();
        let err = prepare(&mut ok.clone()).await.unwrap_err().to_string();
        assert!(err.contains("pipeline.labels.model") && err.contains("digest mismatch"), "{err}");
        ls.put("weights.mpk", ddpm_weights).await.unwrap();

        let cases = [
            (spec(&l, &i, 128, ""), vec!["pipeline.images.model", "64×64", "pipeline.image_size is 128"]),
            (spec(&l, &i, 64, "sampler = \"ddpm\"\nsteps = 50"), vec!["pipeline.labels.steps is 50", "1000 timesteps"]),
            (spec(&l, &i, 64, "steps = 2000"), vec!["pipeline.labels", "between 1 and the model's 1000"]),
            (spec(&i, &i, 64, ""), vec!["pipeline.labels.model", "kind is \"spade\"", "must be a DDPM label model"]),
            (spec(&format!("{l}/nope"), &i, 64, ""), vec!["pipeline.labels.model", "nope/model.json", "does not exist"]),
        ];
        for (mut s, want) in cases {
            let err = prepare(&mut s).await.unwrap_err().to_string();
            for w in want {
                assert!(err.contains(w), "expected {w:?} in: {err}");
            }
        }
        // Other pipelines pass through untouched.
        let mut procedural =
            RunSpec::parse("[run]\ncount = 1\nshard_size = 1\n[output]\nurl = \"memory://\"\n[pipeline]\nkind = \"procedural\"\nimage_size = 32\n", "p.toml").unwrap();
        prepare(&mut procedural).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
