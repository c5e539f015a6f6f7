//! The refresher's sweep of permanent API tokens: managed tokens past `expiresAt`, and rotated
//! ones past their grace period, are revoked in RingCX and dropped from the registry, a few per
//! pass, each with an audit line. The registry holds only hashes, so RingCX's list supplies the
//! tokens themselves; one found nowhere in RingCX is already gone and is just dropped.

use broker::api_tokens::{Registries, TokenRecord, audit, token_sha256};
use broker::clock::SharedClock;
use broker::ringcx::{RingCxClient, RingCxError, VoiceAuth};
use broker::store::{SecretStore, SessionRing, fits};
use chrono::{DateTime, Utc};

/// Revocations per tenant per pass, so a backlog cannot eat the pass's time.
pub const MAX_REVOCATIONS_PER_PASS: usize = 3;

/// The longest a warm refresher goes without reading a tenant's registry: a token created with an
/// expiry, or rotated, is seen within this time. Reading it every run would cost a billed
/// Secrets Manager call per tenant per minute for a document that changes a few times a month.
pub const REGISTRY_READ_EVERY: chrono::Duration = chrono::Duration::minutes(10);

/// What a sweep did, and when the registry next needs a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Tokens RingCX revoked.
    pub revoked: u32,
    /// The earlier of [`REGISTRY_READ_EVERY`] from now and the next known due time; now when
    /// something due is still left.
    pub next_read: DateTime<Utc>,
}

/// Why the sweep stopped early; the tenant's renewal result is unaffected.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The registry could not be read or written.
    #[error("the API token registry: {0}")]
    Registry(#[from] broker::api_tokens::RegistryError),
    /// RingCX failed to list or revoke tokens.
    #[error("RingCX, while revoking API tokens: {0}")]
    RingCx(#[from] RingCxError),
    /// The ring could not be read for an access token.
    #[error("the session ring: {0}")]
    Ring(#[from] broker::store::StoreError),
}

/// What the sweep works with.
pub struct Sweeper<'a, S> {
    /// Where the broker records the tokens it manages.
    pub registries: &'a Registries<S>,
    /// For the access token the revocations are made with.
    pub ring: &'a SessionRing<S>,
    /// Lists and revokes the tokens in RingCX.
    pub ringcx: &'a RingCxClient,
    /// What "due" is measured against.
    pub clock: &'a SharedClock,
    /// An access token with less left is not used (`MIN_TOKEN_TTL_SECONDS`).
    pub min_ttl_secs: i64,
    /// Time one RingCX call and one registry write may take.
    pub call_time: std::time::Duration,
}

/// Revokes what is due for `tenant`. The ring is read (for an access token) only when something
/// is due.
pub async fn sweep<S: SecretStore>(
    w: &Sweeper<'_, S>,
    tenant: &str,
    deadline: DateTime<Utc>,
) -> Result<Swept, SweepError> {
    let (registries, ringcx, clock, call_time) = (w.registries, w.ringcx, w.clock, w.call_time);
    let now = clock.now();
    let registry = registries.read(tenant).await?;
    let all_due: Vec<(TokenRecord, &'static str)> = registry
        .tokens
        .iter()
        .filter_map(|t| t.due(now).map(|why| (t.clone(), why)))
        .collect();
    let later = registry
        .tokens
        .iter()
        .flat_map(|t| [t.revoke_after, t.expires_at])
        .flatten()
        .filter(|at| *at > now);
    let next_read = later.fold(now + REGISTRY_READ_EVERY, DateTime::min);
    let nothing = |next_read| Swept {
        revoked: 0,
        next_read,
    };
    let backlog = all_due.len() > MAX_REVOCATIONS_PER_PASS;
    let due: Vec<(TokenRecord, &'static str)> =
        all_due.into_iter().take(MAX_REVOCATIONS_PER_PASS).collect();
    if due.is_empty() {
        return Ok(nothing(next_read));
    }
    // Something is due: look again next pass, whatever this one manages.
    if !fits(clock.now(), call_time, deadline) {
        return Ok(nothing(now));
    }
    let newest = w.ring.read(tenant).await?.newest;
    let Some(state) = newest.as_ref() else {
        return Ok(nothing(now));
    };
    let Some(token) = state.usable_token(clock.now(), w.min_ttl_secs) else {
        return Ok(nothing(now));
    };
    let access = || {
        if state.permanent {
            VoiceAuth::ApiToken(token)
        } else {
            VoiceAuth::Bearer(token)
        }
    };
    let listed = ringcx.list_api_tokens(access()).await?;
    let mut done: Vec<String> = Vec::new();
    // Due but kept on purpose: nothing changes until an operator seeds a new token, so they do
    // not make the next pass read the registry, the ring and RingCX's list again.
    let mut kept = 0;
    // The token an api-token tenant runs on is never revoked by the broker.
    let in_use = state.permanent.then(|| token_sha256(token));
    for (record, why) in &due {
        if in_use.as_deref() == Some(record.sha256.as_str()) {
            tracing::error!(tenant, token = %record.masked, "a due API token is the one this tenant runs on; not revoking it: seed a new token first");
            kept += 1;
            continue;
        }
        let live = listed.iter().find(|t| token_sha256(t) == record.sha256);
        if let Some(token) = live {
            if !fits(clock.now(), call_time, deadline) {
                break;
            }
            match ringcx.delete_api_token(access(), token).await {
                Ok(()) | Err(RingCxError::NotFound { .. }) => {}
                Err(e) => {
                    tracing::error!(tenant, token = %record.masked, error = %e, "could not revoke a due API token; next pass retries");
                    continue;
                }
            }
            audit(tenant, "refresher", "revoke", record, why);
        } else {
            tracing::info!(tenant, token = %record.masked, "a due API token is no longer in RingCX; dropping its entry");
        }
        done.push(record.sha256.clone());
    }
    if !done.is_empty() {
        registries
            .update(
                tenant,
                broker::clock::remaining(clock.now(), deadline),
                |r| r.tokens.retain(|t| !done.contains(&t.sha256)),
            )
            .await?;
    }
    let revoked = due
        .iter()
        .filter(|(r, _)| done.contains(&r.sha256))
        .filter(|(r, _)| listed.iter().any(|t| token_sha256(t) == r.sha256))
        .count();
    let finished = !backlog && done.len() + kept == due.len();
    Ok(Swept {
        revoked: u32::try_from(revoked).unwrap_or(u32::MAX),
        next_read: if finished { next_read } else { now },
    })
}
