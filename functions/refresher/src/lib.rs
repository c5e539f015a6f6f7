//! The refresher: one pass renews every configured tenant (bounded concurrency), logs one line
//! and one EMF metrics document per tenant, and fails when any tenant ends without a usable token
//! so that the function's Errors metric and its alarm fire.

pub mod sweep;

use std::sync::Arc;

use broker::clock::SharedClock;
use broker::config::Config;
use broker::credentials::Credentials;
use broker::renew::{Outcome, RenewError, Renewer};
use broker::ringcx::{RingCxClient, RingCxError, VoiceAuth};
use broker::store::{SecretStore, SessionRing, fits};
use broker::telemetry::{self, Metric};
use chrono::{DateTime, Duration, Utc};
use lambda_runtime::LambdaEvent;
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Time kept back from the Lambda deadline for logging and answering the runtime.
const DEADLINE_SAFETY: Duration = Duration::seconds(2);
/// If a pass is somehow still running this close to the Lambda deadline, it is cut short and the
/// invocation answers anyway: the deadline kills the process, which would lose the answer and
/// every log line not yet flushed. Never reached when every call keeps its timeout.
const LAST_RESORT: std::time::Duration = std::time::Duration::from_millis(700);
/// The most one pass spends when there is no Lambda deadline (local runs).
const LOCAL_PASS_BUDGET: Duration = Duration::seconds(50);

/// What one tenant's renewal came to. Holds no secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantResult {
    pub tenant: String,
    pub outcome: String,
    pub generation: u64,
    pub seconds_left: Option<i64>,
    /// Whether the ring holds a token with more than `MIN_TOKEN_TTL_SECONDS` left afterwards.
    pub usable: bool,
    pub error: Option<String>,
    /// Slot secrets that hold no session document, by name (see the README's "Corrupted slots").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable_slots: Vec<String>,
    /// Permanent API tokens revoked by this pass's sweep (expired, or rotated past their grace).
    #[serde(skip_serializing_if = "is_zero")]
    pub api_tokens_revoked: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One pass over every tenant; the function's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassSummary {
    pub ok: bool,
    pub tenants: Vec<TenantResult>,
}

/// The invocation failed: some tenants have no usable token.
#[derive(Debug, thiserror::Error)]
#[error("{} of {total} tenants have no usable RingCX token: {}", failed.len(), failed.join("; "))]
pub struct PassFailed {
    pub total: usize,
    pub failed: Vec<String>,
}

/// Everything a pass needs, built once per execution environment.
#[derive(Debug, Clone)]
pub struct Refresher<S> {
    renewer: Renewer<S>,
    ringcx: RingCxClient,
    registries: broker::api_tokens::Registries<S>,
    tenants: Vec<String>,
    concurrency: usize,
    min_ttl_secs: i64,
    clock: SharedClock,
    per_tenant_metrics: bool,
    /// What the last pass of this warm instance saw per tenant: (generation, token expiry).
    known: Arc<std::sync::Mutex<Known>>,
    /// Per tenant: when this warm instance next reads the API token registry.
    registry_reads: Arc<std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>>,
}

/// Per tenant: the newest generation seen and its token's expiry.
type Known = std::collections::HashMap<String, (u64, DateTime<Utc>)>;

/// Seconds kept between a remembered expiry and the margin before a ring read is skipped (clock
/// and scheduling slack).
const SKIP_SLACK_SECS: i64 = 5;

impl<S: SecretStore + Clone + 'static> Refresher<S> {
    pub fn new(config: &Config, store: S, clock: SharedClock) -> Result<Self, RingCxError> {
        let ring = SessionRing::new(
            store.clone(),
            config.names(),
            config.session_slots,
            clock.clone(),
        );
        let ringcx = RingCxClient::new(&config.ringcx, clock.clone())?;
        Ok(Self {
            renewer: Renewer::new(ring, ringcx.clone(), clock.clone(), config.renew_settings()),
            ringcx,
            registries: broker::api_tokens::Registries::new(store, config.names()),
            tenants: config.tenants.clone(),
            concurrency: config.refresh_concurrency,
            min_ttl_secs: config.min_token_ttl.as_secs() as i64,
            clock,
            per_tenant_metrics: config.per_tenant_metrics,
            known: Arc::default(),
            registry_reads: Arc::default(),
        })
    }

    /// Runs [`Refresher::run_pass`], but answers by `hard_deadline` (the invocation's) whatever
    /// happens: a pass still running then is abandoned with a loud error.
    pub async fn run_pass_by(
        &self,
        deadline: DateTime<Utc>,
        hard_deadline: DateTime<Utc>,
    ) -> PassSummary {
        let left = broker::clock::remaining(self.clock.now(), hard_deadline);
        match tokio::time::timeout(left.saturating_sub(LAST_RESORT), self.run_pass(deadline)).await
        {
            Ok(summary) => summary,
            Err(_) => {
                tracing::error!(
                    "the pass was still running at the invocation's deadline and was cut short; \
                     some RingCX or Secrets Manager call ignored its timeout"
                );
                PassSummary {
                    ok: false,
                    tenants: self
                        .tenants
                        .iter()
                        .map(|t| TenantResult {
                            tenant: t.clone(),
                            outcome: "cut-short".to_owned(),
                            generation: 0,
                            seconds_left: None,
                            usable: false,
                            error: Some("the pass ran out of time".to_owned()),
                            unreadable_slots: Vec::new(),
                            api_tokens_revoked: 0,
                        })
                        .collect(),
                }
            }
        }
    }

    /// Renews every tenant, at most `REFRESH_CONCURRENCY` at once, finishing by `deadline`.
    pub async fn run_pass(&self, deadline: DateTime<Utc>) -> PassSummary {
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for (index, tenant) in self.tenants.iter().cloned().enumerate() {
            let this = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                (index, this.renew_one(&tenant, deadline).await)
            });
        }
        let mut results: Vec<(usize, TenantResult)> = Vec::with_capacity(self.tenants.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => tracing::error!(error = %e, "a tenant's renewal task panicked"),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        let tenants: Vec<TenantResult> = results.into_iter().map(|(_, r)| r).collect();
        let ok = tenants.len() == self.tenants.len() && tenants.iter().all(|t| t.usable);
        PassSummary { ok, tenants }
    }

    /// A report without reading the ring, when this warm instance knows the tenant's token cannot
    /// be due yet. Safe against other writers: a newer generation only moves expiry later, and
    /// the ring is read again (before any refresh token is spent) once the remembered expiry is
    /// within the margin.
    fn remembered(&self, tenant: &str) -> Option<broker::renew::Report> {
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

    fn lock_registry_reads(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, DateTime<Utc>>> {
        self.registry_reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the sweep reads `tenant`'s registry this pass (see [`sweep::REGISTRY_READ_EVERY`]).
    fn registry_due(&self, tenant: &str, now: DateTime<Utc>) -> bool {
        self.lock_registry_reads()
            .get(tenant)
            .is_none_or(|next| *next <= now)
    }

    fn remember(&self, tenant: &str, result: &Result<broker::renew::Report, RenewError>) {
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

    async fn renew_one(&self, tenant: &str, deadline: DateTime<Utc>) -> TenantResult {
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
                r.outcome.as_str(),
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
                        .ring()
                        .read(tenant)
                        .await
                        .ok()
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
                    "deferred"
                } else {
                    "failed"
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
                outcome,
                seconds_left,
                retries,
                cas_conflicts = cas,
                quota_skips = quota,
                forced,
                unreadable_slots = unreadable,
                "renewal"
            ),
            Some(e) => {
                tracing::error!(tenant, generation, outcome, seconds_left, usable, error = %e, "renewal failed")
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
            outcome: outcome.to_owned(),
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
    async fn check_permanent(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        report: broker::renew::Report,
    ) -> Result<broker::renew::Report, RenewError> {
        let credentials = self.renewer.credentials(tenant, deadline).await?;
        let newest = self
            .renewer
            .ring()
            .read(tenant)
            .await
            .map_err(|source| RenewError::Store {
                tenant: tenant.to_owned(),
                source,
            })?
            .newest;
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

    /// The deadline for a pass: the invocation's, less a safety margin; or a local budget.
    pub fn deadline(&self, lambda_deadline_ms: Option<u64>) -> DateTime<Utc> {
        let local = self.clock.now() + LOCAL_PASS_BUDGET;
        lambda_deadline_ms
            .and_then(|ms| DateTime::from_timestamp_millis(i64::try_from(ms).ok()?))
            .map_or(local, |d| d - DEADLINE_SAFETY)
    }
}

/// The Lambda handler for EventBridge Scheduler events (any payload: the schedule only wakes us).
pub async fn handler<S: SecretStore + Clone + 'static>(
    refresher: &Refresher<S>,
    event: LambdaEvent<Value>,
) -> Result<PassSummary, PassFailed> {
    let source = event
        .payload
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    tracing::debug!(request_id = %event.context.request_id, source, "refresh pass");
    let hard = DateTime::from_timestamp_millis(event.context.deadline as i64)
        .unwrap_or_else(|| refresher.clock.now() + LOCAL_PASS_BUDGET);
    let summary = refresher
        .run_pass_by(refresher.deadline(Some(event.context.deadline)), hard)
        .await;
    if summary.ok {
        Ok(summary)
    } else {
        Err(PassFailed {
            total: summary.tenants.len(),
            failed: summary
                .tenants
                .iter()
                .filter(|t| !t.usable)
                .map(|t| {
                    format!(
                        "{}: {}",
                        t.tenant,
                        t.error.as_deref().unwrap_or("token expired")
                    )
                })
                .collect(),
        })
    }
}

impl From<PassFailed> for lambda_runtime::Diagnostic {
    fn from(e: PassFailed) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "TenantsWithoutToken".to_owned(),
            error_message: e.to_string(),
        }
    }
}
