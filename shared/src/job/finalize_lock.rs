//! One finalize of a run at a time: `finalize.lock` in the run directory, created
//! create-only and rewritten every 15 s while its finalize runs, removed at its end.
//!
//! Two finalizes at once (`coordinator finalize` by hand while `watch` finalizes, two
//! `watch`es) would write the same outputs, but on S3 they share the record of the
//! manifest's multipart upload: the later one aborted the earlier one's upload, and a
//! killed one could leave an upload nothing names.
//!
//! A second finalize waits for the first, then runs (rewriting the same outputs, from the
//! records). A lock whose finalize was killed is taken over once nobody has rewritten it
//! for a minute of the waiter's own time (no clocks of two machines are compared), or at
//! once when the store dates it more than [`STALE_BY_DATE`] ago. Where the store replaces
//! conditionally (S3 `If-Match`, memory), a takeover and each rewrite replace only the
//! version read or last written: of two waiters that judge one lock stale, one takes it;
//! a holder that stalled past a minute finds its lock taken at its next rewrite and its
//! finalize stops before completing the manifest or writing `manifest.json`
//! ([`Held::lost`]). Where it does not (a local directory), a takeover removes the lock
//! and creates its own: two waiters within a round trip of each other can both proceed.
//! A clock over 10 minutes ahead of the store's takes a live lock over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::Result;
use crate::storage::{Created, Store, Swapped};

/// The lock object, in the run directory.
pub const FINALIZE_LOCK: &str = "finalize.lock";

/// How a lock is kept and waited for.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// How often the holder rewrites the lock.
    refresh: Duration,
    /// A lock not rewritten for this long, as a waiter sees it, belongs to a finalize
    /// that stopped: taken over.
    stale: Duration,
    /// How often a waiter looks at the lock.
    poll: Duration,
}

const TIMING: Timing = Timing { refresh: Duration::from_secs(15), stale: Duration::from_secs(60), poll: Duration::from_secs(2) };
/// A lock the store dates this much before the waiter's clock is taken over at once (a
/// finalize killed long ago; clocks may differ by far less).
const STALE_BY_DATE: Duration = Duration::from_secs(600);

/// A held lock, rewritten in the background until [`Held::release`]. Dropped without a
/// release (the finalize cancelled), it stops being rewritten and stays: the next
/// finalize takes it over after [`Timing::stale`].
pub(super) struct Held {
    store: Store,
    /// The start of every body this holder writes.
    mine: String,
    stop: Arc<tokio::sync::Notify>,
    refresher: Option<tokio::task::JoinHandle<()>>,
    /// When the last rewrite was confirmed by the store's answer; `None` once a rewrite
    /// found the lock taken over.
    confirmed: Arc<std::sync::Mutex<Option<Instant>>>,
    /// How long the lock may go unconfirmed before a waiter could judge it stale.
    margin: Duration,
}

impl Held {
    /// Whether this finalize may have lost its lock: another took it over (this one
    /// stalled past a minute), or no rewrite has been confirmed for long enough that a
    /// waiter could take it over (storage unreachable). What is left of this finalize is
    /// then another's to write.
    pub(super) fn lost(&self) -> bool {
        self.confirmed.lock().unwrap().is_none_or(|at| at.elapsed() > self.margin)
    }

    /// Stops rewriting the lock (waiting for a rewrite under way) and removes it, if it
    /// is still this holder's.
    pub(super) async fn release(mut self) {
        self.stop.notify_one();
        if let Some(task) = self.refresher.take() {
            let _ = task.await;
        }
        match self.store.get(FINALIZE_LOCK).await {
            Ok(Some(body)) if body.starts_with(self.mine.as_bytes()) => {
                if let Err(e) = self.store.delete(FINALIZE_LOCK).await {
                    tracing::warn!(error = %e, "could not remove {FINALIZE_LOCK}; the next finalize takes it over after a minute");
                }
            }
            Ok(Some(_)) => tracing::warn!("{FINALIZE_LOCK} was taken over while this finalize ran (it stalled past a minute?): left to its new holder"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not read {FINALIZE_LOCK} to remove it; the next finalize takes it over after a minute"),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(task) = &self.refresher {
            task.abort();
        }
    }
}

/// Takes the run's finalize lock in `store` (rooted at the run directory), waiting while
/// another finalize holds it.
pub(super) async fn acquire(store: &Store) -> Result<Held> {
    acquire_with(store, TIMING).await
}

async fn acquire_with(store: &Store, timing: Timing) -> Result<Held> {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "a host".into());
    let mine = format!("{host} pid {} token {:016x}", std::process::id(), rand::random::<u64>());
    let body = {
        let mine = mine.clone();
        move |n: u64| Bytes::from(format!("{mine}, rewrite {n}\n"))
    };
    // What the other holder's lock said, and since when (by this process's clock).
    let mut seen: Option<(Bytes, Instant)> = None;
    loop {
        if store.put_create(FINALIZE_LOCK, body(0)).await? == Created::Created {
            break;
        }
        let Some((now, tag)) = store.get_versioned(FINALIZE_LOCK).await? else { continue };
        // This holder's own: the create (or a takeover) landed and its answer was lost
        // (the client's retry then found the lock there).
        if now.starts_with(mine.as_bytes()) {
            break;
        }
        let dated_stale = store.age(FINALIZE_LOCK).await?.is_some_and(|age| age > STALE_BY_DATE);
        let unchanged_for = match &seen {
            Some((was, since)) if *was == now => since.elapsed(),
            _ => {
                if seen.is_none() {
                    tracing::info!(
                        lock = %store.describe(FINALIZE_LOCK),
                        held_by = %String::from_utf8_lossy(&now).trim(),
                        "another finalize of this run is running: waiting for it (its lock is taken over if it is not rewritten for {} s)",
                        timing.stale.as_secs()
                    );
                }
                seen = Some((now.clone(), Instant::now()));
                Duration::ZERO
            }
        };
        if dated_stale || unchanged_for >= timing.stale {
            seen = None;
            let warn = || {
                tracing::warn!(
                    lock = %store.describe(FINALIZE_LOCK),
                    held_by = %String::from_utf8_lossy(&now).trim(),
                    "taking over the finalize lock: its finalize stopped rewriting it (killed?)"
                )
            };
            // Replace exactly the version judged stale: of two waiters, one does.
            let swapped = match &tag {
                Some(tag) => store.put_if_version(FINALIZE_LOCK, body(0), tag).await?,
                None => Swapped::Unsupported,
            };
            match swapped {
                Swapped::Done(_) => {
                    warn();
                    break;
                }
                // Another waiter took it, its holder rewrote it, or it is gone: look again
                // after a poll.
                Swapped::Changed if store.get(FINALIZE_LOCK).await?.as_ref() != Some(&now) => {
                    tokio::time::sleep(timing.poll).await;
                    continue;
                }
                // Refused although the lock is as read (a proxy that weakens ETags): as if
                // the store had no conditional replace.
                Swapped::Changed | Swapped::Unsupported => {
                    // Only the lock judged stale: one another waiter took over since is left.
                    if store.get(FINALIZE_LOCK).await?.as_ref() == Some(&now) {
                        warn();
                        store.delete(FINALIZE_LOCK).await?;
                    }
                    continue;
                }
            }
        }
        tokio::time::sleep(timing.poll).await;
    }
    // The version this holder wrote, for its conditional rewrites (none: rewritten after
    // a read, where the store has no conditional replace).
    let version = match store.get_versioned(FINALIZE_LOCK).await {
        Ok(Some((b, tag))) if b.starts_with(mine.as_bytes()) => tag,
        _ => None,
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let confirmed = Arc::new(std::sync::Mutex::new(Some(Instant::now())));
    let refresher = {
        let (store, stop, mine, confirmed) = (store.clone(), stop.clone(), mine.clone(), confirmed.clone());
        tokio::spawn(async move {
            let mut version = version;
            let confirm = |since: Instant| *confirmed.lock().unwrap() = Some(since);
            let taken = || {
                tracing::warn!("{FINALIZE_LOCK} was taken over by another finalize (this one stalled past a minute?): this finalize stops before its last writes");
                *confirmed.lock().unwrap() = None;
            };
            for n in 1.. {
                tokio::select! {
                    _ = tokio::time::sleep(timing.refresh) => {}
                    _ = stop.notified() => return,
                }
                // A waiter times staleness from when it last saw the lock change: at the
                // latest, when this rewrite was sent.
                let sent = Instant::now();
                if let Some(tag) = &version {
                    match store.put_if_version(FINALIZE_LOCK, body(n), tag).await {
                        Ok(Swapped::Done(next)) => {
                            version = next;
                            confirm(sent);
                            continue;
                        }
                        // Another's now, or this holder's own rewrite whose answer was lost
                        // (or, still its previous body, a store whose conditional replace
                        // refuses what it should take: rewritten unconditionally from here).
                        Ok(Swapped::Changed) => match store.get_versioned(FINALIZE_LOCK).await {
                            Ok(Some((b, tag))) if b == body(n) => {
                                version = tag;
                                confirm(sent);
                                continue;
                            }
                            Ok(Some((b, _))) if b.starts_with(mine.as_bytes()) => version = None,
                            Ok(_) => return taken(),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not read {FINALIZE_LOCK}; trying again");
                                continue;
                            }
                        },
                        Ok(Swapped::Unsupported) => version = None,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not rewrite {FINALIZE_LOCK}; a second finalize may take it over after a minute");
                            continue;
                        }
                    }
                }
                // No conditional replace here: rewritten only while a read finds it this
                // holder's.
                match store.get(FINALIZE_LOCK).await {
                    Ok(Some(b)) if b.starts_with(mine.as_bytes()) => {}
                    Ok(_) => return taken(),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read {FINALIZE_LOCK}; trying again");
                        continue;
                    }
                }
                match store.put(FINALIZE_LOCK, body(n)).await {
                    Ok(()) => confirm(sent),
                    Err(e) => tracing::warn!(error = %e, "could not rewrite {FINALIZE_LOCK}; a second finalize may take it over after a minute"),
                }
            }
        })
    };
    // Unconfirmed for longer than this, a waiter may have judged the lock stale.
    let margin = timing.stale.saturating_sub(timing.refresh);
    Ok(Held { store: store.clone(), mine, stop, refresher: Some(refresher), confirmed, margin })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short enough for tests, long enough that a loaded machine's pauses (a few hundred
    /// milliseconds) do not make a live holder's lock look stale.
    const FAST: Timing = Timing { refresh: Duration::from_millis(150), stale: Duration::from_millis(1200), poll: Duration::from_millis(50) };
    /// Well past `stale`: a lock still held then is being rewritten.
    const PAST_STALE: Duration = Duration::from_millis(2500);

    /// A second finalize waits while the first's lock is rewritten (longer than `stale`),
    /// takes it once released; a lock nobody rewrites is taken over; a release removes
    /// only the holder's own lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finalizes_take_the_lock_in_turn() {
        let store = Store::memory().child(&format!("lock-{}", rand::random::<u64>()));
        let first = acquire_with(&store, FAST).await.unwrap();
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { acquire_with(&store, FAST).await.unwrap() })
        };
        tokio::time::sleep(PAST_STALE).await;
        assert!(!waiter.is_finished(), "the second waits while the first's lock is rewritten, well past `stale`");
        first.release().await;
        let second = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("taken once released").unwrap();
        assert!(store.exists(FINALIZE_LOCK).await.unwrap());
        second.release().await;
        assert!(!store.exists(FINALIZE_LOCK).await.unwrap());

        // A killed holder's lock (nobody rewrites it) is taken over.
        let killed = Bytes::from_static(b"a host pid 1 token 0, rewrite 3\n");
        store.put(FINALIZE_LOCK, killed.clone()).await.unwrap();
        let t0 = Instant::now();
        let taken = tokio::time::timeout(Duration::from_secs(20), acquire_with(&store, FAST)).await.expect("taken over").unwrap();
        assert!(t0.elapsed() >= FAST.stale);
        assert_ne!(store.get(FINALIZE_LOCK).await.unwrap().unwrap(), killed);
        // Taken over from this holder in turn (it stalled): its release leaves the lock.
        store.put(FINALIZE_LOCK, killed.clone()).await.unwrap();
        taken.release().await;
        assert_eq!(store.get(FINALIZE_LOCK).await.unwrap().unwrap(), killed, "another's lock is not removed");
    }

    /// Two waiters that judge one stale lock at the same moment: one takes it, the other
    /// waits for it (the store replaces only the version both read).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_two_waiters_on_a_stale_lock_one_takes_it() {
        for round in 0..5 {
            let store = Store::memory().child(&format!("race-{round}-{}", rand::random::<u64>()));
            store.put(FINALIZE_LOCK, Bytes::from_static(b"a host pid 1 token 0, rewrite 3\n")).await.unwrap();
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { acquire_with(&store, FAST).await.unwrap() })
                })
                .collect();
            let t0 = Instant::now();
            while !waiters.iter().any(|w| w.is_finished()) {
                assert!(t0.elapsed() < Duration::from_secs(20), "nobody took the stale lock over");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The holder rewrites its lock: the other keeps waiting, well past `stale`.
            tokio::time::sleep(PAST_STALE).await;
            let finished = waiters.iter().filter(|w| w.is_finished()).count();
            assert_eq!(finished, 1, "round {round}: both waiters took the lock");
            let (done, waiting): (Vec<_>, Vec<_>) = waiters.into_iter().partition(|w| w.is_finished());
            let first = done.into_iter().next().unwrap().await.unwrap();
            assert!(!first.lost());
            first.release().await;
            let second = tokio::time::timeout(Duration::from_secs(10), waiting.into_iter().next().unwrap()).await.expect("taken once released").unwrap();
            second.release().await;
        }
    }

    /// A holder whose rewrites go unconfirmed past `stale - refresh` counts its lock as
    /// lost: a waiter may have taken it over by then.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unconfirmed_lock_counts_as_lost() {
        let store = Store::memory().child(&format!("quiet-{}", rand::random::<u64>()));
        let held = acquire_with(&store, FAST).await.unwrap();
        // The rewrites stop (as when storage does not answer): confirmation ages.
        held.refresher.as_ref().unwrap().abort();
        assert!(!held.lost());
        tokio::time::sleep(FAST.stale).await;
        assert!(held.lost());
        held.release().await;
    }

    /// A holder whose lock another took over finds out at its next rewrite.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_finds_its_lock_taken_over() {
        let store = Store::memory().child(&format!("lost-{}", rand::random::<u64>()));
        let held = acquire_with(&store, FAST).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!held.lost(), "its own rewrites do not count as a takeover");
        let other = Bytes::from_static(b"b host pid 2 token 1, rewrite 0\n");
        store.put(FINALIZE_LOCK, other.clone()).await.unwrap();
        let t0 = Instant::now();
        // Found by its next rewrite (every 150 ms), not by its confirmation ageing (1050 ms).
        while !held.lost() {
            assert!(t0.elapsed() < Duration::from_millis(800), "the holder did not find its lock taken over at its next rewrites");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        held.release().await;
        assert_eq!(store.get(FINALIZE_LOCK).await.unwrap().unwrap(), other, "the new holder's lock stays");
    }
}
