//! What the handlers share, built once per execution environment: clients, caches, and the
//! steps every route takes (authenticate, resolve the tenant, get a token, retry on a refusal).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use broker::clock::SharedClock;
use broker::config::Config;
use broker::document::DocumentCache;
use broker::hooks::HookSet;
use broker::hooks::idempotency::IdempotencyStore;
use broker::hooks::queue::HookQueue;
use broker::renew::Renewer;
use broker::ringcx::{RingCxClient, RingCxError, VoiceRequest, VoiceResponse};
use broker::store::{SecretStore, SessionRing};
use chrono::{DateTime, Utc};

use crate::auth::{Caller, CallerCache, Scope, Verdict};
use crate::error::{ApiError, ErrorCode};
use crate::token_cache::{CachedToken, TokenCache};

/// Retries after RingCX refuses a token, each with a strictly newer generation. Two, because a
/// newer token taken from the ring can itself be refused a moment later (a concurrent request saw
/// it refused and forced a renewal); the second retry then uses that renewal.
const MAX_TOKEN_RETRIES: usize = 2;

/// Time a request may spend beyond one renewal's needs: ring reads, and their retries when
/// Secrets Manager throttles them (a few, with backoff), before an inline renewal would start.
const TOKEN_SLACK: Duration = Duration::from_secs(4);

/// What the handlers share, built once per execution environment.
pub struct App<S> {
    /// The RingCX client, for the proxy and the permanent-token routes.
    pub ringcx: RingCxClient,
    /// The tenants' registries of permanent API tokens.
    pub registries: broker::api_tokens::Registries<S>,
    /// One registry change at a time per instance (instances race through the fencing token).
    pub(crate) registry_lock: tokio::sync::Mutex<()>,
    /// Each tenant's current token, read from the ring and renewed inline when due.
    pub tokens: TokenCache<S>,
    /// The callers secret, as this instance last read it.
    pub callers: CallerCache<S>,
    /// Everything time-dependent reads this clock (a manual one in tests).
    pub clock: SharedClock,
    /// Whether a key may arrive in `?api_key=` (`ALLOW_QUERY_KEY`).
    pub allow_query_key: bool,
    /// Time a request may spend obtaining a token inline: one whole refresh and its write.
    pub token_budget: Duration,
    /// The hooks secret, as this instance last read it (read like the callers secret).
    pub hooks: DocumentCache<S, HookSet>,
    /// Where hooks claim their idempotency keys (`IDEMPOTENCY_TABLE`); without it hooks answer 503.
    pub idempotency: Option<IdempotencyStore>,
    /// Where queued hooks go (`HOOK_QUEUE_URL`, `HOOK_DLQ_URL`); without it they answer 503.
    pub hook_queue: Option<HookQueue>,
    /// What one RingCX call may take (`ENGAGE_TIMEOUT_MS`).
    pub request_timeout: Duration,
}

/// The state axum hands every handler.
pub type AppState<S> = Arc<App<S>>;

impl<S: SecretStore + Clone> App<S> {
    /// Builds the clients and caches once per execution environment.
    pub fn new(config: &Config, store: S, clock: SharedClock) -> Result<Self, RingCxError> {
        let ringcx = RingCxClient::new(&config.ringcx, clock.clone())?;
        let ring = SessionRing::new(
            store.clone(),
            config.names(),
            config.session_slots,
            clock.clone(),
        );
        let renewer = Renewer::new(
            ring,
            ringcx.clone(),
            clock.clone(),
            config.api_renew_settings(),
        );
        let token_budget = renewer.time_needed() + TOKEN_SLACK;
        let tenants = config.tenants.clone();
        let hooks_secret = config.names().hooks();
        let parse_hooks = {
            let secret = hooks_secret.clone();
            Box::new(move |raw: Option<&str>| match raw {
                None => HookSet::default(),
                Some(raw) => {
                    let (set, refused) = broker::hooks::parse_hooks(raw, &tenants);
                    for r in refused {
                        tracing::warn!(secret = %secret, index = r.index, hook = r.name.as_deref().unwrap_or("?"), reason = %r.reason, "refusing a hooks entry");
                    }
                    set
                }
            })
        };
        Ok(Self {
            hooks: DocumentCache::new(
                store.clone(),
                hooks_secret,
                config.callers_cache,
                clock.clone(),
                parse_hooks,
            ),
            idempotency: None,
            hook_queue: None,
            request_timeout: config.ringcx.request_timeout,
            tokens: TokenCache::new(
                renewer,
                clock.clone(),
                config.min_token_ttl.as_secs() as i64,
                &config.tenants,
            ),
            callers: CallerCache::new(
                store.clone(),
                config.names().callers(),
                config.callers_cache,
                clock.clone(),
            ),
            registries: broker::api_tokens::Registries::new(store, config.names()),
            registry_lock: tokio::sync::Mutex::new(()),
            ringcx,
            clock,
            allow_query_key: config.allow_query_key,
            token_budget,
        })
    }

    /// With the hooks' idempotency table when `IDEMPOTENCY_TABLE` names one (the client built
    /// once per instance, like every client).
    pub fn with_idempotency(mut self, config: &Config, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        self.idempotency = config.idempotency_table.as_ref().map(|table| {
            IdempotencyStore::new(
                dynamodb,
                table.clone(),
                self.clock.clone(),
                config.hook_idempotency,
            )
        });
        self
    }

    /// With the hook queue when `HOOK_QUEUE_URL` names one.
    pub fn with_hook_queue(mut self, config: &Config, sqs: aws_sdk_sqs::Client) -> Self {
        self.hook_queue = config.hook_queue.url.as_ref().map(|url| {
            HookQueue::new(
                sqs,
                url.clone(),
                config.hook_queue.dlq_url.clone(),
                self.clock.clone(),
            )
        });
        self
    }

    /// When a request's token must be in hand: now plus the time one inline renewal needs.
    pub fn deadline(&self) -> DateTime<Utc> {
        broker::clock::later(self.clock.now(), self.token_budget)
    }

    /// Authenticates the request, checks the scope, and resolves the tenant it acts for.
    pub(crate) async fn caller(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        scope: Scope,
    ) -> Result<Verdict, ApiError> {
        let verdict = self
            .callers
            .verdict(
                headers,
                uri.query(),
                self.allow_query_key,
                self.clock.now().timestamp(),
            )
            .await?;
        verdict.caller.require(scope)?;
        self.acts_for_tenant(&verdict.caller, headers)?;
        Ok(verdict)
    }

    /// The tenant named by an optional `X-Tenant` header must be the key's own, and served here.
    pub(crate) fn acts_for_tenant(
        &self,
        caller: &Caller,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        match headers.get("x-tenant").map(|v| v.to_str()) {
            None => {}
            Some(Ok(t)) if t == caller.tenant => {}
            Some(_) => {
                return Err(ApiError::forbidden(
                    ErrorCode::WrongTenant,
                    "this key does not act for the tenant named in X-Tenant",
                ));
            }
        }
        if !self.tokens.serves(&caller.tenant) {
            return Err(ApiError::forbidden(
                ErrorCode::TenantNotServed,
                "this key's tenant is not served by this deployment",
            ));
        }
        Ok(())
    }

    /// The tenant's short-lived token, for `/v1/token` and `/v1/oauth/token`. A permanent API
    /// token is never handed out: there is nothing short-lived to give.
    pub(crate) async fn handout_token(&self, tenant: &str) -> Result<CachedToken, ApiError> {
        let token = self.tokens.newest(tenant, self.deadline()).await?;
        if token.permanent {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::PermanentTokenTenant,
                "this tenant is served by a permanent API token: there is no short-lived token to hand out; call RingCX through /v1/engage/ instead",
            ));
        }
        Ok(token)
    }

    /// One RingCX Voice API call with the tenant's token, retried with a newer token when RingCX
    /// says the token has expired; every other answer is RingCX's and comes back as it came.
    /// With `until`, no call (first or retry) starts that could not be answered before it.
    pub(crate) async fn voice(
        &self,
        tenant: &str,
        request: &VoiceRequest,
        until: Option<DateTime<Utc>>,
    ) -> Result<VoiceResponse, ApiError> {
        let ringcx = &self.ringcx;
        let clock = &self.clock;
        let timeout = self.request_timeout;
        self.with_token_until(tenant, until, |token| async move {
            if until.is_some_and(|u| broker::clock::later(clock.now(), timeout) > u) {
                return Err(RingCxError::Timeout {
                    service: broker::ringcx::Service::RingCx,
                });
            }
            let answer = ringcx.voice(token.auth(), request.clone()).await?;
            // An expired token goes back to `with_token`, which retries with a newer one; any
            // other answer, other 401s included, is RingCX's and is relayed as it came.
            if answer.is_jwt_expired() {
                Err(RingCxError::AccessTokenExpired)
            } else {
                Ok(answer)
            }
        })
        .await
    }

    /// Runs `call` with the tenant's token; if RingCX refuses it, again with a newer one (at most
    /// [`MAX_TOKEN_RETRIES`] times).
    pub async fn with_token<T, F, Fut>(&self, tenant: &str, call: F) -> Result<T, ApiError>
    where
        F: Fn(CachedToken) -> Fut,
        Fut: Future<Output = Result<T, RingCxError>>,
    {
        self.with_token_until(tenant, None, call).await
    }

    /// [`App::with_token`], with token renewals that end by `until` when given.
    async fn with_token_until<T, F, Fut>(
        &self,
        tenant: &str,
        until: Option<DateTime<Utc>>,
        call: F,
    ) -> Result<T, ApiError>
    where
        F: Fn(CachedToken) -> Fut,
        Fut: Future<Output = Result<T, RingCxError>>,
    {
        let deadline = until.map_or(self.deadline(), |u| u.min(self.deadline()));
        let mut token = self.tokens.get(tenant, deadline).await?;
        let mut retries = 0;
        loop {
            match call(token.clone()).await {
                // Only `Jwt is expired` says the token is dead; other 401s are RingCX's answer
                // about this call, passed on, and never cost a renewal.
                Err(RingCxError::AccessTokenExpired) if retries < MAX_TOKEN_RETRIES => {
                    tracing::info!(
                        tenant,
                        generation = token.generation,
                        "RingCX refused the access token; retrying with a newer one"
                    );
                    retries += 1;
                    token = self.tokens.replace(tenant, &token, deadline).await?;
                }
                other => return other.map_err(|e| ApiError::upstream(&e)),
            }
        }
    }
}
