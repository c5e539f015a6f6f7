//! An administrator-written document (`{prefix}callers`, `{prefix}hooks`) as each instance sees
//! it: read at most once per `ttl`, read again soon after a lookup found nothing (an entry just
//! added), and the previous copy kept serving while Secrets Manager fails.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use tokio::sync::Mutex as AsyncMutex;

use crate::clock::SharedClock;
use crate::retry::{Policy, retry};
use crate::store::{CALL_TIMEOUT, SecretStore, StoreError};

/// How old the cached copy must be before a lookup that found nothing reads it again.
pub const MISS_RELOAD: Duration = Duration::from_secs(5);

/// What one read of the document may take, retries included.
pub const READ_BUDGET: Duration = Duration::from_secs(3);

/// Turns the secret's value (`None`: it does not exist) into the document; logs what it skips.
pub type Parse<T> = Box<dyn Fn(Option<&str>) -> T + Send + Sync>;

struct Loaded<T> {
    at: DateTime<Utc>,
    value: Arc<T>,
}

/// One secret, parsed, read at most once per `ttl` per instance.
pub struct DocumentCache<S, T> {
    store: S,
    name: String,
    ttl: Duration,
    clock: SharedClock,
    parse: Parse<T>,
    loaded: RwLock<Option<Loaded<T>>>,
    /// When the secret was last read or tried, failures included.
    tried: Mutex<Option<DateTime<Utc>>>,
    flight: AsyncMutex<()>,
}

impl<S: SecretStore, T> DocumentCache<S, T> {
    /// A cache of secret `name`, trusted for `ttl`.
    pub fn new(store: S, name: String, ttl: Duration, clock: SharedClock, parse: Parse<T>) -> Self {
        Self {
            store,
            name,
            ttl,
            clock,
            parse,
            loaded: RwLock::new(None),
            tried: Mutex::new(None),
            flight: AsyncMutex::new(()),
        }
    }

    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn fresh(&self) -> Option<Arc<T>> {
        let guard = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let loaded = guard.as_ref()?;
        let age = self.clock.now() - loaded.at;
        (age.to_std().unwrap_or_default() < self.ttl).then(|| loaded.value.clone())
    }

    /// The current document (read from the store when the cached copy is older than `ttl`).
    pub async fn get(&self) -> Result<Arc<T>, StoreError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _flight = self.flight.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        self.load_or_stale().await
    }

    /// After a lookup found nothing: reads the secret again unless it was tried in the last
    /// [`MISS_RELOAD`], so an entry added a moment ago works at once, while unknown names or keys
    /// cannot make an instance read it more than once per interval. `None`: not read again.
    pub async fn reload_after_miss(&self) -> Result<Option<Arc<T>>, StoreError> {
        let _flight = self.flight.lock().await;
        if self.tried_within(MISS_RELOAD) {
            return Ok(None);
        }
        self.load_or_stale().await.map(Some)
    }

    fn tried_within(&self, window: Duration) -> bool {
        let tried = *self.tried.lock().unwrap_or_else(PoisonError::into_inner);
        tried.is_some_and(|t| (self.clock.now() - t).to_std().unwrap_or_default() < window)
    }

    fn stale(&self) -> Option<Arc<T>> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|l| l.value.clone())
    }

    /// One read of the secret at most per [`MISS_RELOAD`]; when it fails, the previous copy (if
    /// any) keeps serving, so an outage of Secrets Manager does not refuse what was known.
    async fn load_or_stale(&self) -> Result<Arc<T>, StoreError> {
        if self.tried_within(MISS_RELOAD) {
            return self.stale().ok_or_else(|| StoreError::Transient {
                op: "GetSecretValue",
                message: format!("{} could not be read a moment ago", self.name),
            });
        }
        *self.tried.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.clock.now());
        // Throttling and other transient failures are retried with backoff, for seconds at most:
        // a caller (an IVR on the line) waits that long, not minutes.
        let deadline = crate::clock::later(self.clock.now(), READ_BUDGET);
        let policy = Policy {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
            attempts: None,
            attempt_time: CALL_TIMEOUT,
        };
        let (store, name) = (&self.store, self.name.as_str());
        let read = retry(
            &self.clock,
            policy,
            deadline,
            || store.get(name),
            |e: &StoreError, wait| {
                tracing::warn!(secret = %name, error = %e, wait_ms = wait.as_millis() as u64, "retrying the read");
            },
        )
        .await;
        match read {
            Ok(raw) => {
                let value = Arc::new((self.parse)(raw.as_ref().map(|r| r.expose_secret())));
                *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Some(Loaded {
                    at: self.clock.now(),
                    value: value.clone(),
                });
                Ok(value)
            }
            Err(e) => {
                tracing::error!(secret = %self.name, error = %e, "cannot read the secret");
                match self.stale() {
                    Some(previous) => {
                        tracing::warn!(secret = %self.name, "serving the previous copy");
                        Ok(previous)
                    }
                    None => Err(e),
                }
            }
        }
    }
}
