//! Reading the lifetime of a RingCX access token.
//!
//! RingCX answers with no `expiresIn`: the access token is a JWT and its claims are the only
//! statement of its lifetime. Only the claims are decoded; the signature is RingCX's business.
//!
//! Clocks disagree: RingCX writes `exp` (and `iat`) with its own clock. When both claims are
//! there, the lifetime `exp - iat` is added to *our* send time, so a RingCX clock that runs ahead
//! or behind ours does not shorten or stretch what we believe. Values that cannot be a token
//! lifetime (milliseconds read as seconds, centuries away, already past) are not trusted.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// The longest lifetime believed from a token's claims (RingCX documents 5 minutes).
pub const MAX_BELIEVED_LIFETIME: Duration = Duration::hours(24);

/// Where a lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeSource {
    /// `exp - iat`, RingCX's own statement, independent of clock skew.
    IssuedLifetime,
    /// `exp` read against our clock (no usable `iat`).
    ExpAgainstOurClock,
}

/// The token's claims as JSON, or `None` when it is not a readable JWT.
fn claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(payload))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A numeric date claim in seconds. A value past the year 5000 in seconds is taken for
/// milliseconds (some issuers write `Date.now()`).
fn seconds_claim(claims: &Value, name: &str) -> Option<i64> {
    let v = claims.get(name)?;
    let n = v
        .as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        .or_else(|| v.as_str()?.trim().parse().ok())?;
    const YEAR_5000: i64 = 95_617_584_000;
    Some(if n > YEAR_5000 { n / 1000 } else { n })
}

/// How long a token obtained by a request sent at `sent_at` lives, and how that was learned;
/// `None` when the claims give nothing believable (the caller then assumes the documented 5
/// minutes).
pub fn lifetime(token: &str, sent_at: DateTime<Utc>) -> Option<(Duration, LifetimeSource)> {
    let claims = claims(token)?;
    let exp = seconds_claim(&claims, "exp")?;
    let believable = |d: Duration| d > Duration::zero() && d <= MAX_BELIEVED_LIFETIME;
    if let Some(iat) = seconds_claim(&claims, "iat") {
        let issued = Duration::seconds(exp.saturating_sub(iat));
        if believable(issued) {
            return Some((issued, LifetimeSource::IssuedLifetime));
        }
    }
    let left = DateTime::from_timestamp(exp, 0)? - sent_at;
    believable(left).then_some((left, LifetimeSource::ExpAgainstOurClock))
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
        let sent = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        for exp in [
            "1795000300",
            "1795000300.0",
            "\"1795000300\"",
            "1795000300000",
        ] {
            let token = jwt(&format!(r#"{{"exp":{exp}}}"#));
            assert_eq!(
                lifetime(&token, sent).map(|(d, _)| d),
                Some(Duration::seconds(300)),
                "{exp}"
            );
        }
    }

    #[test]
    fn unreadable_tokens_have_no_lifetime() {
        let sent = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        for token in ["opaque-token", "a.b", "a.!!!.c"] {
            assert_eq!(lifetime(token, sent), None, "{token}");
        }
        assert_eq!(lifetime(&jwt(r#"{"sub":"1"}"#), sent), None);
        assert_eq!(lifetime(&jwt("not json"), sent), None);
    }

    #[test]
    fn the_issued_lifetime_wins_over_a_skewed_clock() {
        let sent = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        // RingCX's clock runs 10 minutes ahead: exp is 15 minutes past our now.
        let ahead = jwt(r#"{"iat":1795000600,"exp":1795000900}"#);
        assert_eq!(
            lifetime(&ahead, sent),
            Some((Duration::seconds(300), LifetimeSource::IssuedLifetime))
        );
        // 10 minutes behind: exp is already past by our clock.
        let behind = jwt(r#"{"iat":1794999400,"exp":1794999700}"#);
        assert_eq!(lifetime(&behind, sent).unwrap().0, Duration::seconds(300));
        // No iat: exp against our clock, if believable.
        let no_iat = jwt(r#"{"exp":1795000240}"#);
        assert_eq!(
            lifetime(&no_iat, sent),
            Some((Duration::seconds(240), LifetimeSource::ExpAgainstOurClock))
        );
    }

    #[test]
    fn unbelievable_lifetimes_are_not_trusted() {
        let sent = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        for claims in [
            r#"{"exp":1794999000}"#,                   // already past, no iat
            r#"{"exp":4102444800}"#,                   // year 2100
            r#"{"iat":1795000000,"exp":1795000000}"#,  // zero lifetime, exp not ahead either
            r#"{"iat":1795000000,"exp":99999999999}"#, // centuries
        ] {
            assert_eq!(lifetime(&jwt(claims), sent), None, "{claims}");
        }
        // An iat that makes no sense falls back to exp against our clock.
        let odd_iat = jwt(r#"{"iat":1795009999,"exp":1795000300}"#);
        assert_eq!(lifetime(&odd_iat, sent).unwrap().0, Duration::seconds(300));
    }
}
