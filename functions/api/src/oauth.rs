//! `POST /v1/oauth/token`: the OAuth 2.0 client-credentials grant (RFC 6749 section 4.4), the way
//! RingCX's `OAUTH` external auth config asks for a token. The client id is a caller id and the
//! secret its key, supplied in exactly one place: the form body (`BODY`), the query string
//! (`QUERY_PARAM`) or Basic (`HEADER`). Answers and errors are RFC 6749 JSON. Nothing here logs
//! the query string.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use broker::store::SecretStore;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::auth::{Presented, QueryAuth, Scope, presented};
use crate::error::{ApiError, ErrorCode};
use crate::token_cache::CachedToken;
use crate::{AppState, media_type, no_store, read_body};

/// An RFC 6749 error answer (this route speaks OAuth, not the broker's error shape).
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: &'static str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut response = no_store((self.status, Json(body)).into_response());
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="ringcx-broker""#),
            );
        }
        response
    }
}

fn error(status: StatusCode, code: &'static str, description: &'static str) -> OAuthError {
    OAuthError {
        status,
        code,
        description,
    }
}

fn invalid_request(description: &'static str) -> OAuthError {
    error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn invalid_client(description: &'static str) -> OAuthError {
    error(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

/// Parameters of one place (body or query); a repeated name is an error (RFC 6749 3.2).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(bytes: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(bytes).into_owned().collect();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(invalid_request("a parameter appears more than once"));
            }
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_client_credentials(&self) -> bool {
        self.get("client_id").is_some() || self.get("client_secret").is_some()
    }

    fn client(&self) -> Result<Presented, OAuthError> {
        match (self.get("client_id"), self.get("client_secret")) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Ok(Presented::Basic {
                    id: id.to_owned(),
                    key: SecretString::from(secret.to_owned()),
                })
            }
            _ => Err(invalid_client(
                "client_id and client_secret are both required",
            )),
        }
    }
}

pub(crate) async fn token<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match grant(&app, &uri, &headers, body).await {
        Ok(response) | Err(response) => response,
    }
}

impl From<OAuthError> for Response {
    fn from(e: OAuthError) -> Self {
        e.into_response()
    }
}

async fn grant<S: SecretStore + Clone + 'static>(
    app: &AppState<S>,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let body = read_body(headers, body)
        .await
        .map_err(IntoResponse::into_response)?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| media_type(ct) == "application/x-www-form-urlencoded");
    if !body.is_empty() && !is_form {
        return Err(invalid_request(
            "send an application/x-www-form-urlencoded body (or parameters in the query string)",
        )
        .into());
    }
    let form = Params::parse(&body).map_err(Response::from)?;
    let query = Params::parse(uri.query().unwrap_or("").as_bytes()).map_err(Response::from)?;
    let grant_type = match (form.get("grant_type"), query.get("grant_type")) {
        (Some(_), Some(_)) => return Err(invalid_request("grant_type is given twice").into()),
        (Some(g), None) | (None, Some(g)) => g,
        (None, None) => return Err(invalid_request("grant_type is required").into()),
    };
    if grant_type != "client_credentials" {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        )
        .into());
    }
    let basic = headers.contains_key(header::AUTHORIZATION);
    let places = [
        basic,
        form.has_client_credentials(),
        query.has_client_credentials(),
    ];
    let client = match places {
        [true, false, false] => {
            let none = Default::default();
            let auth = QueryAuth {
                allow_key: false,
                jwt_params: &none,
            };
            match presented(headers, None, auth) {
                Ok(p @ Presented::Basic { .. }) => p,
                _ => return Err(invalid_client("send Basic client_id:client_secret").into()),
            }
        }
        [false, true, false] => form.client().map_err(Response::from)?,
        [false, false, true] => query.client().map_err(Response::from)?,
        [false, false, false] => {
            return Err(invalid_client(
                "send client credentials as Basic, in the form body, or in the query string",
            )
            .into());
        }
        _ => {
            return Err(invalid_request(
                "client credentials must be supplied in exactly one place",
            )
            .into());
        }
    };
    let caller = match app.callers.caller_of(&client).await {
        Ok(c) => c,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return Err(invalid_client("client authentication failed").into());
        }
        Err(e) => return Err(e.into_response()),
    };
    if caller.require(Scope::TokenRead).is_err() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client lacks the token:read scope",
        )
        .into());
    }
    if app.acts_for_tenant(&caller, headers).is_err() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "this client does not act for that tenant",
        )
        .into());
    }
    match app.handout_token(&caller.tenant).await {
        Ok(token) => Ok(token_answer(&token, app.clock.now())),
        Err(e) if e.code == ErrorCode::PermanentTokenTenant => Err(error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client's tenant is served by a permanent API token: there is no short-lived token to hand out",
        )
        .into()),
        Err(e) => Err(e.into_response()),
    }
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

/// `GET /v1/token`: the current access token for clients that send a key header.
pub(crate) async fn key_token<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = app.caller(&headers, &uri, Scope::TokenRead).await?.caller;
    let token = app.handout_token(&caller.tenant).await?;
    Ok(token_answer(&token, app.clock.now()))
}
