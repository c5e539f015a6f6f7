//! What can go wrong talking to RingCX, said so that the caller knows what to do next.

use std::fmt;
use std::time::Duration;

/// Which upstream answered (or failed to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// RingCX (Engage Voice): `/api/auth/*` and `/voice/api/*`.
    RingCx,
    /// The RingCentral (RingEX) platform's OAuth endpoint.
    Platform,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::RingCx => "RingCX",
            Service::Platform => "the RingCentral platform",
        })
    }
}

/// A failed RingCX or RingCentral platform call. `detail` fields carry the upstream's own message,
/// shortened and with every secret we sent replaced by `[REDACTED]`.
#[derive(Debug, thiserror::Error)]
pub enum RingCxError {
    #[error("RingCX access token expired (401 Jwt is expired): renew the session and retry")]
    /// `401 Jwt is expired`: the access token lived its 5 minutes.
    AccessTokenExpired,

    #[error(
        "RingCX rejected the refresh token ({status}: {detail}): it was already used or revoked; \
         log in again from the tenant's credentials"
    )]
    /// The refresh token was refused (spent, revoked or unknown).
    RefreshTokenRejected {
        /// The HTTP status.
        status: u16,
        /// What the answer said, shortened and redacted.
        detail: String,
    },

    #[error(
        "{service} rejected the credentials ({status}: {detail}): fix the tenant's credentials \
         secret; retrying will not help"
    )]
    /// A login or grant refused the credentials.
    CredentialsRejected {
        /// Which service answered.
        service: Service,
        /// The HTTP status.
        status: u16,
        /// What the answer said, shortened and redacted.
        detail: String,
    },

    #[error("RingCX refused the access token (401: {detail}): renew the session")]
    /// A 401 that is not about expiry.
    Unauthorized {
        /// What the answer said, shortened and redacted.
        detail: String,
    },

    #[error(
        "RingCX denied permission (403 {code}: {message}): the RingCX user lacks the role this \
         call needs"
    )]
    /// `access.denied.exception`: the user may not do that.
    Forbidden {
        /// RingCX's error code.
        code: String,
        /// The message, shortened.
        message: String,
    },

    #[error("RingCX has no such resource (404: {detail})")]
    /// No such resource.
    NotFound {
        /// What the answer said, shortened and redacted.
        detail: String,
    },

    #[error("{service} rate-limited the call (429){}: back off before retrying", retry_after_text(*.retry_after))]
    /// 429: too many calls.
    RateLimited {
        /// Which service answered.
        service: Service,
        /// How long it asked us to wait, if it said.
        retry_after: Option<Duration>,
    },

    #[error(
        "{service} failed with a server error ({status}: {detail}): transient, retry with backoff"
    )]
    /// A 5xx.
    Upstream {
        /// Which service answered.
        service: Service,
        /// The HTTP status.
        status: u16,
        /// What the answer said, shortened and redacted.
        detail: String,
    },

    #[error("{service} rejected the request ({status}: {detail})")]
    /// Another 4xx.
    Rejected {
        /// Which service answered.
        service: Service,
        /// The HTTP status.
        status: u16,
        /// What the answer said, shortened and redacted.
        detail: String,
    },

    #[error("{service} did not answer in time: transient, retry with backoff")]
    /// No complete answer within the timeout.
    Timeout {
        /// Which service answered.
        service: Service,
    },

    #[error("could not connect to {service} ({source}): check the base URL and the network")]
    /// No connection could be made.
    Connect {
        /// Which service answered.
        service: Service,
        #[source]
        /// What failed underneath.
        source: reqwest::Error,
    },

    #[error("the connection to {service} broke before a full answer ({source}): transient, retry")]
    /// The connection broke before a complete answer.
    ConnectionDropped {
        /// Which service answered.
        service: Service,
        #[source]
        /// What failed underneath.
        source: reqwest::Error,
    },

    #[error("{service} answered {status} with a body that is not {expected}: {detail}")]
    /// An answer that is not what the documentation says.
    UnexpectedBody {
        /// Which service answered.
        service: Service,
        /// The HTTP status.
        status: u16,
        /// What the answer should have been.
        expected: &'static str,
        /// What the answer said, shortened and redacted.
        detail: String,
    },

    #[error(
        "{service} answered with a body over {limit} bytes; the broker does not read answers \
         that large"
    )]
    /// An answer over the size limit.
    BodyTooLarge {
        /// Which service answered.
        service: Service,
        /// The limit in bytes.
        limit: usize,
    },

    #[error("refused to call RingCX path {path:?}: {reason}")]
    /// A path the generic call refuses.
    InvalidPath {
        /// The refused path.
        path: String,
        /// Why, in words that name no secret.
        reason: &'static str,
    },

    #[error("the RingCX client could not be built: {0}")]
    /// The HTTP client could not be built.
    Build(String),
}

fn retry_after_text(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {} s", d.as_secs()))
        .unwrap_or_default()
}

impl RingCxError {
    /// Worth retrying the same call later: timeouts, broken connections, 5xx and 429.
    /// Never true for anything a retry cannot fix (rejected tokens or credentials).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RingCxError::RateLimited { .. }
                | RingCxError::Upstream { .. }
                | RingCxError::Timeout { .. }
                | RingCxError::Connect { .. }
                | RingCxError::ConnectionDropped { .. }
        )
    }

    /// How long the upstream asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RingCxError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl crate::retry::Transient for RingCxError {
    fn is_transient(&self) -> bool {
        RingCxError::is_transient(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        RingCxError::retry_after(self)
    }
}
