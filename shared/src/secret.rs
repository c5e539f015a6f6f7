//! Secrets in types that cannot be printed by accident.
//!
//! Every token, password, client secret and JWT credential is a [`SecretString`]: its `Debug`
//! prints `[REDACTED]` and reading it takes an explicit `expose_secret()`. These helpers let
//! serde read and write such fields in the documents the broker stores.

pub use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`: how caller keys and permanent API tokens are recorded without keeping them.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// [`sha256`] as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha256(bytes))
}

/// `#[serde(with = "crate::secret::string")]` for a `SecretString` field.
pub mod string {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a secret (only into the secret documents themselves).
    pub fn serialize<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.expose_secret())
    }

    /// Reads a secret.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::from)
    }
}

/// `#[serde(with = "crate::secret::optional", default)]` for an `Option<SecretString>` field;
/// `null` and an empty string both read as `None` (RingCX sends `refreshToken: null`).
pub mod optional {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes an optional secret.
    pub fn serialize<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(v.expose_secret()),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional secret.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .filter(|v| !v.is_empty())
            .map(SecretString::from))
    }
}

/// Replaces every occurrence of the given secrets in `text`, for upstream error bodies that
/// might echo what we sent.
pub fn redact(text: &str, secrets: &[&SecretString]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let s = secret.expose_secret();
        if s.len() >= 4 {
            out = out.replace(s, "[REDACTED]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_every_copy() {
        let s = SecretString::from("tok-123456".to_owned());
        assert_eq!(
            redact("bad tok-123456 and tok-123456", &[&s]),
            "bad [REDACTED] and [REDACTED]"
        );
    }
}
