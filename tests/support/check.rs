//! Checks of a finished run, through its output store.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};
use shared::manifest::ManifestLine;
use shared::storage::Store;

/// The manifest lines of a run (`store` rooted at the run directory).
pub async fn manifest(store: &Store) -> Vec<ManifestLine> {
    let body = store.get("manifest.jsonl").await.unwrap().unwrap_or_else(|| panic!("no manifest.jsonl at {}", store.display()));
    body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
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
    for l in &lines {
        for (path, want) in [(&l.image, &l.image_sha256), (&l.label, &l.label_sha256)] {
            let data = read_member(store, path).await;
            assert_eq!(&sha(&data), want, "sha256 of {path} does not match the manifest");
        }
    }
    let summary: serde_json::Value = serde_json::from_slice(&store.get("manifest.json").await.unwrap().expect("manifest.json")).unwrap();
    assert_eq!(summary["count"].as_u64(), Some(count));
    lines
}

/// Reads `path`, or a member of a tar for `path.tar#member`.
pub async fn read_member(store: &Store, path: &str) -> Vec<u8> {
    match path.split_once('#') {
        None => store.get(path).await.unwrap().unwrap_or_else(|| panic!("{path} is missing")).to_vec(),
        Some((tar, member)) => {
            let data = store.get(tar).await.unwrap().unwrap_or_else(|| panic!("{tar} is missing"));
            let mut pos = 0;
            while pos + 512 <= data.len() {
                let head = &data[pos..pos + 512];
                if head.iter().all(|&b| b == 0) {
                    break;
                }
                let name = String::from_utf8_lossy(&head[..100]).trim_end_matches('\0').to_string();
                let size = usize::from_str_radix(String::from_utf8_lossy(&head[124..135]).trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap();
                if name == member {
                    return data[pos + 512..pos + 512 + size].to_vec();
                }
                pos += 512 + size.div_ceil(512) * 512;
            }
            panic!("{member} not in {tar}")
        }
    }
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
