//! `GET /v1/health`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use broker::store::SecretStore;
use serde_json::json;

use crate::AppState;

/// Liveness, and whether every tenant has a usable token. Names no tenant and shows no token.
pub(crate) async fn health<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
) -> Response {
    let (usable, total) = app.tokens.health().await;
    let status = if usable == total {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if usable == total { "ok" } else { "degraded" },
        "usableToken": usable == total,
        "tenantsWithToken": usable,
        "tenants": total,
    });
    (status, Json(body)).into_response()
}
