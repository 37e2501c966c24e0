//! Object layout of a run, relative to `OUTPUT/RUN/`:
//!
//! ```text
//! run.json                      the run spec, its digest, created-at
//! data/SHARD/ATTEMPT/...        samples of one attempt (ATTEMPT: its random id): PNG pairs,
//!                               or one WebDataset tar (while a tar over one part is being
//!                               uploaded, SHARD.tar.upload holds its multipart upload id)
//! shards/SHARD.json             commit record (create-only): the winning attempt
//! dataset/SHARD.tar             WebDataset runs, after finalize: the winning attempt's tar,
//!                               moved here (server-side copy, then the original removed),
//!                               so a loader can point at `dataset/{000000..N}.tar`
//! dataset/SHARD.parquet         beside each tar: its samples as a table, by finalize
//! manifest.jsonl                one line per sample, written by finalize
//! contact_sheet.png             the first samples as (label | image) pairs, by finalize
//! manifest.json                 summary, written last
//! ```

pub const RUN_JSON: &str = "run.json";
pub const MANIFEST_JSONL: &str = "manifest.jsonl";
pub const MANIFEST_JSON: &str = "manifest.json";
pub const CONTACT_SHEET: &str = "contact_sheet.png";
pub const SHARDS_DIR: &str = "shards";
pub const DATA_DIR: &str = "data";
pub const DATASET_DIR: &str = "dataset";

/// Sample key: the index, zero-padded to 8 digits.
pub fn key(index: u64) -> String {
    format!("{index:08}")
}

pub fn shard_name(shard: u64) -> String {
    format!("{shard:06}")
}

pub fn record_path(shard: u64) -> String {
    format!("{SHARDS_DIR}/{}.json", shard_name(shard))
}

/// Parses `shards/000012.json` back to 12.
pub fn shard_of_record_path(path: &str) -> Option<u64> {
    path.strip_prefix("shards/")?.strip_suffix(".json")?.parse().ok()
}

pub fn shard_data_dir(shard: u64) -> String {
    format!("{DATA_DIR}/{}", shard_name(shard))
}

pub fn attempt_dir(shard: u64, attempt: u64) -> String {
    format!("{}/{attempt}", shard_data_dir(shard))
}

/// A sample's image file name: `KEY.EXT`, EXT from `output.image_format` (`png`, `jpg`,
/// `webp`); also its WebDataset member name.
pub fn image_name(index: u64, ext: &str) -> String {
    format!("{}.{ext}", key(index))
}

/// A sample's label file name, `KEY.label.png` (labels are always PNG).
pub fn label_name(index: u64) -> String {
    format!("{}.label.png", key(index))
}

pub fn image_path(shard: u64, attempt: u64, index: u64, ext: &str) -> String {
    format!("{}/{}", attempt_dir(shard, attempt), image_name(index, ext))
}

pub fn label_path(shard: u64, attempt: u64, index: u64) -> String {
    format!("{}/{}", attempt_dir(shard, attempt), label_name(index))
}

pub fn tar_path(shard: u64, attempt: u64) -> String {
    format!("{}/{}.tar", attempt_dir(shard, attempt), shard_name(shard))
}

/// Where finalize publishes a WebDataset shard: `dataset/SHARD.tar`. Only finalize writes
/// under `dataset/` (workers write their own attempt directories), so no late writer can
/// replace a published tar.
pub fn published_tar(shard: u64) -> String {
    format!("{DATASET_DIR}/{}.tar", shard_name(shard))
}

/// The side table of a published WebDataset shard: `dataset/SHARD.parquet`.
pub fn published_parquet(shard: u64) -> String {
    format!("{DATASET_DIR}/{}.parquet", shard_name(shard))
}

/// The brace pattern naming every published tar of a run of `shards` shards, as
/// WebDataset and `datasets` expand it: `dataset/{000000..000012}.tar`.
pub fn published_pattern(shards: u64) -> String {
    format!("{DATASET_DIR}/{{{}..{}}}.tar", shard_name(0), shard_name(shards.saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        assert_eq!(record_path(12), "shards/000012.json");
        assert_eq!(shard_of_record_path(&record_path(12)), Some(12));
        assert_eq!(image_path(3, 2, 42, "png"), "data/000003/2/00000042.png");
        assert_eq!(image_path(3, 2, 42, "jpg"), "data/000003/2/00000042.jpg");
        assert_eq!(label_path(3, 2, 42), "data/000003/2/00000042.label.png");
        assert_eq!(tar_path(3, 2), "data/000003/2/000003.tar");
        assert_eq!(published_tar(3), "dataset/000003.tar");
        assert_eq!(published_pattern(13), "dataset/{000000..000012}.tar");
    }
}
