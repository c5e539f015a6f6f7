//! The administrator's array documents (callers, hooks) as the operator reads and edits them.

use broker::store::{SecretStore, upsert};
use secrecy::{ExposeSecret, SecretString};

use crate::OperatorError;

/// An administrator's array document (callers, hooks): empty when the secret does not exist,
/// `None` when it is not a JSON array.
pub(crate) async fn read_array(
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

/// Drops the entries of an array document whose `field` is `value`, and writes the document back
/// when any went; returns how many.
pub(crate) async fn remove_entries(
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
