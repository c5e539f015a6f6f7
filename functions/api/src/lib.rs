//! The HTTP function: one axum router, run by `lambda_http` in Lambda (Function URL / HTTP API
//! payload 2.0) and by a loopback listener elsewhere, so the same code is tested, load-tested and
//! used locally.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod api_tokens;
mod app;
pub mod auth;
mod body;
pub mod error;
mod health;
pub mod hooks;
mod oauth;
mod openapi;
mod proxy;
mod router;
pub mod token_cache;

pub use app::{App, AppState};
pub(crate) use body::{media_type, no_store, read_body};
pub use router::{ROUTES, Verb, router};
