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
//! dataset/shards.jsonl          WebDataset runs: one line per published tar (path, samples,
//!                               bytes, sha256, side table), by finalize
//! manifest.jsonl                one line per sample, written by finalize
//! contact_sheet.png             the first samples as (label | image) pairs, by finalize
//! manifest.json                 summary, written last
//! finalize.lock                 while a finalize runs: the one finalize of the run at a time
//! ```

pub const RUN_JSON: &str = "run.json";
pub const MANIFEST_JSONL: &str = "manifest.jsonl";
pub const MANIFEST_JSON: &str = "manifest.json";
pub const SHARDS_JSONL: &str = "dataset/shards.jsonl";
pub const CONTACT_SHEET: &str = "contact_sheet.png";
pub const SHARDS_DIR: &str = "shards";
pub const DATA_DIR: &str = "data";
pub const DATASET_DIR: &str = "dataset";

/// Sample key: the index, zero-padded to 8 digits (9 from 100,000,000 on: runs go up to
/// [`crate::spec::MAX_SAMPLES`]).
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

/// Splits `TAR#MEMBER` (a file inside a WebDataset tar, as `manifest.jsonl` names it) into
/// the tar's path and the member's name; `None` for a plain object path.
pub fn split_member(path: &str) -> Option<(&str, &str)> {
    path.split_once('#')
}

/// `TAR#MEMBER` for a member of `tar`.
pub fn member_path(tar: &str, member: &str) -> String {
    format!("{tar}#{member}")
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

/// Parses `dataset/000012.tar` back to 12.
pub fn shard_of_published_tar(path: &str) -> Option<u64> {
    path.strip_prefix(DATASET_DIR)?.strip_prefix('/')?.strip_suffix(".tar")?.parse().ok()
}

/// The side table of a published WebDataset shard: `dataset/SHARD.parquet`.
pub fn published_parquet(shard: u64) -> String {
    format!("{DATASET_DIR}/{}.parquet", shard_name(shard))
}

/// The brace pattern naming every published tar of a run of `shards` shards, as
/// WebDataset expands it: `dataset/{000000..000012}.tar`. Shard names have 6 digits up to
/// 999999 and more beyond, and a brace range pads every name to one width, so a run of
/// more shards gets one range per width joined by `::` (WebDataset's separator for
/// several patterns).
pub fn published_pattern(shards: u64) -> String {
    let last = shards.saturating_sub(1);
    let mut parts = Vec::new();
    let (mut lo, mut width_end) = (0u64, 999_999u64);
    while lo <= last {
        let hi = last.min(width_end);
        parts.push(format!("{DATASET_DIR}/{{{}..{}}}.tar", shard_name(lo), shard_name(hi)));
        lo = hi + 1;
        width_end = width_end.saturating_mul(10).saturating_add(9);
    }
    parts.join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        assert_eq!(record_path(12), "shards/000012.json");
        assert_eq!(shard_of_record_path(&record_path(12)), Some(12));
        assert_eq!(shard_of_published_tar(&published_tar(1_000_012)), Some(1_000_012));
        assert_eq!(shard_of_published_tar("dataset/x.tar"), None);
        assert_eq!(image_path(3, 2, 42, "png"), "data/000003/2/00000042.png");
        assert_eq!(image_path(3, 2, 42, "jpg"), "data/000003/2/00000042.jpg");
        assert_eq!(label_path(3, 2, 42), "data/000003/2/00000042.label.png");
        assert_eq!(tar_path(3, 2), "data/000003/2/000003.tar");
        assert_eq!(published_tar(3), "dataset/000003.tar");
        assert_eq!(published_pattern(13), "dataset/{000000..000012}.tar");
        assert_eq!(published_pattern(1_000_000), "dataset/{000000..999999}.tar");
        assert_eq!(published_pattern(1_000_002), "dataset/{000000..999999}.tar::dataset/{1000000..1000001}.tar");
    }
}
