//! The registry of permanent API tokens the broker created, `{prefix}{tenant}/api-tokens`: for
//! each token its SHA-256 (never the token), a masked form, label, creator, dates, and what a
//! rotation or an expiry will revoke. RingCX lists tokens as bare strings; this is where they get
//! names and lifetimes. Written only by the broker, read-modify-write under a fencing token (the
//! document's revision) with bounded retries, so concurrent writers never lose an entry.
//! Every change also writes one audit line (target `audit`) that names the token only masked.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{SecretNames, SecretStore, StoreError};

/// Namespace of the registry's fencing tokens (fixed: changing it would re-enable old tokens).
const REGISTRY_NAMESPACE: Uuid = Uuid::from_u128(0x2b8e_91d4_0c7a_4e55_a1f3_6d2c_9e07_b3f8);
/// `createdBy` of a token the broker did not create.
pub const OUTSIDE: &str = "outside the broker";
/// Attempts at one change before giving up (each lost race re-reads and re-applies).
pub const MAX_ATTEMPTS: u32 = 24;

/// One token the broker created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// Hex SHA-256 of the token: the registry never holds the token.
    pub sha256: String,
    /// The token masked for lists and logs (`aws80:…c0a9`).
    pub masked: String,
    #[serde(default)]
    /// A label for people.
    pub label: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The caller id that created it.
    pub created_by: String,
    #[serde(default)]
    /// When the sweep revokes it, if it expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// The SHA-256 of the token that replaced this one.
    #[serde(default)]
    pub rotated_to: Option<String>,
    /// When a rotated token's grace period ends.
    #[serde(default)]
    pub revoke_after: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// The record of a token the broker just created.
    pub fn created(
        token: &SecretString,
        label: Option<String>,
        created_at: DateTime<Utc>,
        created_by: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            sha256: token_sha256(token),
            masked: mask(token.expose_secret()),
            label,
            created_at,
            created_by: created_by.to_owned(),
            expires_at,
            rotated_to: None,
            revoke_after: None,
        }
    }

    /// A record for a token made outside the broker (first seen at `now`).
    pub fn outside(token: &SecretString, now: DateTime<Utc>) -> Self {
        Self::created(token, None, now, OUTSIDE, None)
    }

    /// Why the broker must revoke this token at `now`, if it must.
    pub fn due(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.revoke_after.is_some_and(|t| t <= now) {
            Some("rotated")
        } else if self.expires_at.is_some_and(|t| t <= now) {
            Some("expired")
        } else {
            None
        }
    }
}

/// The registry document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    /// Bumped by every write; the next write's fencing token is derived from it.
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    /// Every managed token.
    pub tokens: Vec<TokenRecord>,
}

impl Registry {
    /// The record of the token with this SHA-256, if the broker manages it.
    pub fn find(&self, sha256: &str) -> Option<&TokenRecord> {
        self.tokens.iter().find(|t| t.sha256 == sha256)
    }
}

/// What went wrong with the registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    /// Secrets Manager failed.
    Store(#[from] StoreError),
    #[error(
        "the API token registry {name} is not a registry document; fix or delete it (the broker recreates it)"
    )]
    /// The registry secret is not a registry document.
    Corrupt {
        /// The secret, by name.
        name: String,
    },
    #[error(
        "the API token registry {name} kept changing under {attempts} attempts, or time ran out; retry"
    )]
    /// Other writers kept winning until the time budget ran out.
    Contended {
        /// The secret, by name.
        name: String,
        /// How many times it was tried.
        attempts: u32,
    },
}

/// SHA-256 of a token, hex: how the registry names it.
pub fn token_sha256(token: &SecretString) -> String {
    crate::secret::sha256_hex(token.expose_secret().as_bytes())
}

/// The start and the last four characters of a permanent token: `aws80:…c0a9`.
pub fn mask(token: &str) -> String {
    let (prefix, rest) = token.split_once(':').unwrap_or(("", token));
    let tail: String = rest
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if prefix.is_empty() {
        format!("…{tail}")
    } else {
        format!("{prefix}:…{tail}")
    }
}

/// One audit line (target `audit`, JSON under Lambda): who did what to which token, masked.
pub fn audit(tenant: &str, actor: &str, action: &str, record: &TokenRecord, reason: &str) {
    tracing::info!(
        target: "audit",
        audit = "api_token",
        tenant,
        actor,
        action,
        label = record.label.as_deref().unwrap_or(""),
        token = %record.masked,
        reason,
        "api token {action}"
    );
}

/// Reads and changes tenants' registries.
#[derive(Debug, Clone)]
pub struct Registries<S> {
    store: S,
    names: SecretNames,
    /// Writes lost to another writer and re-applied, since this value was made.
    conflicts: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<S: SecretStore> Registries<S> {
    /// Registries in `store` under `names`.
    pub fn new(store: S, names: SecretNames) -> Self {
        Self {
            store,
            names,
            conflicts: Default::default(),
        }
    }

    /// Writes lost to another writer and re-applied so far (a figure for tests and benchmarks).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The tenant's registry (empty when it does not exist yet).
    pub async fn read(&self, tenant: &str) -> Result<Registry, RegistryError> {
        Ok(self.read_raw(tenant).await?.0)
    }

    /// The registry and the exact text it was read from (`None`: no secret yet).
    async fn read_raw(&self, tenant: &str) -> Result<(Registry, Option<String>), RegistryError> {
        let name = self.names.api_tokens(tenant);
        match self.store.get(&name).await? {
            None => Ok((Registry::default(), None)),
            Some(raw) => {
                let text = raw.expose_secret().to_owned();
                let registry =
                    serde_json::from_str(&text).map_err(|_| RegistryError::Corrupt { name })?;
                Ok((registry, Some(text)))
            }
        }
    }

    /// Applies `change` to the newest registry and writes it as the next revision; a writer that
    /// got there first makes this re-read and re-apply. Gives up when `budget` is spent (a Lambda
    /// must answer in time). Returns what was written (or, when `change` left the registry as it
    /// was, what was read, without writing).
    pub async fn update<F>(
        &self,
        tenant: &str,
        budget: StdDuration,
        change: F,
    ) -> Result<Registry, RegistryError>
    where
        F: Fn(&mut Registry),
    {
        let name = self.names.api_tokens(tenant);
        let started = tokio::time::Instant::now();
        // Conflicts on a state nobody moved: a version of an older state (a restored or
        // hand-edited registry) holds the token; a salt steps past it.
        let (mut last_raw, mut salt) = (None::<Option<String>>, 0u32);
        for attempt in 0..MAX_ATTEMPTS {
            // A read and a write must still fit.
            if started.elapsed() + 2 * crate::store::CALL_TIMEOUT > budget {
                break;
            }
            let (current, raw) = self.read_raw(tenant).await?;
            if last_raw.as_ref() == Some(&raw) {
                salt += 1;
            } else {
                salt = 0;
            }
            last_raw = Some(raw.clone());
            let mut next = current.clone();
            change(&mut next);
            if next == current {
                return Ok(current);
            }
            next.revision = current.revision.saturating_add(1);
            // The fencing token names the state this change was made on (its revision and exact
            // bytes): writers that read the same state race for one version; a hand-edited
            // document cannot collide with an old version's token.
            let basis = crate::secret::sha256_hex(raw.as_deref().unwrap_or("").as_bytes());
            let token = Uuid::new_v5(
                &REGISTRY_NAMESPACE,
                format!("{name}:{}:{basis}:{salt}", next.revision).as_bytes(),
            )
            .to_string();
            let value = SecretString::from(
                serde_json::to_string(&next)
                    .map_err(|_| RegistryError::Corrupt { name: name.clone() })?,
            );
            let written = if raw.is_none() {
                match self.store.create(&name, &value, &token).await {
                    Err(StoreError::AlreadyExists { .. }) => {
                        self.store.put(&name, &value, &token).await
                    }
                    other => other,
                }
            } else {
                self.store.put(&name, &value, &token).await
            };
            match written {
                Ok(()) => return Ok(next),
                Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {
                    // Lost the race: back off a little (jittered) and re-apply on the newest.
                    self.conflicts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let ms = fastrand::u64(5..(20 + 10 * u64::from(attempt)));
                    tokio::time::sleep(StdDuration::from_millis(ms)).await;
                }
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(StdDuration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Contended {
            name,
            attempts: MAX_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_show_only_the_prefix_and_the_last_four() {
        assert_eq!(
            mask("aws80:c2353445-bc74-af1a-2850-1d55a371c0a9"),
            "aws80:…c0a9"
        );
        assert_eq!(mask("abcdef"), "…cdef");
    }

    #[test]
    fn due_says_why() {
        let now = Utc::now();
        let mut r = TokenRecord {
            sha256: "x".into(),
            masked: "m".into(),
            label: None,
            created_at: now,
            created_by: "t".into(),
            expires_at: None,
            rotated_to: None,
            revoke_after: None,
        };
        assert_eq!(r.due(now), None);
        r.expires_at = Some(now);
        assert_eq!(r.due(now), Some("expired"));
        r.revoke_after = Some(now - chrono::Duration::seconds(1));
        assert_eq!(r.due(now), Some("rotated"));
    }
}
