//! Callers: who may use the broker, for which tenant, with which scopes. Keys live in the
//! `{prefix}callers` secret as SHA-256 hashes only; a presented key is hashed and compared in
//! constant time against every entry.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use broker::clock::SharedClock;
use broker::store::SecretStore;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex as AsyncMutex;

use crate::error::ApiError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "engage:proxy")]
    EngageProxy,
    #[serde(rename = "token:read")]
    TokenRead,
    #[serde(rename = "api-tokens:admin")]
    ApiTokensAdmin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EngageProxy => "engage:proxy",
            Scope::TokenRead => "token:read",
            Scope::ApiTokensAdmin => "api-tokens:admin",
        }
    }
}

/// One entry of the callers secret, as written by an administrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerEntry {
    pub id: String,
    pub tenant: String,
    pub key_sha256: String,
    pub scopes: Vec<Scope>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
    hash: [u8; 32],
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_scope",
                format!("this key lacks the {} scope", scope.as_str()),
            ))
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A new random key (256 bits from the OS) and its callers entry.
pub fn generate_key(
    id: &str,
    tenant: &str,
    scopes: Vec<Scope>,
) -> Result<(SecretString, CallerEntry), getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    let key = format!("rcxb_{}", URL_SAFE_NO_PAD.encode(raw));
    let entry = CallerEntry {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        key_sha256: hex(&sha256(key.as_bytes())),
        scopes,
    };
    Ok((SecretString::from(key), entry))
}

/// A key as presented by a request.
#[derive(Debug)]
pub enum Presented {
    /// `Authorization: Bearer`, `X-Api-Key`, or the query string: the key alone.
    Key(SecretString),
    /// Basic `id:key`, what an IVR Remote HTTP Service sends: the id must match too.
    Basic { id: String, key: SecretString },
}

/// Finds the caller key in a request. `query_key` is the `api_key` query value when allowed.
pub fn presented_key(
    headers: &HeaderMap,
    query_key: Option<String>,
) -> Result<Presented, ApiError> {
    let malformed = |what: &str| {
        ApiError::unauthorized(
            "malformed_credentials",
            format!("the {what} could not be read"),
        )
    };
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| malformed("Authorization header"))?
            .trim();
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or_else(|| malformed("Authorization header"))?;
        let rest = rest.trim();
        return if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Ok(Presented::Key(SecretString::from(rest.to_owned())))
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(rest)
                .map_err(|_| malformed("Basic credentials"))?;
            let text = String::from_utf8(decoded).map_err(|_| malformed("Basic credentials"))?;
            let (id, key) = text
                .split_once(':')
                .ok_or_else(|| malformed("Basic credentials"))?;
            if id.is_empty() || key.is_empty() {
                return Err(malformed("Basic credentials"));
            }
            Ok(Presented::Basic {
                id: id.to_owned(),
                key: SecretString::from(key.to_owned()),
            })
        } else {
            Err(malformed("Authorization header (use Bearer or Basic)"))
        };
    }
    if let Some(value) = headers.get("x-api-key") {
        let key = value
            .to_str()
            .map_err(|_| malformed("X-Api-Key header"))?
            .trim();
        if key.is_empty() {
            return Err(malformed("X-Api-Key header"));
        }
        return Ok(Presented::Key(SecretString::from(key.to_owned())));
    }
    match query_key {
        Some(k) if !k.is_empty() => Ok(Presented::Key(SecretString::from(k))),
        _ => Err(ApiError::unauthorized(
            "missing_credentials",
            "send a caller key as Authorization: Bearer, X-Api-Key, or Basic id:key",
        )),
    }
}

struct Loaded {
    at: DateTime<Utc>,
    callers: Arc<Vec<Caller>>,
}

/// The callers secret, read at most once per `ttl` per instance.
pub struct CallerCache<S> {
    store: S,
    name: String,
    ttl: Duration,
    clock: SharedClock,
    loaded: std::sync::RwLock<Option<Loaded>>,
    flight: AsyncMutex<()>,
}

impl<S: SecretStore> CallerCache<S> {
    pub fn new(store: S, name: String, ttl: Duration, clock: SharedClock) -> Self {
        Self {
            store,
            name,
            ttl,
            clock,
            loaded: std::sync::RwLock::new(None),
            flight: AsyncMutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<Vec<Caller>>> {
        let guard = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let loaded = guard.as_ref()?;
        let age = self.clock.now() - loaded.at;
        (age.to_std().unwrap_or_default() < self.ttl).then(|| loaded.callers.clone())
    }

    async fn callers(&self) -> Result<Arc<Vec<Caller>>, ApiError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _flight = self.flight.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let raw = self.store.get(&self.name).await.map_err(|e| {
            tracing::error!(secret = %self.name, error = %e, "cannot read the callers secret");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "callers_unavailable",
                "the callers list cannot be read right now",
            )
            .with_retry_after(5)
        })?;
        let callers = match raw {
            None => {
                tracing::error!(secret = %self.name, "the callers secret does not exist: every key is refused");
                Vec::new()
            }
            Some(raw) => parse_callers(&self.name, raw.expose_secret()),
        };
        let callers = Arc::new(callers);
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Loaded {
            at: self.clock.now(),
            callers: callers.clone(),
        });
        Ok(callers)
    }

    /// The caller a key belongs to, or 401.
    pub async fn authenticate(&self, presented: &Presented) -> Result<Caller, ApiError> {
        let callers = self.callers().await?;
        let (id, key) = match presented {
            Presented::Key(k) => (None, k),
            Presented::Basic { id, key } => (Some(id.as_str()), key),
        };
        let hash = sha256(key.expose_secret().as_bytes());
        // Compare against every entry so timing reveals nothing about which one matched.
        let mut found: Option<&Caller> = None;
        for caller in callers.iter() {
            let matches: bool = caller.hash.ct_eq(&hash).into();
            if matches && id.is_none_or(|id| id == caller.id) && found.is_none() {
                found = Some(caller);
            }
        }
        found.cloned().ok_or_else(|| {
            ApiError::unauthorized("invalid_credentials", "the caller key is not valid")
        })
    }
}

/// Reads the callers secret, skipping (and logging) entries that cannot be used.
fn parse_callers(name: &str, raw: &str) -> Vec<Caller> {
    let entries: Vec<serde_json::Value> = match serde_json::from_str(raw) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => {
            tracing::error!(
                secret = name,
                "the callers secret is not a JSON array: every key is refused"
            );
            return Vec::new();
        }
    };
    let mut callers = Vec::new();
    for (index, item) in entries.into_iter().enumerate() {
        let entry: CallerEntry = match serde_json::from_value(item) {
            Ok(e) => e,
            Err(_) => {
                tracing::warn!(
                    secret = name,
                    index,
                    "skipping a callers entry without id, tenant, keySha256 and known scopes"
                );
                continue;
            }
        };
        match unhex(&entry.key_sha256) {
            Some(hash) => callers.push(Caller {
                id: entry.id,
                tenant: entry.tenant,
                scopes: entry.scopes,
                hash,
            }),
            None => {
                tracing::warn!(secret = name, caller = %entry.id, "skipping a callers entry whose keySha256 is not 64 hex digits")
            }
        }
    }
    callers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_hash_to_their_entry_and_are_unique() {
        let (k1, e1) = generate_key("ivr", "default", vec![Scope::EngageProxy]).unwrap();
        let (k2, _) = generate_key("ivr", "default", vec![Scope::EngageProxy]).unwrap();
        assert_ne!(k1.expose_secret(), k2.expose_secret());
        assert!(k1.expose_secret().starts_with("rcxb_") && k1.expose_secret().len() > 40);
        assert_eq!(e1.key_sha256, hex(&sha256(k1.expose_secret().as_bytes())));
        assert_eq!(
            unhex(&e1.key_sha256),
            Some(sha256(k1.expose_secret().as_bytes()))
        );
    }

    #[test]
    fn bad_entries_are_skipped_not_fatal() {
        let good = hex(&sha256(b"k"));
        let raw = format!(
            r#"[{{"id":"a","tenant":"t","keySha256":"{good}","scopes":["token:read"]}},
                {{"id":"b","tenant":"t","keySha256":"zz","scopes":["token:read"]}},
                {{"id":"c","tenant":"t","keySha256":"{good}","scopes":["root"]}},
                {{"id":"d"}}]"#
        );
        let callers = parse_callers("x", &raw);
        assert_eq!(callers.len(), 1);
        assert_eq!(callers[0].id, "a");
        assert!(parse_callers("x", "{}").is_empty());
    }

    #[test]
    fn keys_are_found_in_each_documented_place() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(
            matches!(presented_key(&h, None), Ok(Presented::Key(k)) if k.expose_secret() == "abc")
        );
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("ivr:abc"))
                .parse()
                .unwrap(),
        );
        assert!(matches!(presented_key(&h, None), Ok(Presented::Basic { id, .. }) if id == "ivr"));
        for bad in [
            "Basic !!!",
            "Basic ",
            "Token abc",
            "Bearer",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            h.insert(header::AUTHORIZATION, bad.parse().unwrap());
            let err = presented_key(&h, None).unwrap_err();
            assert_eq!(err.code, "malformed_credentials", "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "abc".parse().unwrap());
        assert!(matches!(presented_key(&h, None), Ok(Presented::Key(_))));
        let none = HeaderMap::new();
        assert_eq!(
            presented_key(&none, None).unwrap_err().code,
            "missing_credentials"
        );
        assert!(matches!(
            presented_key(&none, Some("q".into())),
            Ok(Presented::Key(_))
        ));
    }
}
