//! `connect-ringcx`: wires a tenant's RingCX account to the broker in one command. Using the
//! tenant's stored session, it creates an `OAUTH` external auth config (client credentials in the
//! body, `tokenUrl` = the broker's `/v1/oauth/token`) whose client is a new `token:read` caller.
//! Run again, it finds the config by `providerName` and changes nothing (or only a changed token
//! URL); `--rotate` issues a new key, updates the config, and only then removes the old key.

use broker::ringcx::{ApiPath, Method, VoiceRequest, VoiceResponse};
use broker::store::{SecretNames, SecretStore};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use api::App;
use api::auth::Scope;

use crate::callers::read_callers;
use crate::{NewCaller, OperatorError, add_caller, remove_caller};

/// What an operator asked for.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The tenant whose RingCX account gets the auth config.
    pub tenant: String,
    /// The broker's public base URL (Function URL or API Gateway), without a path.
    pub api_url: String,
    /// The RingCX account; by default the one the tenant's session belongs to.
    pub account: Option<String>,
    /// The auth config's name in RingCX.
    pub provider_name: String,
    /// Replace the client key even when the config is in place.
    pub rotate: bool,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The RingCX account the config is in.
    pub account: String,
    /// The auth config's id in RingCX.
    pub auth_config_id: String,
    /// Its name.
    pub provider_name: String,
    /// The caller id RingCX presents.
    pub client_id: String,
    /// Where RingCX fetches its token (`/v1/oauth/token`).
    pub token_url: String,
    /// What this run changed.
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// What `connect-ringcx` did.
pub enum Action {
    /// A new auth config and client key.
    Created,
    /// The config was in place and right.
    Unchanged,
    /// The config's token URL was corrected.
    TokenUrlUpdated,
    /// A new client key replaced the old one.
    Rotated,
}

/// Rows asked for per list page; RingCX may send fewer, so the list is paged until a short page.
const PAGE_ROWS: usize = 100;
/// Pages read at most (10,000 configs).
const MAX_PAGES: usize = 100;

/// The caller ids this command makes for one auth config start with this: the tenant and the
/// config's id, so leftovers of an interrupted run are recognised and other configs' keys are not.
fn caller_prefix(tenant: &str, auth_config_id: &str) -> String {
    let short: String = auth_config_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    format!("ringcx-{tenant}-{short}-")
}

fn token_url(api_url: &str) -> Result<String, OperatorError> {
    let url = url::Url::parse(api_url.trim())
        .map_err(|_| OperatorError::BadInput(format!("API_URL {api_url:?} is not a URL")))?;
    let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && local) {
        return Err(OperatorError::BadInput(
            "API_URL must be https (http only for 127.0.0.1 or localhost)".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(OperatorError::BadInput(
            "API_URL takes no query or fragment".into(),
        ));
    }
    Ok(format!(
        "{}/v1/oauth/token",
        url.as_str().trim_end_matches('/')
    ))
}

/// The RingCX calls `connect-ringcx` makes, with the tenant's token from the HTTP function's cache.
struct Admin<'a, S>(&'a App<S>);

impl<S: SecretStore + Clone + 'static> Admin<'_, S> {
    /// One RingCX call with the tenant's token; a 429 is waited out (a few times, briefly).
    async fn ringcx(
        &self,
        tenant: &str,
        request: VoiceRequest,
    ) -> Result<VoiceResponse, OperatorError> {
        for _ in 0..3 {
            let ringcx = &self.0.ringcx;
            let request = &request;
            let answer = self
                .0
                .with_token(tenant, |t| async move {
                    ringcx.voice(t.auth(), request.clone()).await
                })
                .await
                .map_err(|e| OperatorError::RingCx(e.message))?;
            if answer.status != 429 {
                return Ok(answer);
            }
            let wait = answer
                .retry_after
                .unwrap_or(std::time::Duration::from_secs(2))
                .min(std::time::Duration::from_secs(10));
            tokio::time::sleep(wait).await;
        }
        Err(OperatorError::RingCx(
            "RingCX kept rate-limiting the auth config API; try again in a minute".into(),
        ))
    }

    async fn ringcx_json(
        &self,
        tenant: &str,
        method: Method,
        path: &str,
        query: Option<String>,
        body: Option<Value>,
    ) -> Result<Value, OperatorError> {
        let path = ApiPath::new(path).map_err(|e| OperatorError::BadInput(e.to_string()))?;
        let mut request = VoiceRequest::new(method.clone(), path);
        request.query = query;
        if let Some(body) = body {
            request = request.with_body("application/json", body.to_string());
        }
        let answer = self.ringcx(tenant, request).await?;
        match answer.status {
            200..=299 if answer.body.is_empty() => Ok(Value::Null),
            200..=299 => serde_json::from_slice(&answer.body).map_err(|_| {
                OperatorError::RingCx(format!(
                    "RingCX answered {method} on the auth config API with something that is not JSON"
                ))
            }),
            403 => Err(OperatorError::RingCx(
                "RingCX refused: the tenant's RingCX user may not manage external auth configs (it needs an admin role on the account)".into(),
            )),
            404 => Err(OperatorError::RingCxNotFound(
                "RingCX does not know that account or auth config: check --account".into(),
            )),
            status => Err(OperatorError::RingCx(format!(
                "RingCX answered {status} to {method} on the auth config API"
            ))),
        }
    }

    /// Every auth config of the account, paged until a short page.
    async fn auth_configs(&self, tenant: &str, account: &str) -> Result<Vec<Value>, OperatorError> {
        let path = format!("v1/admin/accounts/{account}/external/authConfigs");
        let mut all: Vec<Value> = Vec::new();
        for page in 0..MAX_PAGES {
            let answer = self
                .ringcx_json(
                    tenant,
                    Method::GET,
                    &path,
                    Some(format!("page={page}&maxRows={PAGE_ROWS}")),
                    None,
                )
                .await?;
            let records = answer["records"].as_array().cloned().unwrap_or_default();
            let before = all.len();
            for r in records {
                if !all.iter().any(|a| a["authConfigId"] == r["authConfigId"]) {
                    all.push(r);
                }
            }
            // RingCX may cap a page below what was asked, so only an empty page, or one that
            // adds nothing new, ends the list.
            if all.len() == before {
                break;
            }
        }
        Ok(all)
    }
}

/// Runs `connect-ringcx`. `store` and `names` are where the callers secret lives.
pub async fn connect_ringcx<S: SecretStore + Clone + 'static>(
    app: &App<S>,
    store: &S,
    names: &SecretNames,
    request: &ConnectRequest,
) -> Result<Connected, OperatorError> {
    let tenant = request.tenant.as_str();
    let token_url = token_url(&request.api_url)?;
    if request.provider_name.trim().is_empty() {
        return Err(OperatorError::BadInput("the provider name is empty".into()));
    }
    let account = match &request.account {
        Some(a) => a.clone(),
        None => app
            .tokens
            .get(tenant, app.deadline())
            .await
            .map_err(|e| OperatorError::RingCx(e.message))?
            .account_id
            .ok_or_else(|| {
                OperatorError::BadInput(
                    "the tenant's session names no account: pass --account".into(),
                )
            })?,
    };
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OperatorError::BadInput(format!(
            "account {account:?} is not a RingCX account id (digits)"
        )));
    }
    let configs = Admin(app).auth_configs(tenant, &account).await?;
    let mut ours: Vec<&Value> = configs
        .iter()
        .filter(|c| {
            c["providerName"].as_str() == Some(request.provider_name.as_str())
                && c["authType"].as_str() == Some("OAUTH")
        })
        .collect();
    if ours.len() > 1 {
        return Err(OperatorError::BadInput(format!(
            "{} OAUTH auth configs are named {:?} in account {account}; delete the extras in RingCX first",
            ours.len(),
            request.provider_name
        )));
    }
    let base = format!("v1/admin/accounts/{account}/external/authConfigs");
    let existing = ours.pop().cloned();
    let connected = |id: &str, client_id: &str, action| Connected {
        account: account.clone(),
        auth_config_id: id.to_owned(),
        provider_name: request.provider_name.clone(),
        client_id: client_id.to_owned(),
        token_url: token_url.clone(),
        action,
    };
    if let Some(config) = &existing
        && !request.rotate
    {
        let id = config["authConfigId"].as_str().unwrap_or_default();
        let client_id = config["clientId"].as_str().unwrap_or_default();
        let callers = read_callers(store, &names.callers()).await?;
        if !callers.iter().any(|c| c["id"].as_str() == Some(client_id)) {
            return Err(OperatorError::BadInput(format!(
                "auth config {id} uses client {client_id:?}, which is not in the callers secret; run again with --rotate to issue a new key"
            )));
        }
        // A run whose answer from RingCX was lost may have left a second key: RingCX's is kept.
        remove_leftovers(store, names, tenant, id, client_id, None).await?;
        if config["tokenUrl"].as_str() == Some(token_url.as_str()) {
            return Ok(connected(id, client_id, Action::Unchanged));
        }
        Admin(app)
            .ringcx_json(
                tenant,
                Method::PATCH,
                &format!("{base}/{id}/oauth"),
                None,
                Some(json!({"tokenUrl": token_url})),
            )
            .await?;
        return Ok(connected(id, client_id, Action::TokenUrlUpdated));
    }
    let (method, id, action) = match &existing {
        Some(config) => (
            Method::PATCH,
            config["authConfigId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            Action::Rotated,
        ),
        None => (
            Method::POST,
            uuid::Uuid::new_v4().to_string(),
            Action::Created,
        ),
    };
    let replaced = existing
        .as_ref()
        .and_then(|c| c["clientId"].as_str())
        .map(str::to_owned);
    let client_id = new_caller_id(tenant, &id)?;
    let (key, _) = add_caller(
        store,
        names,
        NewCaller {
            id: client_id.clone(),
            tenant: tenant.to_owned(),
            scopes: vec![Scope::TokenRead],
            paths: None,
        },
    )
    .await?;
    let mut body = json!({
        "providerName": request.provider_name,
        "description": format!("RingCX broker, tenant {tenant}: tokens from {token_url}"),
        "clientId": client_id,
        "secret": key.expose_secret(),
        "tokenUrl": token_url,
        "grantType": "CLIENT_CREDENTIALS",
        "clientCredentialsSupplyIn": "BODY",
    });
    if action == Action::Rotated {
        // A rotation changes the client only; the admin's other settings stay.
        body = json!({"clientId": body["clientId"], "secret": body["secret"], "tokenUrl": body["tokenUrl"]});
    }
    let written = Admin(app)
        .ringcx_json(
            tenant,
            method,
            &format!("{base}/{id}/oauth"),
            None,
            Some(body),
        )
        .await;
    if let Err(e) = written {
        // The answer may be lost after RingCX applied the change: ask RingCX which client it has.
        let held = Admin(app)
            .ringcx_json(tenant, Method::GET, &format!("{base}/{id}"), None, None)
            .await;
        let holds_new =
            matches!(&held, Ok(c) if c["clientId"].as_str() == Some(client_id.as_str()));
        let holds_other = matches!(&held, Ok(_) | Err(OperatorError::RingCxNotFound(_)));
        if !holds_new && holds_other {
            // RingCX holds the old client or nothing: the new key must not stay valid.
            if let Err(cleanup) = remove_caller(store, names, &client_id).await {
                return Err(OperatorError::RingCx(format!(
                    "{e}; and the unused key {client_id} could not be removed ({cleanup}): run remove-caller --id {client_id}"
                )));
            }
            return Err(e);
        }
        if !holds_new {
            return Err(OperatorError::RingCx(format!(
                "{e}; RingCX may or may not have taken the new key and the config could not be read back: run connect-ringcx again, which keeps the key RingCX holds and removes the other"
            )));
        }
    }
    // Only now is the old key unused: remove it and any key an interrupted run left behind.
    remove_leftovers(store, names, tenant, &id, &client_id, replaced.as_deref()).await?;
    Ok(connected(&id, &client_id, action))
}

/// Removes the key a rotation replaced, and this config's keys other than the one RingCX holds.
async fn remove_leftovers(
    store: &impl SecretStore,
    names: &SecretNames,
    tenant: &str,
    auth_config_id: &str,
    keep: &str,
    replaced: Option<&str>,
) -> Result<(), OperatorError> {
    let prefix = caller_prefix(tenant, auth_config_id);
    for entry in read_callers(store, &names.callers()).await? {
        let Some(old) = entry["id"].as_str() else {
            continue;
        };
        let ours = old.starts_with(&prefix) || Some(old) == replaced;
        if old != keep && ours && entry["tenant"].as_str() == Some(tenant) {
            remove_caller(store, names, old).await?;
        }
    }
    Ok(())
}

fn new_caller_id(tenant: &str, auth_config_id: &str) -> Result<String, OperatorError> {
    let mut raw = [0u8; 4];
    getrandom::fill(&mut raw).map_err(|e| OperatorError::Random(e.to_string()))?;
    let suffix = broker::secret::hex(&raw);
    let id = format!("{}{suffix}", caller_prefix(tenant, auth_config_id));
    if id.len() > 64 {
        return Err(OperatorError::BadInput(
            "the tenant name is too long for a caller id".into(),
        ));
    }
    Ok(id)
}
