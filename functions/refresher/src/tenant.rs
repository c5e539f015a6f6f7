//! One tenant's part of a pass: the scheduled renewal (`broker::renew`, told what this warm
//! instance remembers), the registry sweep, one log line and one metrics document.

use broker::renew::{Outcome, RenewError, Scheduled};
use broker::store::SecretStore;
use broker::telemetry::{self, Metric};
use chrono::{DateTime, Utc};

use crate::{Refresher, TenantOutcome, TenantResult, sweep};

impl<S: SecretStore + Clone + 'static> Refresher<S> {
    pub(crate) async fn renew_one(&self, tenant: &str, deadline: DateTime<Utc>) -> TenantResult {
        let margin = self.renewer.settings().refresh_margin.as_secs() as i64;
        let known = self.warm.remembered(tenant, self.clock.now(), margin);
        let Scheduled { result, at, held } =
            self.renewer.renew_scheduled(tenant, deadline, known).await;
        self.warm.remember(tenant, &result, at);
        let now = at;
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
                let generation = held.as_ref().map_or(0, |s| s.generation);
                // A refused permanent token is unusable whatever its session says.
                let refused = matches!(e, RenewError::ApiTokenRefused { .. });
                let left = held
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
        let revoked = if usable && self.warm.registry_due(tenant, now) {
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
                    self.warm.next_registry_read(tenant, swept.next_read);
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
}
