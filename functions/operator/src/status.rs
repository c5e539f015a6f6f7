//! `status`: one line per tenant for an operator: the newest generation, time left on its token,
//! how and when it was obtained, the slot versions written in the last 24 h against the quota,
//! and a verdict. Reads only; never prints a secret.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use broker::clock::SharedClock;
use broker::config::{Config, SLOT_WRITES_PER_DAY};
use broker::store::{SecretNames, SecretStore, SessionRing, StoreError};

/// How a tenant is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A usable token with time to spare.
    Healthy,
    /// The token should have been renewed by now (a refresher run has passed since it was due).
    RenewingLate,
    /// No usable token.
    Failing,
    /// A slot is near the Secrets Manager version quota.
    QuotaPressure,
}

impl Verdict {
    /// The verdict's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::RenewingLate => "renewing-late",
            Verdict::Failing => "failing",
            Verdict::QuotaPressure => "quota-pressure",
        }
    }
}

/// One tenant's state. Holds no secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The tenant.
    pub tenant: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in words that name no secret.
    pub reason: String,
    /// The generation that was written.
    pub generation: Option<u64>,
    /// Seconds left on the newest token.
    pub seconds_left: Option<i64>,
    /// How it was obtained.
    pub obtained_by: Option<String>,
    /// When the newest token was obtained.
    pub obtained_at: Option<DateTime<Utc>>,
    /// Whether the session is a permanent API token.
    pub permanent: bool,
    /// Whether the tenant has a credentials secret.
    pub has_credentials: bool,
    /// Slot versions created in the last 24 h, all slots together.
    pub writes_24h: u64,
    /// The most any one slot had, against [`SLOT_WRITES_PER_DAY`].
    pub busiest_slot_writes_24h: u64,
    /// The versions a slot may take in 24 h.
    pub slot_write_budget_24h: u64,
    /// Slot secrets that hold no session document, by name.
    pub unreadable_slots: Vec<String>,
}

/// Every configured tenant's status, in configuration order.
pub async fn status<S: SecretStore + Clone>(
    config: &Config,
    store: &S,
    clock: SharedClock,
) -> Result<Vec<TenantStatus>, StoreError> {
    let names = config.names();
    let now = clock.now();
    let ring = SessionRing::new(store.clone(), names.clone(), config.session_slots, clock);
    let mut out = Vec::with_capacity(config.tenants.len());
    for tenant in &config.tenants {
        out.push(tenant_status(config, store, &ring, &names, tenant, now).await?);
    }
    Ok(out)
}

async fn tenant_status<S: SecretStore>(
    config: &Config,
    store: &S,
    ring: &SessionRing<S>,
    names: &SecretNames,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<TenantStatus, StoreError> {
    let view = ring.read(tenant).await?;
    let newest = view.newest.as_ref();
    let has_credentials = store.get(&names.credentials(tenant)).await?.is_some();
    let day_ago = now - Duration::hours(24);
    let (mut writes, mut busiest) = (0u64, 0u64);
    // Only slots that exist are listed (moto answers 500, not ResourceNotFound, for the others).
    let slots: Vec<String> = (0..config.session_slots)
        .map(|i| names.slot(tenant, i))
        .collect();
    let existing = store.batch_get(&slots).await?;
    for (slot, value) in slots.iter().zip(existing) {
        if value.is_none() {
            continue;
        }
        let recent = store
            .version_dates(slot)
            .await?
            .into_iter()
            .filter(|d| *d > day_ago)
            .count() as u64;
        writes += recent;
        busiest = busiest.max(recent);
    }
    let seconds_left = newest.and_then(|s| s.seconds_left(now));
    let permanent = newest.is_some_and(|s| s.permanent);
    let min_ttl = config.min_token_ttl.as_secs() as i64;
    let late_after =
        config.refresh_margin.as_secs() as i64 - config.refresh_interval.as_secs() as i64;
    let (verdict, reason) = match (newest, seconds_left) {
        (None, _) if !has_credentials => (
            Verdict::Failing,
            format!(
                "no session and no credentials: seed {}",
                names.credentials(tenant)
            ),
        ),
        (None, _) => (
            Verdict::Failing,
            "no session yet: the refresher logs in at its next run".to_owned(),
        ),
        (Some(_), left) if left.is_none_or(|l| l <= min_ttl) => (
            Verdict::Failing,
            "the stored token is expired or about to: read the refresher's log".to_owned(),
        ),
        (Some(_), Some(left)) if !permanent && left < late_after => (
            Verdict::RenewingLate,
            format!("{left} s left: it was due for renewal more than one run ago"),
        ),
        _ if busiest + 10 >= SLOT_WRITES_PER_DAY => (
            Verdict::QuotaPressure,
            format!("a slot had {busiest} versions in 24 h: raise SESSION_SLOTS"),
        ),
        _ if !view.unreadable.is_empty() => (
            Verdict::Healthy,
            "healthy, but some slots are unreadable (README \"Corrupted slots\")".to_owned(),
        ),
        _ => (Verdict::Healthy, "ok".to_owned()),
    };
    Ok(TenantStatus {
        tenant: tenant.to_owned(),
        verdict,
        reason,
        generation: newest.map(|s| s.generation),
        seconds_left: seconds_left.filter(|_| !permanent),
        obtained_by: newest.and_then(|s| s.obtained_by.clone()),
        obtained_at: newest.and_then(|s| s.obtained_at),
        permanent,
        has_credentials,
        writes_24h: writes,
        busiest_slot_writes_24h: busiest,
        slot_write_budget_24h: SLOT_WRITES_PER_DAY,
        unreadable_slots: view
            .unreadable_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    })
}

/// One human line per tenant.
pub fn line(s: &TenantStatus) -> String {
    let left = match (s.permanent, s.seconds_left) {
        (true, _) => "permanent".to_owned(),
        (false, Some(l)) => format!("{l}s left"),
        (false, None) => "no token".to_owned(),
    };
    format!(
        "{:<16} {:<15} gen {:<6} {:<12} by {:<16} at {:<25} writes/24h {} (busiest slot {}/{})  {}",
        s.tenant,
        s.verdict.as_str(),
        s.generation.map_or("-".to_owned(), |g| g.to_string()),
        left,
        s.obtained_by.as_deref().unwrap_or("-"),
        s.obtained_at.map_or("-".to_owned(), |t| t.to_rfc3339()),
        s.writes_24h,
        s.busiest_slot_writes_24h,
        s.slot_write_budget_24h,
        s.reason
    )
}
