//! Time as a dependency: production reads the system clock, tests drive a manual one so that
//! hours of token lifecycle run in milliseconds and never depend on the machine's speed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

/// A future returned by [`Clock::sleep`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of the current time, shared by everything that reasons about expiry, and the way
/// that code waits (backoff, re-reads), so a simulated clock makes waiting free.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Waits `duration` of this clock's time.
    fn sleep(&self, duration: std::time::Duration) -> Sleep<'_>;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: std::time::Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Starts at the current wall-clock second, so tokens look plausible in logs.
    pub fn starting_now() -> Self {
        let now = Utc::now();
        Self::new(now - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos())))
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the time (it may go back: a test of clocks that disagree).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }

    /// Moves to `to` unless the clock is already past it (time never goes back).
    pub fn advance_to(&self, to: DateTime<Utc>) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if *now < to {
            *now = to;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Simulated waiting: the sleeper wakes at `now + duration` in simulated time, after a
    /// hundredth of it in real time (1 to 10 ms), which lets concurrent tasks and their network
    /// I/O progress in the same order they would in production. Concurrent sleepers overlap, as
    /// in real time: three tasks sleeping 1 s each move the clock 1 s, not 3.
    fn sleep(&self, duration: std::time::Duration) -> Sleep<'_> {
        let wake = self.now() + Duration::from_std(duration).unwrap_or(Duration::MAX);
        let real = (duration / 100).clamp(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(10),
        );
        Box::pin(async move {
            tokio::time::sleep(real).await;
            self.advance_to(wake);
        })
    }
}

/// The clock most code takes: cheap to clone, any implementation.
pub type SharedClock = Arc<dyn Clock>;

/// `at + by`, saturating instead of panicking on absurd durations.
pub fn later(at: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    Duration::from_std(by)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// How long from `now` until `deadline` (zero once it has passed).
pub fn remaining(now: DateTime<Utc>, deadline: DateTime<Utc>) -> std::time::Duration {
    (deadline - now).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::starting_now();
        let b = a.clone();
        let before = b.now();
        a.advance(Duration::seconds(90));
        assert_eq!(b.now() - before, Duration::seconds(90));
    }

    #[tokio::test]
    async fn manual_sleep_moves_time_instead_of_waiting() {
        let c = ManualClock::starting_now();
        let before = c.now();
        c.sleep(std::time::Duration::from_secs(3600)).await;
        assert_eq!(c.now() - before, Duration::hours(1));
    }

    #[tokio::test]
    async fn concurrent_sleepers_overlap() {
        let c = ManualClock::starting_now();
        let before = c.now();
        let one = std::time::Duration::from_secs(1);
        tokio::join!(c.sleep(one), c.sleep(one), c.sleep(one));
        assert_eq!(c.now() - before, Duration::seconds(1));
    }
}
