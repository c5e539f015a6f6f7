//! The session ring: a tenant's session spread over K slot secrets, written with fencing tokens.
//!
//! Why: Secrets Manager keeps every version younger than 24 h, and past about 100 versions
//! `PutSecretValue` fails with `LimitExceededException`. A token rewritten every ~3 minutes would
//! break one secret within hours. Generation `g` goes to slot `g mod K`, so each slot takes 1/K of
//! the writes; a reader fetches all K in one `BatchGetSecretValue` and takes the highest
//! generation.
//!
//! Fencing: the write of generation `g` carries `ClientRequestToken = UUIDv5("{tenant}:{g}")`.
//! Secrets Manager refuses a second, different value under a token it has seen, so exactly one
//! writer can publish each generation; our own retry sends the same token and value and is a
//! no-op. (A loser could only slip through if that slot had shed generation `g`'s version, which
//! needs 100 newer versions older than 24 h: far beyond a Lambda's 15-minute life.)

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{SecretNames, SecretStore, StoreError};
use crate::clock::SharedClock;
use crate::session::SessionState;

/// Namespace for fencing tokens (a fixed, random UUID: changing it would re-enable old tokens).
const FENCING_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_3a0e_52d4_4f4b_9d0b_2f0e_8b7a_91c3);

/// What the ring holds for a tenant right now.
#[derive(Debug, Default)]
pub struct RingView {
    /// The highest generation among readable slots.
    pub newest: Option<SessionState>,
    /// Slots that exist.
    pub present: u32,
    /// Slots whose value is not a session document (left out, reported so someone looks).
    pub unreadable: Vec<u32>,
}

/// The result of a fenced write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Our state is now generation `generation`; `quota_skips` generations were skipped because
    /// their slot was over the version quota.
    Published { generation: u64, quota_skips: u32 },
    /// Another writer published `generation` first: our state was discarded.
    Lost { generation: u64 },
}

/// Retry budget for one write: the window between a successful refresh and its write must stay
/// short, but a transient Secrets Manager error must not lose a spent refresh token.
#[derive(Debug, Clone, Copy)]
pub struct WritePolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for WritePolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_millis(100),
        }
    }
}

/// A tenant-independent view of every tenant's ring in one deployment.
#[derive(Debug, Clone)]
pub struct SessionRing<S> {
    store: S,
    names: SecretNames,
    slots: u32,
    clock: SharedClock,
    write_policy: WritePolicy,
}

impl<S: SecretStore> SessionRing<S> {
    /// `slots` is K, 1..=20 (20 is the `BatchGetSecretValue` limit).
    pub fn new(store: S, names: SecretNames, slots: u32, clock: SharedClock) -> Self {
        Self {
            store,
            names,
            slots: slots.clamp(1, 20),
            clock,
            write_policy: WritePolicy::default(),
        }
    }

    pub fn with_write_policy(mut self, policy: WritePolicy) -> Self {
        self.write_policy = policy;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn names(&self) -> &SecretNames {
        &self.names
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The fencing token for `tenant`'s generation `generation`.
    pub fn fencing_token(tenant: &str, generation: u64) -> String {
        Uuid::new_v5(
            &FENCING_NAMESPACE,
            format!("{tenant}:{generation}").as_bytes(),
        )
        .to_string()
    }

    /// Reads all K slots with one batch call.
    pub async fn read(&self, tenant: &str) -> Result<RingView, StoreError> {
        let names: Vec<String> = (0..self.slots)
            .map(|i| self.names.slot(tenant, i))
            .collect();
        let values = self.store.batch_get(&names).await?;
        let mut view = RingView::default();
        for (slot, value) in (0u32..).zip(values) {
            let Some(value) = value else { continue };
            view.present += 1;
            match serde_json::from_str::<SessionState>(value.expose_secret()) {
                Ok(state) => {
                    if view
                        .newest
                        .as_ref()
                        .is_none_or(|n| state.generation > n.generation)
                    {
                        view.newest = Some(state);
                    }
                }
                Err(_) => view.unreadable.push(slot),
            }
        }
        if !view.unreadable.is_empty() {
            tracing::warn!(tenant, slots = ?view.unreadable, "ignoring slot secrets that are not session documents");
        }
        Ok(view)
    }

    /// Publishes `state` as the generation after `base` (the one it was derived from). When a
    /// slot is over the version quota, every writer moves on to the next generation and slot in
    /// the same way, so fencing still picks one winner.
    pub async fn publish(
        &self,
        tenant: &str,
        base: u64,
        state: &SessionState,
    ) -> Result<PublishOutcome, StoreError> {
        let mut quota_skips = 0;
        let mut last_quota_error = None;
        for generation in (base + 1)..=(base + u64::from(self.slots)) {
            let mut doc = state.clone();
            doc.generation = generation;
            let value = serde_json::to_string(&doc)
                .map(SecretString::from)
                .map_err(|e| StoreError::Other {
                    op: "serialize",
                    message: e.to_string(),
                })?;
            let slot = (generation % u64::from(self.slots)) as u32;
            let name = self.names.slot(tenant, slot);
            let token = Self::fencing_token(tenant, generation);
            match self.write(&name, &value, &token).await {
                Ok(()) => {
                    return Ok(PublishOutcome::Published {
                        generation,
                        quota_skips,
                    });
                }
                Err(StoreError::VersionConflict { .. }) => {
                    return Ok(PublishOutcome::Lost { generation });
                }
                Err(e @ StoreError::QuotaExceeded { .. }) => {
                    tracing::warn!(
                        tenant,
                        slot,
                        generation,
                        "slot over the version quota; moving to the next slot"
                    );
                    quota_skips += 1;
                    last_quota_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_quota_error.unwrap_or(StoreError::Other {
            op: "publish",
            message: "no slot to write".into(),
        }))
    }

    /// Put (or create, for a slot that does not exist yet), retrying transient failures with the
    /// same token and value.
    async fn write(&self, name: &str, value: &SecretString, token: &str) -> Result<(), StoreError> {
        let mut backoff = self.write_policy.first_backoff;
        let mut attempt = 1;
        loop {
            let result = match self.store.put(name, value, token).await {
                Err(StoreError::NotFound { .. }) => {
                    match self.store.create(name, value, token).await {
                        // Created by a concurrent writer in between: the put decides who won.
                        Err(StoreError::AlreadyExists { .. }) => {
                            self.store.put(name, value, token).await
                        }
                        other => other,
                    }
                }
                other => other,
            };
            match result {
                Err(e) if e.is_transient() && attempt < self.write_policy.attempts => {
                    tracing::warn!(secret = name, attempt, error = %e, "retrying the session write");
                    let jitter = backoff.mul_f64(fastrand::f64());
                    self.clock.sleep(backoff / 2 + jitter / 2).await;
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
