//! The renewal protocol, used by both functions (the refresher on its schedule, the HTTP function
//! inline when the ring holds no usable token).
//!
//! 1. Read the ring; take the newest state S (generation g).
//! 2. If S's access token has more than the margin left, stop. Duplicate or overlapping
//!    invocations are therefore harmless.
//! 3. Refresh with S's refresh token. If RingCX rejects it, re-read the ring for a few seconds: a
//!    newer generation means someone else renewed, so stop. Otherwise log in again from the
//!    tenant's credentials. Transient failures (timeouts, broken connections, 5xx, 429) are retried
//!    with backoff and jitter inside the deadline and never lead to a full login.
//! 4. Publish generation g+1 with a fencing token (see `store::ring`). A writer that loses the
//!    race discards its result.
//! 5. Nothing is lost: the ring never takes an older generation, and the new refresh token is
//!    written before anything else uses it, with a retry budget reserved for that write.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::SharedClock;
use crate::credentials::Credentials;
use crate::engage::{EngageClient, EngageError, EngageSession};
use crate::session::SessionState;
use crate::store::{PublishOutcome, SecretStore, SessionRing, StoreError};

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
        }
    }
}

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
}

/// Why a tenant ended a renewal without a usable token.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("tenant {tenant}: reading Secrets Manager failed: {source}")]
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
    #[error("tenant {tenant}: RingCX kept failing until the deadline: {source}")]
    Upstream {
        tenant: String,
        #[source]
        source: EngageError,
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

/// Runs the renewal protocol for any tenant of one deployment; clones share clients.
#[derive(Debug, Clone)]
pub struct Renewer<S> {
    ring: SessionRing<S>,
    engage: EngageClient,
    clock: SharedClock,
    settings: RenewSettings,
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
        }
    }

    pub fn ring(&self) -> &SessionRing<S> {
        &self.ring
    }

    pub fn settings(&self) -> &RenewSettings {
        &self.settings
    }

    /// Renews `tenant` if its token is within the margin, finishing by `deadline`.
    pub async fn renew(&self, tenant: &str, deadline: DateTime<Utc>) -> Result<Report, RenewError> {
        self.renew_inner(tenant, deadline, None).await
    }

    /// Renews `tenant` even inside the margin if the ring's newest generation is still
    /// `rejected_generation`: RingCX refused that access token although it had time left. A newer
    /// generation in the ring is used as it is.
    pub async fn renew_replacing(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        rejected_generation: u64,
    ) -> Result<Report, RenewError> {
        self.renew_inner(tenant, deadline, Some(rejected_generation))
            .await
    }

    async fn renew_inner(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        rejected_generation: Option<u64>,
    ) -> Result<Report, RenewError> {
        let current = self.read_newest(tenant, deadline).await?;
        let now = self.clock.now();
        let mut report = Report {
            tenant: tenant.to_owned(),
            outcome: Outcome::Fresh,
            generation: current.as_ref().map_or(0, |s| s.generation),
            seconds_left: current.as_ref().and_then(|s| s.seconds_left(now)),
            retries: 0,
            cas_conflicts: 0,
            quota_skips: 0,
        };
        let margin = self.settings.refresh_margin.as_secs() as i64;
        let rejected = rejected_generation.is_some_and(|g| g == report.generation);
        if !rejected && report.seconds_left.is_some_and(|left| left > margin) {
            return Ok(report);
        }
        let upstream_deadline = deadline - chrono_duration(self.settings.write_reserve);
        let base = report.generation;

        let refresh_token = current.as_ref().and_then(|s| s.refresh_token.clone());
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
                        "refresh token rejected and nobody renewed: logging in again"
                    );
                    self.login(tenant, current.is_some(), upstream_deadline, &mut report)
                        .await?
                }
                Err(source) => {
                    return Err(RenewError::Upstream {
                        tenant: tenant.to_owned(),
                        source,
                    });
                }
            },
            None => {
                self.login(tenant, false, upstream_deadline, &mut report)
                    .await?
            }
        };
        if obtained_by == "refresh" {
            report.outcome = Outcome::Refreshed;
        }

        let state = SessionState::next(current.as_ref(), session, obtained_by);
        match self.ring.publish(tenant, base, &state).await {
            Ok(PublishOutcome::Published {
                generation,
                quota_skips,
            }) => {
                report.generation = generation;
                report.quota_skips = quota_skips;
                report.seconds_left = state.seconds_left(self.clock.now());
                Ok(report)
            }
            Ok(PublishOutcome::Lost { generation }) => {
                tracing::info!(
                    tenant,
                    generation,
                    "another renewer published this generation first; discarding ours"
                );
                report.cas_conflicts += 1;
                let newest = self.read_newest(tenant, deadline).await?;
                Ok(match newest {
                    Some(newer) => self.elsewhere(report, &newer),
                    None => report,
                })
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

    /// The newest state, retrying transient read failures inside the deadline.
    async fn read_newest(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<Option<SessionState>, RenewError> {
        let view = self
            .store_retrying(tenant, deadline, || self.ring.read(tenant))
            .await?;
        Ok(view.newest)
    }

    /// A Secrets Manager call, retrying transient failures inside the deadline.
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
                Err(e) if e.is_transient() && self.wait(attempt, None, deadline).await => {
                    attempt += 1
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
        let until = (self.clock.now() + chrono_duration(self.settings.reread_window)).min(deadline);
        loop {
            if let Some(state) = self.read_newest(tenant, deadline).await?
                && state.generation > base
            {
                return Ok(Some(state));
            }
            if self.clock.now() + chrono_duration(self.settings.reread_interval) > until {
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

    /// A full login from the tenant's credentials secret.
    async fn login(
        &self,
        tenant: &str,
        had_session: bool,
        deadline: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<(EngageSession, &'static str), RenewError> {
        let secret = self.ring.names().credentials(tenant);
        let stored = self
            .store_retrying(tenant, deadline, || self.ring.store().get(&secret))
            .await?;
        let Some(raw) = stored else {
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
        let credentials: Credentials = serde_json::from_str(raw.expose_secret()).map_err(|e| {
            // Position only: serde's message could quote a secret value.
            RenewError::CredentialsUnreadable {
                tenant: tenant.to_owned(),
                secret: secret.clone(),
                reason: format!("{:?} error at line {} column {}; expected a \"type\" of ringex-jwt or engage-login", e.classify(), e.line(), e.column()),
            }
        })?;
        let flow = credentials.flow();
        let limit = Some(self.settings.max_login_attempts);
        let result = match &credentials {
            // The platform grant is not rate-limited like the exchange: retried within the
            // deadline; only exchange attempts count against the limit.
            Credentials::RingExJwt(c) => {
                let grant = || self.engage.ringex_jwt_token(c);
                match self
                    .retrying(tenant, "RingEX JWT grant", None, deadline, report, grant)
                    .await
                {
                    Ok(platform) => {
                        let exchange = || self.engage.exchange(&platform.access_token);
                        self.retrying(tenant, "exchange", limit, deadline, report, exchange)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            Credentials::EngageLogin(c) => {
                let login = || self.engage.login_engage(c);
                self.retrying(tenant, "RingCX login", limit, deadline, report, login)
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

    /// Calls `call` until it succeeds, fails for good, `limit` calls were made, or the next wait
    /// would pass the deadline. Transient failures are retried with backoff and jitter.
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
                Err(e)
                    if e.is_transient()
                        && limit.is_none_or(|l| attempt + 1 < l)
                        && self.wait(attempt, e.retry_after(), deadline).await =>
                {
                    tracing::warn!(tenant, what, attempt, error = %e, "failed transiently; retrying");
                    attempt += 1;
                    report.retries += 1;
                }
                other => return other,
            }
        }
    }

    /// Sleeps before retry `attempt + 1` (exponential backoff with jitter, or the upstream's
    /// `Retry-After`), unless that would pass the deadline: then returns `false` at once.
    async fn wait(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        deadline: DateTime<Utc>,
    ) -> bool {
        let exp = self
            .settings
            .first_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.settings.max_backoff);
        let jittered = exp / 2 + exp.mul_f64(fastrand::f64()) / 2;
        let delay = retry_after.map_or(jittered, |r| r.max(jittered));
        if self.clock.now() + chrono_duration(delay) >= deadline {
            return false;
        }
        self.clock.sleep(delay).await;
        true
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
