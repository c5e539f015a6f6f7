//! The refresher's renewal of one tenant on its schedule: the protocol (unless a warm instance
//! already knows the token cannot be due), then for a permanent-token tenant the check that its
//! token still works, and after a failure what the ring still holds.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;

use super::{RenewError, Renewer, Report};
use crate::credentials::Credentials;
use crate::ringcx::{RingCxError, VoiceAuth};
use crate::session::SessionState;
use crate::store::{CALL_TIMEOUT, SecretStore, fits};

/// How one scheduled renewal ended.
#[derive(Debug)]
pub struct Scheduled {
    /// The report, or why the tenant has no renewed token.
    pub result: Result<Report, RenewError>,
    /// When it ended: the moment its figures (seconds left) are taken at.
    pub at: DateTime<Utc>,
    /// After a failure, the newest session the ring still holds (a transient outage leaves a
    /// token with time left, and a renewal may have saved a token and failed after); `None` on
    /// success, or when no read fitted before the deadline.
    pub held: Option<SessionState>,
}

impl<S: SecretStore> Renewer<S> {
    /// Renews `tenant` by `deadline` as the schedule does. `known` is a warm instance's report
    /// for a token that cannot be due yet (no ring read then); a tenant that waited for its turn
    /// does not start once the budget is gone.
    pub async fn renew_scheduled(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        known: Option<Report>,
    ) -> Scheduled {
        let result = if let Some(report) = known {
            Ok(report)
        } else if fits(self.clock.now(), std::time::Duration::ZERO, deadline) {
            self.renew(tenant, deadline).await
        } else {
            Err(RenewError::NoTime {
                tenant: tenant.to_owned(),
                left_ms: crate::clock::remaining(self.clock.now(), deadline).as_millis(),
                needed_ms: CALL_TIMEOUT.as_millis(),
            })
        };
        let result = match result {
            Ok(report) if report.permanent => self.check_permanent(tenant, deadline, report).await,
            other => other,
        };
        let at = self.clock.now();
        let held = match &result {
            Err(_) if fits(at, std::time::Duration::ZERO, deadline) => self
                .read_paced(
                    tenant,
                    deadline - chrono::Duration::from_std(CALL_TIMEOUT).unwrap_or_default(),
                )
                .await
                .and_then(|v| v.newest),
            _ => None,
        };
        Scheduled { result, at, held }
    }

    /// A permanent-token tenant: the token in the ring must still be the credentials' and still
    /// work (one cheap call); new credentials are taken up at once.
    async fn check_permanent(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        report: Report,
    ) -> Result<Report, RenewError> {
        let credentials = self.credentials(tenant, deadline).await?;
        let newest = self.read_view_paced(tenant, deadline).await?.newest;
        let held = newest.as_ref().and_then(|s| s.access_token.clone());
        let token = match (&credentials, &held) {
            (Some(Credentials::ApiToken(c)), Some(held))
                if c.token.expose_secret() == held.expose_secret() =>
            {
                held.clone()
            }
            // Replaced, or another type now: take the credentials up.
            _ => return self.relogin(tenant, deadline).await,
        };
        match self.ringcx.accounts(VoiceAuth::ApiToken(&token)).await {
            Ok(_) => Ok(report),
            Err(e) if e.is_transient() => {
                tracing::warn!(tenant, error = %e, "could not check the permanent API token this run");
                Ok(report)
            }
            // Only an authentication refusal says the token is dead; anything else (a 403, an
            // odd page) is reported without declaring the tenant unusable.
            Err(source @ (RingCxError::Unauthorized { .. } | RingCxError::AccessTokenExpired)) => {
                Err(RenewError::ApiTokenRefused {
                    tenant: tenant.to_owned(),
                    secret: self.ring.names().credentials(tenant),
                    source,
                })
            }
            Err(source) => Err(RenewError::Upstream {
                tenant: tenant.to_owned(),
                source,
            }),
        }
    }
}
