//! Webhook signatures as their senders make them: Standard Webhooks, a plain HMAC-SHA256 header
//! (GitHub, Shopify, most CRMs) and Stripe's. Every comparison is constant-time (aws-lc-rs's
//! `hmac::verify`), over the raw body bytes exactly as received, against every secret of the
//! hook (several during a rotation). No refusal carries a secret or a signature.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Headers;

/// Default timestamp tolerance, both directions (Standard Webhooks' and Stripe's 5 minutes).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// How a hook's requests prove where they come from.
pub enum Scheme {
    /// standardwebhooks.com: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks {
        /// The keys (`whsec_` prefix removed, base64-decoded).
        keys: Vec<hmac::Key>,
        /// Seconds the timestamp may differ from now.
        tolerance: u64,
    },
    /// HMAC-SHA256 of the raw body in one header.
    HmacSha256 {
        /// The keys (the secrets' UTF-8 bytes).
        keys: Vec<hmac::Key>,
        /// The header, lower-case.
        header: String,
        /// What precedes the signature in the header (`sha256=` for GitHub).
        prefix: String,
        /// How the signature is written.
        encoding: Encoding,
    },
    /// `Stripe-Signature: t=<unix>,v1=<hex>`.
    Stripe {
        /// The keys (the secrets' UTF-8 bytes).
        keys: Vec<hmac::Key>,
        /// Seconds `t` may differ from now.
        tolerance: u64,
    },
    /// A caller credential with the `hooks:invoke` scope (checked by the HTTP function).
    Caller,
}

/// How an `hmac-sha256` signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// Why a request's signature is refused; the message names the header, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    #[error("the {0} header is missing")]
    /// A header the scheme needs is not there.
    Missing(String),
    #[error("the {0} header is malformed")]
    /// A header is there but cannot be read.
    Malformed(String),
    #[error(
        "the timestamp is outside the {0} s tolerance (check the sender's clock, or a replayed request)"
    )]
    /// The signed timestamp is too old or too far ahead.
    OutOfTolerance(u64),
    #[error("no signature matches any of the hook's secrets")]
    /// Every signature was checked against every secret; none matched.
    Mismatch,
}

/// The `verify` object of a hook entry, as an operator writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyEntry {
    /// `standard-webhooks`, `hmac-sha256`, `stripe` or `caller`.
    pub scheme: String,
    /// The signing secrets; any of them matches.
    #[serde(default)]
    pub secrets: Vec<SecretString>,
    /// Timestamp tolerance in seconds.
    #[serde(default)]
    pub tolerance_seconds: Option<u64>,
    /// `hmac-sha256`: the signature's header.
    #[serde(default)]
    pub header: Option<String>,
    /// `hmac-sha256`: what precedes the signature.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `hmac-sha256`: `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

/// The scheme names, as entries spell them.
pub const SCHEMES: [&str; 4] = ["standard-webhooks", "hmac-sha256", "stripe", "caller"];

impl Scheme {
    /// The scheme an entry describes, or why it cannot be used.
    pub fn from_entry(entry: &VerifyEntry) -> Result<Self, String> {
        let tolerance = entry.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS);
        if !(1..=86_400).contains(&tolerance) {
            return Err("verify.toleranceSeconds must be 1..=86400".into());
        }
        let need_secrets = || -> Result<(), String> {
            if entry.secrets.is_empty() {
                return Err(format!(
                    "verify.secrets is empty: the {} scheme needs at least one",
                    entry.scheme
                ));
            }
            if entry.secrets.iter().any(|s| s.expose_secret().len() < 16) {
                return Err("every verify.secrets entry must be at least 16 characters".into());
            }
            Ok(())
        };
        let utf8_keys = || {
            entry
                .secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.expose_secret().as_bytes()))
                .collect::<Vec<_>>()
        };
        match entry.scheme.as_str() {
            "standard-webhooks" => {
                need_secrets()?;
                let keys = entry
                    .secrets
                    .iter()
                    .map(|s| standard_webhooks_key(s.expose_secret()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Scheme::StandardWebhooks { keys, tolerance })
            }
            "hmac-sha256" => {
                need_secrets()?;
                let header = entry
                    .header
                    .as_deref()
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .ok_or(
                        "verify.header is required for hmac-sha256 (e.g. X-Hub-Signature-256)",
                    )?;
                if http_header_name(header).is_none() {
                    return Err(format!("verify.header {header:?} is not a header name"));
                }
                Ok(Scheme::HmacSha256 {
                    keys: utf8_keys(),
                    header: header.to_ascii_lowercase(),
                    prefix: entry.prefix.clone().unwrap_or_default(),
                    encoding: entry.encoding.unwrap_or(Encoding::Hex),
                })
            }
            "stripe" => {
                need_secrets()?;
                Ok(Scheme::Stripe {
                    keys: utf8_keys(),
                    tolerance,
                })
            }
            "caller" => {
                if !entry.secrets.is_empty() {
                    return Err("verify.secrets must be empty for the caller scheme (callers have keys in {prefix}callers)".into());
                }
                Ok(Scheme::Caller)
            }
            other => Err(format!(
                "unknown verify.scheme {other:?}: one of {}",
                SCHEMES.join(", ")
            )),
        }
    }

    /// The scheme's name.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::StandardWebhooks { .. } => "standard-webhooks",
            Scheme::HmacSha256 { .. } => "hmac-sha256",
            Scheme::Stripe { .. } => "stripe",
            Scheme::Caller => "caller",
        }
    }

    /// Checks a request's signature. `now` is Unix seconds. The `caller` scheme always passes
    /// here: the HTTP function authenticates the caller itself.
    pub fn verify(&self, headers: &Headers, body: &[u8], now: i64) -> Result<(), SignatureRefusal> {
        match self {
            Scheme::StandardWebhooks { keys, tolerance } => {
                let id = headers
                    .get("webhook-id")
                    .ok_or_else(|| SignatureRefusal::Missing("webhook-id".into()))?;
                let ts_text = headers
                    .get("webhook-timestamp")
                    .ok_or_else(|| SignatureRefusal::Missing("webhook-timestamp".into()))?;
                let signatures = headers
                    .get("webhook-signature")
                    .ok_or_else(|| SignatureRefusal::Missing("webhook-signature".into()))?;
                let ts = timestamp(ts_text, "webhook-timestamp")?;
                within(ts, now, *tolerance)?;
                let mut signed = Vec::with_capacity(id.len() + ts_text.len() + body.len() + 2);
                signed.extend_from_slice(id.as_bytes());
                signed.push(b'.');
                signed.extend_from_slice(ts_text.trim().as_bytes());
                signed.push(b'.');
                signed.extend_from_slice(body);
                // Space-separated; a header sent twice arrives joined with ", ".
                let tags: Vec<Vec<u8>> = signatures
                    .split_whitespace()
                    .map(|s| s.trim_end_matches(','))
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(|b64| STANDARD.decode(b64).ok())
                    .collect();
                if tags.is_empty() {
                    return Err(SignatureRefusal::Malformed("webhook-signature".into()));
                }
                any_matches(keys, &signed, &tags)
            }
            Scheme::HmacSha256 {
                keys,
                header,
                prefix,
                encoding,
            } => {
                let value = headers
                    .get(header)
                    .ok_or_else(|| SignatureRefusal::Missing(header.clone()))?;
                let value = value.trim();
                let encoded = value
                    .strip_prefix(prefix.as_str())
                    .or_else(|| {
                        // `sha256=` and `SHA256=` are the same prefix to every sender seen.
                        (value.len() >= prefix.len()
                            && value.is_char_boundary(prefix.len())
                            && value[..prefix.len()].eq_ignore_ascii_case(prefix))
                        .then(|| &value[prefix.len()..])
                    })
                    .ok_or_else(|| SignatureRefusal::Malformed(header.clone()))?;
                let tag = match encoding {
                    Encoding::Hex => unhex(encoded),
                    Encoding::Base64 => STANDARD.decode(encoded).ok(),
                }
                .ok_or_else(|| SignatureRefusal::Malformed(header.clone()))?;
                any_matches(keys, body, &[tag])
            }
            Scheme::Stripe { keys, tolerance } => {
                let value = headers
                    .get("stripe-signature")
                    .ok_or_else(|| SignatureRefusal::Missing("stripe-signature".into()))?;
                let mut t = None;
                let mut tags = Vec::new();
                for part in value.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", v)) => t = Some(v),
                        Some(("v1", v)) => tags.extend(unhex(v)),
                        _ => {}
                    }
                }
                let t = t.ok_or_else(|| SignatureRefusal::Malformed("stripe-signature".into()))?;
                if tags.is_empty() {
                    return Err(SignatureRefusal::Malformed("stripe-signature".into()));
                }
                within(timestamp(t, "stripe-signature")?, now, *tolerance)?;
                let mut signed = Vec::with_capacity(t.len() + 1 + body.len());
                signed.extend_from_slice(t.as_bytes());
                signed.push(b'.');
                signed.extend_from_slice(body);
                any_matches(keys, &signed, &tags)
            }
            Scheme::Caller => Ok(()),
        }
    }
}

/// A Standard Webhooks secret: `whsec_` and the base64 key (the reference libraries also accept
/// the bare base64).
fn standard_webhooks_key(secret: &str) -> Result<hmac::Key, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| "a standard-webhooks secret is whsec_ followed by base64".to_owned())?;
    if raw.len() < 16 {
        return Err("a standard-webhooks key must be at least 16 bytes (24 recommended)".into());
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &raw))
}

/// Signs as a Standard Webhooks sender does (for `make dev`'s sample and the operator's test).
pub fn sign_standard_webhooks(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, String> {
    let key = standard_webhooks_key(secret)?;
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(hmac::sign(&key, &signed).as_ref())
    ))
}

/// Signatures looked at per request: senders send one, or a few during a rotation. More are
/// ignored, so a header of thousands cannot make a request cost thousands of comparisons.
pub const MAX_SIGNATURES: usize = 8;

fn any_matches(
    keys: &[hmac::Key],
    signed: &[u8],
    tags: &[Vec<u8>],
) -> Result<(), SignatureRefusal> {
    // One MAC per key over the body (never one per tag), then every well-sized tag compared
    // with it in constant time, all of them, so the time says nothing about which one matched.
    let tags: Vec<&Vec<u8>> = tags
        .iter()
        .filter(|t| t.len() == hmac::HMAC_SHA256.digest_algorithm().output_len())
        .take(MAX_SIGNATURES)
        .collect();
    if tags.is_empty() {
        return Err(SignatureRefusal::Mismatch);
    }
    let mut ok = false;
    for key in keys {
        let expected = hmac::sign(key, signed);
        for tag in &tags {
            ok |= aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_ref(), tag).is_ok();
        }
    }
    if ok {
        Ok(())
    } else {
        Err(SignatureRefusal::Mismatch)
    }
}

fn timestamp(text: &str, header: &str) -> Result<i64, SignatureRefusal> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| SignatureRefusal::Malformed(header.to_owned()))
}

fn within(ts: i64, now: i64, tolerance: u64) -> Result<(), SignatureRefusal> {
    let tolerance_i = i64::try_from(tolerance).unwrap_or(i64::MAX);
    if now.saturating_sub(ts).saturating_abs() > tolerance_i {
        return Err(SignatureRefusal::OutOfTolerance(tolerance));
    }
    Ok(())
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() || !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn http_header_name(name: &str) -> Option<()> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
    .then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn entry(json: serde_json::Value) -> Scheme {
        Scheme::from_entry(&serde_json::from_value(json).unwrap()).unwrap()
    }

    /// The Standard Webhooks reference libraries' published vector (libraries/go/webhook_test.go,
    /// `TestWebhookSign`).
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn standard_webhooks_published_vector() {
        assert_eq!(
            sign_standard_webhooks(SW_SECRET, SW_ID, SW_TS, SW_BODY).unwrap(),
            SW_SIG
        );
        let scheme =
            entry(serde_json::json!({"scheme": "standard-webhooks", "secrets": [SW_SECRET]}));
        let ts = SW_TS.to_string();
        let ok = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", SW_SIG),
        ]);
        assert_eq!(scheme.verify(&ok, SW_BODY, SW_TS + 10), Ok(()));
        // Several signatures, the valid one among others (the spec's multi-signature case).
        let multi = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {SW_SIG}");
        let h = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &multi),
        ]);
        assert_eq!(scheme.verify(&h, SW_BODY, SW_TS), Ok(()));
        // One byte of the body changed.
        assert_eq!(
            scheme.verify(&ok, br#"{"test": 2432232315}"#, SW_TS),
            Err(SignatureRefusal::Mismatch)
        );
        // Outside the tolerance, in both directions.
        assert_eq!(
            scheme.verify(&ok, SW_BODY, SW_TS + 301),
            Err(SignatureRefusal::OutOfTolerance(300))
        );
        assert_eq!(
            scheme.verify(&ok, SW_BODY, SW_TS - 301),
            Err(SignatureRefusal::OutOfTolerance(300))
        );
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = ok.clone();
            h.remove(missing);
            assert_eq!(
                scheme.verify(&h, SW_BODY, SW_TS),
                Err(SignatureRefusal::Missing(missing.into()))
            );
        }
        // The bare base64 key works too, as in the reference libraries.
        let bare = entry(
            serde_json::json!({"scheme": "standard-webhooks", "secrets": ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}),
        );
        assert_eq!(bare.verify(&ok, SW_BODY, SW_TS), Ok(()));
    }

    #[test]
    fn a_header_sent_twice_and_a_flood_of_tags() {
        let scheme =
            entry(serde_json::json!({"scheme": "standard-webhooks", "secrets": [SW_SECRET]}));
        let ts = SW_TS.to_string();
        // Two webhook-signature headers, joined as HTTP joins them.
        let joined = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=, {SW_SIG}");
        let h = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &joined),
        ]);
        assert_eq!(scheme.verify(&h, SW_BODY, SW_TS), Ok(()));
        // Thousands of tags: only the first few well-sized ones are looked at.
        let flood = format!(
            "{} {SW_SIG}",
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= ".repeat(5000)
        );
        let h = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &flood),
        ]);
        assert_eq!(
            scheme.verify(&h, SW_BODY, SW_TS),
            Err(SignatureRefusal::Mismatch)
        );
        let empties = format!("{} {SW_SIG}", "v1, ".repeat(5000));
        let h = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &empties),
        ]);
        assert_eq!(
            scheme.verify(&h, SW_BODY, SW_TS),
            Ok(()),
            "empty tags are not signatures"
        );
    }

    #[test]
    fn rotation_any_secret_matches() {
        let scheme = entry(serde_json::json!({"scheme": "standard-webhooks",
            "secrets": ["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", SW_SECRET]}));
        let ts = SW_TS.to_string();
        let ok = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", SW_SIG),
        ]);
        assert_eq!(scheme.verify(&ok, SW_BODY, SW_TS), Ok(()));
    }

    /// GitHub's documented example ("Validating webhook deliveries").
    #[test]
    fn github_published_vector() {
        let scheme = entry(
            serde_json::json!({"scheme": "hmac-sha256", "secrets": ["It's a Secret to Everybody"],
            "header": "X-Hub-Signature-256", "prefix": "sha256="}),
        );
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-hub-signature-256", sig)]);
        assert_eq!(scheme.verify(&h, b"Hello, World!", 0), Ok(()));
        assert_eq!(
            scheme.verify(&h, b"Hello, World?", 0),
            Err(SignatureRefusal::Mismatch)
        );
        let upper = headers(&[("x-hub-signature-256", &sig.to_ascii_uppercase())]);
        assert_eq!(scheme.verify(&upper, b"Hello, World!", 0), Ok(()));
        let no_prefix = headers(&[("x-hub-signature-256", &sig[7..])]);
        assert_eq!(
            scheme.verify(&no_prefix, b"Hello, World!", 0),
            Err(SignatureRefusal::Malformed("x-hub-signature-256".into()))
        );
        assert_eq!(
            scheme.verify(&Headers::new(), b"Hello, World!", 0),
            Err(SignatureRefusal::Missing("x-hub-signature-256".into()))
        );
        // The same MAC in base64, for senders that write it so.
        let b64 = entry(
            serde_json::json!({"scheme": "hmac-sha256", "secrets": ["It's a Secret to Everybody"],
            "header": "X-Signature", "encoding": "base64"}),
        );
        let tag = unhex(&sig[7..]).unwrap();
        let h = headers(&[("x-signature", &STANDARD.encode(tag))]);
        assert_eq!(b64.verify(&h, b"Hello, World!", 0), Ok(()));
    }

    #[test]
    fn stripe_signatures() {
        let secret = "whsec_stripe_test_secret_0123456789";
        let scheme = entry(serde_json::json!({"scheme": "stripe", "secrets": [secret]}));
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let t = 1_700_000_000i64;
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        let good: String = hmac::sign(&key, &signed)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let bad = "0".repeat(64);
        let h = headers(&[(
            "stripe-signature",
            &format!("t={t},v1={bad},v1={good},v0=ignored"),
        )]);
        assert_eq!(scheme.verify(&h, body, t + 299), Ok(()));
        assert_eq!(
            scheme.verify(&h, body, t + 301),
            Err(SignatureRefusal::OutOfTolerance(300))
        );
        let only_bad = headers(&[("stripe-signature", &format!("t={t},v1={bad}"))]);
        assert_eq!(
            scheme.verify(&only_bad, body, t),
            Err(SignatureRefusal::Mismatch)
        );
        let no_t = headers(&[("stripe-signature", &format!("v1={good}"))]);
        assert_eq!(
            scheme.verify(&no_t, body, t),
            Err(SignatureRefusal::Malformed("stripe-signature".into()))
        );
    }

    #[test]
    fn entries_that_cannot_work_are_refused() {
        let refuse = |json: serde_json::Value| {
            Scheme::from_entry(&serde_json::from_value(json).unwrap())
                .err()
                .unwrap()
        };
        assert!(
            refuse(serde_json::json!({"scheme": "md5", "secrets": ["x"]}))
                .contains("unknown verify.scheme")
        );
        assert!(refuse(serde_json::json!({"scheme": "stripe"})).contains("at least one"));
        assert!(
            refuse(serde_json::json!({"scheme": "stripe", "secrets": ["short"]}))
                .contains("16 characters")
        );
        assert!(
            refuse(serde_json::json!({"scheme": "hmac-sha256", "secrets": ["0123456789abcdef"]}))
                .contains("verify.header")
        );
        assert!(refuse(serde_json::json!({"scheme": "standard-webhooks", "secrets": ["whsec_not base64!!!!!!!"]})).contains("base64"));
        assert!(
            refuse(serde_json::json!({"scheme": "caller", "secrets": ["0123456789abcdef"]}))
                .contains("empty")
        );
        assert!(refuse(serde_json::json!({"scheme": "stripe", "secrets": ["0123456789abcdef"], "toleranceSeconds": 0})).contains("tolerance"));
        assert!(
            serde_json::from_value::<VerifyEntry>(
                serde_json::json!({"scheme": "stripe", "secret": "x"})
            )
            .is_err()
        );
    }

    #[test]
    fn refusals_never_show_secrets() {
        let e = VerifyEntry {
            scheme: "stripe".into(),
            secrets: vec![SecretString::from("a-very-secret-value")],
            tolerance_seconds: None,
            header: None,
            prefix: None,
            encoding: None,
        };
        let scheme = Scheme::from_entry(&e).unwrap();
        for r in [
            scheme.verify(&Headers::new(), b"", 0).unwrap_err(),
            scheme
                .verify(&headers(&[("stripe-signature", "t=1,v1=00")]), b"", 1)
                .unwrap_err(),
        ] {
            assert!(!r.to_string().contains("a-very-secret-value"));
        }
    }
}
