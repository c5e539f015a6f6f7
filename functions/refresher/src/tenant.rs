//! One tenant's part of a pass: the renewal (or what a warm instance remembers), the check of a
//! permanent API token, the registry sweep, one log line and one metrics document.

use broker::credentials::Credentials;
use broker::renew::{Outcome, RenewError};
use broker::ringcx::{RingCxError, VoiceAuth};
use broker::store::{SecretStore, fits};
use broker::telemetry::{self, Metric};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;

use crate::{Refresher, TenantOutcome, TenantResult, sweep};

impl<S: SecretStore + Clone + 'static> Refresher<S> {
    pub(crate) async fn renew_one(&self, tenant: &str, deadline: DateTime<Utc>) -> TenantResult {
        // A tenant that waited for a concurrency slot does not start once the budget is gone.
        let result = if let Some(report) = self.remembered(tenant) {
            Ok(report)
        } else if fits(self.clock.now(), std::time::Duration::ZERO, deadline) {
            self.renewer.renew(tenant, deadline).await
        } else {
            Err(RenewError::NoTime {
                tenant: tenant.to_owned(),
                left_ms: broker::clock::remaining(self.clock.now(), deadline).as_millis(),
                needed_ms: broker::store::CALL_TIMEOUT.as_millis(),
            })
        };
        let result = match result {
            Ok(report) if report.permanent => self.check_permanent(tenant, deadline, report).await,
            other => other,
        };
        self.remember(tenant, &result);
        let now = self.clock.now();
        let (outcome, generation, seconds_left, retries, cas, quota, error) = match &result {
            Ok(r) => (
                TenantOutcome::from(r.outcome),
                r.generation,
                r.seconds_left,
                r.retries,
                r.cas_conflicts,
                r.quota_skips,
                None,
            ),
            Err(e) => {
                // The ring may still hold a token with time left (a transient outage), or the
                // renewal saved a token and failed after (no refresh token in the answer).
                let newest = if fits(now, std::time::Duration::ZERO, deadline) {
                    self.renewer
                        .read_paced(
                            tenant,
                            deadline
                                - chrono::Duration::from_std(broker::store::CALL_TIMEOUT)
                                    .unwrap_or_default(),
                        )
                        .await
                        .and_then(|v| v.newest)
                } else {
                    None
                };
                let generation = newest.as_ref().map_or(0, |s| s.generation);
                // A refused permanent token is unusable whatever its session says.
                let refused = matches!(e, RenewError::PermanentTokenRefused { .. });
                let left = newest
                    .as_ref()
                    .and_then(|s| s.seconds_left(now))
                    .filter(|_| !refused);
                let outcome = if matches!(e, RenewError::NoTime { .. }) {
                    TenantOutcome::Deferred
                } else {
                    TenantOutcome::Failed
                };
                (outcome, generation, left, 0, 0, 0, Some(e.to_string()))
            }
        };
        let unreadable = result
            .as_ref()
            .map_or(0, |r| r.unreadable_slots.len() as u32);
        let forced = result.as_ref().is_ok_and(|r| r.forced);
        let usable = seconds_left.is_some_and(|left| left > self.min_ttl_secs);
        let fallback = matches!(result, Ok(ref r) if matches!(r.outcome, Outcome::LoggedIn { .. }));
        let renewed = matches!(result, Ok(ref r) if matches!(r.outcome, Outcome::Refreshed | Outcome::LoggedIn { .. }));
        match &error {
            None => tracing::info!(
                tenant,
                generation,
                outcome = outcome.as_str(),
                seconds_left,
                retries,
                cas_conflicts = cas,
                quota_skips = quota,
                forced,
                unreadable_slots = unreadable,
                "renewal"
            ),
            Some(e) => {
                tracing::error!(tenant, generation, outcome = outcome.as_str(), seconds_left, usable, error = %e, "renewal failed")
            }
        }
        let revoked = if usable && self.registry_due(tenant, now) {
            let sweeper = sweep::Sweeper {
                registries: &self.registries,
                ring: self.renewer.ring(),
                ringcx: &self.ringcx,
                clock: &self.clock,
                min_ttl_secs: self.min_ttl_secs,
                call_time: self.renewer.time_needed(),
            };
            match sweep::sweep(&sweeper, tenant, deadline).await {
                Ok(swept) => {
                    self.lock_registry_reads()
                        .insert(tenant.to_owned(), swept.next_read);
                    swept.revoked
                }
                Err(e) => {
                    tracing::error!(tenant, error = %e, "the API token sweep stopped; the next pass retries");
                    0
                }
            }
        } else {
            0
        };
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let metrics = [
            // Never-present tokens report 0 s left so the alarm on the minimum fires.
            (Metric::SecondsLeft, seconds_left.unwrap_or(0).max(0) as f64),
            (Metric::Renewals, flag(renewed)),
            (Metric::FallbackLogins, flag(fallback)),
            (Metric::CasConflicts, f64::from(cas)),
            (Metric::QuotaPressure, f64::from(quota)),
            (Metric::RenewalFailures, flag(error.is_some())),
            (Metric::UpstreamRetries, f64::from(retries)),
            (Metric::UnreadableSlots, f64::from(unreadable)),
            (Metric::ForcedRenewals, flag(forced)),
            (Metric::ApiTokensRevoked, f64::from(revoked)),
        ];
        telemetry::emit(&telemetry::emf(
            tenant,
            &metrics,
            self.per_tenant_metrics,
            now.timestamp_millis(),
        ));
        TenantResult {
            tenant: tenant.to_owned(),
            outcome,
            generation,
            seconds_left,
            usable,
            error,
            unreadable_slots: result.map(|r| r.unreadable_slots).unwrap_or_default(),
            api_tokens_revoked: revoked,
        }
    }

    /// A permanent-token tenant: the token in the ring must still be the credentials' and still
    /// work (one cheap call); new credentials are taken up at once.
    pub(crate) async fn check_permanent(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        report: broker::renew::Report,
    ) -> Result<broker::renew::Report, RenewError> {
        let credentials = self.renewer.credentials(tenant, deadline).await?;
        let newest = self.renewer.read_view_paced(tenant, deadline).await?.newest;
        let held = newest.as_ref().and_then(|s| s.access_token.clone());
        let token = match (&credentials, &held) {
            (Some(Credentials::ApiToken(c)), Some(held))
                if c.token.expose_secret() == held.expose_secret() =>
            {
                held.clone()
            }
            // Replaced, or another type now: take the credentials up.
            _ => return self.renewer.relogin(tenant, deadline).await,
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
                Err(RenewError::PermanentTokenRefused {
                    tenant: tenant.to_owned(),
                    secret: self.renewer.ring().names().credentials(tenant),
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
