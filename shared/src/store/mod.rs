//! Where sessions live: AWS Secrets Manager, seen through the few operations the broker uses.
//!
//! [`SecretStore`] is that seam. [`aws::SecretsManagerStore`] is the real one (the AWS SDK,
//! pointed at AWS or at the moto emulator); [`memory::MemoryStore`] models the Secrets Manager rules
//! that moto does not enforce (the version quota above all). Both pass one contract suite
//! (`tests/src/contract.rs`). [`ring::SessionRing`] builds the session ring and its fenced writes
//! on top of either.

pub mod aws;
pub mod memory;
pub mod ring;

use std::future::Future;

use secrecy::SecretString;

pub use ring::{MAX_SLOTS, PublishOutcome, RingView, SessionRing, UnreadableSlot};

/// The longest one Secrets Manager call may take (the AWS store sets it as the SDK's operation
/// timeout, with the SDK's own retries off); every retry budget reserves it per call.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The Secrets Manager operations the broker needs. Values are secrets; names are not.
pub trait SecretStore: Send + Sync {
    /// The `AWSCURRENT` value of each name, in order; `None` for a secret that does not exist.
    /// At most 20 names (the `BatchGetSecretValue` limit).
    fn batch_get(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<Option<SecretString>>, StoreError>> + Send;

    /// The `AWSCURRENT` value of one secret; `None` when it does not exist.
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecretString>, StoreError>> + Send;

    /// A new version under `token` that becomes `AWSCURRENT`. The same token with the same value is
    /// a no-op; with a different value it is [`StoreError::VersionConflict`].
    fn put(
        &self,
        name: &str,
        value: &SecretString,
        token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When each version of a secret still kept was created (none when it does not exist): how
    /// close a slot is to the version quota. Operators' `status` only; the functions never call it.
    fn version_dates(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<chrono::DateTime<chrono::Utc>>, StoreError>> + Send;

    /// A new secret whose first version is `token`. [`StoreError::AlreadyExists`] when the name is
    /// taken (whatever its value).
    fn create(
        &self,
        name: &str,
        value: &SecretString,
        token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A failed Secrets Manager operation. Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("secret {name} does not exist")]
    /// No such secret.
    NotFound {
        /// The secret, by name.
        name: String,
    },

    #[error(
        "secret {name} already has a different value under this ClientRequestToken: another \
         writer published this generation first"
    )]
    /// Another value was already written under this fencing token.
    VersionConflict {
        /// The secret, by name.
        name: String,
    },

    #[error("secret {name} already exists")]
    /// The secret exists already (a create raced another).
    AlreadyExists {
        /// The secret, by name.
        name: String,
    },

    #[error(
        "secret {name} hit the Secrets Manager version quota (LimitExceededException): too many \
         versions younger than 24 h; raise SESSION_SLOTS or slow the schedule"
    )]
    /// The secret holds as many versions as Secrets Manager allows.
    QuotaExceeded {
        /// The secret, by name.
        name: String,
    },

    #[error("Secrets Manager refused {op} on {name}: {message}")]
    /// Secrets Manager refused the request as invalid.
    Invalid {
        /// The Secrets Manager operation.
        op: &'static str,
        /// The secret, by name.
        name: String,
        /// The message, shortened.
        message: String,
    },

    #[error(
        "access denied for {op} on {name} ({message}): check the function's IAM policy, and that \
         the KMS key policy lets the function's role decrypt (kms:Decrypt)"
    )]
    /// IAM or the KMS key policy refused the call.
    AccessDenied {
        /// The Secrets Manager operation.
        op: &'static str,
        /// The secret, by name.
        name: String,
        /// The message, shortened.
        message: String,
    },

    #[error(
        "secret {name} is scheduled for deletion, so it can be neither read nor written: restore it \
         (aws secretsmanager restore-secret --secret-id {name}) or delete it for good \
         (aws secretsmanager delete-secret --force-delete-without-recovery --secret-id {name})"
    )]
    /// The secret is scheduled for deletion: it can be neither read nor written.
    ScheduledForDeletion {
        /// The secret, by name.
        name: String,
    },

    #[error(
        "Secrets Manager throttled {op} (ThrottlingException: the account's request quota for \
         this region is spent, shared by every application in it): retried with backoff"
    )]
    /// The account's per-region request quota for this operation is spent for now.
    Throttled {
        /// The Secrets Manager operation.
        op: &'static str,
    },

    #[error("Secrets Manager {op} failed transiently ({message}): retry")]
    /// A timeout or a 5xx: the same call may succeed later.
    Transient {
        /// The Secrets Manager operation.
        op: &'static str,
        /// The message, shortened.
        message: String,
    },

    #[error("Secrets Manager {op} failed: {message}")]
    /// Anything else.
    Other {
        /// The Secrets Manager operation.
        op: &'static str,
        /// The message, shortened.
        message: String,
    },

    #[error("{0}")]
    /// The AWS SDK has no credentials or no region: a setup error, not worth a retry; the
    /// sentence says what to set.
    Setup(&'static str),
}

impl StoreError {
    /// Worth retrying the same call, with the same token and value.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Transient { .. } | StoreError::Throttled { .. }
        )
    }

    /// Secrets Manager's request quota answered, not a fault: another operation may still work.
    pub fn is_throttled(&self) -> bool {
        matches!(self, StoreError::Throttled { .. })
    }
}

/// Whether a store call started after `wait` ends before `deadline`, given its timeout.
pub fn fits(
    now: chrono::DateTime<chrono::Utc>,
    wait: std::time::Duration,
    deadline: chrono::DateTime<chrono::Utc>,
) -> bool {
    crate::clock::later(now, wait + CALL_TIMEOUT) <= deadline
}

/// Writes `value` as the current version of `name`, creating the secret if it does not exist:
/// for documents an administrator owns (credentials, callers), which need no fencing.
pub async fn upsert(
    store: &impl SecretStore,
    name: &str,
    value: &SecretString,
) -> Result<(), StoreError> {
    let token = uuid::Uuid::new_v4().to_string();
    match store.put(name, value, &token).await {
        Err(StoreError::NotFound { .. }) => store.create(name, value, &token).await,
        other => other,
    }
}

/// Secret names for a deployment: everything lives under one prefix (IAM is scoped to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretNames {
    /// The prefix every name starts with.
    pub prefix: String,
}

impl crate::retry::Transient for StoreError {
    fn is_transient(&self) -> bool {
        StoreError::is_transient(self)
    }
}

impl SecretNames {
    /// Names under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `{prefix}{tenant}/session-{slot}`.
    pub fn slot(&self, tenant: &str, slot: u32) -> String {
        format!("{}{tenant}/session-{slot}", self.prefix)
    }

    /// `{prefix}{tenant}/credentials`.
    pub fn credentials(&self, tenant: &str) -> String {
        format!("{}{tenant}/credentials", self.prefix)
    }

    /// `{prefix}{tenant}/api-tokens`: the registry of permanent API tokens the broker created.
    pub fn api_tokens(&self, tenant: &str) -> String {
        format!("{}{tenant}/api-tokens", self.prefix)
    }

    /// `{prefix}callers`.
    pub fn callers(&self) -> String {
        format!("{}callers", self.prefix)
    }

    /// `{prefix}hooks`.
    pub fn hooks(&self) -> String {
        format!("{}hooks", self.prefix)
    }
}
