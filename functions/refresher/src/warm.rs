//! What a warm instance remembers between passes, so it reads less: per tenant, the newest
//! generation and its token's expiry (a ring that cannot be due is not read), and when the API
//! token registry next needs a look.

use broker::renew::{Outcome, RenewError};
use broker::store::SecretStore;
use chrono::{DateTime, Duration, Utc};

use crate::Refresher;

/// Per tenant: the newest generation seen and its token's expiry.
pub(crate) type Known = std::collections::HashMap<String, (u64, DateTime<Utc>)>;

/// Seconds kept between a remembered expiry and the margin before a ring read is skipped (clock
/// and scheduling slack).
const SKIP_SLACK_SECS: i64 = 5;

impl<S: SecretStore + Clone + 'static> Refresher<S> {
    /// A report without reading the ring, when this warm instance knows the tenant's token cannot
    /// be due yet. Safe against other writers: a newer generation only moves expiry later, and
    /// the ring is read again (before any refresh token is spent) once the remembered expiry is
    /// within the margin.
    pub(crate) fn remembered(&self, tenant: &str) -> Option<broker::renew::Report> {
        let (generation, expires_at) = *self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)?;
        let left = (expires_at - self.clock.now()).num_seconds();
        let margin = self.renewer.settings().refresh_margin.as_secs() as i64;
        (left > margin + SKIP_SLACK_SECS).then(|| broker::renew::Report {
            tenant: tenant.to_owned(),
            outcome: Outcome::Fresh,
            generation,
            seconds_left: Some(left),
            retries: 0,
            cas_conflicts: 0,
            quota_skips: 0,
            unreadable_slots: Vec::new(),
            forced: false,
            permanent: false,
        })
    }

    pub(crate) fn lock_registry_reads(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, DateTime<Utc>>> {
        self.registry_reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the sweep reads `tenant`'s registry this pass (see [`sweep::REGISTRY_READ_EVERY`]).
    pub(crate) fn registry_due(&self, tenant: &str, now: DateTime<Utc>) -> bool {
        self.lock_registry_reads()
            .get(tenant)
            .is_none_or(|next| *next <= now)
    }

    pub(crate) fn remember(
        &self,
        tenant: &str,
        result: &Result<broker::renew::Report, RenewError>,
    ) {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            // Only tokens that expire: a permanent one is checked with RingCX on every run.
            Ok(r) if !r.permanent && r.unreadable_slots.is_empty() => match r.seconds_left {
                Some(left) => {
                    known.insert(
                        tenant.to_owned(),
                        (r.generation, self.clock.now() + Duration::seconds(left)),
                    );
                }
                None => {
                    known.remove(tenant);
                }
            },
            _ => {
                known.remove(tenant);
            }
        }
    }
}
