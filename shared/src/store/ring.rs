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

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{SecretNames, SecretStore, StoreError};
use crate::clock::SharedClock;
use crate::session::SessionState;

/// Namespace for fencing tokens (a fixed, random UUID: changing it would re-enable old tokens).
const FENCING_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_3a0e_52d4_4f4b_9d0b_2f0e_8b7a_91c3);

/// The most slots a ring can have (the `BatchGetSecretValue` limit); every read looks at all of
/// them, so `SESSION_SLOTS` can be changed in either direction without losing the newest session.
pub const MAX_SLOTS: u32 = 20;

/// A slot secret that exists but holds no session document (hand-edited, truncated, or written
/// by something else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableSlot {
    /// The slot's number.
    pub slot: u32,
    /// The secret's name, for the log line and the operator.
    pub name: String,
    /// The generation it names, when its JSON still says one.
    pub generation: Option<u64>,
}

/// What the ring holds for a tenant right now.
#[derive(Debug, Default)]
pub struct RingView {
    /// The highest generation among readable slots.
    pub newest: Option<SessionState>,
    /// Slots that exist.
    pub present: u32,
    /// Slots whose value is not a session document (left out, reported by name).
    pub unreadable: Vec<UnreadableSlot>,
    /// The highest generation that may exist, counting those unreadable slots could hold: the
    /// next write must go past it, or its fencing token could already be spent on a version
    /// nobody can read.
    pub highest_possible: u64,
}

impl RingView {
    /// The newest readable generation (0 for an empty ring).
    pub fn newest_generation(&self) -> u64 {
        self.newest.as_ref().map_or(0, |s| s.generation)
    }

    /// The unreadable slots' secret names, for logs and errors.
    pub fn unreadable_names(&self) -> Vec<&str> {
        self.unreadable.iter().map(|u| u.name.as_str()).collect()
    }
}

/// The result of a fenced write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Our state is now generation `generation`; `quota_skips` generations were skipped because
    /// their slot was over the version quota.
    Published {
        /// The generation that was written.
        generation: u64,
        /// Slots skipped at the version quota.
        quota_skips: u32,
    },
    /// Another writer published `generation` first: our state was discarded.
    Lost {
        /// The generation that was written.
        generation: u64,
    },
}

/// The first wait before retrying a session write; it doubles while another attempt fits. The
/// window between a successful refresh and its write must stay short, but a transient Secrets
/// Manager error must not lose a spent refresh token.
const WRITE_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// No cap in practice: the deadline ends the doubling.
const WRITE_MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A tenant-independent view of every tenant's ring in one deployment.
#[derive(Debug, Clone)]
pub struct SessionRing<S> {
    store: S,
    names: SecretNames,
    slots: u32,
    clock: SharedClock,
}

impl<S: SecretStore> SessionRing<S> {
    /// `slots` is K, 1..=[`MAX_SLOTS`]: where new generations are written.
    pub fn new(store: S, names: SecretNames, slots: u32, clock: SharedClock) -> Self {
        Self {
            store,
            names,
            slots: slots.clamp(1, MAX_SLOTS),
            clock,
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The secret names.
    pub fn names(&self) -> &SecretNames {
        &self.names
    }

    /// K, where new generations go.
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

    /// Reads every slot that can exist ([`MAX_SLOTS`]) with one batch call, whatever K is now.
    /// When Secrets Manager throttles the batch call (its quota is 100 a second per region,
    /// shared by the whole account), the same slots are read with one `GetSecretValue` each
    /// (10,000 a second): the same view, so fencing and the newest generation are unchanged.
    pub async fn read(&self, tenant: &str) -> Result<RingView, StoreError> {
        let names: Vec<String> = (0..MAX_SLOTS).map(|i| self.names.slot(tenant, i)).collect();
        let values = match self.store.batch_get(&names).await {
            Err(e) if e.is_throttled() => {
                tracing::info!(
                    tenant,
                    "BatchGetSecretValue throttled: reading the ring's slots one by one"
                );
                futures_util::future::join_all(names.iter().map(|n| self.store.get(n)))
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?
            }
            other => other?,
        };
        let mut view = RingView::default();
        for ((slot, name), value) in (0u32..).zip(names).zip(values) {
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
                Err(_) => {
                    let generation =
                        serde_json::from_str::<serde_json::Value>(value.expose_secret())
                            .ok()
                            .and_then(|v| v.get("generation")?.as_u64());
                    view.unreadable.push(UnreadableSlot {
                        slot,
                        name,
                        generation,
                    });
                }
            }
        }
        view.highest_possible = self.highest_possible(&view);
        if !view.unreadable.is_empty() {
            tracing::warn!(
                tenant,
                secrets = ?view.unreadable_names(),
                newest = view.newest_generation(),
                next_after = view.highest_possible,
                "slot secrets that are not session documents: left out of the read; the next \
                 write goes past any generation they could hold (README \"Corrupted slots\")"
            );
        }
        Ok(view)
    }

    /// Generation `generation` of `tenant` if its slot (for the current K) holds exactly it: one
    /// `GetSecretValue`, for an instance that knows generation `generation - 1` and looks for its
    /// successor before reading the whole ring. `None` when the slot holds anything else.
    pub async fn read_generation(
        &self,
        tenant: &str,
        generation: u64,
    ) -> Result<Option<SessionState>, StoreError> {
        let slot = (generation % u64::from(self.slots)) as u32;
        let Some(value) = self.store.get(&self.names.slot(tenant, slot)).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_str::<SessionState>(value.expose_secret())
            .ok()
            .filter(|s| s.generation == generation))
    }

    /// The highest generation the ring may hold. An unreadable slot that still names its
    /// generation counts as that; one that names none could hold the generation right after the
    /// newest readable one when it sits in that generation's slot (the usual hand-edit: the
    /// newest slot overwritten), so consecutive such slots are walked past. An unreadable slot
    /// elsewhere holds an older generation and costs nothing.
    fn highest_possible(&self, view: &RingView) -> u64 {
        let mut highest = view
            .unreadable
            .iter()
            .filter_map(|u| u.generation)
            .fold(view.newest_generation(), u64::max);
        for _ in 0..self.slots {
            let next = highest + 1;
            let slot = (next % u64::from(self.slots)) as u32;
            if view
                .unreadable
                .iter()
                .any(|u| u.slot == slot && u.generation.is_none())
            {
                highest = next;
            } else {
                break;
            }
        }
        highest
    }

    /// Publishes `state` as the generation after `base` (the highest generation it was derived
    /// from or must go past), retrying transient failures while they fit before `deadline`.
    /// When a slot is over the version quota, every writer moves on to the next generation and
    /// slot in the same way, so fencing still picks one winner.
    pub async fn publish(
        &self,
        tenant: &str,
        base: u64,
        state: &SessionState,
        deadline: DateTime<Utc>,
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
            match self.write(&name, &value, &token, deadline).await {
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
    /// same token and value while another attempt fits before `deadline`.
    async fn write(
        &self,
        name: &str,
        value: &SecretString,
        token: &str,
        deadline: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let policy = crate::retry::Policy {
            first: WRITE_FIRST_BACKOFF,
            max: WRITE_MAX_BACKOFF,
            attempts: None,
            attempt_time: super::CALL_TIMEOUT,
        };
        let attempt = || async {
            match self.store.put(name, value, token).await {
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
            }
        };
        crate::retry::retry(
            &self.clock,
            policy,
            deadline,
            attempt,
            |e: &StoreError, _| {
                tracing::warn!(secret = name, error = %e, "retrying the session write");
            },
        )
        .await
    }
}
