//! The RingCX token broker's library: everything both Lambda functions share.
//!
//! - [`api_tokens`]: the registry of permanent API tokens the broker created, and their audit.
//! - [`ringcx`]: the RingCX (formerly Engage Voice) and RingCentral platform HTTP client.
//! - [`credentials`]: the login material a tenant's session can be rebuilt from.
//! - [`document`]: administrator-written documents (callers, hooks) as each instance caches them.
//! - [`hooks`]: webhooks turned into one RingCX call each, exactly once.
//! - [`secret`]: secret wrapper types and their serde helpers.
//! - [`session`]: the session document kept in the ring.
//! - [`store`]: Secrets Manager (real and modelled) and the session ring with fenced writes.
//! - [`renew`]: the renewal protocol, in one place.
//! - [`rate`]: request rates on the injectable clock (the quota model, the refresher's pacing).
//! - [`config`]: settings from the environment.
//! - [`telemetry`]: logging setup and CloudWatch EMF metrics.
//! - [`clock`]: an injectable clock, so expiry and renewal can be tested without sleeping.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api_tokens;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod document;
pub mod hooks;
mod listed;
pub mod rate;
pub mod renew;
pub mod retry;
pub mod ringcx;
pub mod secret;
pub mod session;
pub mod store;
pub mod telemetry;
