//! What RingCX does with an external auth config when an IVR node or a Remote HTTP Service calls
//! out (`../shared/engage-docs/README.md`, "External auth configs"): an `OAUTH` config fetches a
//! token from `tokenUrl` with the client credentials where `clientCredentialsSupplyIn` says and
//! sends it as a Bearer token; a `JWT` config signs a fresh token per call and puts it in a header
//! (after `headerPrefix`) or a query parameter; `BASIC` sends username:password.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use super::Simulator;

impl Simulator {
    /// Every auth config of an account, secrets in clear.
    pub fn auth_configs(&self, account: &str) -> Vec<Value> {
        self.shared
            .world()
            .auth_configs
            .iter()
            .filter(|((a, _), _)| a == account)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Stores an auth config as an admin would have made it in the RingCX UI.
    pub fn put_auth_config(&self, account: &str, config: Value) {
        let id = config["authConfigId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.shared
            .world()
            .auth_configs
            .insert((account.to_owned(), id), config);
    }
}

fn field<'a>(config: &'a Value, name: &str) -> Result<&'a str, String> {
    config[name]
        .as_str()
        .ok_or_else(|| format!("the auth config has no {name}"))
}

/// The client-credentials request of an `OAUTH` config; returns the token endpoint's JSON answer
/// and status.
pub async fn fetch_token(http: &reqwest::Client, config: &Value) -> Result<(u16, Value), String> {
    let url = field(config, "tokenUrl")?;
    let (id, secret) = (field(config, "clientId")?, field(config, "secret")?);
    let mut params = vec![("grant_type", "client_credentials")];
    if let Some(scope) = config["scope"].as_str() {
        params.push(("scope", scope));
    }
    let request = match config["clientCredentialsSupplyIn"]
        .as_str()
        .unwrap_or("BODY")
    {
        "BODY" => {
            params.extend([("client_id", id), ("client_secret", secret)]);
            http.post(url).form(&params)
        }
        "QUERY_PARAM" => {
            params.extend([("client_id", id), ("client_secret", secret)]);
            http.post(url).query(&params)
        }
        "HEADER" => http.post(url).basic_auth(id, Some(secret)).form(&params),
        other => return Err(format!("unknown clientCredentialsSupplyIn {other}")),
    };
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// A token signed as a `JWT` config signs it, at `now`.
pub fn sign_jwt(config: &Value, now: DateTime<Utc>) -> Result<String, String> {
    let alg: Algorithm = field(config, "algorithm")?
        .parse()
        .map_err(|_| "unknown algorithm".to_owned())?;
    let mut claims: serde_json::Map<String, Value> =
        serde_json::from_str(field(config, "payload")?).map_err(|e| e.to_string())?;
    if config["isIncludeIssueAt"].as_bool().unwrap_or(false) {
        claims.insert("iat".into(), now.timestamp().into());
    }
    if let Some(secs) = config["expirationTime"].as_i64() {
        claims.insert("exp".into(), (now.timestamp() + secs).into());
    }
    let key = match (config["secret"].as_str(), config["privateKey"].as_str()) {
        (Some(secret), _) if config["isSecretEncoded"].as_bool().unwrap_or(false) => {
            EncodingKey::from_secret(&STANDARD.decode(secret).map_err(|e| e.to_string())?)
        }
        (Some(secret), _) => EncodingKey::from_secret(secret.as_bytes()),
        (None, Some(pem)) => {
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?
        }
        (None, None) => return Err("the auth config has neither secret nor privateKey".into()),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).map_err(|e| e.to_string())
}

/// A call out to `url` authenticated as `config` says, at `now` (for JWTs).
pub async fn call_out(
    http: &reqwest::Client,
    config: &Value,
    method: reqwest::Method,
    url: &str,
    now: DateTime<Utc>,
) -> Result<reqwest::Response, String> {
    let request = http.request(method, url);
    let request = match field(config, "authType")? {
        "OAUTH" => {
            let (status, answer) = fetch_token(http, config).await?;
            let token = answer["access_token"]
                .as_str()
                .ok_or_else(|| format!("the token endpoint answered {status}: {answer}"))?;
            request.bearer_auth(token)
        }
        "JWT" => {
            let token = sign_jwt(config, now)?;
            match field(config, "addTokenTo")? {
                "QUERY_PARAM" => request.query(&[(field(config, "queryParamName")?, token)]),
                _ => {
                    let prefix = config["headerPrefix"].as_str().unwrap_or("");
                    request.header("Authorization", format!("{prefix}{token}"))
                }
            }
        }
        "BASIC" => request.basic_auth(field(config, "username")?, Some(field(config, "password")?)),
        other => return Err(format!("auth type {other} is not simulated")),
    };
    request.send().await.map_err(|e| e.to_string())
}
