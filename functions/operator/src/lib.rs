//! What the `operator` binary does (`make seed-credentials`, `add-caller`, `status`,
//! `connect-ringcx`, `hook ...`, `make dev`): the administrator's documents in Secrets Manager,
//! through the same SDK and configuration as the functions, so no AWS CLI is needed. A crate of
//! its own so the HTTP function's crate, and its Lambda `bootstrap`, carry none of it.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod callers;
pub mod connect;
mod credentials;
mod dead_letters;
mod document;
mod error;
mod hooks;
pub mod status;

pub use callers::{JwtSpec, NewCaller, add_caller, add_jwt_caller, remove_caller};
pub use credentials::seed_credentials;
pub use dead_letters::{DeadLetterSummary, list_dead_letters, redrive_dead_letters};
pub use error::OperatorError;
pub use hooks::{HookSummary, add_hook, hook_secret, list_hooks, remove_hook, test_hook};
