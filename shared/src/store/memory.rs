//! An in-memory Secrets Manager that enforces the rules moto does not: the version quota
//! (past 100 versions, only unlabeled versions older than 24 h are removed, otherwise
//! `LimitExceededException`), the per-region request quotas ([`REQUEST_QUOTAS`]: past them,
//! `ThrottlingException`), staging-label moves, the 20-label limit and the 64 KiB value limit.
//! Clones share one state: one account's region, whatever number of instances use it.
//! Its clock is injectable, so a simulated week ages versions exactly as AWS would. Faults can be
//! injected per operation, including a write that succeeds but reports a timeout.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::{SecretStore, StoreError};
use crate::clock::SharedClock;
use crate::rate::Window;

/// Versions a secret may hold (AWS documents about 100).
pub const MAX_VERSIONS: usize = 100;
/// Unlabeled versions younger than this are never removed.
pub const VERSION_MIN_AGE: Duration = Duration::hours(24);
/// Staging labels attached across all versions of a secret.
pub const MAX_LABELS: usize = 20;
/// Largest `SecretString`.
pub const MAX_VALUE_BYTES: usize = 65_536;

/// A group of operations that share one request quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateClass {
    /// `BatchGetSecretValue`.
    BatchGet,
    /// `GetSecretValue`.
    Get,
    /// `PutSecretValue`, `UpdateSecret`, `UpdateSecretVersionStage`, `RemoveRegionsFromReplication`,
    /// `ReplicateSecretToRegion`, `StopReplicationToReplica`, combined.
    Write,
    /// `CreateSecret`.
    Create,
    /// `TagResource`, `UntagResource`, combined (the broker tags within `CreateSecret`).
    Tag,
}

/// AWS Secrets Manager's request quotas, per account and region, none adjustable: requests per
/// second. From "AWS Secrets Manager quotas"
/// (docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html; GetSecretValue
/// at 10,000 since November 2022).
pub const REQUEST_QUOTAS: [(RateClass, u32); 5] = [
    (RateClass::BatchGet, 100),
    (RateClass::Get, 10_000),
    (RateClass::Write, 50),
    (RateClass::Create, 50),
    (RateClass::Tag, 50),
];

/// The documented requests per second of `class`.
pub fn quota(class: RateClass) -> u32 {
    REQUEST_QUOTAS
        .iter()
        .find(|(c, _)| *c == class)
        .map_or(0, |(_, n)| *n)
}

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";

#[derive(Debug)]
struct Version {
    token: String,
    value: SecretString,
    created: DateTime<Utc>,
    labels: Vec<&'static str>,
}

#[derive(Debug, Default)]
struct Secret {
    versions: Vec<Version>,
}

impl Secret {
    fn current(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.labels.contains(&CURRENT))
    }
}

/// An injected failure for the next matching operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    /// Fails with a transient error; nothing is applied.
    FailBefore,
    /// The write is applied, then a transient error is reported (a timeout after the fact).
    FailAfter,
    /// Refused with `ThrottlingException`, as if the region's quota were spent; nothing applied.
    Throttle,
}

/// Which operation a fault or counter concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `BatchGetSecretValue`.
    BatchGet,
    /// `GetSecretValue`.
    Get,
    /// `PutSecretValue`.
    Put,
    /// `CreateSecret`.
    Create,
}

/// What the model has seen, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Calls by operation.
    pub calls: BTreeMap<Op, u64>,
    /// Writes refused by the version quota.
    pub limit_exceeded: u64,
    /// Writes refused for a different value under a used fencing token.
    pub version_conflicts: u64,
    /// Versions created per secret name.
    pub writes: BTreeMap<String, u64>,
    /// Values asked for per secret name, by `GetSecretValue` or within a batch, found or not.
    pub reads: BTreeMap<String, u64>,
    /// Secrets that batch reads returned a value for (what a per-secret price would count).
    pub batch_values: u64,
    /// Calls refused with `ThrottlingException`, by operation (also counted in `calls`).
    pub throttled: BTreeMap<Op, u64>,
}

#[derive(Debug, Default)]
struct Inner {
    secrets: HashMap<String, Secret>,
    faults: VecDeque<(Op, InjectedFault)>,
    stats: Stats,
    /// Requests in the last second, per quota.
    rates: BTreeMap<RateClass, Window>,
    /// Quotas scaled by this factor (1.0: AWS's figures), for tests that need a small region.
    rate_scale: Option<f64>,
}

/// The in-memory Secrets Manager model; clones share state.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    clock: SharedClock,
    inner: Arc<Mutex<Inner>>,
    /// Counted against the request quotas (off only for a test's own setup, see [`MemoryStore::unmetered`]).
    metered: bool,
}

impl MemoryStore {
    /// An empty store on `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            inner: Arc::default(),
            metered: true,
        }
    }

    /// The same store, its calls not counted against the request quotas: for a test or bench
    /// to set up thousands of tenants at once, which is an administrator's import, not the
    /// traffic under test.
    pub fn unmetered(&self) -> Self {
        Self {
            metered: false,
            ..self.clone()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty store whose request quotas are AWS's times `scale` (0.1: a tenth), so a test can
    /// spend one with a handful of instances. The version quota is unchanged.
    pub fn with_scaled_quotas(clock: SharedClock, scale: f64) -> Self {
        let store = Self::new(clock);
        store.lock().rate_scale = Some(scale);
        store
    }

    /// What every call meets first: an injected throttle (which, like AWS's, uses no capacity),
    /// then the quota. Returns any other injected fault for the call to apply.
    fn gate(
        &self,
        inner: &mut Inner,
        op: Op,
        class: RateClass,
        op_name: &'static str,
    ) -> Result<Option<InjectedFault>, StoreError> {
        let fault = Self::take_fault(inner, op);
        if fault == Some(InjectedFault::Throttle) {
            *inner.stats.calls.entry(op).or_default() += 1;
            *inner.stats.throttled.entry(op).or_default() += 1;
            return Err(StoreError::Throttled { op: op_name });
        }
        self.admit(inner, op, class, op_name)?;
        Ok(fault)
    }

    /// Counts a request against its quota at the model's now, or refuses it as AWS does.
    fn admit(
        &self,
        inner: &mut Inner,
        op: Op,
        class: RateClass,
        op_name: &'static str,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        *inner.stats.calls.entry(op).or_default() += 1;
        if !self.metered {
            return Ok(());
        }
        let scale = inner.rate_scale.unwrap_or(1.0);
        let window = inner.rates.entry(class).or_insert_with(|| {
            let limit = (f64::from(quota(class)) * scale).floor().max(1.0) as u32;
            Window::new(limit, std::time::Duration::from_secs(1))
        });
        if window.take(now).is_err() {
            *inner.stats.throttled.entry(op).or_default() += 1;
            return Err(StoreError::Throttled { op: op_name });
        }
        Ok(())
    }

    /// Makes the next `op` fail as described (faults queue in order).
    pub fn inject(&self, op: Op, fault: InjectedFault) {
        self.lock().faults.push_back((op, fault));
    }

    /// A copy of the counters.
    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// How many versions `name` holds now.
    pub fn version_count(&self, name: &str) -> usize {
        self.lock()
            .secrets
            .get(name)
            .map_or(0, |s| s.versions.len())
    }

    /// Staging labels on `name`'s versions, newest first: `(token, labels)`.
    pub fn labels(&self, name: &str) -> Vec<(String, Vec<&'static str>)> {
        self.lock()
            .secrets
            .get(name)
            .map(|s| {
                s.versions
                    .iter()
                    .rev()
                    .map(|v| (v.token.clone(), v.labels.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn take_fault(inner: &mut Inner, op: Op) -> Option<InjectedFault> {
        let i = inner.faults.iter().position(|(o, _)| *o == op)?;
        inner.faults.remove(i).map(|(_, f)| f)
    }

    fn transient(op: &'static str) -> StoreError {
        StoreError::Transient {
            op,
            message: "injected timeout".into(),
        }
    }

    fn check_value(op: &'static str, name: &str, value: &SecretString) -> Result<(), StoreError> {
        if value.expose_secret().len() > MAX_VALUE_BYTES {
            return Err(StoreError::Invalid {
                op,
                name: name.to_owned(),
                message: format!("SecretString is longer than {MAX_VALUE_BYTES} bytes"),
            });
        }
        Ok(())
    }

    /// What every write does first, as AWS would: check the value, count the call, and take an
    /// injected fault (one that fails before the write ends it here).
    async fn begin_write(
        &self,
        op: Op,
        op_name: &'static str,
        name: &str,
        value: &SecretString,
    ) -> Result<(MutexGuard<'_, Inner>, Option<InjectedFault>), StoreError> {
        tokio::task::yield_now().await;
        Self::check_value(op_name, name, value)?;
        let mut inner = self.lock();
        let class = if op == Op::Create {
            RateClass::Create
        } else {
            RateClass::Write
        };
        let fault = self.gate(&mut inner, op, class, op_name)?;
        if fault == Some(InjectedFault::FailBefore) {
            return Err(Self::transient(op_name));
        }
        Ok((inner, fault))
    }

    /// Applies a put with AWS's rules; `Ok(false)` when it was an idempotent no-op.
    fn apply_put(
        &self,
        inner: &mut Inner,
        name: &str,
        value: &SecretString,
        token: &str,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let secret = inner
            .secrets
            .get_mut(name)
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_owned(),
            })?;
        if let Some(existing) = secret.versions.iter().find(|v| v.token == token) {
            return if existing.value.expose_secret() == value.expose_secret() {
                Ok(false)
            } else {
                inner.stats.version_conflicts += 1;
                Err(StoreError::VersionConflict {
                    name: name.to_owned(),
                })
            };
        }
        if secret.versions.len() >= MAX_VERSIONS {
            // AWS removes unlabeled versions, oldest first, but never one younger than 24 h.
            let mut removable: Vec<usize> = (0..secret.versions.len())
                .filter(|&i| {
                    let v = &secret.versions[i];
                    v.labels.is_empty() && now - v.created > VERSION_MIN_AGE
                })
                .collect();
            removable.truncate(secret.versions.len() + 1 - MAX_VERSIONS);
            for i in removable.into_iter().rev() {
                secret.versions.remove(i);
            }
            if secret.versions.len() >= MAX_VERSIONS {
                inner.stats.limit_exceeded += 1;
                return Err(StoreError::QuotaExceeded {
                    name: name.to_owned(),
                });
            }
        }
        let labels: usize = secret.versions.iter().map(|v| v.labels.len()).sum();
        if labels > MAX_LABELS {
            return Err(StoreError::Invalid {
                op: "PutSecretValue",
                name: name.to_owned(),
                message: format!("more than {MAX_LABELS} staging labels"),
            });
        }
        // AWSCURRENT moves to the new version; the old current becomes AWSPREVIOUS.
        for v in &mut secret.versions {
            v.labels.retain(|l| *l != PREVIOUS);
        }
        for v in &mut secret.versions {
            if v.labels.contains(&CURRENT) {
                v.labels.retain(|l| *l != CURRENT);
                v.labels.push(PREVIOUS);
            }
        }
        secret.versions.push(Version {
            token: token.to_owned(),
            value: value.clone(),
            created: now,
            labels: vec![CURRENT],
        });
        *inner.stats.writes.entry(name.to_owned()).or_default() += 1;
        Ok(true)
    }
}

impl SecretStore for MemoryStore {
    async fn batch_get(&self, names: &[String]) -> Result<Vec<Option<SecretString>>, StoreError> {
        tokio::task::yield_now().await;
        if names.len() > 20 {
            return Err(StoreError::Invalid {
                op: "BatchGetSecretValue",
                name: names.first().cloned().unwrap_or_default(),
                message: "at most 20 secrets per call".into(),
            });
        }
        let mut inner = self.lock();
        if self
            .gate(
                &mut inner,
                Op::BatchGet,
                RateClass::BatchGet,
                "BatchGetSecretValue",
            )?
            .is_some()
        {
            return Err(Self::transient("BatchGetSecretValue"));
        }
        let values: Vec<Option<SecretString>> = names
            .iter()
            .map(|n| {
                inner
                    .secrets
                    .get(n)
                    .and_then(Secret::current)
                    .map(|v| v.value.clone())
            })
            .collect();
        for n in names {
            *inner.stats.reads.entry(n.clone()).or_default() += 1;
        }
        inner.stats.batch_values += values.iter().flatten().count() as u64;
        Ok(values)
    }

    async fn version_dates(&self, name: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        tokio::task::yield_now().await;
        let inner = self.lock();
        Ok(inner
            .secrets
            .get(name)
            .map(|s| s.versions.iter().map(|v| v.created).collect())
            .unwrap_or_default())
    }

    async fn get(&self, name: &str) -> Result<Option<SecretString>, StoreError> {
        tokio::task::yield_now().await;
        let mut inner = self.lock();
        if self
            .gate(&mut inner, Op::Get, RateClass::Get, "GetSecretValue")?
            .is_some()
        {
            return Err(Self::transient("GetSecretValue"));
        }
        *inner.stats.reads.entry(name.to_owned()).or_default() += 1;
        Ok(inner
            .secrets
            .get(name)
            .and_then(Secret::current)
            .map(|v| v.value.clone()))
    }

    async fn put(&self, name: &str, value: &SecretString, token: &str) -> Result<(), StoreError> {
        let (mut inner, fault) = self
            .begin_write(Op::Put, "PutSecretValue", name, value)
            .await?;
        self.apply_put(&mut inner, name, value, token)?;
        match fault {
            Some(InjectedFault::FailAfter) => Err(Self::transient("PutSecretValue")),
            _ => Ok(()),
        }
    }

    async fn create(
        &self,
        name: &str,
        value: &SecretString,
        token: &str,
    ) -> Result<(), StoreError> {
        let (mut inner, fault) = self
            .begin_write(Op::Create, "CreateSecret", name, value)
            .await?;
        if inner.secrets.contains_key(name) {
            return Err(StoreError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        inner.secrets.insert(name.to_owned(), Secret::default());
        self.apply_put(&mut inner, name, value, token)?;
        match fault {
            Some(InjectedFault::FailAfter) => Err(Self::transient("CreateSecret")),
            _ => Ok(()),
        }
    }
}
