//! Paths the generic RingCX call may reach: under `/voice/api/` only, with nothing that a
//! server or proxy could normalise into somewhere else (`/api/auth/*` above all).

use super::EngageError;

/// A validated path relative to `{ENGAGE_BASE_URL}/voice/api/`, e.g. `v1/admin/accounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath(String);

impl ApiPath {
    pub fn new(path: &str) -> Result<Self, EngageError> {
        let refuse = |reason| {
            Err(EngageError::InvalidPath {
                path: path.chars().take(200).collect(),
                reason,
            })
        };
        if path.is_empty() {
            return refuse("the path is empty");
        }
        if path.len() > 2048 {
            return refuse("the path is longer than 2048 bytes");
        }
        if path.starts_with('/') || path.contains("//") {
            return refuse("empty path segments (doubled slashes) are not allowed");
        }
        if path.contains('\\') {
            return refuse("backslashes are not allowed");
        }
        if path
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#')
        {
            return refuse("control characters, spaces, '?' and '#' are not allowed in the path");
        }
        if !path.is_ascii() {
            return refuse(
                "non-ASCII characters must be percent-encoded (and encoded ones are refused)",
            );
        }
        if path.contains(';') {
            return refuse("';' is not allowed (Java servers read `..;` as `..`)");
        }
        // Percent-escapes may only encode harmless ASCII: anything a server could decode into a
        // separator, a dot, an escape, a control character or a multi-byte sequence is refused.
        let bytes = path.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b != b'%' {
                continue;
            }
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let Some(decoded) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return refuse("a '%' must start a two-digit escape");
            };
            if !(0x20..0x7f).contains(&decoded) || b"./\\%;?#".contains(&decoded) {
                return refuse(
                    "encoded dots, slashes, backslashes, percents, controls and non-ASCII bytes are not allowed",
                );
            }
        }
        if path.split('/').any(|seg| seg == "." || seg == "..") {
            return refuse("'.' and '..' segments are not allowed");
        }
        Ok(Self(path.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass() {
        for ok in [
            "v1/admin/accounts",
            "v1/admin/accounts/333/campaigns",
            "v1/admin/token/aws80:x-y",
        ] {
            assert_eq!(ApiPath::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn traversal_and_smuggling_are_refused() {
        for bad in [
            "",
            "/v1",
            "v1//admin",
            "../api/auth/login",
            "v1/../../api/auth",
            "v1/./x",
            "v1/%2e%2e/api",
            "v1/%2E%2E/api",
            "v1%2fadmin",
            "v1%2Fadmin",
            "v1\\admin",
            "v1/%5c..",
            "v1/%252e%252e/x",
            "v1/a%00b",
            "v1/a b",
            "v1/a?x=1",
            "v1/a#f",
            "v1/a\nb",
            "..",
            "v1/..",
        ] {
            assert!(ApiPath::new(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
