//! What the `operator` binary does (`make seed-credentials`, `add-caller`, `make dev`): put a tenant's credentials and manage
//! caller keys in Secrets Manager through the same SDK and configuration as the functions, so no
//! AWS CLI is needed. Nothing here prints a secret except a new caller key, once.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker::credentials::Credentials;
use broker::session::ObtainedBy;
use broker::store::{SecretNames, SecretStore, StoreError, upsert};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::{CallerEntry, Scope, caller_from, generate_key};

/// What went wrong with an operator command.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    /// Secrets Manager failed.
    Store(#[from] StoreError),
    #[error("the credentials document is not valid: {0}")]
    /// The credentials document does not parse.
    BadCredentials(String),
    #[error("the callers secret {0} is not a JSON array of callers; fix or delete it first")]
    /// The callers secret is not an array of callers.
    BadCallers(String),
    #[error("a caller with id {0:?} already exists; remove it first or pick another id")]
    /// The caller id is taken.
    DuplicateCaller(String),
    #[error("caller ids are 1-64 letters, digits, '-', '_' or '.' (no ':', which Basic auth uses)")]
    /// The caller id has characters Basic auth or logs cannot carry.
    BadCallerId,
    #[error("no random bytes from the OS: {0}")]
    /// The OS random source failed.
    Random(String),
    #[error("{0}")]
    /// A `paths` pattern is not valid.
    BadPaths(String),
    #[error("{0}")]
    /// An argument is not valid.
    BadInput(String),
    #[error("{0}")]
    /// RingCX refused or failed a call.
    RingCx(String),
    #[error("{0}")]
    /// RingCX has no such resource.
    RingCxNotFound(String),
    #[error("{0}")]
    /// SQS refused or failed a call (the hook queue or its dead-letter queue).
    Queue(#[from] broker::hooks::queue::QueueError),
}

/// Validates and stores a tenant's credentials document; returns the flow it enables.
pub async fn seed_credentials(
    store: &impl SecretStore,
    names: &SecretNames,
    tenant: &str,
    document: &SecretString,
) -> Result<ObtainedBy, OperatorError> {
    let parsed: Credentials = serde_json::from_str(document.expose_secret()).map_err(|e| {
        OperatorError::BadCredentials(format!(
            "{:?} error at line {} column {}: expected {{\"type\": \"ringex-jwt\", \"clientId\", \"clientSecret\", \"jwt\"}} or {{\"type\": \"engage-login\", \"username\", \"password\", \"platformId\"}} or {{\"type\": \"api-token\", \"token\"}}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    upsert(store, &names.credentials(tenant), document).await?;
    Ok(parsed.flow())
}

pub(crate) async fn read_callers(
    store: &impl SecretStore,
    name: &str,
) -> Result<Vec<serde_json::Value>, OperatorError> {
    read_array(store, name)
        .await?
        .ok_or_else(|| OperatorError::BadCallers(name.to_owned()))
}

/// An administrator's array document (callers, hooks): empty when the secret does not exist,
/// `None` when it is not a JSON array.
async fn read_array(
    store: &impl SecretStore,
    name: &str,
) -> Result<Option<Vec<serde_json::Value>>, OperatorError> {
    Ok(match store.get(name).await? {
        None => Some(Vec::new()),
        Some(raw) => match serde_json::from_str(raw.expose_secret()) {
            Ok(serde_json::Value::Array(items)) => Some(items),
            _ => None,
        },
    })
}

/// What a new caller may do.
#[derive(Debug, Clone)]
pub struct NewCaller {
    /// The caller's id.
    pub id: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Glob patterns (see [`crate::auth::paths`]); `None` reaches every non-credential path.
    pub paths: Option<Vec<String>>,
}

fn check_id(id: &str) -> Result<(), OperatorError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(OperatorError::BadCallerId);
    }
    Ok(())
}

/// Makes a key for a new caller and adds its entry; returns the key (to show once) and the entry.
pub async fn add_caller(
    store: &impl SecretStore,
    names: &SecretNames,
    new: NewCaller,
) -> Result<(SecretString, CallerEntry), OperatorError> {
    check_id(&new.id)?;
    let (key, mut entry) = generate_key(&new.id, &new.tenant, new.scopes)
        .map_err(|e| OperatorError::Random(e.to_string()))?;
    entry.paths = new.paths;
    append(store, names, &entry).await?;
    Ok((key, entry))
}

/// How a JWT caller signs: RingCX's JWT auth config on the other side.
#[derive(Debug, Clone)]
pub struct JwtSpec {
    /// HS256/384/512 (a shared secret is generated) or RS256/384/512 (with `public_key_pem`).
    pub algorithm: String,
    /// The RS256 public key; none for HS256 (a secret is generated).
    pub public_key_pem: Option<String>,
    /// The oldest `iat` accepted, in seconds.
    pub max_age_seconds: Option<u64>,
    /// A query parameter the JWT may also arrive in.
    pub query_param: Option<String>,
}

/// Adds a caller that authenticates with JWTs signed by RingCX. For an HS algorithm, returns the
/// new shared secret (base64 of 256 random bits: RingCX's `isSecretEncoded`), to show once.
pub async fn add_jwt_caller(
    store: &impl SecretStore,
    names: &SecretNames,
    new: NewCaller,
    jwt: JwtSpec,
) -> Result<(Option<SecretString>, CallerEntry), OperatorError> {
    check_id(&new.id)?;
    let hmac = jwt.algorithm.starts_with("HS");
    let secret = if hmac {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| OperatorError::Random(e.to_string()))?;
        Some(SecretString::from(STANDARD.encode(raw)))
    } else {
        None
    };
    let mut spec = serde_json::json!({"algorithm": jwt.algorithm});
    if let Some(secret) = &secret {
        spec["secret"] = secret.expose_secret().into();
        spec["secretBase64"] = true.into();
    }
    if let Some(pem) = &jwt.public_key_pem {
        spec["publicKeyPem"] = pem.as_str().into();
    }
    if let Some(age) = jwt.max_age_seconds {
        spec["maxAgeSeconds"] = age.into();
    }
    if let Some(param) = &jwt.query_param {
        spec["queryParam"] = param.as_str().into();
    }
    let entry = CallerEntry {
        id: new.id,
        tenant: new.tenant,
        key_sha256: None,
        scopes: new.scopes,
        paths: new.paths,
        jwt: Some(spec),
    };
    caller_from(&entry).map_err(OperatorError::BadPaths)?;
    append(store, names, &entry).await?;
    Ok((secret, entry))
}

/// Adds one checked entry to the callers secret, refusing a duplicate id.
async fn append(
    store: &impl SecretStore,
    names: &SecretNames,
    entry: &CallerEntry,
) -> Result<(), OperatorError> {
    let name = names.callers();
    let mut entries = read_callers(store, &name).await?;
    if entries
        .iter()
        .any(|e| e["id"].as_str() == Some(entry.id.as_str()))
    {
        return Err(OperatorError::DuplicateCaller(entry.id.clone()));
    }
    entries
        .push(serde_json::to_value(entry).map_err(|e| OperatorError::BadCallers(e.to_string()))?);
    upsert(
        store,
        &name,
        &SecretString::from(serde_json::Value::Array(entries).to_string()),
    )
    .await?;
    Ok(())
}

/// Removes every entry with `id`; returns how many there were. Instances stop accepting the key
/// within `CALLERS_CACHE_SECONDS`.
pub async fn remove_caller(
    store: &impl SecretStore,
    names: &SecretNames,
    id: &str,
) -> Result<usize, OperatorError> {
    let name = names.callers();
    let entries = read_callers(store, &name).await?;
    remove_entries(store, &name, entries, "id", id).await
}

/// Drops the entries of an array document whose `field` is `value`, and writes the document back
/// when any went; returns how many.
async fn remove_entries(
    store: &impl SecretStore,
    name: &str,
    mut entries: Vec<serde_json::Value>,
    field: &str,
    value: &str,
) -> Result<usize, OperatorError> {
    let before = entries.len();
    entries.retain(|e| e[field].as_str() != Some(value));
    let removed = before - entries.len();
    if removed > 0 {
        upsert(
            store,
            name,
            &SecretString::from(serde_json::Value::Array(entries).to_string()),
        )
        .await?;
    }
    Ok(removed)
}

/// A dead-lettered hook event as `hooks-dlq` shows it: never the payload, a header or a
/// signature.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterSummary {
    /// The event id (the `202`'s `id`; what `hooks-redrive ID=` takes).
    pub id: String,
    /// The hook.
    pub hook: String,
    /// When it was accepted (RFC 3339).
    pub first_seen: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why it is in the dead-letter queue.
    pub last_error: String,
}

/// How long a listing holds the dead letters it reads (hidden from other readers); it shows
/// them again at once when done.
const LIST_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a redrive holds them: long enough to send back a thousand, one call pair each.
const REDRIVE_HOLD: std::time::Duration = std::time::Duration::from_secs(900);

/// The most dead letters one command reads.
const DLQ_MAX: usize = 1000;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map_or_else(
        || "?".into(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// The dead-letter queue's events, oldest first (read, then made visible again: a listing
/// changes nothing).
pub async fn list_dead_letters(
    queue: &broker::hooks::queue::HookQueue,
) -> Result<Vec<DeadLetterSummary>, OperatorError> {
    let letters = queue.dead_letters(DLQ_MAX, LIST_HOLD).await?;
    queue.unhold(&letters).await?;
    let mut out: Vec<DeadLetterSummary> = letters
        .iter()
        .map(|l| DeadLetterSummary {
            id: l.id().to_owned(),
            hook: l.event.as_ref().map_or("?".into(), |e| e.hook.clone()),
            first_seen: rfc3339(
                l.event
                    .as_ref()
                    .map_or(l.sent.unwrap_or(0), |e| e.first_seen),
            ),
            attempts: l.event.as_ref().map_or(0, |e| e.attempts),
            last_error: l.reason(),
        })
        .collect();
    out.sort_by(|a, b| a.first_seen.cmp(&b.first_seen));
    Ok(out)
}

/// Sends dead letters back to the hook queue, once each: the one with event id `id`, or all of
/// them. `sent` hears each event id as it goes back (so a failure part way says what was done);
/// returns how many went back.
pub async fn redrive_dead_letters(
    queue: &broker::hooks::queue::HookQueue,
    id: Option<&str>,
    deadline: chrono::DateTime<chrono::Utc>,
    mut sent: impl FnMut(&str),
) -> Result<usize, OperatorError> {
    let letters = queue.dead_letters(DLQ_MAX, REDRIVE_HOLD).await?;
    let (chosen, others): (Vec<_>, Vec<_>) = letters
        .into_iter()
        .partition(|l| id.is_none_or(|id| l.id() == id || l.message_id == id));
    queue.unhold(&others).await?;
    if let Some(id) = id
        && chosen.is_empty()
    {
        return Err(OperatorError::BadInput(format!(
            "no event {id:?} in the dead-letter queue (hooks-dlq lists them)"
        )));
    }
    for letter in &chosen {
        queue.redrive(letter, deadline).await?;
        sent(letter.id());
    }
    Ok(chosen.len())
}

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
        "stripe" | "hmac-sha256" => Ok(crate::auth::random_secret("whsec_")
            .map_err(|e| OperatorError::Random(e.to_string()))?),
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
    let payload = crate::hooks::payload_of(content_type, body)
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
