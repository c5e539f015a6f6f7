//! `/__sim/*`: the simulator's controls over HTTP, for `make dev` and out-of-process tests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Duration;
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::faults::{Behaviour, Faults, ScriptedFault};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/clock", get(clock))
        .route("/clock/advance", post(advance))
        .route(
            "/faults",
            get(get_faults).put(set_faults).delete(clear_faults),
        )
        .route("/faults/next", post(fail_next))
        .route("/behaviour", get(get_behaviour).put(set_behaviour))
        .route("/refresh-tokens/revoke", post(revoke))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/counters", get(counters))
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/reset-rate-limits", put(reset_rate_limits))
}

async fn clock(State(s): State<Arc<Shared>>) -> Response {
    let w = s.world();
    Json(json!({"now": w.now(&s.clock), "offsetSeconds": w.offset.num_seconds()})).into_response()
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn advance(State(s): State<Arc<Shared>>, Json(a): Json<Advance>) -> Response {
    if a.seconds < 0 {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "the clock only moves forward"})),
        )
            .into_response();
    }
    let mut w = s.world();
    w.offset += Duration::seconds(a.seconds);
    Json(json!({"now": w.now(&s.clock)})).into_response()
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Json<Faults> {
    Json(s.world().faults.clone())
}

async fn set_faults(State(s): State<Arc<Shared>>, Json(f): Json<Faults>) -> Json<Faults> {
    s.world().faults = f.clone();
    Json(f)
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> StatusCode {
    let mut w = s.world();
    w.faults = Faults::default();
    w.scripted.clear();
    StatusCode::NO_CONTENT
}

async fn fail_next(State(s): State<Arc<Shared>>, Json(f): Json<ScriptedFault>) -> StatusCode {
    s.world().scripted.push(f);
    StatusCode::NO_CONTENT
}

async fn get_behaviour(State(s): State<Arc<Shared>>) -> Json<Behaviour> {
    Json(s.world().behaviour.clone())
}

async fn set_behaviour(State(s): State<Arc<Shared>>, Json(b): Json<Behaviour>) -> Json<Behaviour> {
    s.world().behaviour = b.clone();
    Json(b)
}

async fn revoke(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let mut w = s.world();
    let n = w.refresh_tokens.len();
    w.refresh_tokens.clear();
    Json(json!({"revoked": n}))
}

async fn requests(State(s): State<Arc<Shared>>) -> Response {
    Json(s.world().log.clone()).into_response()
}

async fn clear_requests(State(s): State<Arc<Shared>>) -> StatusCode {
    s.world().log.clear();
    StatusCode::NO_CONTENT
}

async fn counters(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let w = s.world();
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for r in &w.log {
        *counts
            .entry(format!("{} {}", r.method, r.path))
            .or_default() += 1;
    }
    Json(json!({
        "requests": counts,
        "validRefreshTokens": w.refresh_tokens.len(),
        "tokenStats": w.token_stats,
        "apiTokens": w.api_tokens.len(),
    }))
}

async fn reset_rate_limits(State(s): State<Arc<Shared>>) -> StatusCode {
    let mut w = s.world();
    w.exchanges.clear();
    w.voice_calls.clear();
    StatusCode::NO_CONTENT
}
