//! The callers secret as each instance sees it: read at most once per `ttl`, read again soon after
//! a credential matched nothing (a key just added), and the previous list kept serving while
//! Secrets Manager fails.

use std::sync::Arc;
use std::time::Duration;

use broker::clock::SharedClock;
use broker::store::SecretStore;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use tokio::sync::Mutex as AsyncMutex;

use super::{Caller, CallerSet, Presented, parse_callers};
use crate::error::{ApiError, ErrorCode};

/// How old the cached callers must be before a credential that matched nothing reads them again.
pub const MISS_RELOAD: Duration = Duration::from_secs(5);

struct Loaded {
    at: DateTime<Utc>,
    callers: Arc<CallerSet>,
}

/// The callers secret, read at most once per `ttl` per instance.
pub struct CallerCache<S> {
    store: S,
    name: String,
    ttl: Duration,
    clock: SharedClock,
    loaded: std::sync::RwLock<Option<Loaded>>,
    /// When the secret was last read or tried, failures included.
    tried: std::sync::Mutex<Option<DateTime<Utc>>>,
    flight: AsyncMutex<()>,
}

impl<S: SecretStore> CallerCache<S> {
    /// A cache of secret `name`, trusted for `ttl`.
    pub fn new(store: S, name: String, ttl: Duration, clock: SharedClock) -> Self {
        Self {
            store,
            name,
            ttl,
            clock,
            loaded: std::sync::RwLock::new(None),
            tried: std::sync::Mutex::new(None),
            flight: AsyncMutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<CallerSet>> {
        let guard = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let loaded = guard.as_ref()?;
        let age = self.clock.now() - loaded.at;
        (age.to_std().unwrap_or_default() < self.ttl).then(|| loaded.callers.clone())
    }

    /// The current callers (read from the store when the cached copy is older than `ttl`).
    pub async fn callers(&self) -> Result<Arc<CallerSet>, ApiError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _flight = self.flight.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        self.load_or_stale().await
    }

    /// After a credential matched nothing: reads the secret again unless it was tried in the last
    /// [`MISS_RELOAD`], so a key added a moment ago (by `add-caller` or `connect-ringcx --rotate`)
    /// works at once, while unknown keys cannot make an instance read it more than once per interval.
    async fn reload_after_miss(&self) -> Result<Option<Arc<CallerSet>>, ApiError> {
        let _flight = self.flight.lock().await;
        if self.tried_within(MISS_RELOAD) {
            return Ok(None);
        }
        self.load_or_stale().await.map(Some)
    }

    fn tried_within(&self, window: Duration) -> bool {
        let tried = *self
            .tried
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tried.is_some_and(|t| (self.clock.now() - t).to_std().unwrap_or_default() < window)
    }

    fn stale(&self) -> Option<Arc<CallerSet>> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|l| l.callers.clone())
    }

    /// One read of the secret at most per [`MISS_RELOAD`]; when it fails, the previous list
    /// (if any) keeps serving, so an outage of Secrets Manager does not refuse known callers.
    async fn load_or_stale(&self) -> Result<Arc<CallerSet>, ApiError> {
        let unavailable = || {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::CallersUnavailable,
                "the callers list cannot be read right now",
            )
            .with_retry_after(5)
        };
        if self.tried_within(MISS_RELOAD) {
            return self.stale().ok_or_else(unavailable);
        }
        *self
            .tried
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(self.clock.now());
        match self.load().await {
            Ok(callers) => Ok(callers),
            Err(e) => match self.stale() {
                Some(previous) => {
                    tracing::warn!(secret = %self.name, "serving the previous callers list");
                    Ok(previous)
                }
                None => Err(e),
            },
        }
    }

    async fn load(&self) -> Result<Arc<CallerSet>, ApiError> {
        let raw = self.store.get(&self.name).await.map_err(|e| {
            tracing::error!(secret = %self.name, error = %e, "cannot read the callers secret");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::CallersUnavailable,
                "the callers list cannot be read right now",
            )
            .with_retry_after(5)
        })?;
        let callers = match raw {
            None => {
                tracing::error!(secret = %self.name, "the callers secret does not exist: every key is refused");
                CallerSet::default()
            }
            Some(raw) => parse_callers(&self.name, raw.expose_secret()),
        };
        let callers = Arc::new(callers);
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Loaded {
            at: self.clock.now(),
            callers: callers.clone(),
        });
        Ok(callers)
    }

    /// The caller a credential belongs to, or 401.
    pub async fn authenticate(&self, presented: &Presented) -> Result<Caller, ApiError> {
        let now = self.clock.now().timestamp();
        match self.callers().await?.authenticate(presented, now) {
            Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => {
                match self.reload_after_miss().await? {
                    Some(newer) => newer.authenticate(presented, now),
                    None => Err(e),
                }
            }
            found => found,
        }
    }
}
