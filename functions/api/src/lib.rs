//! The HTTP function: one axum router, run by `lambda_http` in Lambda (Function URL / HTTP API
//! payload 2.0) and by a loopback listener elsewhere, so the same code is tested, load-tested and
//! used locally.

pub mod auth;
pub mod connect;
pub mod error;
mod oauth;
pub mod operator;
mod permanent;
mod proxy;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Json, Router};
use broker::clock::SharedClock;
use broker::config::Config;
use broker::renew::Renewer;
use broker::ringcx::{RingCxClient, RingCxError};
use broker::store::{SecretStore, SessionRing};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::auth::{Caller, CallerCache, Presented, QueryAuth, Scope, presented};
use crate::error::ApiError;
use crate::tokens::{CachedToken, TokenCache};

/// Largest request body accepted (larger: `413`).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Retries after RingCX refuses a token, each with a strictly newer generation. Two, because a
/// newer token taken from the ring can itself be refused a moment later (a concurrent request saw
/// it refused and forced a renewal); the second retry then uses that renewal.
pub const MAX_TOKEN_RETRIES: usize = 2;
/// Time a request may spend beyond one renewal's needs (a ring read or two).
const TOKEN_SLACK: Duration = Duration::from_secs(1);

/// Every route, the single source of the router and of the OpenAPI check.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/health", &["get"]),
    ("/v1/oauth/token", &["post"]),
    ("/v1/token", &["get"]),
    (
        "/v1/engage/{*path}",
        &["get", "post", "put", "patch", "delete"],
    ),
    ("/v1/api-tokens", &["get", "post"]),
    ("/v1/api-tokens/{token}", &["delete"]),
    ("/v1/api-tokens/{token}/rotate", &["post"]),
];

/// What the handlers share, built once per execution environment.
pub struct App<S> {
    pub ringcx: RingCxClient,
    /// The tenants' registries of permanent API tokens.
    pub registries: broker::api_tokens::Registries<S>,
    /// One registry change at a time per instance (instances race through the fencing token).
    registry_lock: tokio::sync::Mutex<()>,
    pub tokens: TokenCache<S>,
    pub callers: CallerCache<S>,
    pub clock: SharedClock,
    pub allow_query_key: bool,
    /// Time a request may spend obtaining a token inline: one whole refresh and its write.
    pub token_budget: Duration,
}

pub type AppState<S> = Arc<App<S>>;

impl<S: SecretStore + Clone> App<S> {
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
        Ok(Self {
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

    fn deadline(&self) -> DateTime<Utc> {
        broker::clock::later(self.clock.now(), self.token_budget)
    }

    /// Authenticates the request, checks the scope, and resolves the tenant it acts for. Returns
    /// the credential too, so the proxy can make sure it is not forwarded.
    async fn caller(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        scope: Scope,
    ) -> Result<(Caller, Presented), ApiError> {
        let callers = self.callers.callers().await?;
        let auth = QueryAuth {
            allow_key: self.allow_query_key,
            jwt_params: callers.jwt_params(),
        };
        let presented = presented(headers, uri.query(), auth)?;
        let caller = self.callers.authenticate(&presented).await?;
        caller.require(scope)?;
        self.acts_for_tenant(&caller, headers)?;
        Ok((caller, presented))
    }

    /// The tenant named by an optional `X-Tenant` header must be the key's own, and served here.
    fn acts_for_tenant(&self, caller: &Caller, headers: &HeaderMap) -> Result<(), ApiError> {
        match headers.get("x-tenant").map(|v| v.to_str()) {
            None => {}
            Some(Ok(t)) if t == caller.tenant => {}
            Some(_) => {
                return Err(ApiError::forbidden(
                    "wrong_tenant",
                    "this key does not act for the tenant named in X-Tenant",
                ));
            }
        }
        if !self.tokens.serves(&caller.tenant) {
            return Err(ApiError::forbidden(
                "tenant_not_served",
                "this key's tenant is not served by this deployment",
            ));
        }
        Ok(())
    }

    /// The tenant's short-lived token, for `/v1/token` and `/v1/oauth/token`. A permanent API
    /// token is never handed out: there is nothing short-lived to give.
    async fn handout_token(&self, tenant: &str) -> Result<CachedToken, ApiError> {
        let token = self.tokens.get(tenant, self.deadline()).await?;
        if token.permanent {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                PERMANENT_TOKEN_TENANT,
                "this tenant is served by a permanent API token: there is no short-lived token to hand out; call RingCX through /v1/engage/ instead",
            ));
        }
        Ok(token)
    }

    /// Runs `call` with the tenant's token; if RingCX refuses it, again with a newer one (at most
    /// [`MAX_TOKEN_RETRIES`] times).
    async fn with_token<T, F, Fut>(&self, tenant: &str, call: F) -> Result<T, ApiError>
    where
        F: Fn(CachedToken) -> Fut,
        Fut: Future<Output = Result<T, RingCxError>>,
    {
        let deadline = self.deadline();
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

/// The media type of a `Content-Type` value, lower-cased, without parameters.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Reads a body up to [`MAX_BODY_BYTES`], answering 413 beyond.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request bodies are limited to {} KiB",
                MAX_BODY_BYTES / 1024
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())
}

/// The router over every route in [`ROUTES`].
pub fn router<S: SecretStore + Clone + 'static>(app: AppState<S>) -> Router {
    let mut router = Router::new();
    for (path, methods) in ROUTES {
        let mut route: MethodRouter<AppState<S>> = MethodRouter::new();
        for method in *methods {
            route = route.merge(endpoint::<S>(path, method));
        }
        router = router.route(path, route);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(access_log))
        .with_state(app)
}

/// One line per request: method, route template (never the raw path or query, which can carry a
/// token or a key), status and duration.
async fn access_log(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, route, status, ms, "request");
    } else {
        tracing::info!(%method, route, status, ms, "request");
    }
    response
}

fn filter(method: &str) -> MethodFilter {
    match method {
        "get" => MethodFilter::GET,
        "post" => MethodFilter::POST,
        "put" => MethodFilter::PUT,
        "patch" => MethodFilter::PATCH,
        _ => MethodFilter::DELETE,
    }
}

fn endpoint<S: SecretStore + Clone + 'static>(
    path: &str,
    method: &str,
) -> MethodRouter<AppState<S>> {
    let f = filter(method);
    match (path, method) {
        ("/v1/health", "get") => on(f, health::<S>),
        ("/v1/oauth/token", "post") => on(f, oauth::token::<S>),
        ("/v1/token", "get") => on(f, token::<S>),
        ("/v1/engage/{*path}", _) => on(f, proxy::proxy::<S>),
        ("/v1/api-tokens", "get") => on(f, permanent::list::<S>),
        ("/v1/api-tokens", "post") => on(f, permanent::create::<S>),
        ("/v1/api-tokens/{token}", "delete") => on(f, permanent::delete::<S>),
        ("/v1/api-tokens/{token}/rotate", "post") => on(f, permanent::rotate::<S>),
        // A table entry without a handler routes nothing; the OpenAPI test catches it.
        _ => MethodRouter::new(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no such route; see the OpenAPI document",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

pub(crate) fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Liveness, and whether every tenant has a usable token. Names no tenant and shows no token.
async fn health<S: SecretStore + Clone + 'static>(State(app): State<AppState<S>>) -> Response {
    let (usable, total) = app.tokens.health().await;
    let status = if usable == total {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if usable == total { "ok" } else { "degraded" },
        "usableToken": usable == total,
        "tenantsWithToken": usable,
        "tenants": total,
    });
    (status, Json(body)).into_response()
}

pub(crate) fn token_answer(token: &CachedToken, now: DateTime<Utc>) -> Response {
    no_store(
        Json(json!({
            "access_token": token.token.expose_secret(),
            "token_type": token.token_type,
            "expires_in": token.seconds_left(now).max(0),
            "account_id": token.account_id,
        }))
        .into_response(),
    )
}

/// The code of the error a permanent-token tenant gets from the token routes.
pub(crate) const PERMANENT_TOKEN_TENANT: &str = "permanent_token_tenant";

/// `GET /v1/token`: the current access token for clients that send a key header.
async fn token<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (caller, _) = app.caller(&headers, &uri, Scope::TokenRead).await?;
    let token = app.handout_token(&caller.tenant).await?;
    Ok(token_answer(&token, app.clock.now()))
}
