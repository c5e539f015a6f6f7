//! `keygen`, `add-caller`, `remove-caller`: caller keys and JWT callers in `{prefix}callers`.
//! Nothing here prints a secret except a new caller key or shared secret, once.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker::store::{SecretNames, SecretStore, upsert};
use secrecy::{ExposeSecret, SecretString};

use crate::OperatorError;
use crate::document::{read_array, remove_entries};
use api::auth::{CallerEntry, Scope, caller_from, generate_key};

pub(crate) async fn read_callers(
    store: &impl SecretStore,
    name: &str,
) -> Result<Vec<serde_json::Value>, OperatorError> {
    read_array(store, name)
        .await?
        .ok_or_else(|| OperatorError::BadCallers(name.to_owned()))
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
    /// Glob patterns (see [`api::auth::paths`]); `None` reaches every non-credential path.
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
