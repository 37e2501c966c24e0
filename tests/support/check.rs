//! Checks of a finished run, through its output store.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};
use shared::manifest::ManifestLine;
use shared::storage::Store;

/// The manifest lines of a run (`store` rooted at the run directory), read by the one
/// reader of a run directory, `shared::manifest`.
pub async fn manifest(store: &Store) -> Vec<ManifestLine> {
    shared::manifest::read_manifest(store).await.unwrap_or_else(|e| panic!("{e}"))
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Exactly `count` lines with indices 0..count once each; every referenced object present
/// with its sha256; manifest.json agrees. Returns the lines.
pub async fn exactly_n(store: &Store, count: u64) -> Vec<ManifestLine> {
    let lines = manifest(store).await;
    assert_eq!(lines.len() as u64, count, "manifest has {} lines, expected {count}", lines.len());
    let idx: BTreeSet<u64> = lines.iter().map(|l| l.index).collect();
    assert_eq!(idx.len() as u64, count, "duplicate indices in the manifest");
    assert_eq!(idx.iter().copied().collect::<Vec<_>>(), (0..count).collect::<Vec<_>>(), "indices are not 0..{count}");
    // One pass over every object (each tar fetched once), by where each file is.
    let mut want = std::collections::HashMap::new();
    for l in &lines {
        for (path, sha) in [(&l.image, &l.image_sha256), (&l.label, &l.label_sha256)] {
            want.insert(store.describe(path), sha.clone());
        }
    }
    let paths: Vec<String> = lines.iter().flat_map(|l| [l.image.clone(), l.label.clone()]).collect();
    let mut seen = 0usize;
    shared::manifest::read_files::<shared::Error>(store, &paths, |origin, data| {
        assert_eq!(Some(&sha(&data)), want.get(origin), "sha256 of {origin} does not match the manifest");
        seen += 1;
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen, paths.len(), "files read");
    let summary: serde_json::Value = serde_json::from_slice(&store.get("manifest.json").await.unwrap().expect("manifest.json")).unwrap();
    assert_eq!(summary["count"].as_u64(), Some(count));
    lines
}

/// No object under `data/` or `dataset/` that the manifest does not name (no losing
/// attempt, no zombie's late write, no stray published tar): every object is a listed
/// image, label or WebDataset tar, a listed tar's side table, or the list of tars.
pub async fn no_orphans(store: &Store) {
    let lines = manifest(store).await;
    let mut named = BTreeSet::new();
    for l in &lines {
        for p in [&l.image, &l.label] {
            let file = shared::manifest::layout::split_member(p).map_or(p.as_str(), |(tar, _)| tar);
            named.insert(file.to_string());
            // A published tar's side table.
            if let Some(stem) = file.strip_prefix("dataset/").and_then(|f| f.strip_suffix(".tar")) {
                named.insert(format!("dataset/{stem}.parquet"));
            }
        }
    }
    // A WebDataset run's list of its tars.
    if store.exists(shared::manifest::layout::SHARDS_JSONL).await.unwrap() {
        named.insert(shared::manifest::layout::SHARDS_JSONL.to_string());
    }
    let mut listed = store.list("data").await.unwrap();
    listed.extend(store.list("dataset").await.unwrap());
    let orphans: Vec<String> = listed.into_iter().filter(|p| !named.contains(p)).collect();
    assert!(orphans.is_empty(), "{} objects under data/ or dataset/ are not in the manifest: {:?}", orphans.len(), &orphans[..orphans.len().min(10)]);
}

/// Reads `path`, or a member of a tar for `path.tar#member`.
pub async fn read_member(store: &Store, path: &str) -> Vec<u8> {
    let mut out = None;
    shared::manifest::read_files::<shared::Error>(store, &[path.to_string()], |_, bytes| {
        out = Some(bytes);
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    out.unwrap_or_else(|| panic!("{path} was not read"))
}

/// Image and label bytes of every sample, by index (to compare two runs).
pub async fn sample_bytes(store: &Store, lines: &[ManifestLine]) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for l in lines {
        out.push((l.index, read_member(store, &l.image).await, read_member(store, &l.label).await));
    }
    out.sort_by_key(|x| x.0);
    out
}
