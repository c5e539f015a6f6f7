//! Login material for a tenant: the `{prefix}{tenant}/credentials` secret, written by an
//! administrator. It is what lets the broker recover when a refresh token is lost.

use secrecy::SecretString;
use serde::Deserialize;

use crate::session::ObtainedBy;

/// One of the two documented ways to obtain a RingCX session from scratch.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum Credentials {
    /// RingEX JWT credential -> RingCentral access token -> RingCX exchange (the recommended flow).
    #[serde(rename = "ringex-jwt")]
    RingExJwt(RingExJwtCredentials),
    /// Username, password and platform id against RingCX directly (deprecated by RingCentral).
    #[serde(rename = "engage-login")]
    EngageLogin(EngageLoginCredentials),
    /// A permanent API token alone, for accounts that cannot use the RingEX flow: sent as
    /// `X-Auth-Token`, never renewed, checked by the refresher on every run.
    #[serde(rename = "api-token")]
    ApiToken(ApiTokenCredentials),
}

impl Credentials {
    /// The `obtainedBy` word for sessions born from these credentials.
    pub fn flow(&self) -> ObtainedBy {
        match self {
            Credentials::RingExJwt(_) => ObtainedBy::RingExExchange,
            Credentials::EngageLogin(_) => ObtainedBy::EngageLogin,
            Credentials::ApiToken(_) => ObtainedBy::ApiToken,
        }
    }
}

/// A permanent API token (`aws80:...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenCredentials {
    #[serde(with = "crate::secret::string")]
    /// The permanent API token.
    pub token: SecretString,
}

/// A RingCentral app's client credentials and a user's JWT credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingExJwtCredentials {
    /// The RingCentral app's client id.
    pub client_id: String,
    #[serde(with = "crate::secret::string")]
    /// The RingCentral app's client secret.
    pub client_secret: SecretString,
    #[serde(with = "crate::secret::string")]
    /// The RingEX JWT credential.
    pub jwt: SecretString,
    /// Overrides `RINGCENTRAL_SERVER_URL` for this tenant.
    #[serde(default)]
    pub platform_url: Option<String>,
}

/// An engage-login: RingCX's username and password login.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngageLoginCredentials {
    /// The RingCX user name.
    pub username: String,
    #[serde(with = "crate::secret::string")]
    /// The user's password.
    pub password: SecretString,
    #[serde(default)]
    /// The RingCX platform id, when the account needs one.
    pub platform_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn reads_both_documented_shapes_and_ignores_extra_fields() {
        let jwt: Credentials = serde_json::from_str(
            r#"{"type":"ringex-jwt","clientId":"cid","clientSecret":"cs","jwt":"j.w.t",
                "platformUrl":"https://platform.ringcentral.com","note":"rotated 2026-11"}"#,
        )
        .unwrap();
        let Credentials::RingExJwt(c) = jwt else {
            panic!("wrong variant")
        };
        assert_eq!(c.jwt.expose_secret(), "j.w.t");
        let login: Credentials = serde_json::from_str(
            r#"{"type":"engage-login","username":"a@b.c","password":"pw","platformId":"p1"}"#,
        )
        .unwrap();
        assert_eq!(login.flow(), ObtainedBy::EngageLogin);
    }

    #[test]
    fn debug_hides_every_secret_field() {
        let c: Credentials = serde_json::from_str(
            r#"{"type":"ringex-jwt","clientId":"cid","clientSecret":"very-secret-cs","jwt":"very-secret-jwt"}"#,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        let c: Credentials = serde_json::from_str(
            r#"{"type":"engage-login","username":"u","password":"very-secret-pw"}"#,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
