//! What a pass reports: per tenant, and for the invocation. Holds no secret.

use broker::renew::Outcome;
use serde::Serialize;

broker::listed_enum! {
    /// How one tenant's part of a pass ended; the names are the summary's and the log line's.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum TenantOutcome {
        /// The token had more than the margin left.
        Fresh,
        /// Refreshed with the stored refresh token.
        Refreshed,
        /// Logged in again from the credentials (a refresh token was lost or there was none).
        LoggedIn,
        /// Another renewer published a newer generation first.
        RenewedElsewhere,
        /// Not started: too little time was left to save a renewal's answer.
        Deferred,
        /// The renewal failed; the error says why.
        Failed,
        /// The pass was still running at the invocation's deadline.
        CutShort,
    }
}

impl TenantOutcome {
    /// The name in the summary and the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantOutcome::Fresh => "fresh",
            TenantOutcome::Refreshed => "refreshed",
            TenantOutcome::LoggedIn => "logged-in",
            TenantOutcome::RenewedElsewhere => "renewed-elsewhere",
            TenantOutcome::Deferred => "deferred",
            TenantOutcome::Failed => "failed",
            TenantOutcome::CutShort => "cut-short",
        }
    }
}

impl From<Outcome> for TenantOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Fresh => TenantOutcome::Fresh,
            Outcome::Refreshed => TenantOutcome::Refreshed,
            Outcome::LoggedIn { .. } => TenantOutcome::LoggedIn,
            Outcome::RenewedElsewhere => TenantOutcome::RenewedElsewhere,
        }
    }
}

/// What one tenant's renewal came to. Holds no secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantResult {
    /// The tenant, as configured in `TENANTS`.
    pub tenant: String,
    /// How its part of the pass ended.
    pub outcome: TenantOutcome,
    /// The newest generation in its ring afterwards (0: none).
    pub generation: u64,
    /// Seconds left on the newest token afterwards, if there is one.
    pub seconds_left: Option<i64>,
    /// Whether the ring holds a token with more than `MIN_TOKEN_TTL_SECONDS` left afterwards.
    pub usable: bool,
    /// Why the renewal failed, in words an operator can act on; never a secret.
    pub error: Option<String>,
    /// Slot secrets that hold no session document, by name (see the README's "Corrupted slots").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable_slots: Vec<String>,
    /// Permanent API tokens revoked by this pass's sweep (expired, or rotated past their grace).
    #[serde(skip_serializing_if = "is_zero")]
    pub api_tokens_revoked: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One pass over every tenant; the function's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassSummary {
    /// Every tenant ends with a usable token.
    pub ok: bool,
    /// Per tenant, in `TENANTS` order.
    pub tenants: Vec<TenantResult>,
}

/// The invocation failed: some tenants have no usable token.
#[derive(Debug, thiserror::Error)]
#[error("{} of {total} tenants have no usable RingCX token: {}", failed.len(), failed.join("; "))]
pub struct PassFailed {
    /// Tenants in the pass.
    pub total: usize,
    /// `tenant: why` for each tenant without a usable token.
    pub failed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_the_serialized_ones() {
        for o in TenantOutcome::ALL {
            assert_eq!(
                serde_json::to_value(o).ok(),
                Some(serde_json::json!(o.as_str()))
            );
        }
        for o in [
            Outcome::Fresh,
            Outcome::Refreshed,
            Outcome::RenewedElsewhere,
        ] {
            assert_eq!(TenantOutcome::from(o).as_str(), o.as_str());
        }
    }
}
