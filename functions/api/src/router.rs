//! The route table and the router built from it, with the access log every request passes.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};
use broker::store::SecretStore;

use crate::error::{ApiError, ErrorCode};
use crate::{AppState, health, hooks, oauth, openapi, permanent, proxy};

/// Every route, the single source of the router and of the OpenAPI check.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/health", &["get"]),
    ("/v1/openapi.json", &["get"]),
    ("/v1/oauth/token", &["post"]),
    ("/v1/token", &["get"]),
    (
        "/v1/engage/{*path}",
        &["get", "post", "put", "patch", "delete"],
    ),
    ("/v1/api-tokens", &["get", "post"]),
    ("/v1/api-tokens/{token}", &["delete"]),
    ("/v1/api-tokens/{token}/rotate", &["post"]),
    ("/v1/hooks/{name}", &["post"]),
];

/// The router over every route in [`ROUTES`].
pub fn router<S: SecretStore + Clone + 'static>(app: AppState<S>) -> Router {
    let mut router = Router::new();
    for (path, methods) in ROUTES {
        let mut route: MethodRouter<AppState<S>> = MethodRouter::new();
        for method in *methods {
            route = route.merge(endpoint::<S>(path, method));
        }
        router = router.route(path, route);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(access_log))
        .with_state(app)
}

/// One line per request: method, route template (never the raw path or query, which can carry a
/// token or a key), status and duration.
async fn access_log(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, route, status, ms, "request");
    } else {
        tracing::info!(%method, route, status, ms, "request");
    }
    response
}

fn filter(method: &str) -> MethodFilter {
    match method {
        "get" => MethodFilter::GET,
        "post" => MethodFilter::POST,
        "put" => MethodFilter::PUT,
        "patch" => MethodFilter::PATCH,
        _ => MethodFilter::DELETE,
    }
}

fn endpoint<S: SecretStore + Clone + 'static>(
    path: &str,
    method: &str,
) -> MethodRouter<AppState<S>> {
    let f = filter(method);
    match (path, method) {
        ("/v1/health", "get") => on(f, health::health::<S>),
        ("/v1/openapi.json", "get") => on(f, openapi::document),
        ("/v1/oauth/token", "post") => on(f, oauth::token::<S>),
        ("/v1/token", "get") => on(f, oauth::key_token::<S>),
        ("/v1/engage/{*path}", _) => on(f, proxy::proxy::<S>),
        ("/v1/api-tokens", "get") => on(f, permanent::list::<S>),
        ("/v1/api-tokens", "post") => on(f, permanent::create::<S>),
        ("/v1/api-tokens/{token}", "delete") => on(f, permanent::delete::<S>),
        ("/v1/api-tokens/{token}/rotate", "post") => on(f, permanent::rotate::<S>),
        ("/v1/hooks/{name}", "post") => on(f, hooks::hook::<S>),
        // A table entry without a handler routes nothing; the OpenAPI test catches it.
        _ => MethodRouter::new(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::RouteNotFound,
        "no such route; GET /v1/openapi.json lists every route",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}
