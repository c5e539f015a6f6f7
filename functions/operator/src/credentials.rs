//! `seed-credentials`: a tenant's login material, checked before it is stored.

use broker::credentials::Credentials;
use broker::session::ObtainedBy;
use broker::store::{SecretNames, SecretStore, upsert};
use secrecy::{ExposeSecret, SecretString};

use crate::OperatorError;

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
