//! Getting a RingCX session: the RingEX JWT grant and exchange, the deprecated RingCX password
//! login, and the refresh that hands back a new refresh token.

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::transport::{Endpoint, join, unexpected};
use super::{PlatformToken, RingCxClient, RingCxError, RingCxSession, Service};
use crate::credentials::{EngageLoginCredentials, RingExJwtCredentials};

const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl RingCxClient {
    /// RingEX JWT grant: `POST {platform}/restapi/oauth/token` with Basic client credentials.
    pub async fn ringex_jwt_token(
        &self,
        creds: &RingExJwtCredentials,
    ) -> Result<PlatformToken, RingCxError> {
        let base = match creds.platform_url.as_deref() {
            Some(url) => Url::parse(url).map_err(|e| {
                RingCxError::Build(format!(
                    "the credentials' platformUrl is not a URL ({e}): fix the credentials secret"
                ))
            })?,
            None => self.platform.clone(),
        };
        let request = self
            .http
            .post(join(&base, &["restapi", "oauth", "token"]))
            .basic_auth(&creds.client_id, Some(creds.client_secret.expose_secret()))
            .form(&[
                ("grant_type", JWT_GRANT),
                ("assertion", creds.jwt.expose_secret()),
            ]);
        let sent = [&creds.client_secret, &creds.jwt];
        let raw = self
            .call(Service::Platform, Endpoint::PlatformToken, request, &sent)
            .await?;
        serde_json::from_slice(&raw.body)
            .map_err(|e| unexpected(Service::Platform, &raw, "an OAuth token", &e))
    }

    /// Exchanges a RingCentral access token for a RingCX session, asking for a refresh token.
    /// RingCX allows 5 of these a minute.
    pub async fn exchange(
        &self,
        rc_access_token: &SecretString,
    ) -> Result<RingCxSession, RingCxError> {
        let mut url = join(&self.ringcx, &["api", "auth", "login", "rc", "accesstoken"]);
        url.set_query(Some("includeRefresh=true"));
        let request = self.http.post(url).form(&[
            ("rcAccessToken", rc_access_token.expose_secret()),
            ("rcTokenType", "Bearer"),
        ]);
        self.session(Endpoint::Exchange, request, &[rc_access_token])
            .await
    }

    /// The full RingEX flow: JWT grant, then exchange.
    pub async fn login_ringex(
        &self,
        creds: &RingExJwtCredentials,
    ) -> Result<RingCxSession, RingCxError> {
        let platform = self.ringex_jwt_token(creds).await?;
        self.exchange(&platform.access_token).await
    }

    /// engage-login: RingCX's username, password and platform id login. Deprecated by RingCentral;
    /// the parameters go in a form body (the server reads them as request parameters either way)
    /// so the password never sits in a URL that proxies or logs could record.
    pub async fn login_engage(
        &self,
        creds: &EngageLoginCredentials,
    ) -> Result<RingCxSession, RingCxError> {
        tracing::warn!(
            flow = "engage-login",
            "using the deprecated RingCX admin login; move this tenant to a RingEX JWT credential"
        );
        let mut form = vec![
            ("username", creds.username.as_str()),
            ("password", creds.password.expose_secret()),
        ];
        if let Some(platform_id) = creds.platform_id.as_deref() {
            form.push(("platformId", platform_id));
        }
        let request = self
            .http
            .post(join(&self.ringcx, &["api", "auth", "login", "admin"]))
            .form(&form);
        self.session(Endpoint::PasswordLogin, request, &[&creds.password])
            .await
    }

    /// Refreshes a session. The answer carries a NEW refresh token; the one sent must be treated
    /// as spent from the moment this call succeeds.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
    ) -> Result<RingCxSession, RingCxError> {
        let request = self
            .http
            .post(join(&self.ringcx, &["api", "auth", "token", "refresh"]))
            .form(&[
                ("refresh_token", refresh_token.expose_secret()),
                ("rcTokenType", "Bearer"),
            ]);
        self.session(Endpoint::Refresh, request, &[refresh_token])
            .await
    }
}
