//! The HTTP transport under every RingCX call: sending, reading whole answers within a size
//! limit, and mapping statuses and bodies to typed errors that quote no secret.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::{
    MAX_UPSTREAM_BODY_BYTES, RingCxClient, RingCxError, RingCxSession, Service, VoiceAuth,
};
use crate::secret::redact;

/// How much of an upstream error body is kept in an error message.
const DETAIL_CHARS: usize = 200;
/// The longest `Retry-After` honoured or passed on: an upstream asking for hours is treated as
/// asking for two minutes (the next scheduled run retries anyway).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// What kind of endpoint answered, which decides what a 4xx means.
#[derive(Debug, Clone, Copy)]
pub(super) enum Endpoint {
    PlatformToken,
    Exchange,
    PasswordLogin,
    Refresh,
    Voice,
}

/// A complete upstream answer.
pub(super) struct Raw {
    pub(super) status: StatusCode,
    pub(super) content_type: Option<String>,
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Bytes,
}

impl RingCxClient {
    pub(super) fn authed(&self, builder: RequestBuilder, auth: VoiceAuth<'_>) -> RequestBuilder {
        let (name, value) = match auth {
            VoiceAuth::Bearer(t) => (
                AUTHORIZATION.as_str(),
                format!("Bearer {}", t.expose_secret()),
            ),
            VoiceAuth::ApiToken(t) => ("x-auth-token", t.expose_secret().to_owned()),
        };
        match HeaderValue::from_str(&value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                builder.header(name, v)
            }
            // A token with bytes a header cannot carry: send none and let RingCX answer 401.
            Err(_) => builder,
        }
    }

    pub(super) async fn session(
        &self,
        endpoint: Endpoint,
        request: RequestBuilder,
        sent: &[&SecretString],
    ) -> Result<RingCxSession, RingCxError> {
        let sent_at = self.clock.now();
        let raw = self.call(Service::RingCx, endpoint, request, sent).await?;
        let session = super::model::session_from_answer(&raw.body, sent_at, self.clock.now())
            .map_err(|e| RingCxError::UnexpectedBody {
                service: Service::RingCx,
                status: raw.status.as_u16(),
                expected: "AccessTokenUserDetails JSON with an accessToken",
                detail: format!("{}: {}", describe_body(&raw), e.describe()),
            })?;
        tracing::debug!(
            endpoint = ?endpoint,
            expires_at = %session.expires_at,
            expiry_source = ?session.expiry_source,
            has_refresh_token = session.refresh_token.is_some(),
            "RingCX session obtained"
        );
        Ok(session)
    }

    /// Sends, reads the whole answer, and turns non-success statuses into typed errors.
    pub(super) async fn call(
        &self,
        service: Service,
        endpoint: Endpoint,
        request: RequestBuilder,
        sent: &[&SecretString],
    ) -> Result<Raw, RingCxError> {
        let raw = self.send(service, request).await?;
        let status = raw.status.as_u16();
        tracing::debug!(service = %service, endpoint = ?endpoint, status, "upstream answered");
        if raw.status.is_success() {
            return Ok(raw);
        }
        let detail = || redact(&summarize(&raw.body), sent);
        Err(match (endpoint, status) {
            (_, 429) => RingCxError::RateLimited {
                service,
                retry_after: raw.retry_after,
            },
            (_, 500..=599) => RingCxError::Upstream {
                service,
                status,
                detail: detail(),
            },
            (Endpoint::Voice, 401) if is_jwt_expired_body(&raw.body) => {
                RingCxError::AccessTokenExpired
            }
            (Endpoint::Voice, 401) => RingCxError::Unauthorized { detail: detail() },
            (Endpoint::Voice, 403) => {
                let (code, message) = forbidden_parts(&raw.body);
                RingCxError::Forbidden {
                    code: redact(&code, sent),
                    message: redact(&message, sent),
                }
            }
            (Endpoint::Voice, 404) => RingCxError::NotFound { detail: detail() },
            (Endpoint::Refresh, 400 | 401 | 403) => RingCxError::RefreshTokenRejected {
                status,
                detail: detail(),
            },
            (
                Endpoint::PlatformToken | Endpoint::Exchange | Endpoint::PasswordLogin,
                400 | 401 | 403,
            ) => RingCxError::CredentialsRejected {
                service,
                status,
                detail: detail(),
            },
            _ => RingCxError::Rejected {
                service,
                status,
                detail: detail(),
            },
        })
    }

    pub(super) async fn send(
        &self,
        service: Service,
        request: RequestBuilder,
    ) -> Result<Raw, RingCxError> {
        let mut response = request.send().await.map_err(|e| transport(service, e))?;
        let status = response.status();
        let headers = response.headers();
        let retry_after = retry_after(headers, self.clock.now());
        let content_type = header_text(headers, CONTENT_TYPE.as_str());
        let too_large = || RingCxError::BodyTooLarge {
            service,
            limit: MAX_UPSTREAM_BODY_BYTES,
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_UPSTREAM_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(service, e))? {
            if body.len() + chunk.len() > MAX_UPSTREAM_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Raw {
            status,
            content_type,
            retry_after,
            body: body.freeze(),
        })
    }
}

/// `base` with `segments` appended to its path (a base URL may carry a path prefix).
pub(super) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

pub(super) fn transport(service: Service, error: reqwest::Error) -> RingCxError {
    // The URL may carry a token (DELETE /admin/token/{token}): never keep it in the error.
    let error = error.without_url();
    if error.is_timeout() {
        RingCxError::Timeout { service }
    } else if error.is_connect() {
        RingCxError::Connect {
            service,
            source: error,
        }
    } else {
        RingCxError::ConnectionDropped {
            service,
            source: error,
        }
    }
}

pub(super) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// `Retry-After` as delta-seconds or an HTTP date, clamped to [`MAX_RETRY_AFTER`].
pub(super) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = header_text(headers, RETRY_AFTER.as_str())?;
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

pub(super) fn is_jwt_expired_body(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let text = text.trim().trim_matches('"');
    text.eq_ignore_ascii_case("Jwt is expired")
}

/// The human part of an upstream error body: RingCX's and RingCentral's message fields when it
/// is JSON, otherwise the start of the text.
pub(super) fn summarize(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let summary = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => {
            let parts: Vec<String> = [
                "errorCode",
                "error",
                "generalMessage",
                "error_description",
                "message",
                "details",
            ]
            .iter()
            .filter_map(|k| match map.get(*k)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect();
            if parts.is_empty() {
                "no message".to_owned()
            } else {
                parts.join(": ")
            }
        }
        _ if text.trim().is_empty() => "empty body".to_owned(),
        _ => text.trim().to_owned(),
    };
    truncate(&summary)
}

pub(super) fn forbidden_parts(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => (
            v.get("errorCode")
                .and_then(Value::as_str)
                .unwrap_or("forbidden")
                .to_owned(),
            truncate(
                v.get("generalMessage")
                    .and_then(Value::as_str)
                    .unwrap_or("no message"),
            ),
        ),
        Err(_) => ("forbidden".to_owned(), summarize(body)),
    }
}

pub(super) fn truncate(text: &str) -> String {
    if text.chars().count() <= DETAIL_CHARS {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(DETAIL_CHARS).collect::<String>())
    }
}

/// Describes a body we could not use without quoting it (it may hold a token).
pub(super) fn describe_body(raw: &Raw) -> String {
    format!(
        "{} bytes of {}",
        raw.body.len(),
        raw.content_type
            .as_deref()
            .unwrap_or("unknown content type")
    )
}

/// A parse failure described by position only: serde's message can quote the offending value.
pub(super) fn unexpected(
    service: Service,
    raw: &Raw,
    expected: &'static str,
    e: &serde_json::Error,
) -> RingCxError {
    RingCxError::UnexpectedBody {
        service,
        status: raw.status.as_u16(),
        expected,
        detail: format!(
            "{} ({:?} error at line {} column {})",
            describe_body(raw),
            e.classify(),
            e.line(),
            e.column()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_a_base_path_prefix() {
        let base = Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(
            join(&base, &["api", "auth"]).as_str(),
            "http://127.0.0.1:9/prefix/api/auth"
        );
        let bare = Url::parse("https://engage.ringcentral.com").unwrap();
        assert_eq!(
            join(&bare, &["voice"]).as_str(),
            "https://engage.ringcentral.com/voice"
        );
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = (now + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let got = retry_after(&h, now).unwrap().as_secs();
        assert!((29..=30).contains(&got), "{got}");
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        let past = (now - chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
    }

    #[test]
    fn summaries_pick_message_fields_and_truncate() {
        let s = summarize(
            br#"{"errorCode":"access.denied.exception","generalMessage":"no","timestamp":1}"#,
        );
        assert_eq!(s, "access.denied.exception: no");
        assert_eq!(summarize(b""), "empty body");
        assert!(summarize("x".repeat(500).as_bytes()).chars().count() <= DETAIL_CHARS + 1);
    }
}
