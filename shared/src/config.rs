//! Configuration from the environment: the same names locally and in Lambda. The AWS SDK finds
//! Secrets Manager through its own standard variables (`AWS_REGION`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL`); nothing here duplicates them.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

use crate::engage::{DEFAULT_ENGAGE_BASE_URL, DEFAULT_PLATFORM_URL, EngageConfig};
use crate::renew::RenewSettings;
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
#[error("configuration {name}={value:?} is invalid: expected {expected}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Every setting both functions share.
#[derive(Debug, Clone)]
pub struct Config {
    pub engage: EngageConfig,
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
                _ => Err(ConfigError {
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
                    _ => Err(ConfigError {
                        name,
                        value: v,
                        expected,
                    }),
                },
            }
        }
        let mut engage = EngageConfig::new(
            url("ENGAGE_BASE_URL", DEFAULT_ENGAGE_BASE_URL)?,
            url("RINGCENTRAL_SERVER_URL", DEFAULT_PLATFORM_URL)?,
        );
        engage.connect_timeout = Duration::from_millis(number(
            "ENGAGE_CONNECT_TIMEOUT_MS",
            get("ENGAGE_CONNECT_TIMEOUT_MS"),
            3_000,
            "milliseconds, 1..=60000",
            |n: &u64| (1..=60_000).contains(n),
        )?);
        engage.request_timeout = Duration::from_millis(number(
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
            return Err(ConfigError {
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
            return Err(ConfigError {
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
        let allow_query_key = match get("ALLOW_QUERY_KEY").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ConfigError {
                    name: "ALLOW_QUERY_KEY",
                    value: other.to_owned(),
                    expected: "true or false",
                });
            }
        };
        let callers_cache = number(
            "CALLERS_CACHE_SECONDS",
            get("CALLERS_CACHE_SECONDS"),
            60u64,
            "seconds, 0..=3600",
            |n| *n <= 3600,
        )?;
        Ok(Self {
            engage,
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
        })
    }

    pub fn names(&self) -> SecretNames {
        SecretNames::new(self.secret_prefix.clone())
    }

    pub fn renew_settings(&self) -> RenewSettings {
        RenewSettings {
            refresh_margin: self.refresh_margin,
            ..RenewSettings::default()
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
            c.engage.engage_base_url.as_str(),
            "https://engage.ringcentral.com/"
        );
        assert_eq!(
            c.engage.platform_base_url.as_str(),
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
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.to_string().contains("expected"), "{err}");
        }
    }
}
