//! The bounds on forced renewals (RingCX refused a token before its time): no traffic pattern
//! and no upstream answer can write the ring faster than these allow.

use chrono::{DateTime, Utc};

use super::{RenewError, Renewer, chrono_duration};
use crate::session::SessionState;
use crate::store::SecretStore;

impl<S: SecretStore> Renewer<S> {
    /// Whether a forced renewal of `current` is allowed now.
    pub(super) fn check_forced(
        &self,
        tenant: &str,
        current: Option<&SessionState>,
        recent: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Result<(), RenewError> {
        let refuse = |reason: String| {
            tracing::warn!(tenant, reason, "forced renewal refused");
            Err(RenewError::ForcedRenewalRefused {
                tenant: tenant.to_owned(),
                reason,
            })
        };
        let min_age = chrono_duration(self.settings.forced_min_age);
        if let Some(at) = current.and_then(|s| s.obtained_at)
            && now - at < min_age
        {
            return refuse(format!(
                "the newest generation was obtained {} s ago (less than {} s): RingCX refuses fresh \
                 tokens, so another renewal would not help",
                (now - at).num_seconds(),
                min_age.num_seconds()
            ));
        }
        if recent.len() >= self.settings.forced_per_day as usize {
            return refuse(format!(
                "{} forced renewals in the last 24 h already, the most the Secrets Manager version \
                 quota leaves room for; scheduled renewals go on",
                recent.len()
            ));
        }
        Ok(())
    }
}
