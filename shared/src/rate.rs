//! Request rates on the injectable clock: a sliding one-second window that says whether one more
//! request fits. The Secrets Manager model enforces AWS's per-region quotas with it, and the
//! refresher paces itself with it ([`Pacer`]), so both run on simulated time in tests.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::{SharedClock, later};

/// At most `limit` events in any `period`.
#[derive(Debug)]
pub struct Window {
    limit: u32,
    period: chrono::Duration,
    events: Mutex<VecDeque<DateTime<Utc>>>,
}

impl Window {
    /// `limit` events per `period`.
    pub fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit,
            period: chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX),
            events: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes a place at `now` if one is free; otherwise how long until one is.
    pub fn take(&self, now: DateTime<Utc>) -> Result<(), Duration> {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        while events.front().is_some_and(|t| now - *t >= self.period) {
            events.pop_front();
        }
        if events.len() < self.limit as usize {
            events.push_back(now);
            return Ok(());
        }
        let oldest = events.front().copied().unwrap_or(now);
        Err((oldest + self.period - now)
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_millis(1)))
    }
}

/// A shared budget of requests per second that callers wait for, on the clock.
#[derive(Debug)]
pub struct Pacer {
    window: Window,
    clock: SharedClock,
}

/// The deadline came before a place in the budget did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no place in the request budget before the deadline")]
pub struct NoPlace;

impl Pacer {
    /// At most `per_second` requests in any second.
    pub fn per_second(per_second: u32, clock: SharedClock) -> Self {
        Self::new(per_second, Duration::from_secs(1), clock)
    }

    /// At most `limit` requests in any `period` (RingCX's limits are per minute).
    pub fn new(limit: u32, period: Duration, clock: SharedClock) -> Self {
        Self {
            window: Window::new(limit.max(1), period),
            clock,
        }
    }

    /// Waits for a place; refuses once waiting would pass `deadline`.
    pub async fn acquire(&self, deadline: DateTime<Utc>) -> Result<(), NoPlace> {
        loop {
            let now = self.clock.now();
            match self.window.take(now) {
                Ok(()) => return Ok(()),
                Err(wait) if later(now, wait) <= deadline => self.clock.sleep(wait).await,
                Err(_) => return Err(NoPlace),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn a_window_admits_its_limit_per_period() {
        let w = Window::new(3, Duration::from_secs(1));
        let t = ManualClock::starting_now().now();
        assert!(w.take(t).is_ok() && w.take(t).is_ok() && w.take(t).is_ok());
        assert_eq!(w.take(t), Err(Duration::from_secs(1)));
        let half = t + chrono::Duration::milliseconds(500);
        assert_eq!(w.take(half), Err(Duration::from_millis(500)));
        assert!(w.take(t + chrono::Duration::seconds(1)).is_ok());
    }

    #[tokio::test]
    async fn a_pacer_spreads_requests_over_time_and_stops_at_the_deadline() {
        let clock = ManualClock::starting_now();
        let shared: SharedClock = Arc::new(clock.clone());
        let pacer = Pacer::per_second(10, shared);
        let start = clock.now();
        for _ in 0..25 {
            pacer
                .acquire(start + chrono::Duration::seconds(60))
                .await
                .unwrap();
        }
        assert_eq!(
            (clock.now() - start).num_seconds(),
            2,
            "25 at 10/s take 2 s"
        );
        for _ in 0..10 {
            pacer.acquire(clock.now()).await.ok();
        }
        assert_eq!(pacer.acquire(clock.now()).await, Err(NoPlace));
    }
}
