//! One finalize of a run at a time: `finalize.lock` in the run directory, created
//! create-only and rewritten every [`REFRESH`] while its finalize runs, removed at its end.
//!
//! Two finalizes at once (`coordinator finalize` by hand while `watch` finalizes, two
//! `watch`es) would write the same outputs, but on S3 they share the record of the
//! manifest's multipart upload: the later one aborted the earlier one's upload, and a
//! killed one could leave an upload nothing names. A second finalize now waits for the
//! first, then runs (rewriting the same outputs, from the records). A lock whose finalize
//! was killed is taken over once nobody has rewritten it for [`STALE`] of the waiter's own
//! time (no clocks of two machines are compared), or at once when the store dates it more
//! than [`STALE_BY_DATE`] ago.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::Result;
use crate::storage::{Created, Store};

/// The lock object, in the run directory.
pub const FINALIZE_LOCK: &str = "finalize.lock";
/// How often the holder rewrites the lock.
const REFRESH: Duration = Duration::from_secs(15);
/// A lock not rewritten for this long, as a waiter sees it, belongs to a finalize that
/// stopped: taken over.
const STALE: Duration = Duration::from_secs(60);
/// A lock the store dates this much before the waiter's clock is taken over at once (a
/// finalize killed long ago; clocks may differ by far less).
const STALE_BY_DATE: Duration = Duration::from_secs(600);
/// How often a waiter looks at the lock.
const POLL: Duration = Duration::from_secs(2);

/// A held lock: rewritten in the background until [`Held::release`] (or drop).
pub(super) struct Held {
    store: Store,
    refresher: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Stops rewriting the lock and removes it.
    pub(super) async fn release(self) {
        self.refresher.abort();
        if let Err(e) = self.store.delete(FINALIZE_LOCK).await {
            tracing::warn!(error = %e, "could not remove {FINALIZE_LOCK}; the next finalize takes it over after a minute");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// Takes the run's finalize lock in `store` (rooted at the run directory), waiting while
/// another finalize holds it.
pub(super) async fn acquire(store: &Store) -> Result<Held> {
    acquire_with(store, STALE).await
}

async fn acquire_with(store: &Store, stale: Duration) -> Result<Held> {
    let holder = format!("{} pid {}", std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "a host".into()), std::process::id());
    let body = move |n: u64| Bytes::from(format!("{holder}, rewrite {n}\n"));
    // What the other holder's lock said, and since when (by this process's clock).
    let mut seen: Option<(Bytes, Instant)> = None;
    loop {
        if store.put_create(FINALIZE_LOCK, body(0)).await? == Created::Created {
            break;
        }
        let Some(now) = store.get(FINALIZE_LOCK).await? else { continue };
        let dated_stale = store.age(FINALIZE_LOCK).await?.is_some_and(|age| age > STALE_BY_DATE);
        let unchanged_for = match &seen {
            Some((was, since)) if *was == now => since.elapsed(),
            _ => {
                if seen.is_none() {
                    tracing::info!(
                        lock = %store.describe(FINALIZE_LOCK),
                        held_by = %String::from_utf8_lossy(&now).trim(),
                        "another finalize of this run is running: waiting for it (its lock is taken over if it is not rewritten for {} s)",
                        stale.as_secs()
                    );
                }
                seen = Some((now.clone(), Instant::now()));
                Duration::ZERO
            }
        };
        if dated_stale || unchanged_for >= stale {
            tracing::warn!(
                lock = %store.describe(FINALIZE_LOCK),
                held_by = %String::from_utf8_lossy(&now).trim(),
                "taking over the finalize lock: its finalize stopped rewriting it (killed?)"
            );
            store.delete(FINALIZE_LOCK).await?;
            seen = None;
            continue;
        }
        tokio::time::sleep(POLL).await;
    }
    let refresher = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 1.. {
                tokio::time::sleep(REFRESH).await;
                if let Err(e) = store.put(FINALIZE_LOCK, body(n)).await {
                    tracing::warn!(error = %e, "could not rewrite {FINALIZE_LOCK}; a second finalize may take it over after a minute");
                }
            }
        })
    };
    Ok(Held { store: store.clone(), refresher })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second finalize waits for the first's lock and takes it once released; a lock
    /// nobody rewrites is taken over; the holder's lock goes with its release.
    #[tokio::test]
    async fn finalizes_take_the_lock_in_turn() {
        let store = Store::memory().child(&format!("lock-{}", rand::random::<u64>()));
        let first = acquire(&store).await.unwrap();
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { acquire(&store).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "the second waits while the first holds the lock");
        first.release().await;
        let second = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("taken once released").unwrap();
        assert!(store.exists(FINALIZE_LOCK).await.unwrap());
        second.release().await;
        assert!(!store.exists(FINALIZE_LOCK).await.unwrap());

        // A killed holder's lock (nobody rewrites it) is taken over.
        store.put(FINALIZE_LOCK, Bytes::from_static(b"a host pid 1, rewrite 3\n")).await.unwrap();
        let t0 = Instant::now();
        let taken = tokio::time::timeout(Duration::from_secs(20), acquire_with(&store, Duration::from_millis(500))).await.expect("taken over").unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(500));
        assert_ne!(store.get(FINALIZE_LOCK).await.unwrap().unwrap(), Bytes::from_static(b"a host pid 1, rewrite 3\n"));
        taken.release().await;
    }
}
