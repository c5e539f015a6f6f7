//! The HTTP function's view of each tenant's token: read from the ring once and kept in memory,
//! read again only when the cached token nears `MIN_TOKEN_TTL_SECONDS` or RingCX refuses it. If
//! the ring holds nothing usable (the refresher is late), the function refreshes inline through
//! the same renewal protocol, one renewal per tenant per instance at a time; it never logs in
//! (only the refresher does). A token RingCX refuses as expired before its time is replaced by a
//! forced renewal only within the protocol's bounds (see `broker::renew`); past them the caller
//! gets `502 upstream_unauthorized` and the ring is left alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;
use broker::clock::SharedClock;
use broker::renew::{RenewError, Renewer};
use broker::session::SessionState;
use broker::store::SecretStore;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio::sync::Mutex as AsyncMutex;

use crate::error::{ApiError, ErrorCode};

/// A usable access token and what it is.
#[derive(Debug, Clone)]
pub struct CachedToken {
    /// The access token (or permanent API token).
    pub token: SecretString,
    /// `Bearer`, or `X-Auth-Token` for a permanent token.
    pub token_type: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// The ring generation it came from.
    pub generation: u64,
    /// The RingCX account it acts in.
    pub account_id: Option<String>,
    /// A permanent API token (an `api-token` tenant): sent as `X-Auth-Token`, never handed out.
    pub permanent: bool,
}

impl CachedToken {
    /// How RingCX is to be shown this token.
    pub fn auth(&self) -> broker::ringcx::VoiceAuth<'_> {
        if self.permanent {
            broker::ringcx::VoiceAuth::ApiToken(&self.token)
        } else {
            broker::ringcx::VoiceAuth::Bearer(&self.token)
        }
    }

    fn from_state(state: &SessionState, now: DateTime<Utc>, min_ttl: i64) -> Option<Self> {
        // A permanent token never expires, but it can be revoked and replaced: the instance
        // reads the ring again after a minute to take a replacement up.
        let expires_at = if state.permanent {
            now + chrono::Duration::seconds(min_ttl + PERMANENT_RECHECK_SECS)
        } else {
            state.access_token_expires_at?
        };
        Some(Self {
            token: state.usable_token(now, min_ttl)?.clone(),
            token_type: state.token_type.clone(),
            expires_at,
            generation: state.generation,
            account_id: state.account_id.clone(),
            permanent: state.permanent,
        })
    }

    /// Seconds until it expires (negative once it has).
    pub fn seconds_left(&self, now: DateTime<Utc>) -> i64 {
        (self.expires_at - now).num_seconds()
    }
}

#[derive(Default)]
struct TenantSlot {
    cached: Mutex<Option<CachedToken>>,
    flight: AsyncMutex<()>,
    /// When `/v1/health` last read the ring for this tenant (it is unauthenticated: at most one
    /// read per [`HEALTH_PROBE_INTERVAL`] whatever the request rate).
    last_probe: Mutex<Option<DateTime<Utc>>>,
    /// The generation whose forced renewal was last refused, and when: further refusals of it
    /// within [`REFUSAL_MEMORY`] are answered without reading the ring again.
    refused: Mutex<Option<(u64, DateTime<Utc>)>>,
    /// When a token about to be handed out last had its successor looked for.
    last_handout_probe: Mutex<Option<DateTime<Utc>>>,
    /// The generation found unrefreshable (only a login can help, and only the refresher logs
    /// in), and when: requests within [`LOGIN_NEEDED_MEMORY`] get the 503 at once.
    login_needed: Mutex<Option<(u64, DateTime<Utc>)>>,
}

/// How long an instance keeps a permanent API token before reading the ring again.
const PERMANENT_RECHECK_SECS: i64 = 60;
const HEALTH_PROBE_INTERVAL: chrono::Duration = chrono::Duration::seconds(10);
const REFUSAL_MEMORY: chrono::Duration = chrono::Duration::seconds(5);
const LOGIN_NEEDED_MEMORY: chrono::Duration = chrono::Duration::seconds(10);
/// How often an instance looks for a handed-out token's successor, per tenant.
pub const HANDOUT_PROBE_INTERVAL: chrono::Duration = chrono::Duration::seconds(10);
/// What `/v1/health`'s ring read may take, retries included.
const HEALTH_READ_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Tokens of every configured tenant.
pub struct TokenCache<S> {
    renewer: Renewer<S>,
    clock: SharedClock,
    min_ttl: i64,
    tenants: HashMap<String, TenantSlot>,
    ring_reads: AtomicU64,
    slot_reads: AtomicU64,
    renewals: AtomicU64,
}

impl<S: SecretStore> TokenCache<S> {
    /// A cache over `renewer`'s rings for `tenants`; tokens with less than `min_ttl_secs` left are not handed out.
    pub fn new(
        renewer: Renewer<S>,
        clock: SharedClock,
        min_ttl_secs: i64,
        tenants: &[String],
    ) -> Self {
        Self {
            renewer,
            clock,
            min_ttl: min_ttl_secs,
            tenants: tenants
                .iter()
                .map(|t| (t.clone(), TenantSlot::default()))
                .collect(),
            ring_reads: AtomicU64::new(0),
            slot_reads: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
        }
    }

    /// Whether `tenant` is one this deployment serves.
    pub fn serves(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant)
    }

    /// Ring reads (one `BatchGetSecretValue` each) since start.
    pub fn ring_reads(&self) -> u64 {
        self.ring_reads.load(Ordering::Relaxed)
    }

    /// One-slot reads (one `GetSecretValue` each, looking for the next generation) since start.
    pub fn slot_reads(&self) -> u64 {
        self.slot_reads.load(Ordering::Relaxed)
    }

    /// Inline renewals since start.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    fn slot(&self, tenant: &str) -> Result<&TenantSlot, ApiError> {
        self.tenants.get(tenant).ok_or_else(|| {
            ApiError::forbidden(
                ErrorCode::TenantNotServed,
                "this key's tenant is not served by this deployment",
            )
        })
    }

    fn cached(&self, slot: &TenantSlot) -> Option<CachedToken> {
        let now = self.clock.now();
        let guard = slot.cached.lock().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .filter(|t| t.seconds_left(now) > self.min_ttl)
            .cloned()
    }

    /// A token with more than `MIN_TOKEN_TTL_SECONDS` left, renewing inline by `deadline` if the
    /// ring has none.
    pub async fn get(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<CachedToken, ApiError> {
        let slot = self.slot(tenant)?;
        if let Some(t) = self.cached(slot) {
            return Ok(t);
        }
        self.refill(tenant, slot, deadline, None).await
    }

    /// A token to hand out (`/v1/token`, `/v1/oauth/token`): the newest the ring holds. A cached
    /// token with less than the refresh margin left may already have a successor (the refresher
    /// renews inside the margin), so its slot is looked at first, with one `GetSecretValue`, at
    /// most once per [`HANDOUT_PROBE_INTERVAL`] per tenant.
    pub async fn newest(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<CachedToken, ApiError> {
        let token = self.get(tenant, deadline).await?;
        let now = self.clock.now();
        let margin = self.renewer.settings().refresh_margin.as_secs() as i64;
        if token.permanent || token.seconds_left(now) > margin {
            return Ok(token);
        }
        let slot = self.slot(tenant)?;
        {
            let mut last = slot
                .last_handout_probe
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| now - at < HANDOUT_PROBE_INTERVAL) {
                return Ok(token);
            }
            *last = Some(now);
        }
        let _flight = slot.flight.lock().await;
        match self.next_generation(tenant, slot).await {
            Some(newer) if newer.generation > token.generation => {
                *slot.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(newer.clone());
                Ok(newer)
            }
            _ => Ok(self.cached(slot).unwrap_or(token)),
        }
    }

    /// RingCX refused `rejected` as expired although it had time left: get a newer one (from the
    /// ring, or a forced renewal within the protocol's bounds).
    pub async fn replace(
        &self,
        tenant: &str,
        rejected: &CachedToken,
        deadline: DateTime<Utc>,
    ) -> Result<CachedToken, ApiError> {
        let slot = self.slot(tenant)?;
        if let Some(t) = self
            .cached(slot)
            .filter(|t| t.generation > rejected.generation)
        {
            return Ok(t);
        }
        let now = self.clock.now();
        let recently_refused = slot
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|(g, at)| g == rejected.generation && now - at < REFUSAL_MEMORY);
        if recently_refused {
            return Err(refused_fresh_token());
        }
        self.refill(tenant, slot, deadline, Some(rejected.generation))
            .await
    }

    /// How many tenants have a usable token, of how many: from the cache, or one ring read per
    /// tenant whose cached token is gone. Never renews.
    pub async fn health(&self) -> (usize, usize) {
        let mut usable = 0;
        for (tenant, slot) in &self.tenants {
            if self.cached(slot).is_some() {
                usable += 1;
                continue;
            }
            let now = self.clock.now();
            {
                let mut last = slot
                    .last_probe
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if last.is_some_and(|at| now - at < HEALTH_PROBE_INTERVAL) {
                    continue;
                }
                *last = Some(now);
            }
            let _flight = slot.flight.lock().await;
            let deadline = broker::clock::later(now, HEALTH_READ_BUDGET);
            if let Ok(Some(token)) = self.read_ring(tenant, deadline).await {
                *slot.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
                usable += 1;
            }
        }
        (usable, self.tenants.len())
    }

    async fn refill(
        &self,
        tenant: &str,
        slot: &TenantSlot,
        deadline: DateTime<Utc>,
        rejected: Option<u64>,
    ) -> Result<CachedToken, ApiError> {
        // One refill per tenant at a time: the others wait and take its result.
        let _flight = slot.flight.lock().await;
        let acceptable = |t: &CachedToken| rejected.is_none_or(|g| t.generation > g);
        if let Some(t) = self.cached(slot).filter(acceptable) {
            return Ok(t);
        }
        // The successor of the generation this instance knows, with one GetSecretValue, before
        // the whole ring: the usual case once the refresher has renewed.
        if rejected.is_none()
            && let Some(t) = self.next_generation(tenant, slot).await
        {
            *slot.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(t.clone());
            return Ok(t);
        }
        // The read's retries leave time for the inline renewal that may follow it.
        let read_by = (deadline
            - chrono::Duration::from_std(self.renewer.time_needed()).unwrap_or_default())
        .max(broker::clock::later(
            self.clock.now(),
            broker::store::CALL_TIMEOUT,
        ));
        let (from_ring, generation) = self.read_ring_generation(tenant, read_by).await?;
        let token = match from_ring.filter(acceptable) {
            Some(t) => t,
            None => {
                let now = self.clock.now();
                let known_dead = slot
                    .login_needed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some_and(|(g, at)| g == generation && now - at < LOGIN_NEEDED_MEMORY);
                if known_dead {
                    return Err(login_needed());
                }
                self.renewals.fetch_add(1, Ordering::Relaxed);
                let result = match rejected {
                    Some(g) => {
                        tracing::warn!(
                            tenant,
                            generation = g,
                            "RingCX refused the access token as expired before its time: forced renewal"
                        );
                        self.renewer.renew_replacing(tenant, deadline, g).await
                    }
                    None => {
                        tracing::warn!(tenant, "no usable token in the ring: refreshing inline");
                        self.renewer.renew(tenant, deadline).await
                    }
                };
                match result {
                    // The new access token was saved; only its refresh token is missing.
                    Ok(_) | Err(RenewError::RefreshTokenMissing { .. }) => {}
                    Err(RenewError::ForcedRenewalRefused { .. }) => {
                        if let Some(g) = rejected {
                            *slot.refused.lock().unwrap_or_else(PoisonError::into_inner) =
                                Some((g, self.clock.now()));
                        }
                        return Err(refused_fresh_token());
                    }
                    Err(e @ RenewError::LoginNeeded { .. }) => {
                        *slot
                            .login_needed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) =
                            Some((generation, self.clock.now()));
                        return Err(unavailable(tenant, &e));
                    }
                    Err(e) => return Err(unavailable(tenant, &e)),
                }
                match self.read_ring(tenant, deadline).await?.filter(acceptable) {
                    Some(t) => t,
                    None => {
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ErrorCode::TokenUnavailable,
                            "no usable RingCX token could be obtained; retry shortly",
                        )
                        .with_retry_after(10));
                    }
                }
            }
        };
        *slot.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(token)
    }

    async fn read_ring(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<Option<CachedToken>, ApiError> {
        Ok(self.read_ring_generation(tenant, deadline).await?.0)
    }

    /// The cached generation's successor, if the ring holds it and its token is usable: one
    /// `GetSecretValue`. `None` when there is nothing cached, or no usable successor yet.
    async fn next_generation(&self, tenant: &str, slot: &TenantSlot) -> Option<CachedToken> {
        let known = slot
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|t| t.generation)?;
        self.slot_reads.fetch_add(1, Ordering::Relaxed);
        let state = self
            .renewer
            .read_generation(tenant, known + 1)
            .await
            .ok()??;
        CachedToken::from_state(&state, self.clock.now(), self.min_ttl)
    }

    /// The ring's usable token, if any, and its newest generation; throttling and other
    /// transient failures are retried with backoff until `deadline`, then answered 503.
    async fn read_ring_generation(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<(Option<CachedToken>, u64), ApiError> {
        self.ring_reads.fetch_add(1, Ordering::Relaxed);
        let view = self
            .renewer
            .read_view(tenant, deadline)
            .await
            .map_err(|e| {
                tracing::error!(tenant, error = %e, "cannot read the session ring");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::TokenUnavailable,
                    "the stored session cannot be read right now; retry shortly",
                )
                .with_retry_after(5)
            })?;
        let now = self.clock.now();
        let token = view
            .newest
            .as_ref()
            .and_then(|s| CachedToken::from_state(s, now, self.min_ttl));
        Ok((token, view.newest_generation()))
    }
}

/// RingCX refused a token the broker has no reason to replace yet.
fn refused_fresh_token() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::UpstreamUnauthorized,
        "RingCX refused the broker's current token although it is fresh; the broker does not renew \
         again so soon (RingCX's clock or token validation is off); the operators have been alerted",
    )
    .with_retry_after(30)
}

/// The ring's session cannot be refreshed; the refresher's next login is the way out.
fn login_needed() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TokenUnavailable,
        "the stored session can no longer be refreshed; the refresher logs in again at its next \
         run",
    )
    .with_retry_after(60)
}

fn unavailable(tenant: &str, e: &RenewError) -> ApiError {
    tracing::error!(tenant, error = %e, "inline renewal failed");
    let (retry, message) = match e {
        RenewError::LoginNeeded { .. } => return login_needed(),
        RenewError::Upstream { .. } | RenewError::Store { .. } | RenewError::NoTime { .. } => (
            10,
            "no usable RingCX token can be obtained right now; retry shortly",
        ),
        _ => (
            60,
            "no usable RingCX token can be obtained right now; the operators have been alerted",
        ),
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TokenUnavailable,
        message,
    )
    .with_retry_after(retry)
}
