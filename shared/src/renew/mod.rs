//! The renewal protocol, used by both functions (the refresher on its schedule, the HTTP function
//! inline when the ring holds no usable token or RingCX refused one).
//!
//! 1. Read the ring; take the newest readable state S (generation g), and the highest generation
//!    an unreadable slot could hold.
//! 2. If S's access token has more than the margin left, stop. Duplicate or overlapping
//!    invocations are therefore harmless. A *forced* renewal (RingCX refused a token before its
//!    time) skips this check, but only when S is the refused generation, S is older than
//!    `forced_min_age`, and the tenant's forced renewals in the last 24 h (carried in the ring, so
//!    every instance counts the same ones) are under `forced_per_day`: no traffic pattern and no
//!    upstream answer can write the ring faster than that.
//! 3. Refresh with S's refresh token, but only when the time left covers the request's whole
//!    timeout plus the write: a refresh spends the refresh token, and its answer is the only copy
//!    of the next one. If RingCX rejects it, re-read the ring for a few seconds: a newer
//!    generation means someone else renewed, so stop. Otherwise log in again from the tenant's
//!    credentials, if this renewer may (only the refresher does). Transient failures (timeouts,
//!    broken connections, 5xx, 429) are retried with backoff and jitter while another attempt
//!    fits before the deadline, and never lead to a full login.
//! 4. Publish the next generation past every generation that may exist, with a fencing token (see
//!    `store::ring`). A writer that loses the race discards its result.
//! 5. Nothing is lost: the ring never takes an older generation, and the new refresh token is
//!    written before anything else uses it, within a reserved part of the deadline.
//!
//! The refresher runs it per tenant through [`Renewer::renew_scheduled`] (`scheduled.rs`), which
//! adds what only the schedule does: a permanent API token (never renewed) is checked with one
//! RingCX call and replaced from new credentials, and a failure reports what the ring still holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex as AsyncMutex;

mod error;
mod forced;
mod login;
mod publish;
mod reads;
mod report;
mod scheduled;

pub use error::RenewError;
pub use report::{Outcome, RenewSettings, Report};
pub use scheduled::Scheduled;

use crate::clock::{SharedClock, later, remaining};
use crate::rate::Pacer;
use crate::ringcx::{RingCxClient, RingCxError};
use crate::session::{ObtainedBy, SessionState};
use crate::store::{SecretStore, SessionRing, fits};

/// Runs the renewal protocol for any tenant of one deployment; clones share clients and the
/// per-tenant single-flight.
#[derive(Debug, Clone)]
pub struct Renewer<S> {
    ring: SessionRing<S>,
    ringcx: RingCxClient,
    clock: SharedClock,
    settings: RenewSettings,
    /// One renewal per tenant at a time in this process: two would present the same refresh
    /// token, which RingCX may punish by revoking the whole token family (reuse detection).
    flights: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
    /// The refresher's share of the account's Secrets Manager quotas; none in the HTTP function.
    pacing: Option<Arc<Pacing>>,
}

/// A renewer's budget of ring reads and writes per second, shared by every tenant it renews,
/// so a pass over thousands of tenants leaves the rest of the account's quota to others.
#[derive(Debug)]
pub struct Pacing {
    /// Ring reads (`BatchGetSecretValue`).
    pub reads: Pacer,
    /// Slot writes (`PutSecretValue`, `CreateSecret`).
    pub writes: Pacer,
}

/// Why a renewal runs.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// The schedule, or a reader that found no usable token.
    Due,
    /// RingCX refused this generation's access token before its time.
    Refused(u64),
    /// The credentials no longer match the session (a permanent token replaced, or the tenant
    /// moved to another type): log in from them now.
    CredentialsChanged,
}

impl<S: SecretStore> Renewer<S> {
    /// A renewer over `ring`, logging in through `ringcx`.
    pub fn new(
        ring: SessionRing<S>,
        ringcx: RingCxClient,
        clock: SharedClock,
        settings: RenewSettings,
    ) -> Self {
        Self {
            ring,
            ringcx,
            clock,
            settings,
            flights: Arc::default(),
            pacing: None,
        }
    }

    /// With reads and writes paced (the refresher's `READ_RATE_PER_SECOND` and
    /// `WRITE_RATE_PER_SECOND`).
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = Some(Arc::new(pacing));
        self
    }

    /// One ring read within the read budget (for a report after a failed or deferred renewal):
    /// `None` when no place comes before `deadline` or the read fails, so a pass short of time
    /// never spends the account's quota on reports.
    pub async fn read_paced(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Option<crate::store::RingView> {
        self.pace(tenant, false, deadline).await.ok()?;
        self.ring.read(tenant).await.ok()
    }

    /// [`Renewer::read_view`] within the read budget (the refresher's permanent-token check).
    pub async fn read_view_paced(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<crate::store::RingView, RenewError> {
        self.pace(tenant, false, deadline).await?;
        self.read_view(tenant, deadline).await
    }

    /// Waits for a place in the read (or write) budget; a renewal that cannot have one before
    /// `deadline` is deferred to the next pass.
    async fn pace(
        &self,
        tenant: &str,
        write: bool,
        deadline: DateTime<Utc>,
    ) -> Result<(), RenewError> {
        let Some(p) = &self.pacing else {
            return Ok(());
        };
        let pacer = if write { &p.writes } else { &p.reads };
        pacer
            .acquire(deadline)
            .await
            .map_err(|_| RenewError::NoTime {
                tenant: tenant.to_owned(),
                left_ms: remaining(self.clock.now(), deadline).as_millis(),
                needed_ms: self.time_needed().as_millis(),
            })
    }

    /// The ring this renewer reads and writes.
    pub fn ring(&self) -> &SessionRing<S> {
        &self.ring
    }

    /// The protocol's settings.
    pub fn settings(&self) -> &RenewSettings {
        &self.settings
    }

    /// The least time a renewal needs before its deadline: one whole RingCX request and the write.
    pub fn time_needed(&self) -> Duration {
        self.ringcx.request_timeout() + self.settings.write_reserve
    }

    /// Renews `tenant` if its token is within the margin, finishing by `deadline`.
    pub async fn renew(&self, tenant: &str, deadline: DateTime<Utc>) -> Result<Report, RenewError> {
        self.run(tenant, deadline, Trigger::Due).await
    }

    /// Renews `tenant` even inside the margin if the ring's newest generation is still
    /// `rejected_generation` (RingCX refused that access token although it had time left), within
    /// the forced-renewal bounds. A newer generation in the ring is used as it is.
    pub async fn renew_replacing(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        rejected_generation: u64,
    ) -> Result<Report, RenewError> {
        self.run(tenant, deadline, Trigger::Refused(rejected_generation))
            .await
    }

    /// Logs in from the credentials now, whatever the ring holds: for a tenant whose credentials
    /// changed under a permanent-token session (see [`Renewer::credentials`]).
    pub async fn relogin(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<Report, RenewError> {
        self.run(tenant, deadline, Trigger::CredentialsChanged)
            .await
    }

    async fn run(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        trigger: Trigger,
    ) -> Result<Report, RenewError> {
        let flight = self
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.to_owned())
            .or_default()
            .clone();
        let _one_at_a_time = flight.lock().await;
        // A read place only while a renewal could still follow it.
        let read_by = deadline - chrono_duration(self.time_needed());
        self.pace(tenant, false, read_by.max(self.clock.now()))
            .await?;
        let view = self.read_view(tenant, deadline).await?;
        let current = view.newest.as_ref();
        let now = self.clock.now();
        let mut report = Report {
            tenant: tenant.to_owned(),
            outcome: Outcome::Fresh,
            generation: view.newest_generation(),
            seconds_left: current.and_then(|s| s.seconds_left(now)),
            retries: 0,
            cas_conflicts: 0,
            quota_skips: 0,
            unreadable_slots: view
                .unreadable_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            forced: false,
            permanent: current.is_some_and(|s| s.permanent),
        };
        let margin = self.settings.refresh_margin.as_secs() as i64;
        let due = report.seconds_left.is_none_or(|left| left <= margin);
        let mut forced_renewals = current.map_or_else(Vec::new, |s| s.recent_forced_renewals(now));
        match trigger {
            Trigger::Refused(g) if g == report.generation && !due => {
                self.check_forced(tenant, current, &forced_renewals, now)?;
                forced_renewals.push(now);
                report.forced = true;
            }
            // A newer generation is the replacement, unless its own claims say it is due (a
            // newer token with a shorter life than the refused one): then this is an ordinary
            // due renewal, whatever was refused.
            Trigger::Refused(g) if g < report.generation && !due => {
                report.outcome = Outcome::RenewedElsewhere;
                return Ok(report);
            }
            Trigger::CredentialsChanged => {}
            _ if !due => return Ok(report),
            _ => {}
        }
        let base = view.highest_possible;
        let upstream_deadline = deadline - chrono_duration(self.settings.write_reserve);
        // The write's place is taken before RingCX spends the refresh token, so nothing waits
        // between the refresh and its write (the window in which the ring shows a spent token).
        self.pace(tenant, true, read_by.max(self.clock.now()))
            .await?;
        self.check_time(tenant, deadline)?;

        let refresh_token = match trigger {
            Trigger::CredentialsChanged => None,
            _ => current.and_then(|s| s.refresh_token.clone()),
        };
        let (session, obtained_by) = match refresh_token {
            Some(token) => match self.refresh(&token, upstream_deadline, &mut report).await {
                Ok(session) => (session, ObtainedBy::Refresh),
                Err(RingCxError::RefreshTokenRejected { .. }) => {
                    if let Some(newer) = self.await_newer(tenant, base, deadline).await? {
                        return Ok(self.elsewhere(report, &newer));
                    }
                    tracing::warn!(
                        tenant,
                        generation = base,
                        "refresh token rejected and nobody renewed"
                    );
                    self.login(tenant, current.is_some(), deadline, &mut report)
                        .await?
                }
                Err(source) => {
                    return Err(RenewError::Upstream {
                        tenant: tenant.to_owned(),
                        source,
                    });
                }
            },
            None => self.login(tenant, false, deadline, &mut report).await?,
        };
        if obtained_by == ObtainedBy::Refresh {
            report.outcome = Outcome::Refreshed;
        }
        let has_refresh_token = session.refresh_token.is_some();
        let mut state = SessionState::next(current, session, obtained_by);
        state.forced_renewals = forced_renewals;
        state.permanent = obtained_by == ObtainedBy::ApiToken;
        report.permanent = state.permanent;
        let generation = self
            .publish(tenant, base, &state, deadline, &mut report)
            .await?;
        if !has_refresh_token && !state.permanent && report.outcome != Outcome::RenewedElsewhere {
            let err = RenewError::RefreshTokenMissing {
                tenant: tenant.to_owned(),
                flow: obtained_by,
                generation,
            };
            tracing::error!(tenant, error = %err, "renewal without a refresh token");
            return Err(err);
        }
        Ok(report)
    }

    /// Refuses to start a renewal that could not save its result before `deadline`.
    fn check_time(&self, tenant: &str, deadline: DateTime<Utc>) -> Result<(), RenewError> {
        let left = remaining(self.clock.now(), deadline);
        let needed = self.time_needed();
        if left < needed {
            return Err(RenewError::NoTime {
                tenant: tenant.to_owned(),
                left_ms: left.as_millis(),
                needed_ms: needed.as_millis(),
            });
        }
        Ok(())
    }

    /// After a rejected refresh token: polls the ring briefly for a generation newer than `base`.
    async fn await_newer(
        &self,
        tenant: &str,
        base: u64,
        deadline: DateTime<Utc>,
    ) -> Result<Option<SessionState>, RenewError> {
        let until = later(self.clock.now(), self.settings.reread_window).min(deadline);
        loop {
            if let Some(state) = self.read_view(tenant, deadline).await?.newest
                && state.generation > base
            {
                return Ok(Some(state));
            }
            if later(self.clock.now(), self.settings.reread_interval) > until
                || !fits(self.clock.now(), self.settings.reread_interval, deadline)
            {
                return Ok(None);
            }
            self.clock.sleep(self.settings.reread_interval).await;
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
