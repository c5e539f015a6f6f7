//! Reading the expiry of a RingCX access token.
//!
//! RingCX answers with no `expiresIn`: the access token is a JWT and its `exp` claim is the only
//! statement of its lifetime. Only the claims are decoded; the signature is RingCX's business.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

/// The `exp` claim of a JWT, or `None` when the token is not a readable JWT.
pub fn expiry(token: &str) -> Option<DateTime<Utc>> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(payload))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    let secs = exp
        .as_i64()
        .or_else(|| exp.as_f64().map(|f| f as i64))
        .or_else(|| exp.as_str()?.parse().ok())?;
    DateTime::from_timestamp(secs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn reads_exp_in_its_usual_and_odd_forms() {
        let want = DateTime::from_timestamp(1_795_000_000, 0);
        assert_eq!(expiry(&jwt(r#"{"exp":1795000000}"#)), want);
        assert_eq!(expiry(&jwt(r#"{"exp":1795000000.0}"#)), want);
        assert_eq!(expiry(&jwt(r#"{"exp":"1795000000"}"#)), want);
    }

    #[test]
    fn unreadable_tokens_have_no_expiry() {
        assert_eq!(expiry("opaque-token"), None);
        assert_eq!(expiry("a.b"), None);
        assert_eq!(expiry("a.!!!.c"), None);
        assert_eq!(expiry(&jwt(r#"{"sub":"1"}"#)), None);
        assert_eq!(expiry(&jwt("not json")), None);
    }
}
