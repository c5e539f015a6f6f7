//! The RingCX (Engage Voice) and RingCentral platform HTTP client.
//!
//! One `reqwest` client (rustls), built once and cloned cheaply, covers every documented flow:
//! the RingEX JWT grant, the exchange for a RingCX token with `includeRefresh=true`, the
//! deprecated engage-login (username and password), refresh, permanent API tokens, accounts and
//! users, and a generic authenticated call under `/voice/api/` for the HTTP function's proxy.

mod api_tokens;
mod error;
pub mod jwt;
mod login;
mod model;
mod path;
mod transport;
mod voice;

use std::time::Duration;

use url::Url;

pub use error::{RingCxError, Service};
pub use model::{
    ASSUMED_ACCESS_TOKEN_LIFETIME, Account, ExpirySource, PlatformToken, RingCxSession, User,
};
pub use path::{ApiPath, CredentialArea};
pub use reqwest::Method;
pub use transport::MAX_RETRY_AFTER;
pub use voice::{VoiceAuth, VoiceRequest, VoiceResponse};

use crate::clock::SharedClock;

/// The documented production host (SDK defaults and the OpenAPI `servers` entry).
pub const DEFAULT_ENGAGE_BASE_URL: &str = "https://engage.ringcentral.com";
/// The RingCentral platform's production host.
pub const DEFAULT_PLATFORM_URL: &str = "https://platform.ringcentral.com";
/// Largest upstream answer read: RingCX's documented answers are far smaller, and a Lambda has
/// 128 MB.
pub const MAX_UPSTREAM_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Where RingCX lives and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RingCxConfig {
    /// RingCX (`ENGAGE_BASE_URL`).
    pub engage_base_url: Url,
    /// The RingCentral platform (`RINGCENTRAL_SERVER_URL`).
    pub platform_base_url: Url,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request budget; the HTTP function keeps it well under an IVR's patience.
    pub request_timeout: Duration,
}

impl RingCxConfig {
    /// The given hosts with the default timeouts.
    pub fn new(engage_base_url: Url, platform_base_url: Url) -> Self {
        Self {
            engage_base_url,
            platform_base_url,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The RingCX and RingCentral platform client; clone it freely (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct RingCxClient {
    http: reqwest::Client,
    ringcx: Url,
    platform: Url,
    clock: SharedClock,
    request_timeout: Duration,
}

impl RingCxClient {
    /// The client for `config`; fails only if the HTTP client cannot be built.
    pub fn new(config: &RingCxConfig, clock: SharedClock) -> Result<Self, RingCxError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("ringcx-token-broker/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| RingCxError::Build(e.without_url().to_string()))?;
        Ok(Self {
            http,
            ringcx: config.engage_base_url.clone(),
            platform: config.platform_base_url.clone(),
            clock,
            request_timeout: config.request_timeout,
        })
    }

    /// The whole-request timeout: what a refresh must have left before it is started.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
}
