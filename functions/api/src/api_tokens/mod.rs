//! `/v1/api-tokens`: RingCX permanent API tokens as managed credentials. RingCX keeps the tokens
//! (bare strings, no metadata); the broker's registry keeps their label, creator, dates and
//! pending revocations, and every change writes one audit line. The refresher's sweep revokes
//! tokens past `expiresAt` or past a rotation's grace period.

mod rotate;

pub(crate) use rotate::rotate;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use broker::api_tokens::{Registry, TokenRecord, audit, mask, token_sha256};
use broker::store::SecretStore;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ErrorCode};
use crate::{App, AppState, no_store, read_body};

/// Longest label accepted.
const MAX_LABEL: usize = 100;
/// Longest lifetime and grace accepted.
const MAX_DAYS: u32 = 3650;
/// Time a request may spend on one registry change (the function's timeout is 20 s).
const REGISTRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    label: Option<String>,
    expires_in_days: Option<u32>,
}

/// An optional JSON body: empty is the default, anything else must parse.
async fn optional_json<T: for<'de> Deserialize<'de> + Default>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(headers, body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!(
                "the body must be a JSON object with the documented fields ({})",
                classify_name(&e)
            ),
        )
    })
}

/// What kind of JSON problem, without echoing any of the body.
fn classify_name(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unknown field or wrong type",
        serde_json::error::Category::Eof => "cut short",
    }
}

fn check_label(label: Option<String>) -> Result<Option<String>, ApiError> {
    match label {
        Some(l) if l.chars().count() > MAX_LABEL || l.chars().any(char::is_control) => {
            Err(ApiError::bad_request(
                ErrorCode::InvalidLabel,
                format!("a label is at most {MAX_LABEL} characters, without control characters"),
            ))
        }
        Some(l) if l.trim().is_empty() => Ok(None),
        other => Ok(other.map(|l| l.trim().to_owned())),
    }
}

fn registry_unavailable(e: &broker::api_tokens::RegistryError) -> ApiError {
    tracing::error!(error = %e, "the API token registry cannot be used");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RegistryUnavailable,
        "the API token registry cannot be read or written right now; retry",
    )
    .with_retry_after(5)
}

fn described(record: Option<&TokenRecord>, shown: String) -> Value {
    match record {
        Some(r) => json!({
            "token": shown, "managed": true, "label": r.label, "createdBy": r.created_by,
            "createdAt": r.created_at, "expiresAt": r.expires_at, "revokeAfter": r.revoke_after,
            "rotated": r.rotated_to.is_some(),
        }),
        None => json!({"token": shown, "managed": false}),
    }
}

impl<S: SecretStore + Clone + 'static> App<S> {
    /// The tenant user's tokens as RingCX lists them.
    async fn ringcx_tokens(&self, tenant: &str) -> Result<Vec<SecretString>, ApiError> {
        let ringcx = &self.ringcx;
        self.with_token(
            tenant,
            |t| async move { ringcx.list_api_tokens(t.auth()).await },
        )
        .await
    }

    async fn new_ringcx_token(&self, tenant: &str) -> Result<SecretString, ApiError> {
        let ringcx = &self.ringcx;
        self.with_token(tenant, |t| async move {
            ringcx.create_api_token(t.auth()).await
        })
        .await
    }

    /// Revokes a token in RingCX; `false` when RingCX had no such token.
    async fn revoke_upstream(&self, tenant: &str, token: &SecretString) -> Result<bool, ApiError> {
        let ringcx = &self.ringcx;
        match self
            .with_token(tenant, |t| async move {
                ringcx.delete_api_token(t.auth(), token).await
            })
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.status == StatusCode::NOT_FOUND => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// 409 when `token` is the permanent token this api-token tenant runs on.
    async fn refuse_if_in_use(&self, tenant: &str, token: &SecretString) -> Result<(), ApiError> {
        let current = self.tokens.get(tenant, self.deadline()).await?;
        if current.permanent && current.token.expose_secret() == token.expose_secret() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::TokenInUse,
                "this is the permanent token the tenant runs on: seed a new one with `make seed-credentials` first",
            ));
        }
        Ok(())
    }

    /// One registry change, serialised within this instance.
    async fn change_registry<F: Fn(&mut Registry)>(
        &self,
        tenant: &str,
        change: F,
    ) -> Result<Registry, broker::api_tokens::RegistryError> {
        let _one = self.registry_lock.lock().await;
        self.registries
            .update(tenant, REGISTRY_BUDGET, change)
            .await
    }

    /// Creates a token in RingCX and registers it. The token is returned even if the registry
    /// cannot take it (it then shows as unmanaged): a created token is never lost.
    async fn create_managed(
        &self,
        caller: &Caller,
        label: Option<String>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(SecretString, TokenRecord, bool), ApiError> {
        let token = self.new_ringcx_token(&caller.tenant).await?;
        let record = TokenRecord::created(&token, label, self.clock.now(), &caller.id, expires_at);
        let registered = self
            .change_registry(&caller.tenant, |r| {
                if r.find(&record.sha256).is_none() {
                    r.tokens.push(record.clone());
                }
            })
            .await;
        if let Err(e) = &registered {
            tracing::error!(tenant = %caller.tenant, token = %record.masked, error = %e, "a created token could not be registered: it is unmanaged");
        }
        Ok((token, record, registered.is_ok()))
    }
}

/// `GET /v1/api-tokens`: RingCX's list merged with the registry, masked unless `?reveal=true`.
pub(crate) async fn list<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = app
        .caller(&headers, &uri, Scope::ApiTokensAdmin)
        .await?
        .caller;
    let reveal = match query.ok().and_then(|Query(q)| q.reveal).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                "reveal must be true or false",
            ));
        }
    };
    let tokens = app.ringcx_tokens(&caller.tenant).await?;
    let registry = app
        .registries
        .read(&caller.tenant)
        .await
        .map_err(|e| registry_unavailable(&e))?;
    let shown: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let text = if reveal {
                t.expose_secret().to_owned()
            } else {
                mask(t.expose_secret())
            };
            described(registry.find(&token_sha256(t)), text)
        })
        .collect();
    let response =
        Json(json!({"tokens": shown, "masked": !reveal, "count": shown.len()})).into_response();
    Ok(if reveal { no_store(response) } else { response })
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    reveal: Option<String>,
}

/// `POST /v1/api-tokens`: creates a token (optional `{"label", "expiresInDays"}`); the answer is
/// the only time it is shown.
pub(crate) async fn create<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = app
        .caller(&headers, &uri, Scope::ApiTokensAdmin)
        .await?
        .caller;
    let body: CreateBody = optional_json(&headers, body).await?;
    let label = check_label(body.label)?;
    let days = match body.expires_in_days {
        Some(d) if d == 0 || d > MAX_DAYS => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidExpiry,
                format!("expiresInDays is 1 to {MAX_DAYS}"),
            ));
        }
        other => other,
    };
    let expires_at = days.map(|d| app.clock.now() + Duration::days(i64::from(d)));
    let (token, record, managed) = app.create_managed(&caller, label, expires_at).await?;
    if !managed && expires_at.is_some() {
        // An expiry nobody would enforce is worse than no token: withdraw it.
        app.revoke_upstream(&caller.tenant, &token).await?;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RegistryUnavailable,
            "the token's expiry could not be recorded, so it was not kept; retry",
        )
        .with_retry_after(5));
    }
    audit(&caller.tenant, &caller.id, "create", &record, "requested");
    let body = Json(json!({
        "token": token.expose_secret(), "masked": record.masked, "label": record.label,
        "createdAt": record.created_at, "expiresAt": record.expires_at, "managed": managed,
    }));
    Ok(no_store((StatusCode::CREATED, body).into_response()))
}

fn target_token(token: String) -> Result<SecretString, ApiError> {
    if token.is_empty()
        || token.chars().all(|c| c == '.')
        || token.len() > 512
        || token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidToken,
            "that is not a permanent API token",
        ));
    }
    Ok(SecretString::from(token))
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::ApiTokenNotFound,
        "no such permanent API token for this tenant's user",
    )
}

/// `DELETE /v1/api-tokens/{token}`: revokes one token; its registry entry goes with it.
pub(crate) async fn delete<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    uri: Uri,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let caller = app
        .caller(&headers, &uri, Scope::ApiTokensAdmin)
        .await?
        .caller;
    let token = target_token(token)?;
    app.refuse_if_in_use(&caller.tenant, &token).await?;
    if !app.revoke_upstream(&caller.tenant, &token).await? {
        return Err(not_found());
    }
    let sha = token_sha256(&token);
    let known = app.registries.read(&caller.tenant).await.ok();
    let record = known
        .as_ref()
        .and_then(|r| r.find(&sha).cloned())
        .unwrap_or_else(|| TokenRecord::outside(&token, app.clock.now()));
    let registry = app
        .change_registry(&caller.tenant, |r| r.tokens.retain(|t| t.sha256 != sha))
        .await;
    if let Err(e) = registry {
        tracing::error!(tenant = %caller.tenant, token = %record.masked, error = %e, "a revoked token stays in the registry (harmless: it is listed nowhere and the sweep drops it if it comes due)");
    }
    audit(&caller.tenant, &caller.id, "revoke", &record, "requested");
    Ok(StatusCode::NO_CONTENT.into_response())
}
