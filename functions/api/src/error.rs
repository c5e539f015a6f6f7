//! Every failure answers `{"error": {"code": "snake_case", "message": "human sentence"}}` with the
//! right status; nothing in it is ever a secret.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker::ringcx::RingCxError;
use serde_json::json;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// An upstream failure, told as what the caller can do about it.
    pub fn upstream(e: &RingCxError) -> Self {
        match e {
            RingCxError::Timeout { .. } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "RingCX did not answer in time; retry",
            ),
            RingCxError::RateLimited { retry_after, .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "upstream_rate_limited",
                "RingCX rate-limited the call; back off",
            )
            .with_retry_after(retry_after.map_or(5, |d| d.as_secs().max(1))),
            RingCxError::Forbidden { .. } => {
                Self::new(StatusCode::FORBIDDEN, "upstream_forbidden", e.to_string())
            }
            RingCxError::NotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "upstream_not_found", e.to_string())
            }
            RingCxError::InvalidPath { .. } => Self::bad_request("invalid_path", e.to_string()),
            // Only reached once retries with newer tokens were refused too.
            RingCxError::AccessTokenExpired | RingCxError::Unauthorized { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream_unauthorized",
                "RingCX refused the broker's renewed token; the operators have been alerted",
            ),
            _ => Self::new(StatusCode::BAD_GATEWAY, "upstream_error", e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
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
