//! Where a request carries its credential: `Authorization` (Bearer key, Bearer JWT, a bare JWT,
//! or Basic `id:key`), `X-Api-Key`, or the query string (a JWT under its configured parameter
//! name; a key as `api_key` only when `ALLOW_QUERY_KEY` is on). Also which query parameters must
//! never travel upstream, however they are spelled.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

use super::jwt::looks_like_jwt;
use crate::error::{ApiError, ErrorCode};

/// The query parameter a caller key may arrive in (when allowed).
pub const QUERY_KEY_PARAM: &str = "api_key";
/// Query parameters never forwarded, besides the JWT callers' own parameter names: those that
/// carry credentials, and `_method`, which Spring's hidden-method filter reads as the HTTP method
/// (it would turn an allowed POST into a DELETE).
pub const NEVER_FORWARDED: [&str; 6] = [
    QUERY_KEY_PARAM,
    "jwt",
    "access_token",
    "client_id",
    "client_secret",
    "_method",
];

/// A credential as presented by a request.
#[derive(Debug)]
pub enum Presented {
    /// `Authorization: Bearer`, `X-Api-Key`, or `api_key`: the key alone.
    Key(SecretString),
    /// Basic `id:key`, what an IVR Remote HTTP Service sends: the id must match too.
    Basic {
        /// The caller id.
        id: String,
        /// Its key.
        key: SecretString,
    },
    /// A signed JWT, in `Authorization` or a query parameter.
    Jwt(SecretString),
}

impl Presented {
    /// The secret itself, to make sure it is not forwarded under any name.
    pub fn secret(&self) -> &str {
        match self {
            Presented::Key(k) | Presented::Basic { key: k, .. } | Presented::Jwt(k) => {
                k.expose_secret()
            }
        }
    }
}

/// Which query parameters may authenticate.
#[derive(Debug, Clone, Copy)]
pub struct QueryAuth<'a> {
    /// Whether a key may come in the query string.
    pub allow_key: bool,
    /// Query parameters JWT callers may use.
    pub jwt_params: &'a BTreeSet<String>,
}

fn malformed(what: &str) -> ApiError {
    ApiError::unauthorized(
        ErrorCode::MalformedCredentials,
        format!("the {what} could not be read"),
    )
}

/// Finds the credential in a request.
pub fn presented(
    headers: &HeaderMap,
    query: Option<&str>,
    auth: QueryAuth<'_>,
) -> Result<Presented, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return from_authorization(
            value
                .to_str()
                .map_err(|_| malformed("Authorization header"))?
                .trim(),
        );
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
    let pairs = query.map(|q| url::form_urlencoded::parse(q.as_bytes()));
    for (name, value) in pairs.into_iter().flatten() {
        if value.is_empty() {
            continue;
        }
        if auth.jwt_params.contains(name.as_ref()) && looks_like_jwt(&value) {
            return Ok(Presented::Jwt(SecretString::from(value.into_owned())));
        }
        if auth.allow_key && name == QUERY_KEY_PARAM {
            return Ok(Presented::Key(SecretString::from(value.into_owned())));
        }
    }
    Err(ApiError::unauthorized(
        ErrorCode::MissingCredentials,
        "send a caller key as Authorization: Bearer, X-Api-Key, or Basic id:key, or a signed JWT",
    ))
}

fn from_authorization(value: &str) -> Result<Presented, ApiError> {
    if !value.contains(' ') && looks_like_jwt(value) {
        // RingCX's JWT auth config with an empty header prefix.
        return Ok(Presented::Jwt(SecretString::from(value.to_owned())));
    }
    let (scheme, rest) = value
        .split_once(' ')
        .ok_or_else(|| malformed("Authorization header"))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(if looks_like_jwt(rest) {
            Presented::Jwt(SecretString::from(rest.to_owned()))
        } else {
            Presented::Key(SecretString::from(rest.to_owned()))
        });
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed("Authorization header (use Bearer or Basic)"));
    }
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
}

/// The query string to send upstream: every pair whose decoded name (any case) is in
/// [`NEVER_FORWARDED`] or a JWT parameter, or whose decoded name or value contains the presented
/// secret, is dropped; the others are kept exactly as they came.
pub fn forwarded_query(
    query: Option<&str>,
    jwt_params: &BTreeSet<String>,
    secret: &str,
) -> Option<String> {
    let kept: Vec<&str> = query?
        .split('&')
        .filter(|pair| {
            if pair.is_empty() {
                return false;
            }
            let Some((name, value)) = url::form_urlencoded::parse(pair.as_bytes()).next() else {
                return false;
            };
            let name = name.trim().to_ascii_lowercase();
            let credential = NEVER_FORWARDED.contains(&name.as_str())
                || jwt_params.iter().any(|p| p.eq_ignore_ascii_case(&name));
            let carries_secret =
                secret.len() >= 8 && (value.contains(secret) || name.contains(secret));
            !(credential || carries_secret)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln";

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn credentials_are_found_in_each_documented_place() {
        let params: BTreeSet<String> = ["token".to_owned()].into();
        let off = QueryAuth {
            allow_key: false,
            jwt_params: &params,
        };
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(
            matches!(presented(&h, None, off), Ok(Presented::Key(k)) if k.expose_secret() == "abc")
        );
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {JWT}").parse().unwrap(),
        );
        assert!(matches!(presented(&h, None, off), Ok(Presented::Jwt(_))));
        h.insert(header::AUTHORIZATION, JWT.parse().unwrap());
        assert!(matches!(presented(&h, None, off), Ok(Presented::Jwt(_))));
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("ivr:abc"))
                .parse()
                .unwrap(),
        );
        assert!(matches!(presented(&h, None, off), Ok(Presented::Basic { id, .. }) if id == "ivr"));
        for bad in [
            "Basic !!!",
            "Basic ",
            "Token abc",
            "Bearer",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            h.insert(header::AUTHORIZATION, bad.parse().unwrap());
            let err = presented(&h, None, off).unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedCredentials, "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "abc".parse().unwrap());
        assert!(matches!(presented(&h, None, off), Ok(Presented::Key(_))));
        let empty = HeaderMap::new();
        assert_eq!(
            presented(&empty, None, off).unwrap_err().code,
            ErrorCode::MissingCredentials
        );
        assert!(presented(&empty, Some("api_key=q"), off).is_err());
        let on = QueryAuth {
            allow_key: true,
            jwt_params: &params,
        };
        assert!(matches!(
            presented(&empty, Some("api_key=q"), on),
            Ok(Presented::Key(_))
        ));
        let q = format!("a=1&token={JWT}");
        assert!(matches!(
            presented(&empty, Some(&q), off),
            Ok(Presented::Jwt(_))
        ));
        let q = format!("jwt={JWT}");
        assert!(
            presented(&empty, Some(&q), off).is_err(),
            "only configured names"
        );
    }

    #[test]
    fn credentials_never_travel_upstream_however_spelled() {
        let params: BTreeSet<String> = ["myToken".to_owned()].into();
        let secret = "rcxb_secretsecret";
        for (query, kept) in [
            ("a=1&api_key=x&b=2", Some("a=1&b=2")),
            ("api%5Fkey=x&a=1", Some("a=1")),
            ("API_KEY=x", None),
            ("%61pi_key=x", None),
            ("api_key+=x&c=3", Some("c=3")),
            ("mytoken=x&MYTOKEN=y&c=3", Some("c=3")),
            ("access_token=x&jwt=y", None),
            ("other=rcxb_secretsecret&c=3", Some("c=3")),
            ("other=rcxb%5Fsecretsecret", None),
            ("x=Bearer%20rcxb_secretsecret&c=3", Some("c=3")),
            ("rcxb_secretsecret&c=3", Some("c=3")),
            ("_method=DELETE&c=3", Some("c=3")),
            ("_METHOD=DELETE", None),
            ("&&a=1&", Some("a=1")),
        ] {
            assert_eq!(
                forwarded_query(Some(query), &params, secret).as_deref(),
                kept,
                "{query}"
            );
        }
        assert_eq!(forwarded_query(None, &none(), secret), None);
    }
}
