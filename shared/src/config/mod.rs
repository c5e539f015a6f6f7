//! Configuration from the environment: the same names locally and in Lambda. The AWS SDK finds
//! Secrets Manager through its own standard variables (`AWS_REGION`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL`); nothing here duplicates them.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

mod schedule;

pub use schedule::{SLOT_WRITES_PER_DAY, scheduled_writes_per_day};

use crate::renew::RenewSettings;
use crate::ringcx::{DEFAULT_ENGAGE_BASE_URL, DEFAULT_PLATFORM_URL, RingCxConfig};
use crate::store::SecretNames;

/// Every variable [`Config`] reads (plus `RUST_LOG`, read by the log setup).
pub const VARIABLES: &[&str] = &[
    "ENGAGE_BASE_URL",
    "RINGCENTRAL_SERVER_URL",
    "ENGAGE_CONNECT_TIMEOUT_MS",
    "ENGAGE_TIMEOUT_MS",
    "SECRET_PREFIX",
    "TENANTS",
    "SESSION_SLOTS",
    "REFRESH_MARGIN_SECONDS",
    "MIN_TOKEN_TTL_SECONDS",
    "BIND_ADDR",
    "REFRESH_CONCURRENCY",
    "REFRESH_INTERVAL_SECONDS",
    "ALLOW_QUERY_KEY",
    "CALLERS_CACHE_SECONDS",
    "PER_TENANT_METRICS",
    "KMS_KEY_ID",
    "READ_RATE_PER_SECOND",
    "WRITE_RATE_PER_SECOND",
    "IDEMPOTENCY_TABLE",
    "HOOK_IDEMPOTENCY_HOURS",
    "HOOK_QUEUE_URL",
    "HOOK_DLQ_URL",
    "HOOK_MAX_AGE_HOURS",
    "HOOK_MAX_RECEIVES",
    "HOOK_RINGCX_SHARE_PERCENT",
    "HOOK_WORKER_CONCURRENCY",
    "RINGCX_RATE_LIMIT_PER_MINUTE",
    "RUST_LOG",
];

/// Variables a deployment must set on both functions: they must agree between the refresher and
/// the HTTP function (the same ring, the same tenants, the same hosts).
pub const DEPLOYMENT_REQUIRED: &[&str] = &[
    "ENGAGE_BASE_URL",
    "RINGCENTRAL_SERVER_URL",
    "SECRET_PREFIX",
    "TENANTS",
    "SESSION_SLOTS",
    "REFRESH_MARGIN_SECONDS",
    "MIN_TOKEN_TTL_SECONDS",
];

/// A setting that could not be used, named so the fix is obvious.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration {name}={value:?} is invalid: expected {expected}")]
    /// A value that cannot be used.
    Invalid {
        /// The secret, by name.
        name: &'static str,
        /// The value as given.
        value: String,
        /// What the answer should have been.
        expected: &'static str,
    },
    #[error("configuration {name}={value:?} contradicts the other settings: {fix}")]
    /// Settings that contradict each other.
    Contradiction {
        /// The secret, by name.
        name: &'static str,
        /// The value as given.
        value: String,
        /// The sentence that fixes it.
        fix: String,
    },
}

impl ConfigError {
    /// The variable to change.
    pub fn name(&self) -> &'static str {
        match self {
            ConfigError::Invalid { name, .. } | ConfigError::Contradiction { name, .. } => name,
        }
    }
}

/// Every setting both functions share.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where RingCX and the platform are, and their timeouts.
    pub ringcx: RingCxConfig,
    /// Every secret name starts with this (`SECRET_PREFIX`).
    pub secret_prefix: String,
    /// The tenants served (`TENANTS`).
    pub tenants: Vec<String>,
    /// K, the slot secrets per tenant (`SESSION_SLOTS`).
    pub session_slots: u32,
    /// Renew once this little is left (`REFRESH_MARGIN_SECONDS`).
    pub refresh_margin: Duration,
    /// A token with less left is not handed out (`MIN_TOKEN_TTL_SECONDS`).
    pub min_token_ttl: Duration,
    /// The local listener of the HTTP function (`BIND_ADDR`).
    pub bind_addr: SocketAddr,
    /// Customer-managed KMS key for new slot secrets (`KMS_KEY_ID`), if any.
    pub kms_key_id: Option<String>,
    /// Tenants renewed at once by the refresher (`REFRESH_CONCURRENCY`).
    pub refresh_concurrency: usize,
    /// Seconds between passes when the refresher runs outside Lambda (`REFRESH_INTERVAL_SECONDS`).
    pub refresh_interval: Duration,
    /// Accept a caller key in the `api_key` query parameter (`ALLOW_QUERY_KEY`, off by default:
    /// URLs end up in logs).
    pub allow_query_key: bool,
    /// How long the HTTP function trusts its copy of the callers secret (`CALLERS_CACHE_SECONDS`):
    /// the longest a revoked key keeps working.
    pub callers_cache: Duration,
    /// Publish `SecondsLeft` per tenant as well as across tenants (`PER_TENANT_METRICS`, on by
    /// default): $0.30 a month per tenant, and what the dashboard's per-tenant line draws.
    pub per_tenant_metrics: bool,
    /// Ring reads a second the refresher allows itself (`READ_RATE_PER_SECOND`, 50: half of
    /// Secrets Manager's 100 `BatchGetSecretValue` a second per region, shared by the account).
    pub read_rate_per_second: u32,
    /// Slot writes a second the refresher allows itself (`WRITE_RATE_PER_SECOND`, 25: half of
    /// the 50 `PutSecretValue` a second per region).
    pub write_rate_per_second: u32,
    /// The DynamoDB table hooks claim their idempotency keys in (`IDEMPOTENCY_TABLE`); without
    /// it, hooks answer `503 idempotency_unavailable` rather than risk a second delivery.
    pub idempotency_table: Option<String>,
    /// How long a delivered hook event is remembered and replayed (`HOOK_IDEMPOTENCY_HOURS`, 24).
    pub hook_idempotency: Duration,
    /// Queued hooks: the queues, and how the worker paces itself.
    pub hook_queue: HookQueueSettings,
}

/// Queued hooks' settings, read by the HTTP function (which enqueues), the worker (which
/// delivers) and the operator (which reads and redrives the dead-letter queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookQueueSettings {
    /// The SQS queue queued hooks go on (`HOOK_QUEUE_URL`); without it they answer `503`.
    pub url: Option<String>,
    /// Where events RingCX will never take wait for an operator (`HOOK_DLQ_URL`).
    pub dlq_url: Option<String>,
    /// An event not delivered within this long goes to the dead-letter queue (`HOOK_MAX_AGE_HOURS`, 24).
    pub max_age: Duration,
    /// Attempts before an event goes to the dead-letter queue (`HOOK_MAX_RECEIVES`, 100; the
    /// queue's redrive policy uses the same number).
    pub max_receives: u32,
    /// The part of RingCX's per-user rate limit the worker may use, in percent
    /// (`HOOK_RINGCX_SHARE_PERCENT`, 25): the rest stays for IVR callouts and the proxy.
    pub ringcx_share_percent: u32,
    /// Worker instances at most (`HOOK_WORKER_CONCURRENCY`, 2; the event source mapping's
    /// maximum concurrency and the worker's reserved concurrency say the same).
    pub worker_concurrency: u32,
    /// RingCX's Voice API limit per user (`RINGCX_RATE_LIMIT_PER_MINUTE`, 120 as documented).
    pub ringcx_rate_per_minute: u32,
}

impl HookQueueSettings {
    /// RingCX calls one worker instance may make a minute: its part of the share.
    pub fn calls_per_minute_per_worker(&self) -> u32 {
        let share = u64::from(self.ringcx_rate_per_minute) * u64::from(self.ringcx_share_percent)
            / 100
            / u64::from(self.worker_concurrency.max(1));
        u32::try_from(share).unwrap_or(u32::MAX).max(1)
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let url = |name: &'static str, default: &str| -> Result<Url, ConfigError> {
            let value = get(name).unwrap_or_else(|| default.to_owned());
            match Url::parse(&value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
                _ => Err(ConfigError::Invalid {
                    name,
                    value,
                    expected: "an http(s) URL such as https://engage.ringcentral.com",
                }),
            }
        };
        fn number<T: FromStr>(
            name: &'static str,
            value: Option<String>,
            default: T,
            expected: &'static str,
            ok: impl Fn(&T) -> bool,
        ) -> Result<T, ConfigError> {
            match value {
                None => Ok(default),
                Some(v) => match v.parse::<T>() {
                    Ok(n) if ok(&n) => Ok(n),
                    _ => Err(ConfigError::Invalid {
                        name,
                        value: v,
                        expected,
                    }),
                },
            }
        }
        let mut ringcx = RingCxConfig::new(
            url("ENGAGE_BASE_URL", DEFAULT_ENGAGE_BASE_URL)?,
            url("RINGCENTRAL_SERVER_URL", DEFAULT_PLATFORM_URL)?,
        );
        ringcx.connect_timeout = Duration::from_millis(number(
            "ENGAGE_CONNECT_TIMEOUT_MS",
            get("ENGAGE_CONNECT_TIMEOUT_MS"),
            3_000,
            "milliseconds, 1..=60000",
            |n: &u64| (1..=60_000).contains(n),
        )?);
        ringcx.request_timeout = Duration::from_millis(number(
            "ENGAGE_TIMEOUT_MS",
            get("ENGAGE_TIMEOUT_MS"),
            10_000,
            "milliseconds, 1..=300000",
            |n: &u64| (1..=300_000).contains(n),
        )?);
        let prefix = get("SECRET_PREFIX").unwrap_or_else(|| "ringcx/".to_owned());
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
        {
            return Err(ConfigError::Invalid {
                name: "SECRET_PREFIX",
                value: prefix,
                expected: "letters, digits and /_+=.@- (Secrets Manager name characters)",
            });
        }
        let tenants_raw = get("TENANTS").unwrap_or_else(|| "default".to_owned());
        let tenants: Vec<String> = tenants_raw
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let valid_tenant = |t: &String| {
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if tenants.is_empty() || !tenants.iter().all(valid_tenant) {
            return Err(ConfigError::Invalid {
                name: "TENANTS",
                value: tenants_raw,
                expected: "a comma-separated list of tenant names (letters, digits, _ - .)",
            });
        }
        let slots = number(
            "SESSION_SLOTS",
            get("SESSION_SLOTS"),
            6u32,
            "an integer 1..=20",
            |n| (1..=20).contains(n),
        )?;
        let margin = number(
            "REFRESH_MARGIN_SECONDS",
            get("REFRESH_MARGIN_SECONDS"),
            150u64,
            "seconds, 30..=290 (tokens live 300 s)",
            |n| (30..=290).contains(n),
        )?;
        let min_ttl = number(
            "MIN_TOKEN_TTL_SECONDS",
            get("MIN_TOKEN_TTL_SECONDS"),
            30u64,
            "seconds, 0..=240",
            |n| *n <= 240,
        )?;
        let bind_addr = number(
            "BIND_ADDR",
            get("BIND_ADDR"),
            SocketAddr::from(([127, 0, 0, 1], 3000)),
            "an address such as 127.0.0.1:3000",
            |_| true,
        )?;
        let refresh_concurrency = number(
            "REFRESH_CONCURRENCY",
            get("REFRESH_CONCURRENCY"),
            4usize,
            "an integer 1..=64",
            |n| (1..=64).contains(n),
        )?;
        let refresh_interval = number(
            "REFRESH_INTERVAL_SECONDS",
            get("REFRESH_INTERVAL_SECONDS"),
            60u64,
            "seconds, 5..=240",
            |n| (5..=240).contains(n),
        )?;
        let flag = |name: &'static str, default: bool| match get(name).as_deref() {
            None => Ok(default),
            Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                name,
                value: other.to_owned(),
                expected: "true or false",
            }),
        };
        let allow_query_key = flag("ALLOW_QUERY_KEY", false)?;
        let per_tenant_metrics = flag("PER_TENANT_METRICS", true)?;
        let callers_cache = number(
            "CALLERS_CACHE_SECONDS",
            get("CALLERS_CACHE_SECONDS"),
            60u64,
            "seconds, 0..=3600",
            |n| *n <= 3600,
        )?;
        let idempotency_table = match get("IDEMPOTENCY_TABLE") {
            Some(t)
                if (3..=255).contains(&t.len())
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) =>
            {
                Some(t)
            }
            Some(t) => {
                return Err(ConfigError::Invalid {
                    name: "IDEMPOTENCY_TABLE",
                    value: t,
                    expected: "a DynamoDB table name (3-255 letters, digits, _ - .)",
                });
            }
            None => None,
        };
        let hook_hours = number(
            "HOOK_IDEMPOTENCY_HOURS",
            get("HOOK_IDEMPOTENCY_HOURS"),
            24u64,
            "hours, 1..=720",
            |n| (1..=720).contains(n),
        )?;
        let queue_url = |name: &'static str| match get(name) {
            None => Ok(None),
            Some(v) => match Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    Ok(Some(v))
                }
                _ => Err(ConfigError::Invalid {
                    name,
                    value: v,
                    expected: "an SQS queue URL such as https://sqs.us-east-1.amazonaws.com/123456789012/ringcx-hooks",
                }),
            },
        };
        let hook_queue = HookQueueSettings {
            url: queue_url("HOOK_QUEUE_URL")?,
            dlq_url: queue_url("HOOK_DLQ_URL")?,
            max_age: Duration::from_secs(
                3600 * number(
                    "HOOK_MAX_AGE_HOURS",
                    get("HOOK_MAX_AGE_HOURS"),
                    24u64,
                    "hours, 1..=240 (SQS keeps a message 14 days at most, and a dead letter must outlive its age)",
                    |n| (1..=240).contains(n),
                )?,
            ),
            max_receives: number(
                "HOOK_MAX_RECEIVES",
                get("HOOK_MAX_RECEIVES"),
                100u32,
                "attempts, 1..=1000 (an SQS redrive policy allows up to 1000)",
                |n| (1..=1000).contains(n),
            )?,
            ringcx_share_percent: number(
                "HOOK_RINGCX_SHARE_PERCENT",
                get("HOOK_RINGCX_SHARE_PERCENT"),
                25u32,
                "percent, 1..=100",
                |n| (1..=100).contains(n),
            )?,
            worker_concurrency: number(
                "HOOK_WORKER_CONCURRENCY",
                get("HOOK_WORKER_CONCURRENCY"),
                2u32,
                "instances, 1..=1000",
                |n| (1..=1000).contains(n),
            )?,
            ringcx_rate_per_minute: number(
                "RINGCX_RATE_LIMIT_PER_MINUTE",
                get("RINGCX_RATE_LIMIT_PER_MINUTE"),
                120u32,
                "requests a minute per RingCX user, 1..=100000 (RingCX documents 120)",
                |n| (1..=100_000).contains(n),
            )?,
        };
        let read_rate_per_second = number(
            "READ_RATE_PER_SECOND",
            get("READ_RATE_PER_SECOND"),
            50u32,
            "requests a second, 1..=100 (BatchGetSecretValue allows 100 per region)",
            |n| (1..=100).contains(n),
        )?;
        let write_rate_per_second = number(
            "WRITE_RATE_PER_SECOND",
            get("WRITE_RATE_PER_SECOND"),
            25u32,
            "requests a second, 1..=50 (PutSecretValue allows 50 per region)",
            |n| (1..=50).contains(n),
        )?;
        let config = Self {
            ringcx,
            secret_prefix: prefix,
            tenants,
            session_slots: slots,
            refresh_margin: Duration::from_secs(margin),
            min_token_ttl: Duration::from_secs(min_ttl),
            bind_addr,
            kms_key_id: get("KMS_KEY_ID"),
            refresh_concurrency,
            refresh_interval: Duration::from_secs(refresh_interval),
            allow_query_key,
            callers_cache: Duration::from_secs(callers_cache),
            per_tenant_metrics,
            read_rate_per_second,
            write_rate_per_second,
            idempotency_table,
            hook_idempotency: Duration::from_secs(hook_hours * 3600),
            hook_queue,
        };
        config.check_consistency()?;
        Ok(config)
    }

    /// The secret names under `SECRET_PREFIX`.
    pub fn names(&self) -> SecretNames {
        SecretNames::new(self.secret_prefix.clone())
    }

    /// The protocol's settings for the refresher, which alone logs in.
    pub fn renew_settings(&self) -> RenewSettings {
        RenewSettings {
            refresh_margin: self.refresh_margin,
            forced_per_day: self.forced_renewals_per_day(),
            ..RenewSettings::default()
        }
    }

    /// The protocol's settings for the HTTP function: the same, but it never logs in.
    pub fn api_renew_settings(&self) -> RenewSettings {
        RenewSettings {
            may_login: false,
            ..self.renew_settings()
        }
    }
}

#[cfg(test)]
mod tests;
