//! RingCX permanent API tokens of the authenticated user: create, list, revoke.

use secrecy::{ExposeSecret, SecretString};

use super::transport::{Endpoint, Raw, describe_body, join};
use super::{Method, RingCxClient, RingCxError, Service, VoiceAuth};

impl RingCxClient {
    /// Creates a permanent API token for the authenticated user; RingCX shows it only this once.
    pub async fn create_api_token(&self, auth: VoiceAuth<'_>) -> Result<SecretString, RingCxError> {
        let raw = self.permanent_token_call(Method::POST, None, auth).await?;
        let text = String::from_utf8_lossy(&raw.body);
        super::model::parse_created_token(&text).ok_or_else(|| RingCxError::UnexpectedBody {
            service: Service::RingCx,
            status: raw.status.as_u16(),
            expected: "a token (text or a JSON string)",
            detail: describe_body(&raw),
        })
    }

    /// Lists the authenticated user's permanent API tokens.
    pub async fn list_api_tokens(
        &self,
        auth: VoiceAuth<'_>,
    ) -> Result<Vec<SecretString>, RingCxError> {
        let raw = self.permanent_token_call(Method::GET, None, auth).await?;
        let text = String::from_utf8_lossy(&raw.body);
        super::model::parse_token_list(&text).ok_or_else(|| RingCxError::UnexpectedBody {
            service: Service::RingCx,
            status: raw.status.as_u16(),
            expected: "a token list (a JSON array or a brace-set of strings)",
            detail: describe_body(&raw),
        })
    }

    /// Revokes a permanent API token.
    pub async fn delete_api_token(
        &self,
        auth: VoiceAuth<'_>,
        token: &SecretString,
    ) -> Result<(), RingCxError> {
        let raw = self
            .permanent_token_call(Method::DELETE, Some(token), auth)
            .await?;
        let text = String::from_utf8_lossy(&raw.body);
        match super::model::parse_delete_answer(raw.status.as_u16(), &text) {
            Some(true) => Ok(()),
            Some(false) => Err(RingCxError::NotFound {
                detail: "RingCX answered false: no such token for this user".to_owned(),
            }),
            None => Err(RingCxError::UnexpectedBody {
                service: Service::RingCx,
                status: raw.status.as_u16(),
                expected: "`true` or an empty 204",
                detail: describe_body(&raw),
            }),
        }
    }

    async fn permanent_token_call(
        &self,
        method: Method,
        token: Option<&SecretString>,
        auth: VoiceAuth<'_>,
    ) -> Result<Raw, RingCxError> {
        let mut url = join(&self.ringcx, &["voice", "api", "v1", "admin", "token"]);
        if let Some(token) = token
            && let Ok(mut segments) = url.path_segments_mut()
        {
            segments.push(token.expose_secret());
        }
        let request = self.authed(self.http.request(method, url), auth);
        let mut sent = vec![auth.secret()];
        sent.extend(token);
        self.call(Service::RingCx, Endpoint::Voice, request, &sent)
            .await
    }
}
