//! RingCX Voice API calls: how they authenticate, the generic pass-through call the HTTP
//! function's proxy makes, and the typed accounts and users lists.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use secrecy::SecretString;
use url::Url;

use super::transport::{Endpoint, is_jwt_expired_body, join, unexpected};
use super::{Account, ApiPath, Method, RingCxClient, RingCxError, Service, User};

/// How a RingCX API call authenticates.
#[derive(Debug, Clone, Copy)]
pub enum VoiceAuth<'a> {
    /// `Authorization: Bearer <access token>`.
    Bearer(&'a SecretString),
    /// `X-Auth-Token: <permanent API token or access token>`.
    ApiToken(&'a SecretString),
}

impl VoiceAuth<'_> {
    pub(super) fn secret(&self) -> &SecretString {
        match self {
            VoiceAuth::Bearer(s) | VoiceAuth::ApiToken(s) => s,
        }
    }
}

/// A call to any RingCX API under `/voice/api/`, passed through as it is.
#[derive(Clone)]
pub struct VoiceRequest {
    /// The HTTP method.
    pub method: Method,
    /// The refused path.
    pub path: ApiPath,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// The body's content type.
    pub content_type: Option<String>,
    /// The body, passed on as it is.
    pub body: Bytes,
}

/// RingCX's answer to a [`VoiceRequest`], whatever its status.
#[derive(Clone)]
pub struct VoiceResponse {
    /// The HTTP status.
    pub status: u16,
    /// RingCX's content type.
    pub content_type: Option<String>,
    /// How long it asked us to wait, if it said.
    pub retry_after: Option<Duration>,
    /// The body as RingCX sent it.
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

    /// With a query string (without `?`).
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// With a body of `content_type`.
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

impl RingCxClient {
    /// The RingCX accounts the authenticated user can reach.
    pub async fn accounts(&self, auth: VoiceAuth<'_>) -> Result<Vec<Account>, RingCxError> {
        self.voice_json(auth, "v1/admin/accounts", "a JSON array of accounts")
            .await
    }

    /// The RingCX users the authenticated user can manage (needs MANAGE_USERS or SUPER_USER).
    pub async fn users(&self, auth: VoiceAuth<'_>) -> Result<Vec<User>, RingCxError> {
        self.voice_json(auth, "v1/admin/users", "a JSON array of users")
            .await
    }

    /// Any RingCX API under `/voice/api/`. Upstream statuses are answers, not errors: only a
    /// call that got no complete answer fails.
    pub async fn voice(
        &self,
        auth: VoiceAuth<'_>,
        req: VoiceRequest,
    ) -> Result<VoiceResponse, RingCxError> {
        let mut url = self.voice_url(&req.path);
        url.set_query(req.query.as_deref().filter(|q| !q.is_empty()));
        let mut builder = self.authed(self.http.request(req.method, url), auth);
        if let Some(ct) = req.content_type.as_deref() {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }
        let raw = self.send(Service::RingCx, builder).await?;
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
    ) -> Result<T, RingCxError> {
        let url = self.voice_url(&ApiPath::new(path)?);
        let request = self.authed(self.http.get(url), auth);
        let raw = self
            .call(Service::RingCx, Endpoint::Voice, request, &[auth.secret()])
            .await?;
        serde_json::from_slice(&raw.body)
            .map_err(|e| unexpected(Service::RingCx, &raw, expected, &e))
    }

    fn voice_url(&self, path: &ApiPath) -> Url {
        let mut segments = vec!["voice", "api"];
        segments.extend(path.as_str().split('/'));
        let mut url = join(&self.ringcx, &[]);
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{}", segments.join("/")));
        url
    }
}
