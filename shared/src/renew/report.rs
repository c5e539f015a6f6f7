//! The protocol's settings and what a renewal reports.

use std::time::Duration;

use crate::session::ObtainedBy;

/// Tunables of the protocol; the defaults suit a 1-minute schedule and 5-minute tokens.
#[derive(Debug, Clone)]
pub struct RenewSettings {
    /// Renew once the access token has this long or less left (`REFRESH_MARGIN_SECONDS`).
    pub refresh_margin: Duration,
    /// Part of the deadline kept for writing the new session.
    pub write_reserve: Duration,
    /// How long to look for someone else's renewal after RingCX rejects our refresh token.
    pub reread_window: Duration,
    /// How often the ring is re-read in that window.
    pub reread_interval: Duration,
    /// The first wait before a retry.
    pub first_backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// Exchange (or RingCX login) calls in one renewal: each exchange spends one of RingCX's 5 a
    /// minute. The RingEX JWT grant before it is retried within the deadline without a limit.
    pub max_login_attempts: u32,
    /// Whether this renewer may log in from the credentials. Only the refresher does: the HTTP
    /// function faces the internet, and logins race RingCX's exchange limit.
    pub may_login: bool,
    /// No forced renewal while the newest generation is younger than this.
    pub forced_min_age: Duration,
    /// Forced renewals allowed per tenant in any 24 h: the version headroom the schedule leaves.
    pub forced_per_day: u32,
}

impl Default for RenewSettings {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(150),
            write_reserve: Duration::from_secs(5),
            reread_window: Duration::from_secs(3),
            reread_interval: Duration::from_millis(500),
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_login_attempts: 4,
            may_login: true,
            forced_min_age: Duration::from_secs(30),
            forced_per_day: 60,
        }
    }
}

/// How far ahead a permanent API token's session says it expires (it does not; RingCX revokes).
pub(super) const PERMANENT_DAYS: i64 = 3650;

/// What a renewal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The token had more than the margin left; nothing was done.
    Fresh,
    /// Refreshed with the stored refresh token.
    Refreshed,
    /// Logged in again from the credentials (`flow` is `ringex-exchange` or `engage-login`).
    LoggedIn {
        /// How the session was obtained.
        flow: ObtainedBy,
    },
    /// Another renewer published a newer generation; ours (if any) was discarded.
    RenewedElsewhere,
}

impl Outcome {
    /// The outcome's name in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Fresh => "fresh",
            Outcome::Refreshed => "refreshed",
            Outcome::LoggedIn { .. } => "logged-in",
            Outcome::RenewedElsewhere => "renewed-elsewhere",
        }
    }
}

/// One tenant's renewal, for logs and metrics. Holds no secret.
#[derive(Debug, Clone)]
pub struct Report {
    /// The tenant.
    pub tenant: String,
    /// What the renewal did.
    pub outcome: Outcome,
    /// The newest generation in the ring afterwards.
    pub generation: u64,
    /// Seconds the newest access token has left afterwards.
    pub seconds_left: Option<i64>,
    /// Upstream retries after transient failures.
    pub retries: u32,
    /// Fenced writes lost to another writer.
    pub cas_conflicts: u32,
    /// Slots skipped because of the version quota.
    pub quota_skips: u32,
    /// Slot secrets that hold no session document, by name.
    pub unreadable_slots: Vec<String>,
    /// Whether this was a forced renewal (RingCX refused a token before its time).
    pub forced: bool,
    /// The tenant's newest session is a permanent API token (nothing to renew).
    pub permanent: bool,
}
