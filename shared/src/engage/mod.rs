//! The RingCX (Engage Voice) and RingCentral platform HTTP client.
//!
//! One `reqwest` client (rustls), built once and cloned cheaply, covers every documented flow:
//! the RingEX JWT grant, the exchange for a RingCX token with `includeRefresh=true`, the
//! deprecated RingCX admin login, refresh, permanent API tokens, accounts and users, and a
//! generic authenticated call under `/voice/api/` for the HTTP function's proxy.

mod error;
pub mod jwt;
mod model;
mod path;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

pub use error::{EngageError, Service};
pub use model::{
    ASSUMED_ACCESS_TOKEN_LIFETIME, Account, EngageSession, ExpirySource, PlatformToken, User,
};
pub use path::{ApiPath, CredentialArea};
pub use reqwest::Method;

use crate::clock::SharedClock;
use crate::credentials::{EngageLoginCredentials, RingExJwtCredentials};
use crate::secret::redact;

/// The documented production host (SDK defaults and the OpenAPI `servers` entry).
pub const DEFAULT_ENGAGE_BASE_URL: &str = "https://engage.ringcentral.com";
pub const DEFAULT_PLATFORM_URL: &str = "https://platform.ringcentral.com";
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How much of an upstream error body is kept in an error message.
const DETAIL_CHARS: usize = 200;
/// Largest upstream answer read: RingCX's documented answers are far smaller, and a Lambda has
/// 128 MB.
pub const MAX_UPSTREAM_BODY_BYTES: usize = 5 * 1024 * 1024;
/// The longest `Retry-After` honoured or passed on: an upstream asking for hours is treated as
/// asking for two minutes (the next scheduled run retries anyway).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Where RingCX lives and how long to wait for it.
#[derive(Debug, Clone)]
pub struct EngageConfig {
    pub engage_base_url: Url,
    pub platform_base_url: Url,
    pub connect_timeout: Duration,
    /// Whole-request budget; the HTTP function keeps it well under an IVR's patience.
    pub request_timeout: Duration,
}

impl EngageConfig {
    pub fn new(engage_base_url: Url, platform_base_url: Url) -> Self {
        Self {
            engage_base_url,
            platform_base_url,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// How a RingCX API call authenticates.
#[derive(Debug, Clone, Copy)]
pub enum VoiceAuth<'a> {
    /// `Authorization: Bearer <access token>`.
    Bearer(&'a SecretString),
    /// `X-Auth-Token: <permanent API token or access token>`.
    ApiToken(&'a SecretString),
}

impl VoiceAuth<'_> {
    fn secret(&self) -> &SecretString {
        match self {
            VoiceAuth::Bearer(s) | VoiceAuth::ApiToken(s) => s,
        }
    }
}

/// A call to any RingCX API under `/voice/api/`, passed through as it is.
#[derive(Clone)]
pub struct VoiceRequest {
    pub method: Method,
    pub path: ApiPath,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// RingCX's answer to a [`VoiceRequest`], whatever its status.
#[derive(Clone)]
pub struct VoiceResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

impl VoiceRequest {
    /// A request without query or body.
    pub fn new(method: Method, path: ApiPath) -> Self {
        Self {
            method,
            path,
            query: None,
            content_type: None,
            body: Bytes::new(),
        }
    }

    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    pub fn with_body(mut self, content_type: impl Into<String>, body: impl Into<Bytes>) -> Self {
        self.content_type = Some(content_type.into());
        self.body = body.into();
        self
    }
}

// Bodies and queries are the caller's data and may carry tokens (a proxied token list, say):
// `Debug` shows their size only.
impl std::fmt::Debug for VoiceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query_len", &self.query.as_ref().map(String::len))
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl std::fmt::Debug for VoiceResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("retry_after", &self.retry_after)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl VoiceResponse {
    /// RingCX's way of saying the access token has lived its 5 minutes.
    pub fn is_jwt_expired(&self) -> bool {
        self.status == 401 && is_jwt_expired_body(&self.body)
    }
}

/// The RingCX and RingCentral platform client; clone it freely (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct EngageClient {
    http: reqwest::Client,
    engage: Url,
    platform: Url,
    clock: SharedClock,
    request_timeout: Duration,
}

/// What kind of endpoint answered, which decides what a 4xx means.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    PlatformToken,
    Exchange,
    AdminLogin,
    Refresh,
    Voice,
}

/// A complete upstream answer.
struct Raw {
    status: StatusCode,
    content_type: Option<String>,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl EngageClient {
    pub fn new(config: &EngageConfig, clock: SharedClock) -> Result<Self, EngageError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("ringcx-token-broker/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| EngageError::Build(e.without_url().to_string()))?;
        Ok(Self {
            http,
            engage: config.engage_base_url.clone(),
            platform: config.platform_base_url.clone(),
            clock,
            request_timeout: config.request_timeout,
        })
    }

    /// The whole-request timeout: what a refresh must have left before it is started.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// RingEX JWT grant: `POST {platform}/restapi/oauth/token` with Basic client credentials.
    pub async fn ringex_jwt_token(
        &self,
        creds: &RingExJwtCredentials,
    ) -> Result<PlatformToken, EngageError> {
        let base = match creds.platform_url.as_deref() {
            Some(url) => Url::parse(url).map_err(|e| {
                EngageError::Build(format!(
                    "the credentials' platformUrl is not a URL ({e}): fix the credentials secret"
                ))
            })?,
            None => self.platform.clone(),
        };
        let request = self
            .http
            .post(join(&base, &["restapi", "oauth", "token"]))
            .basic_auth(&creds.client_id, Some(creds.client_secret.expose_secret()))
            .form(&[
                ("grant_type", JWT_GRANT),
                ("assertion", creds.jwt.expose_secret()),
            ]);
        let sent = [&creds.client_secret, &creds.jwt];
        let raw = self
            .call(Service::Platform, Endpoint::PlatformToken, request, &sent)
            .await?;
        serde_json::from_slice(&raw.body)
            .map_err(|e| unexpected(Service::Platform, &raw, "an OAuth token", &e))
    }

    /// Exchanges a RingCentral access token for a RingCX session, asking for a refresh token.
    /// RingCX allows 5 of these a minute.
    pub async fn exchange(
        &self,
        rc_access_token: &SecretString,
    ) -> Result<EngageSession, EngageError> {
        let mut url = join(&self.engage, &["api", "auth", "login", "rc", "accesstoken"]);
        url.set_query(Some("includeRefresh=true"));
        let request = self.http.post(url).form(&[
            ("rcAccessToken", rc_access_token.expose_secret()),
            ("rcTokenType", "Bearer"),
        ]);
        self.session(Endpoint::Exchange, request, &[rc_access_token])
            .await
    }

    /// The full RingEX flow: JWT grant, then exchange.
    pub async fn login_ringex(
        &self,
        creds: &RingExJwtCredentials,
    ) -> Result<EngageSession, EngageError> {
        let platform = self.ringex_jwt_token(creds).await?;
        self.exchange(&platform.access_token).await
    }

    /// RingCX admin login with username, password and platform id. Deprecated by RingCentral;
    /// the parameters go in a form body (the server reads them as request parameters either way)
    /// so the password never sits in a URL that proxies or logs could record.
    pub async fn login_engage(
        &self,
        creds: &EngageLoginCredentials,
    ) -> Result<EngageSession, EngageError> {
        tracing::warn!(
            flow = "engage-login",
            "using the deprecated RingCX admin login; move this tenant to a RingEX JWT credential"
        );
        let mut form = vec![
            ("username", creds.username.as_str()),
            ("password", creds.password.expose_secret()),
        ];
        if let Some(platform_id) = creds.platform_id.as_deref() {
            form.push(("platformId", platform_id));
        }
        let request = self
            .http
            .post(join(&self.engage, &["api", "auth", "login", "admin"]))
            .form(&form);
        self.session(Endpoint::AdminLogin, request, &[&creds.password])
            .await
    }

    /// Refreshes a session. The answer carries a NEW refresh token; the one sent must be treated
    /// as spent from the moment this call succeeds.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
    ) -> Result<EngageSession, EngageError> {
        let request = self
            .http
            .post(join(&self.engage, &["api", "auth", "token", "refresh"]))
            .form(&[
                ("refresh_token", refresh_token.expose_secret()),
                ("rcTokenType", "Bearer"),
            ]);
        self.session(Endpoint::Refresh, request, &[refresh_token])
            .await
    }

    /// Creates a permanent API token for the authenticated user; RingCX shows it only this once.
    pub async fn create_api_token(&self, auth: VoiceAuth<'_>) -> Result<SecretString, EngageError> {
        let raw = self.admin_token_call(Method::POST, None, auth).await?;
        let text = String::from_utf8_lossy(&raw.body);
        model::parse_created_token(&text).ok_or_else(|| EngageError::UnexpectedBody {
            service: Service::Engage,
            status: raw.status.as_u16(),
            expected: "a token (text or a JSON string)",
            detail: describe_body(&raw),
        })
    }

    /// Lists the authenticated user's permanent API tokens.
    pub async fn list_api_tokens(
        &self,
        auth: VoiceAuth<'_>,
    ) -> Result<Vec<SecretString>, EngageError> {
        let raw = self.admin_token_call(Method::GET, None, auth).await?;
        let text = String::from_utf8_lossy(&raw.body);
        model::parse_token_list(&text).ok_or_else(|| EngageError::UnexpectedBody {
            service: Service::Engage,
            status: raw.status.as_u16(),
            expected: "a token list (a JSON array or a brace-set of strings)",
            detail: describe_body(&raw),
        })
    }

    /// Revokes a permanent API token.
    pub async fn delete_api_token(
        &self,
        auth: VoiceAuth<'_>,
        token: &SecretString,
    ) -> Result<(), EngageError> {
        let raw = self
            .admin_token_call(Method::DELETE, Some(token), auth)
            .await?;
        let text = String::from_utf8_lossy(&raw.body);
        match model::parse_delete_answer(raw.status.as_u16(), &text) {
            Some(true) => Ok(()),
            Some(false) => Err(EngageError::NotFound {
                detail: "RingCX answered false: no such token for this user".to_owned(),
            }),
            None => Err(EngageError::UnexpectedBody {
                service: Service::Engage,
                status: raw.status.as_u16(),
                expected: "`true` or an empty 204",
                detail: describe_body(&raw),
            }),
        }
    }

    /// The RingCX accounts the authenticated user can reach.
    pub async fn accounts(&self, auth: VoiceAuth<'_>) -> Result<Vec<Account>, EngageError> {
        self.voice_json(auth, "v1/admin/accounts", "a JSON array of accounts")
            .await
    }

    /// The RingCX users the authenticated user can manage (needs MANAGE_USERS or SUPER_USER).
    pub async fn users(&self, auth: VoiceAuth<'_>) -> Result<Vec<User>, EngageError> {
        self.voice_json(auth, "v1/admin/users", "a JSON array of users")
            .await
    }

    /// Any RingCX API under `/voice/api/`. Upstream statuses are answers, not errors: only a
    /// call that got no complete answer fails.
    pub async fn voice(
        &self,
        auth: VoiceAuth<'_>,
        req: VoiceRequest,
    ) -> Result<VoiceResponse, EngageError> {
        let mut url = self.voice_url(&req.path);
        url.set_query(req.query.as_deref().filter(|q| !q.is_empty()));
        let mut builder = self.authed(self.http.request(req.method, url), auth);
        if let Some(ct) = req.content_type.as_deref() {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }
        let raw = self.send(Service::Engage, builder).await?;
        Ok(VoiceResponse {
            status: raw.status.as_u16(),
            content_type: raw.content_type,
            retry_after: raw.retry_after,
            body: raw.body,
        })
    }

    async fn voice_json<T: serde::de::DeserializeOwned>(
        &self,
        auth: VoiceAuth<'_>,
        path: &str,
        expected: &'static str,
    ) -> Result<T, EngageError> {
        let url = self.voice_url(&ApiPath::new(path)?);
        let request = self.authed(self.http.get(url), auth);
        let raw = self
            .call(Service::Engage, Endpoint::Voice, request, &[auth.secret()])
            .await?;
        serde_json::from_slice(&raw.body)
            .map_err(|e| unexpected(Service::Engage, &raw, expected, &e))
    }

    async fn admin_token_call(
        &self,
        method: Method,
        token: Option<&SecretString>,
        auth: VoiceAuth<'_>,
    ) -> Result<Raw, EngageError> {
        let mut url = join(&self.engage, &["voice", "api", "v1", "admin", "token"]);
        if let Some(token) = token
            && let Ok(mut segments) = url.path_segments_mut()
        {
            segments.push(token.expose_secret());
        }
        let request = self.authed(self.http.request(method, url), auth);
        let mut sent = vec![auth.secret()];
        sent.extend(token);
        self.call(Service::Engage, Endpoint::Voice, request, &sent)
            .await
    }

    fn voice_url(&self, path: &ApiPath) -> Url {
        let mut segments = vec!["voice", "api"];
        segments.extend(path.as_str().split('/'));
        let mut url = join(&self.engage, &[]);
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{}", segments.join("/")));
        url
    }

    fn authed(&self, builder: RequestBuilder, auth: VoiceAuth<'_>) -> RequestBuilder {
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

    async fn session(
        &self,
        endpoint: Endpoint,
        request: RequestBuilder,
        sent: &[&SecretString],
    ) -> Result<EngageSession, EngageError> {
        let sent_at = self.clock.now();
        let raw = self.call(Service::Engage, endpoint, request, sent).await?;
        let session =
            model::session_from_answer(&raw.body, sent_at, self.clock.now()).map_err(|e| {
                EngageError::UnexpectedBody {
                    service: Service::Engage,
                    status: raw.status.as_u16(),
                    expected: "AccessTokenUserDetails JSON with an accessToken",
                    detail: format!("{}: {}", describe_body(&raw), e.describe()),
                }
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
    async fn call(
        &self,
        service: Service,
        endpoint: Endpoint,
        request: RequestBuilder,
        sent: &[&SecretString],
    ) -> Result<Raw, EngageError> {
        let raw = self.send(service, request).await?;
        let status = raw.status.as_u16();
        tracing::debug!(service = %service, endpoint = ?endpoint, status, "upstream answered");
        if raw.status.is_success() {
            return Ok(raw);
        }
        let detail = || redact(&summarize(&raw.body), sent);
        Err(match (endpoint, status) {
            (_, 429) => EngageError::RateLimited {
                service,
                retry_after: raw.retry_after,
            },
            (_, 500..=599) => EngageError::Upstream {
                service,
                status,
                detail: detail(),
            },
            (Endpoint::Voice, 401) if is_jwt_expired_body(&raw.body) => {
                EngageError::AccessTokenExpired
            }
            (Endpoint::Voice, 401) => EngageError::Unauthorized { detail: detail() },
            (Endpoint::Voice, 403) => {
                let (code, message) = forbidden_parts(&raw.body);
                EngageError::Forbidden {
                    code: redact(&code, sent),
                    message: redact(&message, sent),
                }
            }
            (Endpoint::Voice, 404) => EngageError::NotFound { detail: detail() },
            (Endpoint::Refresh, 400 | 401 | 403) => EngageError::RefreshTokenRejected {
                status,
                detail: detail(),
            },
            (
                Endpoint::PlatformToken | Endpoint::Exchange | Endpoint::AdminLogin,
                400 | 401 | 403,
            ) => EngageError::CredentialsRejected {
                service,
                status,
                detail: detail(),
            },
            _ => EngageError::Rejected {
                service,
                status,
                detail: detail(),
            },
        })
    }

    async fn send(&self, service: Service, request: RequestBuilder) -> Result<Raw, EngageError> {
        let mut response = request.send().await.map_err(|e| transport(service, e))?;
        let status = response.status();
        let headers = response.headers();
        let retry_after = retry_after(headers, self.clock.now());
        let content_type = header_text(headers, CONTENT_TYPE.as_str());
        let too_large = || EngageError::BodyTooLarge {
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
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

fn transport(service: Service, error: reqwest::Error) -> EngageError {
    // The URL may carry a token (DELETE /admin/token/{token}): never keep it in the error.
    let error = error.without_url();
    if error.is_timeout() {
        EngageError::Timeout { service }
    } else if error.is_connect() {
        EngageError::Connect {
            service,
            source: error,
        }
    } else {
        EngageError::ConnectionDropped {
            service,
            source: error,
        }
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// `Retry-After` as delta-seconds or an HTTP date, clamped to [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
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

fn is_jwt_expired_body(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let text = text.trim().trim_matches('"');
    text.eq_ignore_ascii_case("Jwt is expired")
}

/// The human part of an upstream error body: RingCX's and RingCentral's message fields when it
/// is JSON, otherwise the start of the text.
fn summarize(body: &[u8]) -> String {
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

fn forbidden_parts(body: &[u8]) -> (String, String) {
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

fn truncate(text: &str) -> String {
    if text.chars().count() <= DETAIL_CHARS {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(DETAIL_CHARS).collect::<String>())
    }
}

/// Describes a body we could not use without quoting it (it may hold a token).
fn describe_body(raw: &Raw) -> String {
    format!(
        "{} bytes of {}",
        raw.body.len(),
        raw.content_type
            .as_deref()
            .unwrap_or("unknown content type")
    )
}

/// A parse failure described by position only: serde's message can quote the offending value.
fn unexpected(
    service: Service,
    raw: &Raw,
    expected: &'static str,
    e: &serde_json::Error,
) -> EngageError {
    EngageError::UnexpectedBody {
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
