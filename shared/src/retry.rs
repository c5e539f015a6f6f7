//! The one retry mechanism for RingCX and Secrets Manager calls: exponential backoff with jitter
//! (backon), slept on the injectable clock so simulated time drives it, a server's `Retry-After`
//! honoured, and no retry started that could not finish before the deadline. The AWS SDK's own
//! retries are off (`store::aws`), so attempts never multiply.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use chrono::{DateTime, Utc};

use crate::clock::{SharedClock, later};

/// An error that says whether another attempt can help.
pub trait Transient {
    /// A timeout, a dropped connection, a 5xx or a 429: the same call may succeed later.
    fn is_transient(&self) -> bool;

    /// How long the server asked us to wait, if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// A call the retry mechanism can repeat: every call makes a fresh future.
pub trait Attempt<T, E>: FnMut() -> <Self as Attempt<T, E>>::Future + Send {
    /// The future one attempt is.
    type Future: Future<Output = Result<T, E>> + Send;
}

impl<T, E, F, Fut> Attempt<T, E> for F
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<T, E>> + Send,
{
    type Future = Fut;
}

/// How one kind of call is retried.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The first wait; each later one doubles up to `max`. Every wait is jittered within its
    /// upper half, so instances that failed together do not retry together.
    pub first: Duration,
    /// The longest wait (a longer `Retry-After` is still honoured).
    pub max: Duration,
    /// Calls made at most; `None`: as many as fit before the deadline.
    pub attempts: Option<u32>,
    /// What one attempt may take: a retry starts only if its wait plus this ends by the deadline.
    pub attempt_time: Duration,
}

/// Calls `call` until it succeeds, fails for good, `policy.attempts` calls were made, or the next
/// attempt could not finish before `deadline`. `on_retry` sees every failure that is retried,
/// with the wait before the next attempt. A transient error returned means no attempt was left.
pub fn retry<'a, T, E, F>(
    clock: &SharedClock,
    policy: Policy,
    deadline: DateTime<Utc>,
    call: F,
    mut on_retry: impl FnMut(&E, Duration) + Send + 'a,
) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>
where
    T: Send + 'a,
    E: Transient + Send + 'a,
    F: Attempt<T, E> + 'a,
{
    // backon jitters a wait d within [d, 2d): start from half of ours, so waits fall in [d/2, d].
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.first.min(policy.max) / 2)
        .with_max_delay(policy.max / 2)
        .with_jitter();
    let backoff = match policy.attempts {
        Some(n) => backoff.with_max_times(n.saturating_sub(1) as usize),
        None => backoff.without_max_times(),
    };
    let sleeper = clock.clone();
    let timer = clock.clone();
    Box::pin(
        call.retry(backoff)
            .sleep(move |wait| {
                let clock = sleeper.clone();
                async move { clock.sleep(wait).await }
            })
            .when(E::is_transient)
            .adjust(move |e: &E, wait: Option<Duration>| {
                let wait = wait?;
                let wait = e.retry_after().map_or(wait, |asked| asked.max(wait));
                (later(timer.now(), wait + policy.attempt_time) <= deadline).then_some(wait)
            })
            .notify(move |e: &E, wait| on_retry(e, wait)),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::clock::ManualClock;

    #[derive(Debug)]
    struct Flaky {
        transient: bool,
        retry_after: Option<Duration>,
    }

    impl Transient for Flaky {
        fn is_transient(&self) -> bool {
            self.transient
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry_after
        }
    }

    fn policy(attempts: Option<u32>) -> Policy {
        Policy {
            first: Duration::from_millis(200),
            max: Duration::from_secs(2),
            attempts,
            attempt_time: Duration::from_secs(1),
        }
    }

    /// Runs a call that fails `failures` times with `error`, then succeeds; returns the outcome,
    /// the calls made and the simulated time spent.
    async fn run(
        failures: u32,
        error: fn() -> Flaky,
        policy: Policy,
        budget: Duration,
    ) -> (Result<u32, Flaky>, u32, Duration) {
        let manual = ManualClock::starting_now();
        let clock: SharedClock = Arc::new(manual.clone());
        let start = clock.now();
        let deadline = later(start, budget);
        let calls = AtomicU32::new(0);
        let result = retry(
            &clock,
            policy,
            deadline,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n <= failures { Err(error()) } else { Ok(n) }
            },
            |_, _| {},
        )
        .await;
        let spent = (clock.now() - start).to_std().unwrap_or_default();
        (result, calls.load(Ordering::SeqCst), spent)
    }

    fn transient() -> Flaky {
        Flaky {
            transient: true,
            retry_after: None,
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_with_growing_jittered_waits() {
        let (result, calls, spent) = run(3, transient, policy(None), Duration::from_secs(60)).await;
        assert_eq!(result.ok(), Some(4));
        assert_eq!(calls, 4);
        // Waits in [100, 200] + [200, 400] + [400, 800] ms.
        assert!(spent >= Duration::from_millis(700), "{spent:?}");
        assert!(spent <= Duration::from_millis(1400), "{spent:?}");
    }

    #[tokio::test]
    async fn no_wait_is_longer_than_the_maximum_even_the_first() {
        let inverted = Policy {
            first: Duration::from_secs(10),
            max: Duration::from_secs(1),
            ..policy(None)
        };
        let (result, calls, spent) = run(1, transient, inverted, Duration::from_secs(60)).await;
        assert_eq!((result.ok(), calls), (Some(2), 2));
        assert!(spent <= Duration::from_secs(1), "{spent:?}");
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let permanent = || Flaky {
            transient: false,
            retry_after: None,
        };
        let (result, calls, spent) = run(5, permanent, policy(None), Duration::from_secs(60)).await;
        assert!(result.is_err());
        assert_eq!((calls, spent), (1, Duration::ZERO));
    }

    #[tokio::test]
    async fn attempts_are_capped() {
        let (result, calls, _) = run(5, transient, policy(Some(3)), Duration::from_secs(60)).await;
        assert!(result.is_err_and(|e| e.is_transient()));
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn no_retry_starts_that_cannot_finish_by_the_deadline() {
        // 1.25 s budget: the first wait (<= 200 ms) plus a 1 s attempt fits; after it, the second
        // (>= 200 ms, from >= 100 ms in) does not.
        let (result, calls, spent) =
            run(5, transient, policy(None), Duration::from_millis(1250)).await;
        assert!(result.is_err());
        assert_eq!(calls, 2);
        assert!(spent <= Duration::from_millis(200), "{spent:?}");
    }

    #[tokio::test]
    async fn retry_after_is_honoured_when_longer_and_counted_against_the_deadline() {
        let limited = || Flaky {
            transient: true,
            retry_after: Some(Duration::from_secs(5)),
        };
        let (result, calls, spent) = run(1, limited, policy(None), Duration::from_secs(60)).await;
        assert_eq!(result.ok(), Some(2));
        assert_eq!((calls, spent), (2, Duration::from_secs(5)));
        let (result, calls, _) = run(1, limited, policy(None), Duration::from_secs(4)).await;
        assert!(
            result.is_err(),
            "a Retry-After past the deadline ends the retries"
        );
        assert_eq!(calls, 1);
    }
}
