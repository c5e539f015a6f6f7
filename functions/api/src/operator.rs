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
    match store.get(name).await? {
        None => Ok(Vec::new()),
        Some(raw) => match serde_json::from_str(raw.expose_secret()) {
            Ok(serde_json::Value::Array(items)) => Ok(items),
            _ => Err(OperatorError::BadCallers(name.to_owned())),
        },
    }
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
    let mut entries = read_callers(store, &name).await?;
    let before = entries.len();
    entries.retain(|e| e["id"].as_str() != Some(id));
    let removed = before - entries.len();
    if removed > 0 {
        upsert(
            store,
            &name,
            &SecretString::from(serde_json::Value::Array(entries).to_string()),
        )
        .await?;
    }
    Ok(removed)
}
