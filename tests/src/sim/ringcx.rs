//! The simulated endpoints: RingCentral's OAuth token endpoint and RingCX's auth, permanent
//! token, accounts and users APIs, answering as `../shared/engage-docs/` describes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::Shared;
use super::faults::{CreatedTokenFormat, DeleteAnswer, TokenListFormat, TokenRefusal};
use super::state::{CLIENT_ID, CLIENT_SECRET, PLATFORM_TOKEN_TTL_SECS, World};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/restapi/oauth/token", post(platform_token))
        .route("/api/auth/login/rc/accesstoken", post(exchange))
        .route("/api/auth/login/admin", post(password_login))
        .route("/api/auth/token/refresh", post(refresh))
        .route(
            "/voice/api/v1/admin/token",
            get(list_tokens).post(create_token),
        )
        .route("/voice/api/v1/admin/token/{token}", delete(delete_token))
        .route("/voice/api/v1/admin/accounts", get(accounts))
        .route("/voice/api/v1/admin/users", get(users))
        .route("/voice/api/v1/sim/echo", any(echo))
        .merge(super::auth_configs::routes())
        .merge(super::leads::routes())
        .route("/voice/api/v1/sim/echo/{*rest}", any(echo))
}

/// Request parameters the way RingCX's server reads them: query string and form body merged.
/// A request's parameters, from the query string and a form body, as RingCX reads them.
pub(crate) struct Params(pub(crate) HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: axum::extract::Request, _: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        Ok(Params(params(&parts.uri, &parts.headers, &body)))
    }
}

fn params(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        out.extend(url::form_urlencoded::parse(body).into_owned());
    }
    out
}

pub(crate) fn json_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn text_answer(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
        body.into(),
    )
        .into_response()
}

/// RingCX's login error shape.
fn login_error(status: StatusCode, uri: &Uri, message: &str, now: DateTime<Utc>) -> Response {
    json_answer(
        status,
        json!({
            "generalMessage": message,
            "details": "Authentication failed",
            "requestUri": uri.path(),
            "timestamp": now.timestamp_millis(),
        }),
    )
}

fn rate_limited(retry_after: i64, message: &str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::RETRY_AFTER, retry_after.to_string()),
        ],
        json!({"generalMessage": message}).to_string(),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    json_answer(
        status,
        json!({"error": code, "error_description": description,
               "errors": [{"errorCode": "OAU-251", "message": description}]}),
    )
}

async fn platform_token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Params(p): Params,
) -> Response {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if basic.as_deref() != Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}")) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client credentials",
        );
    }
    if p.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant type",
        );
    }
    let mut w = s.world();
    let now = w.now(&s.clock);
    let Some(user) = p
        .get("assertion")
        .and_then(|a| w.users.iter().position(|u| &u.jwt_credential == a))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT credential",
        );
    };
    let token = w.issue_platform_token(user, now);
    json_answer(
        StatusCode::OK,
        json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": PLATFORM_TOKEN_TTL_SECS,
            "refresh_token": format!("rc-rt-{}", uuid::Uuid::from_u64_pair(w.rng.u64(..), 1)),
            "refresh_token_expires_in": 604800,
            "scope": "ReadAccounts",
            "owner_id": w.users[user].rc_user_id.to_string(),
            "endpoint_id": "sim-endpoint",
        }),
    )
}

async fn exchange(State(s): State<Arc<Shared>>, uri: Uri, Params(p): Params) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    let grant = p
        .get("rcAccessToken")
        .and_then(|t| w.platform_tokens.get(t))
        .map(|g| (g.user, g.expires_at));
    let user = match grant {
        Some((user, expires_at)) => {
            // RingCX counts every exchange a user attempts, refused ones too.
            let limit = w.behaviour.exchange_limit_per_minute;
            let window = w.exchanges.entry(user).or_default();
            if let Err(wait) = World::take_rate(window, limit, now) {
                return rate_limited(
                    wait,
                    "Too many requests: the token exchange allows 5 per minute",
                );
            }
            if expires_at <= now {
                return login_error(
                    StatusCode::UNAUTHORIZED,
                    &uri,
                    "Invalid RingCentral access token",
                    now,
                );
            }
            user
        }
        None => {
            return login_error(
                StatusCode::UNAUTHORIZED,
                &uri,
                "Invalid RingCentral access token",
                now,
            );
        }
    };
    let include_refresh = p
        .get("includeRefresh")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let family = w.new_family();
    let answer = w.session_body(user, now, include_refresh, family);
    json_answer(StatusCode::OK, answer)
}

async fn password_login(State(s): State<Arc<Shared>>, uri: Uri, Params(p): Params) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    let found = w.users.iter().position(|u| {
        Some(&u.username) == p.get("username")
            && Some(&u.password) == p.get("password")
            && p.get("platformId").is_none_or(|id| id == &u.platform_id)
    });
    match found {
        Some(user) => {
            let family = w.new_family();
            let answer = w.session_body(user, now, true, family);
            json_answer(StatusCode::OK, answer)
        }
        None => login_error(
            StatusCode::UNAUTHORIZED,
            &uri,
            "Invalid username or password",
            now,
        ),
    }
}

async fn refresh(State(s): State<Arc<Shared>>, uri: Uri, Params(p): Params) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    // Single use: a refresh token is spent by the refresh that succeeds with it; the new one
    // stays in its family.
    match p
        .get("refresh_token")
        .and_then(|t| w.spend_refresh_token(t))
    {
        Some((user, family)) => {
            let answer = w.session_body(user, now, true, family);
            json_answer(StatusCode::OK, answer)
        }
        None => login_error(StatusCode::UNAUTHORIZED, &uri, "Invalid refresh token", now),
    }
}

/// Why a Voice API call was turned away.
pub(crate) enum Refusal {
    Expired,
    Unauthenticated,
    RateLimited(i64),
}

impl Refusal {
    pub(crate) fn respond(self, now: DateTime<Utc>) -> Response {
        match self {
            Refusal::Expired => text_answer(StatusCode::UNAUTHORIZED, "Jwt is expired"),
            Refusal::Unauthenticated => json_answer(
                StatusCode::UNAUTHORIZED,
                json!({"errorCode": "authentication.exception",
                       "generalMessage": "Full authentication is required to access this resource",
                       "timestamp": now.timestamp_millis()}),
            ),
            Refusal::RateLimited(wait) => {
                rate_limited(wait, "Rate limit exceeded: 120 requests per minute")
            }
        }
    }
}

/// Authenticates a Voice API call: `Authorization: Bearer <access token>`, or `X-Auth-Token`
/// with a permanent token or an access token. Then applies the per-user rate limit.
pub(crate) fn check(
    w: &mut World,
    now: DateTime<Utc>,
    headers: &HeaderMap,
) -> Result<usize, Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let x_auth = headers.get("x-auth-token").and_then(|v| v.to_str().ok());
    let skew = Duration::seconds(w.behaviour.validation_skew_secs);
    let access = |token: &str, w: &World| -> Result<usize, Refusal> {
        match (w.access_tokens.get(token), w.behaviour.token_refusal) {
            (None, _) | (Some(_), TokenRefusal::Unauthenticated) => Err(Refusal::Unauthenticated),
            (Some(_), TokenRefusal::Expired) => Err(Refusal::Expired),
            (Some(grant), TokenRefusal::None) if grant.expires_at <= now + skew => {
                Err(Refusal::Expired)
            }
            (Some(grant), TokenRefusal::None) => Ok(grant.user),
        }
    };
    let user = match (bearer, x_auth) {
        (Some(token), _) => access(token, w)?,
        (None, Some(token)) => match w.api_tokens.iter().find(|(_, t)| t == token) {
            Some((user, _)) => *user,
            None => access(token, w)?,
        },
        (None, None) => return Err(Refusal::Unauthenticated),
    };
    if let Some(limit) = w.behaviour.voice_rate_limit_per_minute {
        let window = w.voice_calls.entry(user).or_default();
        World::take_rate(window, limit, now).map_err(Refusal::RateLimited)?;
    }
    Ok(user)
}

/// RingCX's Voice API error shape.
pub(crate) fn voice_error(
    status: StatusCode,
    code: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Response {
    json_answer(
        status,
        json!({"errorCode": code, "generalMessage": message, "timestamp": now.timestamp_millis()}),
    )
}

pub(crate) fn forbidden(now: DateTime<Utc>, message: &str) -> Response {
    voice_error(
        StatusCode::FORBIDDEN,
        "access.denied.exception",
        message,
        now,
    )
}

async fn list_tokens(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    let user = match check(&mut w, now, &headers) {
        Ok(u) => u,
        Err(r) => return r.respond(now),
    };
    let tokens: Vec<&String> = w
        .api_tokens
        .iter()
        .filter(|(u, _)| *u == user)
        .map(|(_, t)| t)
        .collect();
    match w.behaviour.token_list {
        TokenListFormat::JsonArray => json_answer(StatusCode::OK, json!(tokens)),
        TokenListFormat::BraceSet => {
            let items: Vec<String> = tokens.iter().map(|t| format!("  \"{t}\"")).collect();
            let body = format!("{{\n{}\n}}", items.join(",\n"));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
    }
}

async fn create_token(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    let user = match check(&mut w, now, &headers) {
        Ok(u) => u,
        Err(r) => return r.respond(now),
    };
    let token = w.issue_api_token(user);
    match w.behaviour.created_token {
        CreatedTokenFormat::Text => text_answer(StatusCode::OK, token),
        CreatedTokenFormat::JsonString => json_answer(StatusCode::OK, json!(token)),
    }
}

async fn delete_token(
    State(s): State<Arc<Shared>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    let user = match check(&mut w, now, &headers) {
        Ok(u) => u,
        Err(r) => return r.respond(now),
    };
    let before = w.api_tokens.len();
    w.api_tokens.retain(|(u, t)| !(*u == user && *t == token));
    if w.api_tokens.len() == before {
        return text_answer(StatusCode::OK, "false");
    }
    match w.behaviour.delete_answer {
        DeleteAnswer::True => text_answer(StatusCode::OK, "true"),
        DeleteAnswer::NoContent => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn accounts(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    let user = match check(&mut w, now, &headers) {
        Ok(u) => u,
        Err(r) => return r.respond(now),
    };
    let me = &w.users[user];
    let mut list = vec![json!({
        "accountId": me.account_id, "accountName": "RingForce",
        "archivedAccount": false, "enableInbound": true, "enableOutbound": true,
        "timezoneName": "US/Eastern", "mainAccountId": me.main_account_id
    })];
    if me.super_user {
        list.push(
            json!({"accountId": 333334, "accountName": "RingForce Support",
                         "archivedAccount": false, "enableInbound": true}),
        );
    }
    json_answer(StatusCode::OK, Value::Array(list))
}

async fn users(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    let user = match check(&mut w, now, &headers) {
        Ok(u) => u,
        Err(r) => return r.respond(now),
    };
    if !w.users[user].super_user {
        return forbidden(
            now,
            "Access is denied: MANAGE_USERS or SUPER_USER role required",
        );
    }
    let list: Vec<Value> = w
        .users
        .iter()
        .map(|u| {
            json!({"userId": u.user_id, "userName": u.username, "enabled": true,
                   "rcUserId": u.rc_user_id, "rcAccountId": u.main_account_id,
                   "rootUser": u.super_user, "roles": [], "children": []})
        })
        .collect();
    json_answer(StatusCode::OK, Value::Array(list))
}

/// Simulator only: answers with what it received, so a proxy's pass-through can be checked.
async fn echo(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    if let Err(r) = check(&mut w, now, &headers) {
        return r.respond(now);
    }
    json_answer(
        StatusCode::OK,
        json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "contentType": headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            "body": String::from_utf8_lossy(&body),
        }),
    )
}
