//! The refresher: one pass renews every configured tenant (bounded concurrency), logs one line
//! and one EMF metrics document per tenant, and fails when any tenant ends without a usable token
//! so that the function's Errors metric and its alarm fire.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod summary;
pub mod sweep;
mod tenant;
mod warm;

pub use summary::{PassFailed, PassSummary, TenantOutcome, TenantResult};

use std::sync::Arc;

use broker::clock::SharedClock;
use broker::config::Config;
use broker::rate::Pacer;
use broker::renew::Renewer;
use broker::ringcx::{RingCxClient, RingCxError};
use broker::store::{SecretStore, SessionRing};
use chrono::{DateTime, Duration, Utc};
use lambda_runtime::LambdaEvent;
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
    /// What this warm instance remembers between passes.
    warm: Arc<warm::Warm>,
}

impl<S: SecretStore + Clone + 'static> Refresher<S> {
    /// Builds the clients once per execution environment; fails only if the HTTP client cannot.
    pub fn new(config: &Config, store: S, clock: SharedClock) -> Result<Self, RingCxError> {
        let ring = SessionRing::new(
            store.clone(),
            config.names(),
            config.session_slots,
            clock.clone(),
        );
        let ringcx = RingCxClient::new(&config.ringcx, clock.clone())?;
        Ok(Self {
            renewer: Renewer::new(ring, ringcx.clone(), clock.clone(), config.renew_settings())
                .with_pacing(broker::renew::Pacing {
                    reads: Pacer::per_second(config.read_rate_per_second, clock.clone()),
                    writes: Pacer::per_second(config.write_rate_per_second, clock.clone()),
                }),
            ringcx,
            registries: broker::api_tokens::Registries::new(store, config.names()),
            tenants: config.tenants.clone(),
            concurrency: config.refresh_concurrency,
            min_ttl_secs: config.min_token_ttl.as_secs() as i64,
            clock,
            per_tenant_metrics: config.per_tenant_metrics,
            warm: Arc::default(),
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
                            outcome: TenantOutcome::CutShort,
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
