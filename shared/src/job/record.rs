//! The shard commit record (`shards/SHARD.json`) and the manifest line it carries per sample.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One sample of the dataset, as a line of `manifest.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestLine {
    pub index: u64,
    pub key: String,
    /// Path of the image relative to the run directory (`data/…/KEY.png`; for WebDataset
    /// `data/…/SHARD.tar#KEY.png`).
    pub image: String,
    /// Path of the label PNG, as for `image`.
    pub label: String,
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

/// Seconds spent per stage on a shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    pub generate: f64,
    pub encode: f64,
    pub upload: f64,
}

/// Written create-only when a shard's data is complete. Its existence is the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub run_id: String,
    pub shard: u64,
    /// The attempt (lease token) whose data is the shard's.
    pub attempt: u64,
    pub owner: String,
    /// Whether an earlier attempt at this shard had been made (failed, expired or released).
    #[serde(default)]
    pub retried: bool,
    pub spec_digest: String,
    pub format: crate::spec::OutputFormat,
    pub started_ms: u64,
    pub committed_ms: u64,
    pub stage_seconds: StageTimes,
    /// For WebDataset: the tar's path and sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<(String, String)>,
    pub samples: Vec<ManifestLine>,
}
