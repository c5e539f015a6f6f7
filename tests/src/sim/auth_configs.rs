//! RingCX's external auth configs (`/voice/api/v1/admin/accounts/{accountId}/external/authConfigs`),
//! as the RingCX OpenAPI describes them: list (paged), get, delete, and create / patch per type.
//! Secrets are stored but never shown again: answers carry `****` in their place, so a client
//! that needs an existing secret back cannot rely on reading it.

use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Shared;
use super::ringcx::{check, forbidden, json_answer, voice_error as error};
use super::state::World;

/// Rows a list page holds at most, whatever `maxRows` asks: clients must page.
pub const PAGE_CAP: usize = 25;
const SECRET_FIELDS: [&str; 5] = ["secret", "password", "privateKey", "apiKey", "assertion"];
const BASE: &str = "/voice/api/v1/admin/accounts/{account}/external/authConfigs";

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(BASE, get(list))
        .route(&format!("{BASE}/{{id}}"), get(get_one).delete(delete_one))
        .route(
            &format!("{BASE}/{{id}}/{{kind}}"),
            axum::routing::post(write).patch(write),
        )
}

fn missing(now: DateTime<Utc>) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not.found",
        "Auth config not found",
        now,
    )
}

/// The world, locked, for a caller admitted on `account`, and the simulator's now.
fn admitted<'a>(
    s: &'a Shared,
    headers: &HeaderMap,
    account: &str,
) -> Result<(MutexGuard<'a, World>, DateTime<Utc>), Box<Response>> {
    let mut w = s.world();
    let now = w.now(&s.clock);
    admit(&mut w, now, headers, account)?;
    Ok((w, now))
}

/// The caller's user, allowed on `account` and holding the admin role; or the refusal.
fn admit(
    w: &mut World,
    now: DateTime<Utc>,
    headers: &HeaderMap,
    account: &str,
) -> Result<(), Box<Response>> {
    let user = check(w, now, headers).map_err(|r| Box::new(r.respond(now)))?;
    let u = &w.users[user];
    let own = u.account_id == account || (u.super_user && account == "333334");
    if !own {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "not.found",
            "Account not found",
            now,
        )));
    }
    if !u.super_user {
        return Err(Box::new(forbidden(
            now,
            "Access is denied: MANAGE_ACCOUNT or SUPER_USER role required",
        )));
    }
    Ok(())
}

fn shown(record: &Value) -> Value {
    let mut out = record.clone();
    if let Some(map) = out.as_object_mut() {
        for field in SECRET_FIELDS {
            if map.contains_key(field) {
                map.insert(field.to_owned(), json!("****"));
            }
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Paging {
    page: Option<usize>,
    max_rows: Option<usize>,
}

async fn list(
    State(s): State<Arc<Shared>>,
    Path(account): Path<String>,
    paging: Result<Query<Paging>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (w, now) = match admitted(&s, &headers, &account) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let Ok(Query(paging)) = paging else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad.request",
            "page and maxRows are integers",
            now,
        );
    };
    let rows = paging.max_rows.unwrap_or(PAGE_CAP).clamp(1, PAGE_CAP);
    let records: Vec<Value> = w
        .auth_configs
        .iter()
        .filter(|((a, _), _)| *a == account)
        .map(|(_, v)| shown(v))
        .skip(paging.page.unwrap_or(0).saturating_mul(rows))
        .take(rows)
        .collect();
    json_answer(StatusCode::OK, json!({"records": records}))
}

async fn get_one(
    State(s): State<Arc<Shared>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (w, now) = match admitted(&s, &headers, &account) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    match w.auth_configs.get(&(account, id)) {
        Some(v) => json_answer(StatusCode::OK, shown(v)),
        None => missing(now),
    }
}

async fn delete_one(
    State(s): State<Arc<Shared>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (mut w, now) = match admitted(&s, &headers, &account) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    match w.auth_configs.remove(&(account, id)) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => missing(now),
    }
}

/// JSON types of the auth config properties (`GetExternalAuthConfigById200Response`).
enum Kind {
    Text,
    Integer,
    Flag,
    List,
}

fn field_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "expirationTime" => Kind::Integer,
        "isIncludeIssueAt" | "isSecretEncoded" => Kind::Flag,
        "otherParameters" => Kind::List,
        "addTokenTo"
        | "algorithm"
        | "apiKey"
        | "assertion"
        | "authConfigId"
        | "authType"
        | "clientCredentialsSupplyIn"
        | "clientId"
        | "createdTime"
        | "description"
        | "grantType"
        | "headerPrefix"
        | "jwtHeaders"
        | "oauthProvider"
        | "password"
        | "payload"
        | "privateKey"
        | "providerName"
        | "queryParamName"
        | "scope"
        | "secret"
        | "tokenUrl"
        | "updatedTime"
        | "username" => Kind::Text,
        _ => return None,
    })
}

type Enums = &'static [(&'static str, &'static [&'static str])];

const GRANT_TYPES: &[&str] = &[
    "CLIENT_CREDENTIALS",
    "PASSWORD",
    "REFRESH_TOKEN",
    "JWT_BEARER",
];
const SUPPLY_IN: &[&str] = &["BODY", "QUERY_PARAM", "HEADER"];
const OAUTH_ENUMS: Enums = &[
    ("grantType", GRANT_TYPES),
    ("clientCredentialsSupplyIn", SUPPLY_IN),
];
const JWT_ENUMS: Enums = &[("addTokenTo", &["REQUEST_HEADER", "QUERY_PARAM"])];

/// Per path word: `authType`, required fields, and enum-valued fields.
fn schema(kind: &str) -> Option<(&'static str, &'static [&'static str], Enums)> {
    Some(match kind {
        "oauth" => (
            "OAUTH",
            &[
                "providerName",
                "clientId",
                "secret",
                "tokenUrl",
                "grantType",
            ],
            OAUTH_ENUMS,
        ),
        "jwt" => (
            "JWT",
            &["providerName", "algorithm", "payload", "addTokenTo"],
            JWT_ENUMS,
        ),
        "basic" => ("BASIC", &["providerName", "username", "password"], &[]),
        "apiKey" => ("APIKEY", &["providerName", "apiKey"], &[]),
        "customAuth" => ("CUSTOM_AUTH", &["providerName"], &[]),
        _ => return None,
    })
}

async fn write(
    State(s): State<Arc<Shared>>,
    method: Method,
    Path((account, id, kind)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (mut w, now) = match admitted(&s, &headers, &account) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "bad.request", m, now);
    let Some((auth_type, required, enums)) = schema(&kind) else {
        return error(StatusCode::NOT_FOUND, "not.found", "No handler found", now);
    };
    if uuid::Uuid::parse_str(&id).is_err() {
        return bad("authConfigId must be a UUID");
    }
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body) else {
        return bad("the body must be a JSON object");
    };
    if fields
        .get("authType")
        .is_some_and(|t| t.as_str() != Some(auth_type))
    {
        return bad("authType does not match the path");
    }
    // Typed as the OpenAPI says; unknown properties are ignored, as RingCX's JSON mapper does.
    fields.retain(|k, _| field_kind(k).is_some());
    for (k, v) in &fields {
        let fits = match field_kind(k) {
            Some(Kind::Text) => v.is_string(),
            Some(Kind::Integer) => v.is_i64(),
            Some(Kind::Flag) => v.is_boolean(),
            Some(Kind::List) => v.is_array(),
            None => true,
        };
        if !fits {
            return bad(&format!("{k} has the wrong type"));
        }
    }
    for (field, allowed) in enums {
        if let Some(v) = fields.get(*field)
            && !v.as_str().is_some_and(|v| allowed.contains(&v))
        {
            return bad(&format!("{field} must be one of {allowed:?}"));
        }
    }
    let key = (account.clone(), id.clone());
    let mut record: Map<String, Value> = match (method == Method::POST, w.auth_configs.get(&key)) {
        (true, Some(_)) => return bad("an auth config with that id already exists"),
        (true, None) => Map::new(),
        (false, None) => {
            return missing(now);
        }
        (false, Some(existing)) if existing["authType"] != auth_type => {
            return bad("that auth config is of another type");
        }
        (false, Some(existing)) => existing.as_object().cloned().unwrap_or_default(),
    };
    let created = record.is_empty();
    for (k, v) in fields {
        if !matches!(
            k.as_str(),
            "authConfigId" | "authType" | "createdTime" | "updatedTime"
        ) {
            record.insert(k, v);
        }
    }
    for field in required.iter() {
        let present = record
            .get(*field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !present {
            return bad(&format!("{field} is required"));
        }
    }
    let stamp = json!(now.to_rfc3339());
    record.insert("authConfigId".into(), json!(id));
    record.insert("authType".into(), json!(auth_type));
    if created {
        record.insert("createdTime".into(), stamp.clone());
    }
    record.insert("updatedTime".into(), stamp);
    let record = Value::Object(record);
    let answer = shown(&record);
    w.auth_configs.insert(key, record);
    json_answer(StatusCode::OK, answer)
}
