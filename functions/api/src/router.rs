//! The route table and the router built from it, with the access log every request passes.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};
use broker::store::SecretStore;

use crate::error::{ApiError, ErrorCode};
use crate::{AppState, health, hooks, oauth, openapi, permanent, proxy};

/// An HTTP method a route takes: a closed set, so the table can name no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `GET` (axum serves `HEAD` wherever `GET` is).
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Verb {
    /// The OpenAPI document's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Every route, the single source of the router and of the OpenAPI check.
pub const ROUTES: &[(&str, &[Verb])] = &[
    ("/v1/health", &[Verb::Get]),
    ("/v1/openapi.json", &[Verb::Get]),
    ("/v1/oauth/token", &[Verb::Post]),
    ("/v1/token", &[Verb::Get]),
    (
        "/v1/engage/{*path}",
        &[Verb::Get, Verb::Post, Verb::Put, Verb::Patch, Verb::Delete],
    ),
    ("/v1/api-tokens", &[Verb::Get, Verb::Post]),
    ("/v1/api-tokens/{token}", &[Verb::Delete]),
    ("/v1/api-tokens/{token}/rotate", &[Verb::Post]),
    ("/v1/hooks/{name}", &[Verb::Post]),
];

/// The router over every route in [`ROUTES`].
pub fn router<S: SecretStore + Clone + 'static>(app: AppState<S>) -> Router {
    let mut router = Router::new();
    for (path, methods) in ROUTES {
        let mut route: MethodRouter<AppState<S>> = MethodRouter::new();
        for method in *methods {
            route = route.merge(endpoint::<S>(path, *method));
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

fn endpoint<S: SecretStore + Clone + 'static>(path: &str, verb: Verb) -> MethodRouter<AppState<S>> {
    let f = verb.filter();
    match (path, verb) {
        ("/v1/health", Verb::Get) => on(f, health::health::<S>),
        ("/v1/openapi.json", Verb::Get) => on(f, openapi::document),
        ("/v1/oauth/token", Verb::Post) => on(f, oauth::token::<S>),
        ("/v1/token", Verb::Get) => on(f, oauth::key_token::<S>),
        ("/v1/engage/{*path}", _) => on(f, proxy::proxy::<S>),
        ("/v1/api-tokens", Verb::Get) => on(f, permanent::list::<S>),
        ("/v1/api-tokens", Verb::Post) => on(f, permanent::create::<S>),
        ("/v1/api-tokens/{token}", Verb::Delete) => on(f, permanent::delete::<S>),
        ("/v1/api-tokens/{token}/rotate", Verb::Post) => on(f, permanent::rotate::<S>),
        ("/v1/hooks/{name}", Verb::Post) => on(f, hooks::hook::<S>),
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
