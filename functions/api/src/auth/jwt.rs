//! JWT callers: RingCX's `JWT` external auth config signs a token per call with a shared secret
//! (HS256/384/512, optionally base64, RingCX's `isSecretEncoded`) or a private key (RS256/384/512).
//! The token names its caller in `iss`; it is verified with that caller's key and algorithm only,
//! so `alg: none` and HS/RS confusion cannot pass. The signature check is `jsonwebtoken`'s; the
//! time checks are ours, on the broker's clock.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Clock difference tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 30;
/// The shortest HMAC secret accepted (RFC 7518 asks for at least the hash size; 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;
/// The query parameter a JWT arrives in when its entry names none.
pub const DEFAULT_QUERY_PARAM: &str = "jwt";

/// The `jwt` object of a callers entry, as an administrator writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtEntry {
    /// `HS256` or `RS256` (what RingCX's JWT auth config signs with).
    pub algorithm: String,
    #[serde(default)]
    /// The shared secret, for HS256.
    pub secret: Option<SecretString>,
    #[serde(default)]
    /// Whether `secret` is base64 (RingCX's `isSecretEncoded`).
    pub secret_base64: bool,
    #[serde(default)]
    /// The public key, for RS256.
    pub public_key_pem: Option<String>,
    #[serde(default)]
    /// The oldest `iat` accepted, in seconds.
    pub max_age_seconds: Option<u64>,
    /// The query parameter RingCX puts the token in (its `queryParamName`); default `jwt`.
    #[serde(default)]
    pub query_param: Option<String>,
}

/// A ready verifier for one caller.
#[derive(Clone)]
pub struct JwtVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
    max_age: Option<i64>,
    query_param: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// Why a presented JWT was refused; the message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefusal {
    #[error("the JWT is not three base64url parts with a JSON header and payload")]
    /// Not a JWT at all.
    Malformed,
    #[error("unsigned JWTs (alg none) are never accepted")]
    /// `alg: none`.
    Unsigned,
    #[error("the JWT's iss claim names no JWT caller")]
    /// No caller has that `iss`.
    UnknownIssuer,
    #[error("the JWT's algorithm is not the one configured for its caller")]
    /// Signed with another algorithm than its caller's.
    WrongAlgorithm,
    #[error("the JWT's signature does not verify with its caller's key")]
    /// The signature does not verify.
    BadSignature,
    #[error("the JWT has no numeric exp claim")]
    /// No `exp` claim.
    NoExpiry,
    #[error("the JWT has expired")]
    /// Past its `exp`.
    Expired,
    #[error("the JWT is not valid yet (nbf or iat in the future)")]
    /// Its `nbf` or `iat` is in the future.
    NotYetValid,
    #[error("the JWT is older than its caller's maxAgeSeconds")]
    /// Older than its caller's `maxAgeSeconds`.
    TooOld,
}

fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        _ => return None,
    })
}

impl JwtVerifier {
    /// Builds the verifier, or says what is wrong with the entry.
    pub fn from_entry(entry: &JwtEntry) -> Result<Self, String> {
        let alg = algorithm(&entry.algorithm).ok_or_else(|| {
            format!(
                "algorithm {:?} is not one of HS256, HS384, HS512, RS256, RS384, RS512",
                entry.algorithm
            )
        })?;
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        let key = match (hmac, &entry.secret, &entry.public_key_pem) {
            (true, Some(secret), None) => {
                let bytes = if entry.secret_base64 {
                    STANDARD
                        .decode(secret.expose_secret().trim())
                        .map_err(|_| "secretBase64 is true but the secret is not base64")?
                } else {
                    secret.expose_secret().as_bytes().to_vec()
                };
                if bytes.len() < MIN_SECRET_BYTES {
                    return Err(format!(
                        "the secret is shorter than {MIN_SECRET_BYTES} bytes; use a longer random one"
                    ));
                }
                DecodingKey::from_secret(&bytes)
            }
            (false, None, Some(pem)) => DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|_| "publicKeyPem is not an RSA public key in PEM")?,
            (true, _, _) => {
                return Err("an HS algorithm takes \"secret\" and no publicKeyPem".into());
            }
            (false, _, _) => {
                return Err("an RS algorithm takes \"publicKeyPem\" and no secret".into());
            }
        };
        let query_param = entry
            .query_param
            .clone()
            .unwrap_or_else(|| DEFAULT_QUERY_PARAM.to_owned());
        if query_param.is_empty()
            || !query_param
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err("queryParam must be letters, digits, '-', '_' or '.'".into());
        }
        let max_age = match entry.max_age_seconds {
            Some(0) => return Err("maxAgeSeconds must be positive".into()),
            Some(s) => Some(i64::try_from(s).map_err(|_| "maxAgeSeconds is too large")?),
            None => None,
        };
        Ok(Self {
            algorithm: alg,
            key,
            max_age,
            query_param,
        })
    }

    /// The query parameter a JWT may arrive in.
    pub fn query_param(&self) -> &str {
        &self.query_param
    }

    /// Checks signature and times; `now` is Unix seconds on the broker's clock.
    pub fn verify(&self, token: &str, now: i64) -> Result<(), JwtRefusal> {
        let header = unverified_header(token)?;
        if header.alg.as_deref() != Some(algorithm_name(self.algorithm)) {
            return Err(JwtRefusal::WrongAlgorithm);
        }
        let mut validation = Validation::new(self.algorithm);
        validation.algorithms = vec![self.algorithm];
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Times>(token, &self.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => JwtRefusal::BadSignature,
                ErrorKind::InvalidAlgorithm => JwtRefusal::WrongAlgorithm,
                ErrorKind::MissingRequiredClaim(_) => JwtRefusal::NoExpiry,
                ErrorKind::Json(_) => JwtRefusal::NoExpiry,
                _ => JwtRefusal::Malformed,
            }
        })?;
        let t = data.claims;
        // Saturating arithmetic: the claims are the caller's numbers, any i64 included.
        let exp = t.exp.ok_or(JwtRefusal::NoExpiry)?;
        let late = now.saturating_sub(LEEWAY_SECS);
        let early = now.saturating_add(LEEWAY_SECS);
        if exp <= late {
            return Err(JwtRefusal::Expired);
        }
        if t.nbf.is_some_and(|nbf| nbf > early) || t.iat.is_some_and(|iat| iat > early) {
            return Err(JwtRefusal::NotYetValid);
        }
        if let Some(max_age) = self.max_age {
            // From iat when present; either way a token may not live longer than the maximum.
            let issued = t.iat.unwrap_or(now);
            let limit = max_age.saturating_add(LEEWAY_SECS);
            if now.saturating_sub(issued) > limit || exp.saturating_sub(issued) > limit {
                return Err(JwtRefusal::TooOld);
            }
        }
        Ok(())
    }
}

fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        _ => "",
    }
}

/// The time claims, as whole seconds (fractions dropped; other types refused).
#[derive(Deserialize)]
struct Times {
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<i64>,
}

fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.floor() as i64)
        })
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("not a NumericDate"))
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
}

#[derive(Deserialize)]
struct RawIssuer {
    iss: Option<serde_json::Value>,
}

fn part<T: serde::de::DeserializeOwned>(encoded: &str) -> Result<T, JwtRefusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JwtRefusal::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtRefusal::Malformed)
}

fn parts(token: &str) -> Result<(&str, &str), JwtRefusal> {
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(_), None) if !h.is_empty() && !p.is_empty() => Ok((h, p)),
        _ => Err(JwtRefusal::Malformed),
    }
}

fn unverified_header(token: &str) -> Result<RawHeader, JwtRefusal> {
    let header: RawHeader = part(parts(token)?.0)?;
    match header.alg.as_deref() {
        None => Err(JwtRefusal::Malformed),
        Some(alg) if alg.eq_ignore_ascii_case("none") => Err(JwtRefusal::Unsigned),
        Some(_) => Ok(header),
    }
}

/// Whether a credential has the shape of a JWT (as opposed to a caller key).
pub fn looks_like_jwt(value: &str) -> bool {
    parts(value).is_ok_and(|(h, _)| part::<RawHeader>(h).is_ok())
}

/// The `iss` claim, read before any verification only to pick the caller whose key then decides.
pub fn unverified_issuer(token: &str) -> Result<String, JwtRefusal> {
    unverified_header(token)?;
    let claims: RawIssuer = part(parts(token)?.1)?;
    match claims.iss {
        Some(serde_json::Value::String(iss)) if !iss.is_empty() => Ok(iss),
        _ => Err(JwtRefusal::UnknownIssuer),
    }
}
