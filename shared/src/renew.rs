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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex as AsyncMutex;

use crate::clock::{SharedClock, later, remaining};
use crate::credentials::{API_TOKEN_FLOW, Credentials};
use crate::engage::{EngageClient, EngageError, EngageSession, VoiceAuth};
use crate::session::SessionState;
use crate::store::{PublishOutcome, RingView, SecretStore, SessionRing, StoreError, fits};

/// Tunables of the protocol; the defaults suit a 1-minute schedule and 5-minute tokens.
#[derive(Debug, Clone)]
pub struct RenewSettings {
    /// Renew once the access token has this long or less left (`REFRESH_MARGIN_SECONDS`).
    pub refresh_margin: Duration,
    /// Part of the deadline kept for writing the new session.
    pub write_reserve: Duration,
    /// How long to look for someone else's renewal after RingCX rejects our refresh token.
    pub reread_window: Duration,
    pub reread_interval: Duration,
    pub first_backoff: Duration,
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
const PERMANENT_DAYS: i64 = 3650;

/// What a renewal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The token had more than the margin left; nothing was done.
    Fresh,
    /// Refreshed with the stored refresh token.
    Refreshed,
    /// Logged in again from the credentials (`flow` is `ringex-exchange` or `engage-login`).
    LoggedIn { flow: &'static str },
    /// Another renewer published a newer generation; ours (if any) was discarded.
    RenewedElsewhere,
}

impl Outcome {
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
    pub tenant: String,
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

/// Why a tenant ended a renewal without a new token.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("tenant {tenant}: reading or writing Secrets Manager failed: {source}")]
    Store {
        tenant: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "tenant {tenant}: no session and no credentials: put a credentials document in {secret} \
         (or seed a session with a refresh token)"
    )]
    NoSession { tenant: String, secret: String },
    #[error(
        "tenant {tenant} CANNOT RECOVER: RingCX rejected the stored refresh token and there is no \
         credentials secret {secret}. Put RingEX JWT or Engage login credentials there, or seed a \
         new refresh token into the ring"
    )]
    Unrecoverable { tenant: String, secret: String },
    #[error(
        "tenant {tenant}: the ring holds no refresh token RingCX accepts; only the refresher logs \
         in again, at its next run"
    )]
    LoginNeeded { tenant: String },
    #[error(
        "tenant {tenant}: the credentials secret {secret} is not a valid credentials document ({reason})"
    )]
    CredentialsUnreadable {
        tenant: String,
        secret: String,
        reason: String,
    },
    #[error("tenant {tenant}: RingCX refused the credentials, fix {secret}: {source}")]
    CredentialsRejected {
        tenant: String,
        secret: String,
        #[source]
        source: EngageError,
    },
    #[error(
        "tenant {tenant}: RingCX no longer accepts the permanent API token in {secret} (revoked?): \
         create a new token and store it with `make seed-credentials TENANT={tenant}`: {source}"
    )]
    PermanentTokenRefused {
        tenant: String,
        secret: String,
        #[source]
        source: EngageError,
    },
    #[error("tenant {tenant}: RingCX kept failing until the deadline: {source}")]
    Upstream {
        tenant: String,
        #[source]
        source: EngageError,
    },
    #[error(
        "tenant {tenant}: {left_ms} ms left before the deadline, but a renewal needs {needed_ms} ms \
         (the RingCX timeout, ENGAGE_TIMEOUT_MS, plus the write): not started, so no refresh token \
         is spent without time to save its answer. Raise the function's timeout or lower \
         ENGAGE_TIMEOUT_MS"
    )]
    NoTime {
        tenant: String,
        left_ms: u128,
        needed_ms: u128,
    },
    #[error("tenant {tenant}: no forced renewal: {reason}")]
    ForcedRenewalRefused { tenant: String, reason: String },
    #[error(
        "tenant {tenant}: RingCX answered the {flow} without a refreshToken; the new access token \
         was saved (generation {generation}), but the next renewal needs a full login"
    )]
    RefreshTokenMissing {
        tenant: String,
        flow: &'static str,
        generation: u64,
    },
    #[error(
        "tenant {tenant}: the renewed session could not be written ({source}); the next run \
         will log in again from the credentials"
    )]
    WriteFailed {
        tenant: String,
        #[source]
        source: StoreError,
    },
}

/// Runs the renewal protocol for any tenant of one deployment; clones share clients and the
/// per-tenant single-flight.
#[derive(Debug, Clone)]
pub struct Renewer<S> {
    ring: SessionRing<S>,
    engage: EngageClient,
    clock: SharedClock,
    settings: RenewSettings,
    /// One renewal per tenant at a time in this process: two would present the same refresh
    /// token, which RingCX may punish by revoking the whole token family (reuse detection).
    flights: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
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
    pub fn new(
        ring: SessionRing<S>,
        engage: EngageClient,
        clock: SharedClock,
        settings: RenewSettings,
    ) -> Self {
        Self {
            ring,
            engage,
            clock,
            settings,
            flights: Arc::default(),
        }
    }

    pub fn ring(&self) -> &SessionRing<S> {
        &self.ring
    }

    pub fn settings(&self) -> &RenewSettings {
        &self.settings
    }

    /// The least time a renewal needs before its deadline: one whole RingCX request and the write.
    pub fn time_needed(&self) -> Duration {
        self.engage.request_timeout() + self.settings.write_reserve
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
            Trigger::Refused(g) if g < report.generation => {
                report.outcome = Outcome::RenewedElsewhere;
                return Ok(report);
            }
            Trigger::CredentialsChanged => {}
            _ if !due => return Ok(report),
            _ => {}
        }
        let base = view.highest_possible;
        let upstream_deadline = deadline - chrono_duration(self.settings.write_reserve);
        self.check_time(tenant, deadline)?;

        let refresh_token = match trigger {
            Trigger::CredentialsChanged => None,
            _ => current.and_then(|s| s.refresh_token.clone()),
        };
        let (session, obtained_by) = match refresh_token {
            Some(token) => match self.refresh(&token, upstream_deadline, &mut report).await {
                Ok(session) => (session, "refresh"),
                Err(EngageError::RefreshTokenRejected { .. }) => {
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
        if obtained_by == "refresh" {
            report.outcome = Outcome::Refreshed;
        }
        let has_refresh_token = session.refresh_token.is_some();
        let mut state = SessionState::next(current, session, obtained_by);
        state.forced_renewals = forced_renewals;
        state.permanent = obtained_by == API_TOKEN_FLOW;
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

    /// Whether a forced renewal of `current` is allowed now.
    fn check_forced(
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

    async fn publish(
        &self,
        tenant: &str,
        base: u64,
        state: &SessionState,
        deadline: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<u64, RenewError> {
        match self.ring.publish(tenant, base, state, deadline).await {
            Ok(PublishOutcome::Published {
                generation,
                quota_skips,
            }) => {
                report.generation = generation;
                report.quota_skips = quota_skips;
                report.seconds_left = state.seconds_left(self.clock.now());
                Ok(generation)
            }
            Ok(PublishOutcome::Lost { generation }) => {
                tracing::info!(
                    tenant,
                    generation,
                    "another renewer published this generation first; discarding ours"
                );
                report.cas_conflicts += 1;
                let newest = self.read_view(tenant, deadline).await?.newest;
                if let Some(newer) = newest {
                    *report = self.elsewhere(report.clone(), &newer);
                }
                Ok(report.generation)
            }
            Err(source) => {
                tracing::error!(tenant, error = %source, "could not write the renewed session");
                Err(RenewError::WriteFailed {
                    tenant: tenant.to_owned(),
                    source,
                })
            }
        }
    }

    fn elsewhere(&self, mut report: Report, newer: &SessionState) -> Report {
        report.outcome = Outcome::RenewedElsewhere;
        report.generation = newer.generation;
        report.seconds_left = newer.seconds_left(self.clock.now());
        report
    }

    /// The ring, retrying transient read failures while another attempt fits before `deadline`.
    async fn read_view(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<RingView, RenewError> {
        self.store_retrying(tenant, deadline, || self.ring.read(tenant))
            .await
    }

    /// A Secrets Manager call, retrying transient failures while another attempt fits.
    async fn store_retrying<T, F, Fut>(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        call: F,
    ) -> Result<T, RenewError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Err(e) if e.is_transient() => {
                    let delay = self.backoff(attempt, None);
                    if !fits(self.clock.now(), delay, deadline) {
                        return Err(RenewError::Store {
                            tenant: tenant.to_owned(),
                            source: e,
                        });
                    }
                    self.clock.sleep(delay).await;
                    attempt += 1;
                }
                Err(source) => {
                    return Err(RenewError::Store {
                        tenant: tenant.to_owned(),
                        source,
                    });
                }
                Ok(v) => return Ok(v),
            }
        }
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

    async fn refresh(
        &self,
        token: &SecretString,
        deadline: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<EngageSession, EngageError> {
        let tenant = report.tenant.clone();
        let refresh = || self.engage.refresh(token);
        self.retrying(&tenant, "refresh", None, deadline, report, refresh)
            .await
    }

    /// A full login from the tenant's credentials secret, if this renewer may log in.
    /// The tenant's credentials document, or `None` when there is none.
    pub async fn credentials(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<Option<Credentials>, RenewError> {
        let secret = self.ring.names().credentials(tenant);
        let stored = self
            .store_retrying(tenant, deadline, || self.ring.store().get(&secret))
            .await?;
        let Some(raw) = stored else {
            return Ok(None);
        };
        serde_json::from_str(raw.expose_secret())
            .map(Some)
            .map_err(|e| {
                // Position only: serde's message could quote a secret value.
                RenewError::CredentialsUnreadable {
                    tenant: tenant.to_owned(),
                    secret: secret.clone(),
                    reason: format!("{:?} error at line {} column {}; expected a \"type\" of ringex-jwt, engage-login or api-token", e.classify(), e.line(), e.column()),
                }
            })
    }

    async fn login(
        &self,
        tenant: &str,
        had_session: bool,
        deadline: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<(EngageSession, &'static str), RenewError> {
        if !self.settings.may_login {
            return Err(RenewError::LoginNeeded {
                tenant: tenant.to_owned(),
            });
        }
        self.check_time(tenant, deadline)?;
        let upstream_deadline = deadline - chrono_duration(self.settings.write_reserve);
        let secret = self.ring.names().credentials(tenant);
        let Some(credentials) = self.credentials(tenant, deadline).await? else {
            let err = if had_session {
                RenewError::Unrecoverable {
                    tenant: tenant.to_owned(),
                    secret,
                }
            } else {
                RenewError::NoSession {
                    tenant: tenant.to_owned(),
                    secret,
                }
            };
            tracing::error!(tenant, error = %err, "no way to obtain a session");
            return Err(err);
        };
        let flow = credentials.flow();
        let limit = Some(self.settings.max_login_attempts);
        let result = match &credentials {
            // The platform grant is not rate-limited like the exchange: retried within the
            // deadline; only exchange attempts count against the limit.
            Credentials::RingExJwt(c) => {
                let grant = || self.engage.ringex_jwt_token(c);
                match self
                    .retrying(
                        tenant,
                        "RingEX JWT grant",
                        None,
                        upstream_deadline,
                        report,
                        grant,
                    )
                    .await
                {
                    Ok(platform) => {
                        let exchange = || self.engage.exchange(&platform.access_token);
                        self.retrying(
                            tenant,
                            "exchange",
                            limit,
                            upstream_deadline,
                            report,
                            exchange,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            Credentials::ApiToken(c) => {
                // Nothing to log in to: a cheap call proves the token works before it is kept.
                let check = || self.engage.accounts(VoiceAuth::ApiToken(&c.token));
                let now = self.clock.now();
                self.retrying(
                    tenant,
                    "API token check",
                    None,
                    upstream_deadline,
                    report,
                    check,
                )
                .await
                .map(|accounts| EngageSession {
                    access_token: c.token.clone(),
                    refresh_token: None,
                    token_type: "X-Auth-Token".to_owned(),
                    expires_at: now + chrono::Duration::days(PERMANENT_DAYS),
                    expiry_source: crate::engage::ExpirySource::Assumed,
                    obtained_at: now,
                    account_id: accounts.first().map(|a| a.account_id.clone()),
                    main_account_id: None,
                })
            }
            Credentials::EngageLogin(c) => {
                let login = || self.engage.login_engage(c);
                self.retrying(
                    tenant,
                    "RingCX login",
                    limit,
                    upstream_deadline,
                    report,
                    login,
                )
                .await
            }
        };
        match result {
            Ok(session) => {
                report.outcome = Outcome::LoggedIn { flow };
                Ok((session, flow))
            }
            Err(e) if e.is_transient() => Err(RenewError::Upstream {
                tenant: tenant.to_owned(),
                source: e,
            }),
            Err(source) => {
                tracing::error!(tenant, error = %source, "RingCX refused the tenant's credentials");
                Err(RenewError::CredentialsRejected {
                    tenant: tenant.to_owned(),
                    secret,
                    source,
                })
            }
        }
    }

    /// Calls `call` until it succeeds, fails for good, `limit` calls were made, or the next
    /// attempt (its wait plus a whole request timeout) would end after `deadline`. Transient
    /// failures are retried with backoff and jitter, or after the upstream's `Retry-After`.
    async fn retrying<T, F, Fut>(
        &self,
        tenant: &str,
        what: &'static str,
        limit: Option<u32>,
        deadline: DateTime<Utc>,
        report: &mut Report,
        call: F,
    ) -> Result<T, EngageError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, EngageError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Err(e) if e.is_transient() && limit.is_none_or(|l| attempt + 1 < l) => {
                    let delay = self.backoff(attempt, e.retry_after());
                    let ends = later(self.clock.now(), delay + self.engage.request_timeout());
                    if ends > deadline {
                        tracing::warn!(tenant, what, attempt, error = %e, "failed transiently; no time left for another attempt");
                        return Err(e);
                    }
                    tracing::warn!(tenant, what, attempt, error = %e, "failed transiently; retrying");
                    self.clock.sleep(delay).await;
                    attempt += 1;
                    report.retries += 1;
                }
                other => return other,
            }
        }
    }

    /// The wait before retry `attempt + 1`: exponential backoff with jitter, or the upstream's
    /// `Retry-After` when longer.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .settings
            .first_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.settings.max_backoff);
        let jittered = exp / 2 + exp.mul_f64(fastrand::f64()) / 2;
        retry_after.map_or(jittered, |r| r.max(jittered))
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
