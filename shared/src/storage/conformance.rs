//! Storage conformance suite: plain async functions over a [`Store`], run against memory
//! and local files in unit tests and against a real S3 server in the integration tests.

use std::sync::Arc;

use bytes::Bytes;

use super::{Created, Store};

/// Runs every check under `prefix` (so one bucket serves many runs of the suite).
pub async fn run_all(store: &Store, prefix: &str) {
    let s = store.child(prefix);
    put_get_list_delete(&s).await;
    create_only(&s).await;
    create_race(&s, 8).await;
    multipart_writer(&s).await;
    copy_and_size(&s).await;
}

/// Two writers that read one version and each replace it conditionally: one does, the
/// other is told it changed (the finalize lock's takeover). A store without a
/// conditional replace says so and changes nothing. Returns whether this store has one
/// (S3 and memory must; a local directory has not).
pub async fn conditional_replace(s: &Store) -> bool {
    use super::Swapped;
    s.put("cas/lock", Bytes::from_static(b"v1")).await.unwrap();
    let (body, tag) = s.get_versioned("cas/lock").await.unwrap().unwrap();
    assert_eq!(body, Bytes::from_static(b"v1"));
    let Some(tag) = tag else { return false };
    let (a, b) = tokio::join!(s.put_if_version("cas/lock", Bytes::from_static(b"a"), &tag), s.put_if_version("cas/lock", Bytes::from_static(b"b"), &tag));
    match (a.unwrap(), b.unwrap()) {
        (Swapped::Unsupported, Swapped::Unsupported) => {
            assert_eq!(s.get("cas/lock").await.unwrap().unwrap(), Bytes::from_static(b"v1"), "nothing replaced");
            return false;
        }
        (Swapped::Done(_), Swapped::Changed) => assert_eq!(s.get("cas/lock").await.unwrap().unwrap(), Bytes::from_static(b"a")),
        (Swapped::Changed, Swapped::Done(_)) => assert_eq!(s.get("cas/lock").await.unwrap().unwrap(), Bytes::from_static(b"b")),
        other => panic!("two conditional replaces of one version: expected one to win, got {other:?}"),
    }
    // The winner's version replaces on; a gone object is a change too.
    if let (_, Some(tag)) = s.get_versioned("cas/lock").await.unwrap().unwrap() {
        if s.put_if_version("cas/lock", Bytes::from_static(b"c"), &tag).await.unwrap() != Swapped::Unsupported {
            assert_eq!(s.get("cas/lock").await.unwrap().unwrap(), Bytes::from_static(b"c"));
            s.delete("cas/lock").await.unwrap();
            assert_eq!(s.put_if_version("cas/lock", Bytes::from_static(b"d"), &tag).await.unwrap(), Swapped::Changed);
            assert_eq!(s.get("cas/lock").await.unwrap(), None, "a conditional replace creates nothing");
        }
    }
    true
}

/// A server-side copy gives the same bytes under the new name (overwriting), leaves the
/// source, and reports a missing source; `size` is the stored length.
pub async fn copy_and_size(s: &Store) {
    s.put("cp/src", Bytes::from_static(b"published bytes")).await.unwrap();
    s.put("cp/dst/x", Bytes::from_static(b"old")).await.unwrap();
    assert!(s.copy("cp/src", "cp/dst/x").await.unwrap());
    assert_eq!(s.get("cp/dst/x").await.unwrap().unwrap(), Bytes::from_static(b"published bytes"));
    assert_eq!(s.size("cp/dst/x").await.unwrap(), Some(15));
    assert_eq!(s.size("cp/src").await.unwrap(), Some(15));
    assert!(!s.copy("cp/none", "cp/dst/y").await.unwrap(), "a missing source is reported");
    assert_eq!(s.size("cp/dst/y").await.unwrap(), None);
    assert!(s.copy("cp/src", "cp/deep/er/z").await.unwrap(), "copies create the directories they need");
}

pub async fn put_get_list_delete(s: &Store) {
    assert_eq!(s.get("a/missing").await.unwrap(), None);
    assert!(!s.exists("a/x").await.unwrap());
    s.put("a/x", Bytes::from_static(b"one")).await.unwrap();
    s.put("a/b/y", Bytes::from_static(b"two")).await.unwrap();
    s.put("a/x", Bytes::from_static(b"three")).await.unwrap();
    assert_eq!(s.get("a/x").await.unwrap().unwrap(), Bytes::from_static(b"three"));
    assert!(s.exists("a/b/y").await.unwrap());
    assert_eq!(s.list("a").await.unwrap(), vec!["a/b/y".to_string(), "a/x".to_string()]);
    s.delete("a/x").await.unwrap();
    s.delete("a/x").await.unwrap(); // deleting a missing object is fine
    assert_eq!(s.list("a").await.unwrap(), vec!["a/b/y".to_string()]);
}

pub async fn create_only(s: &Store) {
    assert_eq!(s.put_create("c/rec", Bytes::from_static(b"first")).await.unwrap(), Created::Created);
    assert_eq!(s.put_create("c/rec", Bytes::from_static(b"second")).await.unwrap(), Created::AlreadyExists);
    assert_eq!(s.get("c/rec").await.unwrap().unwrap(), Bytes::from_static(b"first"));
}

/// `n` concurrent create-only puts of different bodies to one path: exactly one wins, and
/// the stored body is the winner's.
pub async fn create_race(s: &Store, n: usize) {
    for round in 0..3 {
        let path = format!("race/{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(n));
        let mut tasks = Vec::new();
        for i in 0..n {
            let (s, path, barrier) = (s.clone(), path.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (i, s.put_create(&path, Bytes::from(format!("writer {i}"))).await.unwrap())
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            if r == Created::Created {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} writers won the create race: {winners:?}", winners.len());
        let body = s.get(&path).await.unwrap().unwrap();
        assert_eq!(body, Bytes::from(format!("writer {}", winners[0])), "round {round}: stored body is not the winner's");
    }
}

pub async fn multipart_writer(s: &Store) {
    let recorded = s.records_uploads();
    let mut w = s.writer("m/big").await.unwrap();
    let chunk = vec![7u8; 3 << 20];
    for _ in 0..4 {
        w.write(&chunk).await.unwrap();
    }
    assert!(!s.exists("m/big").await.unwrap(), "a multipart object must not appear before finish");
    assert_eq!(s.exists("m/big.upload").await.unwrap(), recorded, "the open upload's id is recorded where the store can abort it");
    w.finish().await.unwrap();
    let got = s.get("m/big").await.unwrap().unwrap();
    assert_eq!(got.len(), 12 << 20);
    assert!(got.iter().all(|&b| b == 7));
    assert!(!s.exists("m/big.upload").await.unwrap(), "a completed upload's record is removed");

    // Under one part: a single PUT at finish, nothing before.
    let mut w = s.writer("m/small").await.unwrap();
    w.write(b"abc").await.unwrap();
    assert!(!s.exists("m/small").await.unwrap() && !s.exists("m/small.upload").await.unwrap());
    w.finish().await.unwrap();
    assert_eq!(s.get("m/small").await.unwrap().unwrap(), Bytes::from_static(b"abc"));

    // Aborted: no object, no record.
    let mut w = s.writer("m/aborted").await.unwrap();
    w.write(&vec![1u8; 9 << 20]).await.unwrap();
    w.abort().await.unwrap();
    assert!(!s.exists("m/aborted").await.unwrap() && !s.exists("m/aborted.upload").await.unwrap());

    // A writer that dies with its upload open (dropped, as a killed process would): no
    // object; the record lets the upload be aborted later, and then goes.
    let mut w = s.writer("m/killed").await.unwrap();
    w.write(&vec![2u8; 9 << 20]).await.unwrap();
    drop(w);
    assert!(!s.exists("m/killed").await.unwrap());
    if recorded {
        assert!(s.exists("m/killed.upload").await.unwrap());
        s.abort_recorded_upload("m/killed.upload").await.unwrap();
        assert!(!s.exists("m/killed.upload").await.unwrap());
        // Twice is harmless (the upload is gone, the record too).
        s.abort_recorded_upload("m/killed.upload").await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_conforms() {
        run_all(&Store::memory(), "suite").await;
        assert!(conditional_replace(&Store::memory().child("cas")).await, "memory replaces conditionally");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_store_conforms() {
        let dir = std::env::temp_dir().join(format!("labelgen-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(dir.to_str().unwrap()).unwrap();
        run_all(&store, "suite").await;
        assert!(!conditional_replace(&store).await, "a local directory has no conditional replace: the lock falls back");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
