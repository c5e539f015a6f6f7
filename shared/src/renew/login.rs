//! Getting new tokens: the refresh, and the full login from the tenant's credentials (RingEX
//! JWT grant and exchange, the RingCX password login, or a permanent API token checked once).

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::report::PERMANENT_DAYS;
use super::{Outcome, RenewError, Renewer, Report, chrono_duration};
use crate::credentials::Credentials;
use crate::retry::{Attempt, retry};
use crate::ringcx::{RingCxError, RingCxSession, VoiceAuth};
use crate::session::ObtainedBy;
use crate::store::SecretStore;

impl<S: SecretStore> Renewer<S> {
    pub(super) async fn refresh(
        &self,
        token: &SecretString,
        deadline: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<RingCxSession, RingCxError> {
        let tenant = report.tenant.clone();
        let refresh = || self.ringcx.refresh(token);
        self.upstream(&tenant, "refresh", None, deadline, report, refresh)
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
            .store_call(tenant, deadline, || self.ring.store().get(&secret))
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

    pub(super) async fn login(
        &self,
        tenant: &str,
        had_session: bool,
        deadline: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<(RingCxSession, ObtainedBy), RenewError> {
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
                let grant = || self.ringcx.ringex_jwt_token(c);
                match self
                    .upstream(
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
                        let exchange = || self.ringcx.exchange(&platform.access_token);
                        self.upstream(
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
                let check = || self.ringcx.accounts(VoiceAuth::ApiToken(&c.token));
                let now = self.clock.now();
                self.upstream(
                    tenant,
                    "API token check",
                    None,
                    upstream_deadline,
                    report,
                    check,
                )
                .await
                .map(|accounts| RingCxSession {
                    access_token: c.token.clone(),
                    refresh_token: None,
                    token_type: "X-Auth-Token".to_owned(),
                    expires_at: now + chrono::Duration::days(PERMANENT_DAYS),
                    expiry_source: crate::ringcx::ExpirySource::Assumed,
                    obtained_at: now,
                    account_id: accounts.first().map(|a| a.account_id.clone()),
                    main_account_id: None,
                })
            }
            Credentials::EngageLogin(c) => {
                let login = || self.ringcx.login_engage(c);
                self.upstream(
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

    /// A RingCX call under the one retry policy: transient failures are retried while another
    /// attempt (its wait plus a whole request timeout) fits before `deadline`, at most `limit`
    /// calls, after RingCX's `Retry-After` when it sends one.
    async fn upstream<T: Send>(
        &self,
        tenant: &str,
        what: &'static str,
        limit: Option<u32>,
        deadline: DateTime<Utc>,
        report: &mut Report,
        call: impl Attempt<T, RingCxError>,
    ) -> Result<T, RingCxError> {
        let policy = self.policy(limit, self.ringcx.request_timeout());
        let mut attempt: u32 = 0;
        let result = retry(&self.clock, policy, deadline, call, |e: &RingCxError, _| {
            tracing::warn!(tenant, what, attempt, error = %e, "failed transiently; retrying");
            attempt += 1;
            report.retries += 1;
        })
        .await;
        if let Err(e) = &result
            && e.is_transient()
        {
            if limit.is_some_and(|l| attempt + 1 >= l) {
                tracing::warn!(tenant, what, attempt, error = %e, "failed transiently; no attempt left (limit reached)");
            } else {
                tracing::warn!(tenant, what, attempt, error = %e, "failed transiently; no time left for another attempt");
            }
        }
        result
    }
}
