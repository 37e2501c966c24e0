//! The run spec: what to generate, how much, and where to put it (a TOML file).
//!
//! Parsing is two-stage: serde reads the raw TOML (unknown keys are errors), then
//! [`RunSpec::validate`] checks values. Every error names the file, the key and what was
//! expected. Credentials are never part of a spec: S3 settings come from the standard
//! `AWS_*` environment variables.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::procedural::ClassShares;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub run: RunSection,
    pub output: OutputSection,
    pub pipeline: PipelineSection,
    /// The class table; the AI Hub land-cover table when absent.
    #[serde(default = "ClassTable::ai_hub")]
    pub classes: ClassTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Number of samples in the dataset.
    pub count: u64,
    /// Samples per job (shard). The last shard may be smaller.
    pub shard_size: u64,
    /// Run seed: sample i's seed is a hash of (seed, i).
    #[serde(default)]
    pub seed: u64,
    /// Failed attempts after which a shard is dead.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Seconds a lease lasts without a heartbeat.
    #[serde(default = "defaults::lease_seconds")]
    pub lease_seconds: u64,
    /// Seconds before the first retry of a failed shard (doubles each time, at most 300).
    #[serde(default = "defaults::retry_backoff_seconds")]
    pub retry_backoff_seconds: f64,
    /// Higher runs are served first; equal priorities oldest first.
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// `s3://bucket/prefix`, `file:///abs/path`, or a path relative to the working directory.
    pub url: String,
    #[serde(default)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `KEY.png` + `KEY.label.png` per sample.
    #[default]
    Png,
    /// One tar per shard holding `KEY.png`, `KEY.label.png`, `KEY.json`.
    Webdataset,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    pub kind: PipelineKind,
    /// Side of the square output images and labels, in pixels.
    pub image_size: u32,
    /// Samples generated per batch inside a job.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Settings of the `procedural` pipeline.
    #[serde(default)]
    pub procedural: ProceduralSection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PipelineKind {
    /// Procedural land-cover tiles (no models): for smoke tests and demos.
    Procedural,
    /// DDPM label maps → cleanup → SPADE images.
    DdpmSpade,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProceduralSection {
    /// Relative pixel shares of the 8 classes, in class-table order (building, parking lot,
    /// road, street trees, paddy, dry field, forest, bare land); the generator's defaults
    /// when absent. Checked when read.
    #[serde(default)]
    pub shares: Option<ClassShares>,
}

mod defaults {
    pub fn max_attempts() -> u32 {
        3
    }
    pub fn lease_seconds() -> u64 {
        60
    }
    pub fn retry_backoff_seconds() -> f64 {
        2.0
    }
    pub fn batch_size() -> usize {
        8
    }
}

impl RunSpec {
    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<RunSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RunSpec::parse(&text, &path.display().to_string())
    }

    /// Parses and validates spec text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<RunSpec> {
        let spec: RunSpec = toml::from_str(text).map_err(|e| Error::Invalid {
            origin: origin.to_string(),
            key: toml_error_key(&e),
            message: e.message().to_string() + &toml_error_location(text, &e),
        })?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Parses the canonical JSON form stored in the queue.
    pub fn from_json(json: &str, origin: &str) -> Result<RunSpec> {
        let spec: RunSpec = serde_json::from_str(json).map_err(|e| Error::format(origin, format!("run spec JSON: {e}")))?;
        spec.validate(origin)?;
        Ok(spec)
    }

    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |key: &str, message: String| Err(Error::Invalid { origin: origin.to_string(), key: key.to_string(), message });
        if self.run.count == 0 {
            return bad("run.count", "expected a positive number of samples, found 0".into());
        }
        if self.run.count > 100_000_000 {
            return bad("run.count", format!("expected at most 100000000 samples (8-digit keys), found {}", self.run.count));
        }
        if self.run.shard_size == 0 || self.run.shard_size > 100_000 {
            return bad("run.shard_size", format!("expected 1 to 100000 samples per shard, found {}", self.run.shard_size));
        }
        if self.run.max_attempts == 0 {
            return bad("run.max_attempts", "expected at least 1 attempt, found 0".into());
        }
        if self.run.lease_seconds == 0 {
            return bad("run.lease_seconds", "expected a positive number of seconds, found 0".into());
        }
        if !(self.run.retry_backoff_seconds >= 0.0 && self.run.retry_backoff_seconds <= 3600.0) {
            return bad("run.retry_backoff_seconds", format!("expected 0 to 3600 seconds, found {}", self.run.retry_backoff_seconds));
        }
        if let Err(msg) = crate::storage::StoreUrl::parse(&self.output.url) {
            return bad("output.url", msg);
        }
        if !(8..=8192).contains(&self.pipeline.image_size) {
            return bad("pipeline.image_size", format!("expected 8 to 8192 pixels, found {}", self.pipeline.image_size));
        }
        if self.pipeline.batch_size == 0 || self.pipeline.batch_size > 4096 {
            return bad("pipeline.batch_size", format!("expected 1 to 4096, found {}", self.pipeline.batch_size));
        }
        self.classes.validate(origin)?;
        match self.pipeline.kind {
            PipelineKind::Procedural => {
                if self.classes != ClassTable::ai_hub() {
                    return bad("classes", "the procedural pipeline draws the AI Hub land-cover classes; remove the [classes] table".into());
                }
            }
            PipelineKind::DdpmSpade => {
                return bad(
                    "pipeline.kind",
                    "\"ddpm-spade\" is not available in this build yet (the DDPM and SPADE models are still being built); use \"procedural\"".into(),
                );
            }
        }
        Ok(())
    }

    /// Number of shards (jobs).
    pub fn shards(&self) -> u64 {
        self.run.count.div_ceil(self.run.shard_size)
    }

    /// Sample indices of a shard.
    pub fn shard_range(&self, shard: u64) -> std::ops::Range<u64> {
        let start = shard * self.run.shard_size;
        start..(start + self.run.shard_size).min(self.run.count)
    }

    /// The canonical JSON form (what the queue stores and the digest covers).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serialises")
    }

    /// sha256 of the canonical JSON, hex.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }
}

fn toml_error_key(e: &toml::de::Error) -> String {
    // toml reports the offending key in its message for unknown fields and types; the
    // location comes from the span. Keep the key slot short and let the message speak.
    let msg = e.message();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        return rest.split('`').next().unwrap_or("?").to_string();
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        return rest.split('`').next().unwrap_or("?").to_string();
    }
    "(syntax)".to_string()
}

fn toml_error_location(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[run]
count = 10
shard_size = 4
seed = 7
[output]
url = "out/x"
[pipeline]
kind = "procedural"
image_size = 64
"#;

    #[test]
    fn parses_defaults_and_counts_shards() {
        let s = RunSpec::parse(GOOD, "good.toml").unwrap();
        assert_eq!(s.shards(), 3);
        assert_eq!(s.shard_range(2), 8..10);
        assert_eq!(s.output.format, OutputFormat::Png);
        assert_eq!(s.classes, ClassTable::ai_hub());
        assert_eq!(s.digest().len(), 64);
        let back = RunSpec::from_json(&s.canonical_json(), "json").unwrap();
        assert_eq!(back, s);
        assert_eq!(back.digest(), s.digest());
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        let e = RunSpec::parse(&GOOD.replace("count = 10", "count = 0"), "a.toml").unwrap_err().to_string();
        assert!(e.starts_with("a.toml: run.count: expected a positive"), "{e}");
        let e = RunSpec::parse(&GOOD.replace("count = 10", "cout = 10"), "b.toml").unwrap_err().to_string();
        assert!(e.contains("b.toml") && e.contains("cout"), "{e}");
        let e = RunSpec::parse(&GOOD.replace("\"out/x\"", "\"ftp://x\""), "c.toml").unwrap_err().to_string();
        assert!(e.contains("c.toml: output.url") && e.contains("ftp"), "{e}");
        let e = RunSpec::parse(&GOOD.replace("image_size = 64", "image_size = \"big\""), "d.toml").unwrap_err().to_string();
        assert!(e.contains("d.toml") && e.contains("line 10"), "{e}");
    }
}
