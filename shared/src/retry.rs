//! The one retry policy: exponential backoff with jitter, from `backon` (already in the
//! tree through redis), for every queue round trip that is retried — the worker's claim,
//! ack and fail, its own-failure backoff, and `watch`'s polling. The jitter spreads a
//! fleet's retries, so workers that lose Redis together (a failover) do not come back in
//! step and stampede it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays from `first`, doubling up to `max`, each plus a random share of itself (so in
/// `[d, 2d)`), for at most `times` retries.
pub fn policy(first: Duration, max: Duration, times: usize) -> ExponentialBuilder {
    ExponentialBuilder::new().with_min_delay(first).with_max_delay(max).with_factor(2.0).with_max_times(times).with_jitter()
}

/// Queue writes whose result must get through (ack, recording a failure): 250 ms doubling
/// to 5 s, 20 retries (about 2–3 minutes in all).
pub fn queue_write() -> ExponentialBuilder {
    policy(Duration::from_millis(250), Duration::from_secs(5), 20)
}

/// A loop's delays: the next one after each failure, back to the first after a success;
/// `None` once `times` retries in a row failed.
pub struct Delays {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
}

impl Delays {
    pub fn new(builder: ExponentialBuilder) -> Delays {
        Delays { builder, current: builder.build() }
    }

    /// The delay before the next retry; `None` when the retries are used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.current.next()
    }

    /// Starts again from the first delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

/// Runs a queue call, retrying it on Redis errors (a restart, a failover, a dropped
/// connection) with [`queue_write`]'s delays; other errors return at once. `what` names the
/// call in the log.
pub async fn redis_call<T, Fut>(what: &str, f: impl FnMut() -> Fut) -> crate::Result<T>
where
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    use backon::Retryable;
    f.retry(queue_write())
        .when(|e| matches!(e, crate::Error::Redis(_)))
        .notify(|e, wait| tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "{what} failed; retrying"))
        .await
}

/// The delay after the `n`-th failure in a row (1-based) of `builder`'s sequence.
pub fn nth_delay(builder: ExponentialBuilder, n: u32) -> Duration {
    let mut it = builder.build();
    let mut d = Duration::ZERO;
    for _ in 0..n.max(1) {
        match it.next() {
            Some(next) => d = next,
            None => break,
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap_and_reset() {
        let mut d = Delays::new(policy(Duration::from_millis(100), Duration::from_millis(800), 6));
        let got: Vec<Duration> = std::iter::from_fn(|| d.next_delay()).collect();
        assert_eq!(got.len(), 6, "{got:?}");
        for (i, (g, base)) in got.iter().zip([100u64, 200, 400, 800, 800, 800]).enumerate() {
            let base = Duration::from_millis(base);
            assert!(*g >= base && *g < base * 2, "delay {i}: {g:?} not in [{base:?}, 2×)");
        }
        d.reset();
        assert!(d.next_delay().unwrap() < Duration::from_millis(200));
        // Two fleets' delays differ (jitter), so they do not retry in step.
        let a: Vec<Duration> = (0..8).map(|_| nth_delay(policy(Duration::from_secs(1), Duration::from_secs(1), 3), 2)).collect();
        assert!(a.iter().any(|x| *x != a[0]), "no jitter: {a:?}");
        assert!(nth_delay(policy(Duration::from_secs(1), Duration::from_secs(60), 3), 3) >= Duration::from_secs(4));
    }
}
