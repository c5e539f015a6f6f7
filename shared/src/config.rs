//! Configuration from the environment: the same names locally and in Lambda. The AWS SDK finds
//! Secrets Manager through its own standard variables (`AWS_REGION`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL`); nothing here duplicates them.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

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
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("configuration {name}={value:?} contradicts the other settings: {fix}")]
    Contradiction {
        name: &'static str,
        value: String,
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

/// Writes a slot secret takes per 24 h, kept under the Secrets Manager quota of about 100
/// versions younger than 24 h with room for hand edits and retries.
pub const SLOT_WRITES_PER_DAY: u64 = 90;

/// The access token lifetime the schedule is planned for (RingCX documents 5 minutes).
const TOKEN_LIFETIME_SECS: u64 = 300;

/// Scheduled renewals per tenant per day with margin `margin` and schedule period `period`: a
/// token obtained at a run is renewed at the first run where it has `margin` or less left.
pub fn scheduled_writes_per_day(margin: Duration, period: Duration) -> u64 {
    let (m, p) = (margin.as_secs(), period.as_secs().max(1));
    let runs = TOKEN_LIFETIME_SECS.saturating_sub(m).div_ceil(p).max(1);
    86_400u64.div_ceil(runs * p)
}

/// Every setting both functions share.
#[derive(Debug, Clone)]
pub struct Config {
    pub ringcx: RingCxConfig,
    pub secret_prefix: String,
    pub tenants: Vec<String>,
    pub session_slots: u32,
    pub refresh_margin: Duration,
    pub min_token_ttl: Duration,
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
}

impl Config {
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
        };
        config.check_consistency()?;
        Ok(config)
    }

    /// Refuses settings that contradict each other, with the sentence that fixes them.
    fn check_consistency(&self) -> Result<(), ConfigError> {
        let (margin, min_ttl) = (self.refresh_margin.as_secs(), self.min_token_ttl.as_secs());
        let period = self.refresh_interval.as_secs();
        if min_ttl >= margin {
            return Err(ConfigError::Contradiction {
                name: "MIN_TOKEN_TTL_SECONDS",
                value: min_ttl.to_string(),
                fix: format!(
                    "it must be below REFRESH_MARGIN_SECONDS ({margin}), or tokens become unusable \
                     before they are renewed; lower MIN_TOKEN_TTL_SECONDS or raise \
                     REFRESH_MARGIN_SECONDS"
                ),
            });
        }
        if margin < period + min_ttl {
            return Err(ConfigError::Contradiction {
                name: "REFRESH_MARGIN_SECONDS",
                value: margin.to_string(),
                fix: format!(
                    "with a refresher run every {period} s (REFRESH_INTERVAL_SECONDS), a token can \
                     be renewed with only {} s left, under MIN_TOKEN_TTL_SECONDS ({min_ttl}); raise \
                     REFRESH_MARGIN_SECONDS to at least {} or run the schedule more often",
                    margin.saturating_sub(period),
                    period + min_ttl
                ),
            });
        }
        let writes = scheduled_writes_per_day(self.refresh_margin, self.refresh_interval);
        let capacity = SLOT_WRITES_PER_DAY * u64::from(self.session_slots);
        if writes > capacity {
            let needed = writes.div_ceil(SLOT_WRITES_PER_DAY);
            let fix = if needed <= u64::from(crate::store::MAX_SLOTS) {
                format!("set SESSION_SLOTS to at least {needed}, or lower REFRESH_MARGIN_SECONDS")
            } else {
                "lower REFRESH_MARGIN_SECONDS (no K up to 20 holds that many)".to_owned()
            };
            return Err(ConfigError::Contradiction {
                name: "SESSION_SLOTS",
                value: self.session_slots.to_string(),
                fix: format!(
                    "{} slots hold about {capacity} writes a day under the Secrets Manager \
                     version quota, but a {margin} s margin with a run every {period} s renews \
                     {writes} times a day; {fix}",
                    self.session_slots
                ),
            });
        }
        Ok(())
    }

    /// Forced renewals each tenant may make per 24 h: the slots' daily capacity less the
    /// scheduled writes.
    pub fn forced_renewals_per_day(&self) -> u32 {
        let capacity = SLOT_WRITES_PER_DAY * u64::from(self.session_slots);
        let scheduled = scheduled_writes_per_day(self.refresh_margin, self.refresh_interval);
        u32::try_from(capacity.saturating_sub(scheduled)).unwrap_or(u32::MAX)
    }

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
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn variables_lists_exactly_what_is_read() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        Config::from_lookup(|k| {
            asked.lock().unwrap().insert(k.to_owned());
            None
        })
        .unwrap();
        let mut listed: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|v| v.to_string()).collect();
        listed.remove("RUST_LOG");
        assert_eq!(asked.into_inner().unwrap(), listed);
        assert!(DEPLOYMENT_REQUIRED.iter().all(|v| VARIABLES.contains(v)));
    }

    #[test]
    fn defaults_match_the_design() {
        let c = from(&[]).unwrap();
        assert_eq!(
            c.ringcx.engage_base_url.as_str(),
            "https://engage.ringcentral.com/"
        );
        assert_eq!(
            c.ringcx.platform_base_url.as_str(),
            "https://platform.ringcentral.com/"
        );
        assert_eq!(c.secret_prefix, "ringcx/");
        assert_eq!(c.tenants, ["default"]);
        assert_eq!(c.session_slots, 6);
        assert_eq!(c.refresh_margin, Duration::from_secs(150));
        assert_eq!(c.min_token_ttl, Duration::from_secs(30));
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:3000");
    }

    #[test]
    fn lists_and_numbers_are_parsed() {
        let c = from(&[
            ("TENANTS", " a, b ,c"),
            ("SESSION_SLOTS", "20"),
            ("ENGAGE_BASE_URL", "http://127.0.0.1:9"),
        ])
        .unwrap();
        assert_eq!(c.tenants, ["a", "b", "c"]);
        assert_eq!(c.session_slots, 20);
    }

    #[test]
    fn contradictions_are_refused_with_the_fix() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("MIN_TOKEN_TTL_SECONDS", "150")],
                "MIN_TOKEN_TTL_SECONDS",
                "must be below REFRESH_MARGIN_SECONDS (150)",
            ),
            (
                &[("REFRESH_MARGIN_SECONDS", "80")],
                "REFRESH_MARGIN_SECONDS",
                "at least 90",
            ),
            (
                &[("SESSION_SLOTS", "5")],
                "SESSION_SLOTS",
                "renews 480 times a day; set SESSION_SLOTS to at least 6",
            ),
            (
                &[("REFRESH_MARGIN_SECONDS", "290"), ("SESSION_SLOTS", "15")],
                "SESSION_SLOTS",
                "at least 16",
            ),
        ];
        for (pairs, name, fix) in cases {
            let err = from(pairs).unwrap_err();
            assert_eq!(err.name(), *name, "{err}");
            assert!(err.to_string().contains(fix), "{err}");
        }
    }

    #[test]
    fn forced_renewals_get_the_headroom_the_schedule_leaves() {
        assert_eq!(
            scheduled_writes_per_day(Duration::from_secs(150), Duration::from_secs(60)),
            480
        );
        assert_eq!(from(&[]).unwrap().forced_renewals_per_day(), 6 * 90 - 480);
        let wide = from(&[("SESSION_SLOTS", "10")]).unwrap();
        assert_eq!(wide.forced_renewals_per_day(), 900 - 480);
        assert!(!wide.api_renew_settings().may_login);
        assert!(wide.renew_settings().may_login);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_fix() {
        for (name, value) in [
            ("SESSION_SLOTS", "21"),
            ("SESSION_SLOTS", "six"),
            ("REFRESH_MARGIN_SECONDS", "400"),
            ("ENGAGE_BASE_URL", "engage.ringcentral.com"),
            ("TENANTS", "a b"),
            ("TENANTS", ","),
            ("SECRET_PREFIX", "bad prefix"),
            ("BIND_ADDR", "localhost"),
            ("ALLOW_QUERY_KEY", "yes"),
            ("CALLERS_CACHE_SECONDS", "-1"),
            ("PER_TENANT_METRICS", "no"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert_eq!(err.name(), name);
            assert!(err.to_string().contains("expected"), "{err}");
        }
    }
}
