//! RingCX answers, read tolerantly: the real API adds fields, sends ids as numbers or strings,
//! `refreshToken: null`, and has printed token lists in more than one shape.

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::jwt;

/// Lifetime assumed when the access token's `exp` cannot be read (RingCX documents 5 minutes).
pub const ASSUMED_ACCESS_TOKEN_LIFETIME: Duration = Duration::seconds(300);

/// How a session's expiry was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpirySource {
    /// `exp - iat` of the access token, counted from our send time (immune to clock skew).
    JwtLifetime,
    /// The access token's `exp` claim read against our clock (the token has no usable `iat`).
    JwtExp,
    /// `sent + 300 s`, because the token's claims gave no believable lifetime.
    Assumed,
}

/// A RingCX session as returned by login, exchange or refresh.
#[derive(Debug, Clone)]
pub struct RingCxSession {
    /// The RingCX access token.
    pub access_token: SecretString,
    /// `None` when RingCX did not issue one (an exchange without `includeRefresh=true`).
    pub refresh_token: Option<SecretString>,
    /// `Bearer`, as RingCX says.
    pub token_type: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// Whether the expiry was read from the token or assumed.
    pub expiry_source: ExpirySource,
    /// When the call that obtained it was sent.
    pub obtained_at: DateTime<Utc>,
    /// The first agent's account, the one most calls are made against.
    pub account_id: Option<String>,
    /// The main account, when RingCX names one.
    pub main_account_id: Option<String>,
}

/// Why an answer to login, exchange or refresh could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionAnswerError {
    NotJson(String),
    NotAnObject,
    NoAccessToken,
    BadRefreshToken,
}

impl SessionAnswerError {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::NotJson(position) => format!("not JSON ({position})"),
            Self::NotAnObject => "JSON, but not an object".to_owned(),
            Self::NoAccessToken => "accessToken is missing, empty or not a string".to_owned(),
            Self::BadRefreshToken => "refreshToken is neither a string nor null".to_owned(),
        }
    }
}

/// Reads RingCX's `AccessTokenUserDetails`. Only the two tokens are read strictly: a refresh
/// answer carries the only copy of a new refresh token (the old one is already spent), so no
/// optional field of an unexpected type, shape or size may cost it.
pub(crate) fn session_from_answer(
    body: &[u8],
    sent_at: DateTime<Utc>,
    obtained_at: DateTime<Utc>,
) -> Result<RingCxSession, SessionAnswerError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        SessionAnswerError::NotJson(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(SessionAnswerError::NotAnObject);
    };
    let access_token = match map.get("accessToken") {
        Some(Value::String(s)) if !s.is_empty() => SecretString::from(s.clone()),
        _ => return Err(SessionAnswerError::NoAccessToken),
    };
    let refresh_token = match map.get("refreshToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(SecretString::from(s.clone())),
        Some(_) => return Err(SessionAnswerError::BadRefreshToken),
    };
    let (lifetime, expiry_source) = {
        use secrecy::ExposeSecret;
        match jwt::lifetime(access_token.expose_secret(), sent_at) {
            Some((d, jwt::LifetimeSource::IssuedLifetime)) => (d, ExpirySource::JwtLifetime),
            Some((d, jwt::LifetimeSource::ExpAgainstOurClock)) => (d, ExpirySource::JwtExp),
            None => (ASSUMED_ACCESS_TOKEN_LIFETIME, ExpirySource::Assumed),
        }
    };
    let account_id = match map.get("agentDetails") {
        Some(Value::Array(agents)) => agents.iter().find_map(|a| lenient_id(a.get("accountId")?)),
        _ => None,
    };
    Ok(RingCxSession {
        access_token,
        refresh_token,
        token_type: map
            .get("tokenType")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 32)
            .unwrap_or("Bearer")
            .to_owned(),
        expires_at: sent_at + lifetime,
        expiry_source,
        obtained_at,
        account_id,
        main_account_id: map.get("mainAccountId").and_then(lenient_id),
    })
}

/// An id as RingCX sends it (string or number); anything else is ignored.
fn lenient_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= 64 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A RingCentral platform access token (about an hour long), only ever used for the exchange.
#[derive(Debug, Deserialize)]
pub struct PlatformToken {
    #[serde(with = "crate::secret::string")]
    /// The RingCentral platform access token.
    pub access_token: SecretString,
    #[serde(default)]
    /// `bearer`, if the platform said.
    pub token_type: Option<String>,
    #[serde(default)]
    /// Seconds it lives, if the platform said.
    pub expires_in: Option<u64>,
}

/// A RingCX account (`GET /voice/api/v1/admin/accounts`); fields the broker does not use are kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    #[serde(deserialize_with = "required_id_string")]
    /// RingCX's account id.
    pub account_id: String,
    #[serde(default)]
    /// The account's name.
    pub account_name: Option<String>,
    #[serde(flatten)]
    /// Every other field, kept as RingCX sent it.
    pub other: Map<String, Value>,
}

/// A RingCX user (`GET /voice/api/v1/admin/users`); fields the broker does not use are kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default, deserialize_with = "id_string")]
    /// RingCX's user id.
    pub user_id: Option<String>,
    #[serde(default)]
    /// The user's login name.
    pub user_name: Option<String>,
    #[serde(default)]
    /// Whether the user is enabled.
    pub enabled: Option<bool>,
    #[serde(flatten)]
    /// Every other field, kept as RingCX sent it.
    pub other: Map<String, Value>,
}

/// Reads an id that RingCX sends as a string in one place and a number in another.
fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn required_id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    id_string(d)?.ok_or_else(|| serde::de::Error::custom("id is neither a string nor a number"))
}

/// A created permanent token: documented as `text/plain`, seen quoted as a JSON string too.
pub(crate) fn parse_created_token(body: &str) -> Option<SecretString> {
    let trimmed = body.trim();
    let token = if trimmed.starts_with('"') {
        serde_json::from_str::<String>(trimmed).ok()?
    } else {
        trimmed.to_owned()
    };
    valid_token(&token).then(|| SecretString::from(token))
}

/// A token list: a JSON array of strings, or the brace-set `{ "a", "b" }` of the old docs.
pub(crate) fn parse_token_list(body: &str) -> Option<Vec<SecretString>> {
    let trimmed = body.trim();
    let tokens: Vec<String> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).ok()?
    } else {
        let inner = trimmed.strip_prefix('{')?.strip_suffix('}')?;
        let mut out = Vec::new();
        for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            out.push(serde_json::from_str::<String>(item).ok()?);
        }
        out
    };
    tokens
        .into_iter()
        .map(|t| valid_token(&t).then(|| SecretString::from(t)))
        .collect()
}

fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 4096
        && !token.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A delete answered `200 true`, `200` with an empty body, or `204`. `Some(false)`: RingCX said no.
pub(crate) fn parse_delete_answer(status: u16, body: &str) -> Option<bool> {
    match (status, body.trim().trim_matches('"')) {
        (204, _) | (200, "") => Some(true),
        (200, "true") => Some(true),
        (200, "false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn exposed(v: &[SecretString]) -> Vec<&str> {
        v.iter().map(|s| s.expose_secret()).collect()
    }

    #[test]
    fn created_token_as_text_or_json_string() {
        for body in ["aws80:c235", "\"aws80:c235\"", " aws80:c235\n"] {
            let token = parse_created_token(body).map(|t| t.expose_secret().to_owned());
            assert_eq!(token.as_deref(), Some("aws80:c235"), "{body}");
        }
        assert!(parse_created_token("").is_none());
        assert!(parse_created_token("<html>oops</html> page").is_none());
        assert!(parse_created_token("\"unterminated").is_none());
    }

    #[test]
    fn token_list_as_array_or_brace_set() {
        let array = parse_token_list(r#"["aws80:a","aws80:b"]"#).unwrap();
        assert_eq!(exposed(&array), ["aws80:a", "aws80:b"]);
        let braces = parse_token_list("{\n  \"aws80:a\",\n  \"aws80:b\"\n}").unwrap();
        assert_eq!(exposed(&braces), ["aws80:a", "aws80:b"]);
        assert!(parse_token_list("[]").unwrap().is_empty());
        assert!(parse_token_list("{}").unwrap().is_empty());
        assert!(parse_token_list("{\"a\": 1}").is_none());
        assert!(parse_token_list("[1,2]").is_none());
        assert!(parse_token_list("nonsense").is_none());
    }

    #[test]
    fn delete_answers() {
        assert_eq!(parse_delete_answer(204, ""), Some(true));
        assert_eq!(parse_delete_answer(200, "true"), Some(true));
        assert_eq!(parse_delete_answer(200, "\"true\""), Some(true));
        assert_eq!(parse_delete_answer(200, "false"), Some(false));
        assert_eq!(parse_delete_answer(200, "maybe"), None);
    }

    #[test]
    fn session_tolerates_nulls_numbers_and_unknown_fields() {
        let body = r#"{"accessToken":"opaque","refreshToken":null,"tokenType":null,
            "mainAccountId":12,"agentDetails":[{"accountId":333333,"x":1}],"newField":{"a":[]}}"#;
        let now = Utc::now();
        let session = session_from_answer(body.as_bytes(), now, now).unwrap();
        assert!(session.refresh_token.is_none());
        assert_eq!(session.token_type, "Bearer");
        assert_eq!(session.account_id.as_deref(), Some("333333"));
        assert_eq!(session.main_account_id.as_deref(), Some("12"));
        assert_eq!(session.expiry_source, ExpirySource::Assumed);
        assert_eq!(session.expires_at, now + ASSUMED_ACCESS_TOKEN_LIFETIME);
    }

    #[test]
    fn optional_fields_of_any_shape_never_cost_the_refresh_token() {
        let now = Utc::now();
        for odd in [
            r#""agentDetails":{"accountId":1}"#,
            r#""agentDetails":"none""#,
            r#""agentDetails":[1,null,"x"]"#,
            r#""mainAccountId":{"id":1}"#,
            r#""tokenType":42"#,
            r#""adminId":[["deep"]]"#,
        ] {
            let body = format!(r#"{{"accessToken":"at","refreshToken":"rt-new",{odd}}}"#);
            let session = session_from_answer(body.as_bytes(), now, now)
                .unwrap_or_else(|e| panic!("{odd}: {e:?}"));
            assert_eq!(session.refresh_token.unwrap().expose_secret(), "rt-new");
        }
    }

    #[test]
    fn answers_without_usable_tokens_are_refused_precisely() {
        let now = Utc::now();
        let parse = |b: &str| session_from_answer(b.as_bytes(), now, now).map(|_| ());
        assert_eq!(
            parse(r#"{"accessToken":""}"#),
            Err(SessionAnswerError::NoAccessToken)
        );
        assert_eq!(
            parse(r#"{"accessToken":7}"#),
            Err(SessionAnswerError::NoAccessToken)
        );
        assert_eq!(parse("[]"), Err(SessionAnswerError::NotAnObject));
        assert_eq!(
            parse(r#"{"accessToken":"a","refreshToken":5}"#),
            Err(SessionAnswerError::BadRefreshToken)
        );
        assert!(matches!(
            parse("<html>"),
            Err(SessionAnswerError::NotJson(_))
        ));
    }
}
