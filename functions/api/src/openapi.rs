//! `GET /v1/openapi.json`: the OpenAPI document of every route, served by the function it
//! describes (what `route_not_found` points to).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as checked against the route table and the error codes by the tests.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// Generic over the store only so the route table can name it as it names every handler.
#[allow(clippy::extra_unused_type_parameters)]
pub(crate) async fn document<S>() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        DOCUMENT,
    )
        .into_response()
}
