//! `hook add`, `hook list`, `hook remove`, `hook test`: the `{prefix}hooks` document, checked
//! exactly as the functions will read it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker::store::{SecretNames, SecretStore, upsert};
use secrecy::{ExposeSecret, SecretString};

use crate::OperatorError;
use crate::document::{read_array, remove_entries};

/// A hook as `hook list` shows it: never a secret.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookSummary {
    /// Its name (`/v1/hooks/{name}`).
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its verification scheme.
    pub scheme: String,
    /// How many signing secrets it has (several during a rotation).
    pub secrets: usize,
    /// Its RingCX call's method and path template.
    pub request: String,
    /// `serving`, or why the functions refuse it.
    pub status: String,
}

/// A new signing secret for `scheme`: `whsec_` and 24 random bytes in base64 for Standard
/// Webhooks (its spec's format), `whsec_` and 32 URL-safe random bytes for Stripe-style senders.
pub fn hook_secret(scheme: &str) -> Result<SecretString, OperatorError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| OperatorError::Random(e.to_string()))?;
    match scheme {
        "standard-webhooks" => Ok(SecretString::from(format!(
            "whsec_{}",
            STANDARD.encode(&raw[..24])
        ))),
        "stripe" | "hmac-sha256" => {
            Ok(api::auth::random_secret("whsec_")
                .map_err(|e| OperatorError::Random(e.to_string()))?)
        }
        other => Err(OperatorError::BadInput(format!(
            "the {other} scheme has no secret to generate (caller hooks use caller keys)"
        ))),
    }
}

async fn read_hooks(
    store: &impl SecretStore,
    name: &str,
) -> Result<Vec<serde_json::Value>, OperatorError> {
    read_array(store, name).await?.ok_or_else(|| {
        OperatorError::BadInput(format!(
            "the hooks secret {name} is not a JSON array of hooks; fix or delete it first"
        ))
    })
}

/// Adds (or with `replace`, replaces) a hook entry after checking it exactly as the functions
/// will. With `generate`, a new signing secret goes into the entry and is returned, to show once.
pub async fn add_hook(
    store: &impl SecretStore,
    names: &SecretNames,
    tenants: &[String],
    mut entry: serde_json::Value,
    generate: bool,
    replace: bool,
) -> Result<Option<SecretString>, OperatorError> {
    let secret = if generate {
        let scheme = entry["verify"]["scheme"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let secret = hook_secret(&scheme)?;
        entry["verify"]["secrets"] = serde_json::json!([secret.expose_secret()]);
        Some(secret)
    } else {
        None
    };
    let parsed: broker::hooks::HookEntry = serde_json::from_value(entry.clone()).map_err(|e| {
        OperatorError::BadInput(format!(
            "the hook entry does not read: {}",
            broker::hooks::serde_error(&e)
        ))
    })?;
    broker::hooks::Hook::from_entry(&parsed, tenants).map_err(|why| {
        OperatorError::BadInput(format!("hook {:?} would be refused: {why}", parsed.name))
    })?;
    let name = names.hooks();
    let mut entries = read_hooks(store, &name).await?;
    let taken = entries
        .iter()
        .position(|e| e["name"].as_str() == Some(parsed.name.as_str()));
    match (taken, replace) {
        (Some(i), true) => entries[i] = entry,
        (Some(_), false) => {
            return Err(OperatorError::BadInput(format!(
                "a hook named {:?} exists; remove it first or pass --replace",
                parsed.name
            )));
        }
        (None, _) => entries.push(entry),
    }
    upsert(
        store,
        &name,
        &SecretString::from(serde_json::Value::Array(entries).to_string()),
    )
    .await?;
    Ok(secret)
}

/// Every entry of the hooks document, with what the functions make of it.
pub async fn list_hooks(
    store: &impl SecretStore,
    names: &SecretNames,
    tenants: &[String],
) -> Result<Vec<HookSummary>, OperatorError> {
    let entries = read_hooks(store, &names.hooks()).await?;
    let raw = serde_json::Value::Array(entries.clone()).to_string();
    let (_, refused) = broker::hooks::parse_hooks(&raw, tenants);
    Ok(entries
        .iter()
        .enumerate()
        .map(|(i, e)| HookSummary {
            name: e["name"].as_str().unwrap_or("?").to_owned(),
            tenant: e["tenant"].as_str().unwrap_or("?").to_owned(),
            scheme: e["verify"]["scheme"].as_str().unwrap_or("?").to_owned(),
            secrets: e["verify"]["secrets"].as_array().map_or(0, Vec::len),
            request: format!(
                "{} {}",
                e["request"]["method"].as_str().unwrap_or("?"),
                e["request"]["path"].as_str().unwrap_or("?")
            ),
            status: refused.iter().find(|r| r.index == i).map_or_else(
                || "serving".to_owned(),
                |r| format!("refused: {}", r.reason),
            ),
        })
        .collect())
}

/// Removes the hook called `hook`; returns how many entries had that name.
pub async fn remove_hook(
    store: &impl SecretStore,
    names: &SecretNames,
    hook: &str,
) -> Result<usize, OperatorError> {
    let name = names.hooks();
    let entries = read_hooks(store, &name).await?;
    remove_entries(store, &name, entries, "name", hook).await
}

/// The RingCX request `payload` would make through hook `hook`, rendered as the HTTP function
/// renders it (the tenant's account from its ring) but verified against nothing and sent nowhere.
pub async fn test_hook<S: SecretStore + Clone>(
    store: &S,
    config: &broker::config::Config,
    hook: &str,
    payload: &[u8],
    content_type: &str,
    headers: &broker::hooks::Headers,
    clock: broker::clock::SharedClock,
) -> Result<broker::hooks::Rendered, OperatorError> {
    let names = config.names();
    let raw = serde_json::Value::Array(read_hooks(store, &names.hooks()).await?).to_string();
    let (set, refused) = broker::hooks::parse_hooks(&raw, &config.tenants);
    let found = set.get(hook).ok_or_else(|| {
        OperatorError::BadInput(
            match refused.iter().find(|r| r.name.as_deref() == Some(hook)) {
                Some(r) => format!("hook {hook:?} is refused by the functions: {}", r.reason),
                None => format!("no hook {hook:?} in {}", names.hooks()),
            },
        )
    })?;
    let ring = broker::store::SessionRing::new(store.clone(), names, config.session_slots, clock);
    let account_id = ring
        .read(&found.tenant)
        .await?
        .newest
        .and_then(|s| s.account_id);
    let query = std::collections::BTreeMap::new();
    let body = payload;
    let payload = api::hooks::payload_of(content_type, body)
        .map_err(|e| OperatorError::BadInput(e.message))?;
    let inbound = broker::hooks::Inbound {
        payload: &payload,
        headers,
        query: &query,
        raw_body: body,
        account_id: account_id.as_deref(),
    };
    found
        .render(&inbound)
        .map_err(|e| OperatorError::BadInput(format!("the payload cannot fill the hook: {e}")))
}
