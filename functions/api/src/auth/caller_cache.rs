//! The callers secret as each instance sees it (a [`DocumentCache`]): read at most once per
//! `ttl`, read again soon after a credential matched nothing (a key just added), and the previous
//! list kept serving while Secrets Manager fails.

use std::sync::Arc;
use std::time::Duration;

use broker::clock::SharedClock;
use broker::document::DocumentCache;
use broker::store::SecretStore;

use super::{Caller, CallerSet, Presented, parse_callers};
use crate::error::{ApiError, ErrorCode};

pub use broker::document::MISS_RELOAD;

/// The callers secret, read at most once per `ttl` per instance.
pub struct CallerCache<S> {
    document: DocumentCache<S, CallerSet>,
    clock: SharedClock,
}

fn unavailable() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::CallersUnavailable,
        "the callers list cannot be read right now",
    )
    .with_retry_after(5)
}

impl<S: SecretStore> CallerCache<S> {
    /// A cache of secret `name`, trusted for `ttl`.
    pub fn new(store: S, name: String, ttl: Duration, clock: SharedClock) -> Self {
        let secret = name.clone();
        let parse = Box::new(move |raw: Option<&str>| match raw {
            None => {
                tracing::error!(secret = %secret, "the callers secret does not exist: every key is refused");
                CallerSet::default()
            }
            Some(raw) => parse_callers(&secret, raw),
        });
        Self {
            document: DocumentCache::new(store, name, ttl, clock.clone(), parse),
            clock,
        }
    }

    /// The current callers (read from the store when the cached copy is older than `ttl`).
    pub async fn callers(&self) -> Result<Arc<CallerSet>, ApiError> {
        self.document.get().await.map_err(|_| unavailable())
    }

    /// The caller a credential belongs to, or 401.
    pub async fn authenticate(&self, presented: &Presented) -> Result<Caller, ApiError> {
        let now = self.clock.now().timestamp();
        self.authenticate_in(&*self.callers().await?, presented, now)
            .await
    }

    /// As [`CallerCache::authenticate`], against a list the request already holds.
    pub async fn authenticate_in(
        &self,
        callers: &CallerSet,
        presented: &Presented,
        now: i64,
    ) -> Result<Caller, ApiError> {
        match callers.authenticate(presented, now) {
            Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => {
                match self
                    .document
                    .reload_after_miss()
                    .await
                    .map_err(|_| unavailable())?
                {
                    Some(newer) => newer.authenticate(presented, now),
                    None => Err(e),
                }
            }
            found => found,
        }
    }
}
