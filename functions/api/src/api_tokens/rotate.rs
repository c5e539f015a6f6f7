//! `POST /v1/api-tokens/{token}/rotate`: a new token with the same label and lifetime, the old one
//! kept for a grace period, both recorded in one registry change.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use broker::api_tokens::{TokenRecord, audit, token_sha256};
use broker::store::SecretStore;
use chrono::Duration;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use serde_json::json;

use super::{not_found, optional_json, registry_unavailable, target_token};
use crate::auth::Scope;
use crate::error::{ApiError, ErrorCode};
use crate::{AppState, no_store};

/// Longest grace accepted, and the default.
const MAX_GRACE_HOURS: u32 = 720;
const DEFAULT_GRACE_HOURS: u32 = 24;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateBody {
    grace_hours: Option<u32>,
}

/// `POST /v1/api-tokens/{token}/rotate`: a new token with the same label and lifetime; the old one
/// is revoked by the refresher after `graceHours` (default 24).
pub(crate) async fn rotate<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    uri: Uri,
    headers: HeaderMap,
    Path(token): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = app
        .caller(&headers, &uri, Scope::ApiTokensAdmin)
        .await?
        .caller;
    let old = target_token(token)?;
    let body: RotateBody = optional_json(&headers, body).await?;
    let grace = body.grace_hours.unwrap_or(DEFAULT_GRACE_HOURS);
    if grace > MAX_GRACE_HOURS {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidGrace,
            format!("graceHours is 0 to {MAX_GRACE_HOURS}"),
        ));
    }
    app.refuse_if_in_use(&caller.tenant, &old).await?;
    let listed = app.ringcx_tokens(&caller.tenant).await?;
    if !listed
        .iter()
        .any(|t| t.expose_secret() == old.expose_secret())
    {
        return Err(not_found());
    }
    let old_sha = token_sha256(&old);
    let registry = app
        .registries
        .read(&caller.tenant)
        .await
        .map_err(|e| registry_unavailable(&e))?;
    let previous = registry.find(&old_sha).cloned();
    if previous.as_ref().is_some_and(|p| p.rotated_to.is_some()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyRotated,
            "that token was already rotated; rotate its successor instead",
        ));
    }
    let now = app.clock.now();
    let label = previous.as_ref().and_then(|p| p.label.clone());
    let expires_at = previous
        .as_ref()
        .and_then(|p| p.expires_at.map(|e| now + (e - p.created_at)));
    let new = app.new_ringcx_token(&caller.tenant).await?;
    let record = TokenRecord::created(&new, label, now, &caller.id, expires_at);
    // A token that expires sooner is revoked at its expiry, grace or not.
    let grace_end = now + Duration::hours(i64::from(grace));
    let revoke_after = previous
        .as_ref()
        .and_then(|p| p.expires_at)
        .map_or(grace_end, |e| e.min(grace_end));
    let old_record = TokenRecord {
        rotated_to: Some(record.sha256.clone()),
        revoke_after: Some(revoke_after),
        ..previous.unwrap_or_else(|| TokenRecord::outside(&old, now))
    };
    // One change for both records: the new token is never registered without the old one's
    // revocation, nor the other way round.
    let registered = app
        .change_registry(&caller.tenant, |r| {
            // A concurrent rotation of the same token that got there first wins.
            let raced = r
                .find(&old_record.sha256)
                .is_some_and(|o| o.rotated_to.as_ref().is_some_and(|to| *to != record.sha256));
            if raced {
                return;
            }
            r.tokens
                .retain(|t| t.sha256 != old_record.sha256 && t.sha256 != record.sha256);
            r.tokens.push(old_record.clone());
            r.tokens.push(record.clone());
        })
        .await;
    if registered
        .as_ref()
        .is_ok_and(|r| r.find(&record.sha256).is_none())
    {
        app.revoke_upstream(&caller.tenant, &new).await?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyRotated,
            "that token was rotated by another request meanwhile; rotate its successor instead",
        ));
    }
    if let Err(e) = &registered {
        // The new token exists in RingCX: it is returned (never lost), unmanaged, and the old
        // one is not scheduled for revocation; the caller is told.
        tracing::error!(tenant = %caller.tenant, token = %record.masked, error = %e, "a rotation could not be registered");
    }
    let managed = registered.is_ok();
    let reason = format!("requested; replaced by {}", record.masked);
    audit(&caller.tenant, &caller.id, "rotate", &old_record, &reason);
    let body = Json(json!({
        "token": new.expose_secret(), "masked": record.masked, "label": record.label,
        "createdAt": record.created_at, "expiresAt": record.expires_at, "managed": managed,
        "previous": {"token": old_record.masked,
                     "revokeAfter": if managed { Some(revoke_after) } else { None }},
    }));
    Ok(no_store((StatusCode::CREATED, body).into_response()))
}
