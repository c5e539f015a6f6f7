//! Paths the generic RingCX call may reach: under `/voice/api/` only, with nothing that a
//! server or proxy could normalise into somewhere else (`/api/auth/*` above all).

use super::RingCxError;

/// A validated path relative to `{ENGAGE_BASE_URL}/voice/api/`, e.g. `v1/admin/accounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath(String);

impl ApiPath {
    /// The path, or why it is refused.
    pub fn new(path: &str) -> Result<Self, RingCxError> {
        let refuse = |reason| {
            Err(RingCxError::InvalidPath {
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
            // Spaces too: older Spring path matching trims them, so `token%20` would be `token`.
            if !(0x21..0x7f).contains(&decoded) || b"./\\%;?#".contains(&decoded) {
                return refuse(
                    "encoded dots, slashes, backslashes, percents, spaces, controls and non-ASCII bytes are not allowed",
                );
            }
        }
        if path.split('/').any(|seg| seg == "." || seg == "..") {
            return refuse("'.' and '..' segments are not allowed");
        }
        Ok(Self(path.to_owned()))
    }

    /// The path as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as RingCX routes it: percent-escapes decoded. [`ApiPath::new`] admits escapes of
    /// plain printable ASCII only (no separators, dots or `%`), so decoding cannot change the
    /// segments and decoding twice changes nothing.
    pub fn decoded(&self) -> String {
        let bytes = self.0.as_bytes();
        let mut out = String::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%')
                .then(|| bytes.get(i + 1..i + 3))
                .flatten()
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match escaped {
                Some(b) => {
                    out.push(char::from(b));
                    i += 3;
                }
                None => {
                    out.push(char::from(bytes[i]));
                    i += 1;
                }
            }
        }
        out
    }

    /// The credential area this path falls in, if any: places that mint, list or reveal
    /// credentials, which the generic proxy never reaches whatever the caller's scopes.
    /// Compared without case and with escapes decoded, and a segment counts with any suffix
    /// after a dot (older Spring servers route `token.json` to `token`), so no spelling RingCX
    /// might route there gets through.
    pub fn credential_area(&self) -> Option<CredentialArea> {
        let decoded = self.decoded().to_ascii_lowercase();
        let segs: Vec<&str> = decoded.split('/').collect();
        let is = |i: usize, name: &str| {
            segs.get(i)
                .is_some_and(|s| s.split('.').next() == Some(name))
        };
        // Any API version: a later one may route the same controllers.
        let versioned = segs.first().is_some_and(|s| {
            s.strip_prefix('v')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if versioned && is(1, "admin") && is(2, "token") {
            Some(CredentialArea::ApiTokens)
        } else if versioned && is(1, "auth") {
            Some(CredentialArea::Login)
        } else if versioned
            && is(1, "admin")
            && is(2, "accounts")
            && is(4, "external")
            && is(5, "authconfigs")
        {
            Some(CredentialArea::AuthConfigs)
        } else if versioned && is(1, "admin") && is(2, "accounts") && is(4, "httpservicegroups") {
            Some(CredentialArea::HttpServices)
        } else {
            None
        }
    }
}

/// Where credentials live in RingCX's Voice API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialArea {
    /// `v1/admin/token...`: permanent API tokens (the broker's `/v1/api-tokens` manages them).
    ApiTokens,
    /// `v1/auth/...`: logins, password resets, token checks.
    Login,
    /// `v1/admin/accounts/{id}/external/authConfigs...`: auth configs hold client secrets
    /// (the broker's own among them; `connect-ringcx` manages that one).
    AuthConfigs,
    /// `v1/admin/accounts/{id}/httpServiceGroups...`: Remote HTTP Services say where RingCX sends
    /// an auth config's credentials (an OAUTH config's token among them) and hold header secrets.
    HttpServices,
}

impl CredentialArea {
    /// What the credential area is, for an error message.
    pub fn describe(self) -> &'static str {
        match self {
            CredentialArea::ApiTokens => {
                "permanent API tokens are managed through /v1/api-tokens with the api-tokens:admin scope, never through the proxy"
            }
            CredentialArea::Login => {
                "RingCX's login and password APIs are not reachable through the proxy"
            }
            CredentialArea::AuthConfigs => {
                "external auth configs hold client secrets and are not reachable through the proxy"
            }
            CredentialArea::HttpServices => {
                "Remote HTTP Services decide where RingCX sends credentials and are not reachable through the proxy"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_areas_are_found_however_spelled() {
        for (path, area) in [
            ("v1/admin/token", CredentialArea::ApiTokens),
            ("v1/admin/token/", CredentialArea::ApiTokens),
            ("v1/admin/token/aws80:x", CredentialArea::ApiTokens),
            ("V1/Admin/TOKEN", CredentialArea::ApiTokens),
            ("v1/admin/tok%65n", CredentialArea::ApiTokens),
            ("v1/%61dmin/token", CredentialArea::ApiTokens),
            ("v1/admin/token.json", CredentialArea::ApiTokens),
            ("v2/admin/token", CredentialArea::ApiTokens),
            ("v1/auth/login", CredentialArea::Login),
            ("v1/auth", CredentialArea::Login),
            (
                "v1/admin/accounts/1/external/authConfigs",
                CredentialArea::AuthConfigs,
            ),
            (
                "v1/admin/accounts/1/external/AUTHCONFIGS/x/oauth",
                CredentialArea::AuthConfigs,
            ),
            (
                "v1/admin/accounts/1/httpServiceGroups/2/httpServices",
                CredentialArea::HttpServices,
            ),
        ] {
            assert_eq!(
                ApiPath::new(path).unwrap().credential_area(),
                Some(area),
                "{path}"
            );
        }
        for path in [
            "v1/admin/accounts",
            "v1/admin/tokens-report",
            "v1/admin/accounts/1/campaigns/token",
            "v1/admin/users",
            "vx/admin/token",
        ] {
            assert_eq!(
                ApiPath::new(path).unwrap().credential_area(),
                None,
                "{path}"
            );
        }
    }

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
            "v1/admin/token%20",
            "v1/%20admin/token",
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
