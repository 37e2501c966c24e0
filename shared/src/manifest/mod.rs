//! A run's files: where each object lives, the commit record of a shard, the manifest
//! line of a sample, and reading them back. The one reader of a run directory: the job
//! runner writes through it, finalize, the contact sheet, evaluation and the tests read
//! through it.
//!
//! # Layout
//! - `layout.rs` — the path of every object of a run (one place builds every path).
//! - `record.rs` — [`CommitRecord`] (`shards/SHARD.json`), [`ManifestLine`] (a line of
//!   `manifest.jsonl`), reading, listing and counting commit records (streamed).
//! - `parquet.rs` — `dataset/SHARD.parquet`, a WebDataset shard's samples as a table
//!   (written, and read back by verify).
//! - `read.rs` — reading `manifest.jsonl` and the files it names (plain objects and
//!   `SHARD.tar#MEMBER` members, each tar fetched once).

pub mod layout;
mod parquet;
mod read;
mod record;

pub use parquet::{shard_table, table_rows, TableRow};
pub use read::{read_files, read_manifest, JsonLines, MANIFEST_LINE};
pub use record::{committed_shards, committed_stream, count_committed, existing_record, read_records, uncommitted_shards, CommitRecord, CommittedCount, ManifestLine, StageTimes};
