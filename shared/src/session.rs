//! The session document the broker keeps in each slot of the ring
//! (`{prefix}{tenant}/session-{i}`).

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ringcx::RingCxSession;

crate::listed_enum! {
    /// How a session was obtained: the `obtainedBy` word the broker writes into a session document.
    /// The document keeps the word as text, so a hand-seeded session may carry any other.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub enum ObtainedBy {
        /// Renewed with the previous generation's refresh token.
        #[serde(rename = "refresh")]
        Refresh,
        /// RingEX JWT grant, then RingCX's exchange.
        #[serde(rename = "ringex-exchange")]
        RingExExchange,
        /// RingCX's username and password login (deprecated by RingCentral).
        #[serde(rename = "engage-login")]
        EngageLogin,
        /// A permanent API token from the credentials (never renewed).
        #[serde(rename = "api-token")]
        ApiToken,
    }
}

impl ObtainedBy {
    /// The word in the session document.
    pub fn as_str(self) -> &'static str {
        match self {
            ObtainedBy::Refresh => "refresh",
            ObtainedBy::RingExExchange => "ringex-exchange",
            ObtainedBy::EngageLogin => "engage-login",
            ObtainedBy::ApiToken => "api-token",
        }
    }
}

impl fmt::Display for ObtainedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One generation of a tenant's RingCX session. Fields this version does not know are kept and
/// written back, so a newer broker's additions survive an older one's renewal.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    /// The generation that was written.
    pub generation: u64,
    /// Absent in a session an administrator seeded with a refresh token only.
    #[serde(
        default,
        with = "crate::secret::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_token: Option<SecretString>,
    #[serde(default, with = "crate::secret::optional")]
    /// The single-use refresh token; `None` for a permanent token.
    pub refresh_token: Option<SecretString>,
    #[serde(default = "bearer")]
    /// `Bearer`, or `X-Auth-Token` for a permanent token.
    pub token_type: String,
    /// `None` reads as already expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// When it was obtained.
    pub obtained_at: Option<DateTime<Utc>>,
    /// An [`ObtainedBy`] word, or whatever seeded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtained_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The RingCX account the session acts in.
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The main account, when RingCX names one.
    pub main_account_id: Option<String>,
    /// When the tenant's forced renewals (a token RingCX refused before its time) happened in the
    /// last 24 h: carried from generation to generation, so every instance of either function
    /// sees one daily budget for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced_renewals: Vec<DateTime<Utc>>,
    /// The access token is a permanent API token (an `api-token` tenant): sent as
    /// `X-Auth-Token`, never renewed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permanent: bool,
    #[serde(flatten)]
    /// Fields this version does not know, written back as they were.
    pub extra: Map<String, Value>,
}

fn bearer() -> String {
    "Bearer".to_owned()
}

impl SessionState {
    /// The next generation's state from a fresh RingCX session; unknown fields of `previous`
    /// carry over, and so does the account when RingCX did not repeat it.
    pub fn next(
        previous: Option<&SessionState>,
        session: RingCxSession,
        obtained_by: ObtainedBy,
    ) -> Self {
        let (extra, account_id, main_account_id, forced_renewals) = match previous {
            Some(p) => (
                p.extra.clone(),
                p.account_id.clone(),
                p.main_account_id.clone(),
                p.forced_renewals.clone(),
            ),
            None => (Map::new(), None, None, Vec::new()),
        };
        Self {
            generation: previous.map_or(0, |p| p.generation) + 1,
            access_token: Some(session.access_token),
            refresh_token: session.refresh_token,
            token_type: session.token_type,
            access_token_expires_at: Some(session.expires_at),
            obtained_at: Some(session.obtained_at),
            obtained_by: Some(obtained_by.as_str().to_owned()),
            account_id: session.account_id.or(account_id),
            main_account_id: session.main_account_id.or(main_account_id),
            forced_renewals,
            permanent: false,
            extra,
        }
    }

    /// Forced renewals within the 24 h before `now`.
    pub fn recent_forced_renewals(&self, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let day_ago = now - chrono::Duration::hours(24);
        self.forced_renewals
            .iter()
            .copied()
            .filter(|t| *t > day_ago && *t <= now)
            .collect()
    }

    /// Seconds until the access token expires; negative once it has, `None` without one.
    pub fn seconds_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.access_token.as_ref()?;
        Some((self.access_token_expires_at? - now).num_seconds())
    }

    /// The access token, if it has more than `min_ttl_secs` left.
    pub fn usable_token(&self, now: DateTime<Utc>, min_ttl_secs: i64) -> Option<&SecretString> {
        (self.seconds_left(now)? > min_ttl_secs)
            .then_some(self.access_token.as_ref())
            .flatten()
    }
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionState")
            .field("generation", &self.generation)
            .field("has_access_token", &self.access_token.is_some())
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("obtained_by", &self.obtained_by)
            .field("account_id", &self.account_id)
            .field("forced_renewals", &self.forced_renewals.len())
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn obtained_by_words_are_the_serialized_ones() {
        for flow in ObtainedBy::ALL {
            assert_eq!(
                serde_json::to_value(flow).ok(),
                Some(Value::String(flow.as_str().to_owned()))
            );
        }
    }

    #[test]
    fn round_trips_and_keeps_unknown_fields() {
        let doc = r#"{"generation":42,"accessToken":"at-secret","refreshToken":"rt-secret",
            "tokenType":"Bearer","accessTokenExpiresAt":"2026-11-21T20:48:00Z",
            "obtainedAt":"2026-11-21T20:43:00Z","obtainedBy":"refresh","accountId":"333333",
            "mainAccountId":"333000","futureField":{"x":[1,2]}}"#;
        let state: SessionState = serde_json::from_str(doc).unwrap();
        assert_eq!(state.generation, 42);
        let back: Value = serde_json::to_value(&state).unwrap();
        let original: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(back, original);
        let shown = format!("{state:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("futureField"));
    }

    #[test]
    fn a_seeded_refresh_token_alone_is_a_valid_but_expired_session() {
        let state: SessionState =
            serde_json::from_str(r#"{"generation":0,"refreshToken":"rt"}"#).unwrap();
        assert_eq!(state.refresh_token.as_ref().unwrap().expose_secret(), "rt");
        assert_eq!(state.seconds_left(Utc::now()), None);
        assert!(state.usable_token(Utc::now(), 0).is_none());
    }
}
