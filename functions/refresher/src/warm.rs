//! What a warm instance remembers between passes, so it reads less: per tenant, the newest
//! generation and its token's expiry (a ring that cannot be due is not read), and when the API
//! token registry next needs a look.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use broker::renew::{Outcome, RenewError, Report};
use chrono::{DateTime, Duration, Utc};

/// Seconds kept between a remembered expiry and the margin before a ring read is skipped (clock
/// and scheduling slack).
const SKIP_SLACK_SECS: i64 = 5;

/// One warm instance's memory, shared by the clones of its refresher.
#[derive(Debug, Default)]
pub(crate) struct Warm {
    /// Per tenant: the newest generation seen and its token's expiry.
    known: Mutex<HashMap<String, (u64, DateTime<Utc>)>>,
    /// Per tenant: when the API token registry is next read.
    registry_reads: Mutex<HashMap<String, DateTime<Utc>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Warm {
    /// A report without reading the ring, when the tenant's token cannot be due yet at `now`
    /// (more than `margin_secs` and some slack left). Safe against other writers: a newer
    /// generation only moves expiry later, and the ring is read again (before any refresh token
    /// is spent) once the remembered expiry is within the margin.
    pub(crate) fn remembered(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
        margin_secs: i64,
    ) -> Option<Report> {
        let (generation, expires_at) = *lock(&self.known).get(tenant)?;
        let left = (expires_at - now).num_seconds();
        (left > margin_secs + SKIP_SLACK_SECS).then(|| Report {
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

    /// Keeps what a renewal at `now` found; forgets the tenant after anything doubtful.
    pub(crate) fn remember(
        &self,
        tenant: &str,
        result: &Result<Report, RenewError>,
        now: DateTime<Utc>,
    ) {
        let mut known = lock(&self.known);
        match result {
            // Only tokens that expire: a permanent one is checked with RingCX on every run.
            Ok(r) if !r.permanent && r.unreadable_slots.is_empty() => match r.seconds_left {
                Some(left) => {
                    known.insert(
                        tenant.to_owned(),
                        (r.generation, now + Duration::seconds(left)),
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

    /// Whether the sweep reads `tenant`'s registry this pass (see
    /// [`crate::sweep::REGISTRY_READ_EVERY`]).
    pub(crate) fn registry_due(&self, tenant: &str, now: DateTime<Utc>) -> bool {
        lock(&self.registry_reads)
            .get(tenant)
            .is_none_or(|next| *next <= now)
    }

    /// When the sweep next reads `tenant`'s registry.
    pub(crate) fn next_registry_read(&self, tenant: &str, at: DateTime<Utc>) {
        lock(&self.registry_reads).insert(tenant.to_owned(), at);
    }
}
