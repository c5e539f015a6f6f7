//! Callers: who may use the broker, for which tenant, with which scopes and paths. Keys live in
//! the `{prefix}callers` secret as SHA-256 hashes only; a presented key is hashed and compared in
//! constant time against every entry. JWT callers are verified by [`jwt`].

mod caller_cache;
pub mod jwt;
pub mod paths;
pub mod presented;

use std::collections::BTreeSet;

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker::ringcx::ApiPath;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub use self::caller_cache::{CallerCache, MISS_RELOAD};
use self::jwt::{JwtEntry, JwtVerifier};
use self::paths::PathRules;
pub use self::presented::{Presented, QueryAuth, forwarded_query, presented};
use crate::error::{ApiError, ErrorCode};

broker::listed_enum! {
    /// What a caller may do.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Scope {
        #[serde(rename = "engage:proxy")]
        /// `engage:proxy`: the Voice API proxy.
        EngageProxy,
        #[serde(rename = "token:read")]
        /// `token:read`: the tenant's access token itself (`/v1/token`, `/v1/oauth/token`).
        TokenRead,
        #[serde(rename = "api-tokens:admin")]
        /// `api-tokens:admin`: create, list, rotate and revoke permanent API tokens.
        ApiTokensAdmin,
        #[serde(rename = "hooks:invoke")]
        /// `hooks:invoke`: call a hook whose scheme is `caller` (RingCX's own Remote HTTP Services).
        HooksInvoke,
    }
}

impl Scope {
    /// The name callers entries and the README use.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EngageProxy => "engage:proxy",
            Scope::TokenRead => "token:read",
            Scope::ApiTokensAdmin => "api-tokens:admin",
            Scope::HooksInvoke => "hooks:invoke",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown scope {s:?}: scopes are engage:proxy, token:read, api-tokens:admin and hooks:invoke"
                )
            })
    }
}

/// One entry of the callers secret, as an administrator writes it. An entry has `keySha256`,
/// `jwt`, or both.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerEntry {
    /// The caller's name; the Basic user, and a JWT's `iss`.
    pub id: String,
    /// The tenant whose credentials the caller uses.
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Hex SHA-256 of the caller's key; never the key itself.
    pub key_sha256: Option<String>,
    /// What the caller may do.
    pub scopes: Vec<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Optional `METHOD glob` patterns the proxy is limited to.
    pub paths: Option<Vec<String>>,
    /// Kept as written (it may hold a shared secret); read into a [`JwtEntry`] when loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<serde_json::Value>,
}

impl std::fmt::Debug for CallerEntry {
    /// Without `jwt`, which may hold a shared secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerEntry")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .field("paths", &self.paths)
            .field("jwt", &self.jwt.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// Authentication's conclusion about one request.
pub struct Verdict {
    /// Who is calling.
    pub caller: Caller,
    /// The request's query with every credential taken out: the only query that goes on.
    pub forwarded_query: Option<String>,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's id, for logs and audit lines.
    pub id: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    paths: Option<PathRules>,
    hash: Option<[u8; 32]>,
    jwt: Option<JwtVerifier>,
}

impl Caller {
    /// Refuses with `403 insufficient_scope` unless the caller has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                ErrorCode::InsufficientScope,
                format!("this key lacks the {} scope", scope.as_str()),
            ))
        }
    }

    /// Whether the proxy may take this caller to `path`: never to a credential area, and only
    /// within the caller's `paths` when it has them.
    pub fn may_reach(&self, method: &Method, path: &ApiPath) -> Result<(), ApiError> {
        if let Some(area) = path.credential_area() {
            return Err(ApiError::forbidden(ErrorCode::PathRefused, area.describe()));
        }
        match &self.paths {
            Some(rules) if !rules.allows(method, &path.decoded()) => Err(ApiError::forbidden(
                ErrorCode::PathNotAllowed,
                "this key's paths do not include that method and path",
            )),
            _ => Ok(()),
        }
    }
}

use broker::secret::{hex, sha256};

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

/// 256 random bits from the OS, URL-safe.
pub fn random_secret(prefix: &str) -> Result<SecretString, getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    Ok(SecretString::from(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(raw)
    )))
}

/// A new random key and its callers entry.
pub fn generate_key(
    id: &str,
    tenant: &str,
    scopes: Vec<Scope>,
) -> Result<(SecretString, CallerEntry), getrandom::Error> {
    let key = random_secret("rcxb_")?;
    let entry = CallerEntry {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        key_sha256: Some(hex(&sha256(key.expose_secret().as_bytes()))),
        scopes,
        paths: None,
        jwt: None,
    };
    Ok((key, entry))
}

/// Every usable caller, loaded from the callers secret.
#[derive(Debug, Default)]
pub struct CallerSet {
    callers: Vec<Caller>,
    jwt_params: BTreeSet<String>,
}

impl CallerSet {
    /// The query parameter names JWT callers send their tokens in.
    pub fn jwt_params(&self) -> &BTreeSet<String> {
        &self.jwt_params
    }

    /// The caller a credential belongs to, or 401. `now` is Unix seconds (for JWTs).
    pub fn authenticate(&self, presented: &Presented, now: i64) -> Result<Caller, ApiError> {
        let (id, key) = match presented {
            Presented::Key(k) => (None, k),
            Presented::Basic { id, key } => (Some(id.as_str()), key),
            Presented::Jwt(token) => return self.authenticate_jwt(token.expose_secret(), now),
        };
        let hash = sha256(key.expose_secret().as_bytes());
        // Compare against every entry so timing reveals nothing about which one matched.
        let mut found: Option<&Caller> = None;
        for caller in &self.callers {
            let Some(own) = &caller.hash else { continue };
            let matches: bool = own.ct_eq(&hash).into();
            if matches && id.is_none_or(|id| id == caller.id) && found.is_none() {
                found = Some(caller);
            }
        }
        found.cloned().ok_or_else(|| {
            ApiError::unauthorized(ErrorCode::InvalidCredentials, "the caller key is not valid")
        })
    }

    fn authenticate_jwt(&self, token: &str, now: i64) -> Result<Caller, ApiError> {
        let refuse =
            |r: jwt::JwtRefusal| ApiError::unauthorized(ErrorCode::InvalidToken, r.to_string());
        let issuer = jwt::unverified_issuer(token).map_err(refuse)?;
        let caller = self
            .callers
            .iter()
            .find(|c| c.jwt.is_some() && c.id == issuer)
            .ok_or_else(|| refuse(jwt::JwtRefusal::UnknownIssuer))?;
        if let Some(verifier) = &caller.jwt {
            verifier.verify(token, now).map_err(refuse)?;
        }
        Ok(caller.clone())
    }
}

/// Reads the callers secret, skipping (and logging) entries that cannot be used.
pub fn parse_callers(name: &str, raw: &str) -> CallerSet {
    let entries: Vec<serde_json::Value> = match serde_json::from_str(raw) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => {
            tracing::error!(
                secret = name,
                "the callers secret is not a JSON array: every key is refused"
            );
            return CallerSet::default();
        }
    };
    let mut set = CallerSet::default();
    for (index, item) in entries.into_iter().enumerate() {
        let entry: CallerEntry = match serde_json::from_value(item) {
            Ok(e) => e,
            Err(_) => {
                tracing::warn!(
                    secret = name,
                    index,
                    "skipping a callers entry without id, tenant and known scopes"
                );
                continue;
            }
        };
        match caller_from(&entry) {
            Ok(caller) => {
                if let Some(v) = &caller.jwt {
                    set.jwt_params.insert(v.query_param().to_owned());
                }
                set.callers.push(caller);
            }
            Err(why) => {
                tracing::warn!(secret = name, caller = %entry.id, reason = %why, "skipping a callers entry")
            }
        }
    }
    set
}

/// Checks one entry; the error says what to fix.
pub fn caller_from(entry: &CallerEntry) -> Result<Caller, String> {
    let hash = match &entry.key_sha256 {
        None => None,
        Some(hex) => Some(unhex(hex).ok_or("keySha256 is not 64 hex digits")?),
    };
    let jwt = match &entry.jwt {
        None => None,
        Some(value) => {
            let parsed: JwtEntry = serde_json::from_value(value.clone()).map_err(|_| {
                "jwt must be {\"algorithm\", \"secret\" or \"publicKeyPem\", optional \"secretBase64\", \"maxAgeSeconds\", \"queryParam\"}"
                    .to_owned()
            })?;
            Some(JwtVerifier::from_entry(&parsed).map_err(|e| format!("jwt: {e}"))?)
        }
    };
    if hash.is_none() && jwt.is_none() {
        return Err("the entry has neither keySha256 nor jwt".into());
    }
    let paths = match &entry.paths {
        None => None,
        Some(list) => Some(PathRules::parse(list)?),
    };
    Ok(Caller {
        id: entry.id.clone(),
        tenant: entry.tenant.clone(),
        scopes: entry.scopes.clone(),
        paths,
        hash,
        jwt,
    })
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
        let stored = e1.key_sha256.as_deref().unwrap();
        assert_eq!(stored, hex(&sha256(k1.expose_secret().as_bytes())));
        assert_eq!(unhex(stored), Some(sha256(k1.expose_secret().as_bytes())));
    }

    #[test]
    fn bad_entries_are_skipped_not_fatal() {
        let good = hex(&sha256(b"k"));
        let raw = format!(
            r#"[{{"id":"a","tenant":"t","keySha256":"{good}","scopes":["token:read"]}},
                {{"id":"b","tenant":"t","keySha256":"zz","scopes":["token:read"]}},
                {{"id":"c","tenant":"t","keySha256":"{good}","scopes":["root"]}},
                {{"id":"d"}},
                {{"id":"e","tenant":"t","scopes":["token:read"]}},
                {{"id":"f","tenant":"t","keySha256":"{good}","scopes":[],"paths":["FETCH x"]}},
                {{"id":"g","tenant":"t","scopes":[],"jwt":{{"algorithm":"HS256","secret":"short"}}}},
                {{"id":"h","tenant":"t","scopes":[],"jwt":{{"algorithm":"none","secret":"{good}"}}}},
                {{"id":"i","tenant":"t","scopes":[],"jwt":{{"algorithm":"RS256","secret":"{good}"}}}},
                {{"id":"j","tenant":"t","scopes":[],"jwt":{{"algorithm":"HS256","secret":"{good}","typo":1}}}},
                {{"id":"k","tenant":"t","scopes":[],"jwt":{{"algorithm":"HS256","secret":"{good}","queryParam":"tok"}}}}]"#
        );
        let set = parse_callers("x", &raw);
        let ids: Vec<&str> = set.callers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "k"]);
        assert_eq!(set.jwt_params().iter().collect::<Vec<_>>(), ["tok"]);
        assert!(parse_callers("x", "{}").callers.is_empty());
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        let entry: CallerEntry = serde_json::from_value(serde_json::json!({
            "id": "j", "tenant": "t", "scopes": ["engage:proxy"],
            "jwt": {"algorithm": "HS256", "secret": secret}
        }))
        .unwrap();
        let caller = caller_from(&entry).unwrap();
        let shown = format!("{caller:?}");
        assert!(
            !shown.contains(secret) && !shown.contains("115, 51"),
            "{shown}"
        );
    }
}
