//! The shard commit record (`shards/SHARD.json`) and the manifest line it carries per sample.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::layout;
use crate::error::{Error, Result};
use crate::storage::Store;

/// One sample of the dataset, as a line of `manifest.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestLine {
    pub index: u64,
    pub key: String,
    /// Path of the image relative to the run directory: `data/…/KEY.EXT` (EXT `png`, `jpg`
    /// or `webp`); for WebDataset `dataset/SHARD.tar#KEY.EXT` once finalized (in a commit
    /// record, the attempt's `data/…/SHARD.tar#KEY.EXT`).
    pub image: String,
    /// Path of the label PNG, as for `image`.
    pub label: String,
    /// The sample's seed, written as a decimal string: most seeds are ≥ 2^53, which JSON
    /// readers that go through doubles (pandas, pyarrow, JavaScript) would round.
    #[serde(with = "crate::seed::json_text")]
    pub seed: u64,
    pub shard: u64,
    pub width: u32,
    pub height: u32,
    /// Pixel count per class name.
    pub class_pixels: BTreeMap<String, u64>,
    pub image_sha256: String,
    pub label_sha256: String,
    /// Pipeline-specific fields.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ManifestLine {
    /// A line naming a sample's files only (seed 0, no sizes, hashes or class pixels): for
    /// tools and tests that assemble a run directory by hand.
    pub fn for_files(index: u64, key: &str, image: &str, label: &str) -> ManifestLine {
        ManifestLine {
            index,
            key: key.into(),
            image: image.into(),
            label: label.into(),
            seed: 0,
            shard: 0,
            width: 0,
            height: 0,
            class_pixels: BTreeMap::new(),
            image_sha256: String::new(),
            label_sha256: String::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// This line as one line of `manifest.jsonl` (with the newline).
    pub fn to_jsonl(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a manifest line serializes");
        s.push('\n');
        s
    }

    /// The sample's metadata as it goes beside its files (a WebDataset `KEY.json` member):
    /// the line without `image` and `label`, which name where the files are and change
    /// when finalize publishes the shard.
    pub fn sample_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).expect("a manifest line serializes");
        if let Some(m) = v.as_object_mut() {
            m.remove("image");
            m.remove("label");
        }
        serde_json::to_vec(&v).expect("a JSON value serializes")
    }

    /// This line with its files moved into `tar` (`TAR#KEY.png`, `TAR#KEY.label.png`).
    pub fn in_tar(mut self, tar: &str) -> ManifestLine {
        for p in [&mut self.image, &mut self.label] {
            if let Some((_, member)) = layout::split_member(p) {
                *p = layout::member_path(tar, member);
            }
        }
        self
    }
}

/// Seconds spent per stage on a shard, and the bytes it uploaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    pub generate: f64,
    pub encode: f64,
    pub upload: f64,
    /// Bytes of the shard's objects (image and label files, or its tar). 0 in records
    /// written before it was counted.
    #[serde(default)]
    pub bytes: u64,
}

/// Written create-only when a shard's data is complete. Its existence is the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub run_id: String,
    pub shard: u64,
    /// The winning attempt's id: a random number drawn for each attempt, naming its data
    /// directory (`data/SHARD/ATTEMPT/`). Unique even when lease tokens repeat. A string
    /// in JSON, as [`ManifestLine::seed`].
    #[serde(with = "crate::seed::json_text")]
    pub attempt: u64,
    /// The lease token the attempt held (0 for a static shard): for fencing and reports only.
    #[serde(default)]
    pub token: u64,
    pub owner: String,
    /// Whether an earlier attempt at this shard had been made (failed, expired or released).
    #[serde(default)]
    pub retried: bool,
    pub spec_digest: String,
    pub format: crate::spec::OutputFormat,
    pub started_ms: u64,
    pub committed_ms: u64,
    pub stage_seconds: StageTimes,
    /// For WebDataset: the tar's path and sha256. The path is the attempt's `data/…` tar,
    /// which finalize moves to `dataset/SHARD.tar` (so after finalize it names nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<(String, String)>,
    pub samples: Vec<ManifestLine>,
}

/// Reads and checks an existing commit record of `shard`; `None` if there is none.
pub async fn existing_record(store: &Store, run_id: &str, shard: u64) -> Result<Option<CommitRecord>> {
    let path = layout::record_path(shard);
    let Some(bytes) = store.get(&path).await? else { return Ok(None) };
    let rec: CommitRecord = serde_json::from_slice(&bytes).map_err(|e| Error::format(store.describe(&path), format!("not a commit record: {e}")))?;
    if rec.shard != shard || rec.run_id != run_id {
        return Err(Error::format(store.describe(&path), format!("commit record is for run {} shard {}", rec.run_id, rec.shard)));
    }
    Ok(Some(rec))
}

/// Shards that have a commit record, streamed from one listing of `shards/` (a page at a
/// time, in no particular order).
pub fn committed_stream(store: &Store) -> impl futures::Stream<Item = Result<u64>> + '_ {
    store.list_stream(layout::SHARDS_DIR).filter_map(|p| async move { p.map(|p| layout::shard_of_record_path(&p)).transpose() })
}

/// Shards that have a commit record, sorted: 8 bytes per committed shard (what `resume`
/// hands the queue). Counting and checking use [`count_committed`], which holds nothing.
pub async fn committed_shards(store: &Store) -> Result<Vec<u64>> {
    let mut shards: Vec<u64> = futures::TryStreamExt::try_collect(committed_stream(store)).await?;
    shards.sort_unstable();
    Ok(shards)
}

/// Committed shards of a run of `spec`'s shape, counted from one streamed listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommittedCount {
    /// Shards of `0..spec.shards()` with a commit record.
    pub shards: u64,
    /// Samples in those shards (the last shard may be short).
    pub samples: u64,
}

/// Counts the committed shards and their samples in O(1) memory, whatever the run's size.
pub async fn count_committed(store: &Store, spec: &crate::spec::RunSpec) -> Result<CommittedCount> {
    let n = spec.shards();
    let mut count = CommittedCount::default();
    let mut stream = std::pin::pin!(committed_stream(store));
    while let Some(shard) = stream.next().await {
        let shard = shard?;
        if shard < n {
            count.shards += 1;
            count.samples += spec.shard_range(shard).count() as u64;
        }
    }
    Ok(count)
}

/// How many of shards `0..n` have no commit record, and the first `limit` of them. Holds a
/// bitmap of `n` bits while it lists (n / 8 bytes: 0.5 MB for a billion samples at the
/// default shard size); only a run found incomplete needs the names.
pub async fn uncommitted_shards(store: &Store, n: u64, limit: usize) -> Result<(u64, Vec<u64>)> {
    let mut seen = vec![0u64; n.div_ceil(64) as usize];
    let mut stream = std::pin::pin!(committed_stream(store));
    while let Some(shard) = stream.next().await {
        let shard = shard?;
        if shard < n {
            seen[(shard / 64) as usize] |= 1 << (shard % 64);
        }
    }
    let mut missing = 0u64;
    let mut first = Vec::new();
    for shard in 0..n {
        if seen[(shard / 64) as usize] & (1 << (shard % 64)) == 0 {
            missing += 1;
            if first.len() < limit {
                first.push(shard);
            }
        }
    }
    Ok((missing, first))
}

/// Reads the commit records of the given shards, in order, `parallel` at a time (each is
/// held in memory until taken: a record lists its shard's samples).
pub fn read_records<'a>(store: &'a Store, run_id: &'a str, shards: impl Iterator<Item = u64> + 'a, parallel: usize) -> impl futures::Stream<Item = Result<CommitRecord>> + 'a {
    futures::stream::iter(shards)
        .map(move |s| async move {
            existing_record(store, run_id, s)
                .await?
                .ok_or_else(|| Error::Run { run: run_id.into(), message: format!("commit record of shard {s} vanished: {}", store.describe(&layout::record_path(s))) })
        })
        .buffered(parallel.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_strings_in_json_and_old_numbers_still_read() {
        let mut line = ManifestLine::for_files(42, "00000042", "data/000001/7/000001.tar#00000042.png", "data/000001/7/000001.tar#00000042.label.png");
        line.seed = u64::MAX - 1;
        let json = line.to_jsonl();
        assert!(json.contains(r#""seed":"18446744073709551614""#), "{json}");
        assert!(json.contains(r#""key":"00000042""#), "{json}");
        let back: ManifestLine = serde_json::from_str(&json).unwrap();
        assert_eq!(back, line);
        // A line written before seeds became strings.
        let old = json.replace(r#""seed":"18446744073709551614""#, r#""seed":18446744073709551614"#);
        assert_eq!(serde_json::from_str::<ManifestLine>(&old).unwrap().seed, u64::MAX - 1);
        let bad = json.replace("18446744073709551614", "12x");
        let e = serde_json::from_str::<ManifestLine>(&bad).unwrap_err().to_string();
        assert!(e.contains("12x") && e.contains("decimal string"), "{e}");
    }

    #[test]
    fn sample_json_drops_the_paths_and_in_tar_moves_them() {
        let line = ManifestLine::for_files(3, "00000003", "data/000000/9/000000.tar#00000003.png", "data/000000/9/000000.tar#00000003.label.png");
        let v: serde_json::Value = serde_json::from_slice(&line.sample_json()).unwrap();
        assert!(v.get("image").is_none() && v.get("label").is_none(), "{v}");
        assert_eq!((v["key"].as_str(), v["seed"].as_str()), (Some("00000003"), Some("0")));
        let moved = line.in_tar("dataset/000000.tar");
        assert_eq!((moved.image.as_str(), moved.label.as_str()), ("dataset/000000.tar#00000003.png", "dataset/000000.tar#00000003.label.png"));
    }
}
