//! Every failure answers `{"error": {"code": "snake_case", "message": "human sentence"}}` with the
//! right status; nothing in it is ever a secret.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker::ringcx::RingCxError;
use serde_json::json;

broker::listed_enum! {
    /// Every `error.code` the HTTP function answers with. The README's error table and the OpenAPI
    /// document's `Error.code` enum are checked against this list, so neither can drift.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[allow(missing_docs)]
    pub enum ErrorCode {
        AlreadyRotated,
        ApiTokenNotFound,
        BodyTooLarge,
        CallersUnavailable,
        HookDeliveryFailed,
        HookInProgress,
        HookNotFound,
        HookPayloadInvalid,
        HookQueueUnavailable,
        HooksUnavailable,
        IdempotencyUnavailable,
        InsufficientScope,
        InvalidBody,
        InvalidCredentials,
        InvalidExpiry,
        InvalidGrace,
        InvalidLabel,
        InvalidPath,
        InvalidQuery,
        InvalidSignature,
        InvalidToken,
        MalformedCredentials,
        MethodNotAllowed,
        MethodOverrideRefused,
        MissingCredentials,
        PathNotAllowed,
        PathRefused,
        PermanentTokenTenant,
        RegistryUnavailable,
        RouteNotFound,
        TenantNotServed,
        TokenInUse,
        TokenUnavailable,
        UnsupportedMediaType,
        UpstreamError,
        UpstreamForbidden,
        UpstreamNotFound,
        UpstreamRateLimited,
        UpstreamTimeout,
        UpstreamUnauthorized,
        WrongTenant,
    }
}

impl ErrorCode {
    /// The `error.code` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AlreadyRotated => "already_rotated",
            ErrorCode::ApiTokenNotFound => "api_token_not_found",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::CallersUnavailable => "callers_unavailable",
            ErrorCode::HookDeliveryFailed => "hook_delivery_failed",
            ErrorCode::HookInProgress => "hook_in_progress",
            ErrorCode::HookNotFound => "hook_not_found",
            ErrorCode::HookPayloadInvalid => "hook_payload_invalid",
            ErrorCode::HookQueueUnavailable => "hook_queue_unavailable",
            ErrorCode::HooksUnavailable => "hooks_unavailable",
            ErrorCode::IdempotencyUnavailable => "idempotency_unavailable",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidExpiry => "invalid_expiry",
            ErrorCode::InvalidGrace => "invalid_grace",
            ErrorCode::InvalidLabel => "invalid_label",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::MalformedCredentials => "malformed_credentials",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::MethodOverrideRefused => "method_override_refused",
            ErrorCode::MissingCredentials => "missing_credentials",
            ErrorCode::PathNotAllowed => "path_not_allowed",
            ErrorCode::PathRefused => "path_refused",
            ErrorCode::PermanentTokenTenant => "permanent_token_tenant",
            ErrorCode::RegistryUnavailable => "registry_unavailable",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::TenantNotServed => "tenant_not_served",
            ErrorCode::TokenInUse => "token_in_use",
            ErrorCode::TokenUnavailable => "token_unavailable",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::UpstreamForbidden => "upstream_forbidden",
            ErrorCode::UpstreamNotFound => "upstream_not_found",
            ErrorCode::UpstreamRateLimited => "upstream_rate_limited",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamUnauthorized => "upstream_unauthorized",
            ErrorCode::WrongTenant => "wrong_tenant",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The machine-readable code.
    pub code: ErrorCode,
    /// A sentence for the person reading it; never a secret.
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds `Retry-After`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A `401`, with the `WWW-Authenticate` challenge.
    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// A `403`.
    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// A `400`.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// An upstream failure, told as what the caller can do about it.
    pub fn upstream(e: &RingCxError) -> Self {
        match e {
            RingCxError::Timeout { .. } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::UpstreamTimeout,
                "RingCX did not answer in time; retry",
            ),
            RingCxError::RateLimited { retry_after, .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::UpstreamRateLimited,
                "RingCX rate-limited the call; back off",
            )
            .with_retry_after(retry_after.map_or(5, |d| d.as_secs().max(1))),
            RingCxError::Forbidden { .. } => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::UpstreamForbidden,
                e.to_string(),
            ),
            RingCxError::NotFound { .. } => Self::new(
                StatusCode::NOT_FOUND,
                ErrorCode::UpstreamNotFound,
                e.to_string(),
            ),
            RingCxError::InvalidPath { .. } => {
                Self::bad_request(ErrorCode::InvalidPath, e.to_string())
            }
            // Only reached once retries with newer tokens were refused too.
            RingCxError::AccessTokenExpired | RingCxError::Unauthorized { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamUnauthorized,
                "RingCX refused the broker's renewed token; the operators have been alerted",
            ),
            _ => Self::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamError,
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code.as_str(), "message": self.message}});
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    r#"Bearer realm="ringcx-broker", Basic realm="ringcx-broker""#,
                ),
            );
        }
        response
    }
}
