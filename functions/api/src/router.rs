//! The route table and the router built from it, with the access log every request passes.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use broker::store::SecretStore;

use crate::error::{ApiError, ErrorCode};
use crate::{AppState, api_tokens, health, hooks, oauth, openapi, proxy};

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

/// Writes the route table once: each path with its methods and their handlers becomes both
/// [`ROUTES`] (what the OpenAPI check compares with the document) and the router's routes, so
/// the two cannot disagree.
macro_rules! routes {
    ($($path:literal => { $($verb:ident => $module:ident::$handler:ident),+ $(,)? }),+ $(,)?) => {
        /// Every route and its methods: the same table the router is built from.
        pub const ROUTES: &[(&str, &[Verb])] = &[$(($path, &[$(Verb::$verb),+])),+];

        fn routes<S: SecretStore + Clone + 'static>() -> Router<AppState<S>> {
            Router::new()
                $(.route($path, MethodRouter::new()$(.on(Verb::$verb.filter(), $module::$handler::<S>))+))+
        }
    };
}

routes! {
    "/v1/health" => { Get => health::health },
    "/v1/openapi.json" => { Get => openapi::document },
    "/v1/oauth/token" => { Post => oauth::token },
    "/v1/token" => { Get => oauth::key_token },
    "/v1/engage/{*path}" => {
        Get => proxy::proxy,
        Post => proxy::proxy,
        Put => proxy::proxy,
        Patch => proxy::proxy,
        Delete => proxy::proxy,
    },
    "/v1/api-tokens" => { Get => api_tokens::list, Post => api_tokens::create },
    "/v1/api-tokens/{token}" => { Delete => api_tokens::delete },
    "/v1/api-tokens/{token}/rotate" => { Post => api_tokens::rotate },
    "/v1/hooks/{name}" => { Post => hooks::hook },
}

/// The router over every route in [`ROUTES`].
pub fn router<S: SecretStore + Clone + 'static>(app: AppState<S>) -> Router {
    routes::<S>()
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
