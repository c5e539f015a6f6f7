//! The real store: AWS Secrets Manager through the AWS SDK (or the moto emulator, found by the
//! SDK's own `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL`).

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::Tag;
use secrecy::{ExposeSecret, SecretString};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use super::{CALL_TIMEOUT, SecretStore, StoreError};

/// Tag put on every slot secret the broker creates (IAM scopes `CreateSecret` to it).
pub const MANAGED_TAG_KEY: &str = "ringcx-broker";
/// The `ringcx-broker` tag value of the slot secrets the broker creates.
pub const MANAGED_TAG_VALUE: &str = "session";
/// The tag value on a tenant's API token registry (IAM scopes its `CreateSecret` to it).
pub const REGISTRY_TAG_VALUE: &str = "api-tokens";

/// The tag value and description for a secret the broker creates, by what its name says it is.
fn created_kind(name: &str) -> (&'static str, &'static str) {
    if name.ends_with("/api-tokens") {
        (
            REGISTRY_TAG_VALUE,
            "RingCX token broker: registry of the permanent API tokens it created (written by the broker only)",
        )
    } else {
        (
            MANAGED_TAG_VALUE,
            "RingCX token broker session slot (written by the broker only)",
        )
    }
}

/// Secrets Manager via the AWS SDK; clone freely (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: Client,
    kms_key_id: Option<String>,
}

impl SecretsManagerStore {
    /// `kms_key_id`: the customer-managed key new slot secrets are encrypted with, if any.
    pub fn new(client: Client, kms_key_id: Option<String>) -> Self {
        Self { client, kms_key_id }
    }

    /// A store configured from the environment exactly as the AWS SDK does it, except for two
    /// things the broker decides: every call times out after [`CALL_TIMEOUT`] (so it fits the
    /// deadline budgets), and the SDK does not retry, because the broker's own retries know the
    /// deadline and retrying in both places would multiply the attempts.
    pub async fn from_env(kms_key_id: Option<String>) -> Self {
        Self::new(Client::new(&sdk_config().await), kms_key_id)
    }

    /// The broker's SDK settings on top of any loader: call timeouts, no SDK retries.
    pub fn configure(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
        loader
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CALL_TIMEOUT)
                    .operation_attempt_timeout(CALL_TIMEOUT)
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::disabled())
    }
}

/// The AWS SDK configuration every client of the broker is built from (Secrets Manager,
/// DynamoDB): the environment as the SDK reads it, with the broker's call timeouts and without
/// the SDK's own retries (see [`SecretsManagerStore::configure`]). Load it once per instance.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    SecretsManagerStore::configure(loader).load().await
}

/// An SDK error with its chain of causes, for the transient failures whose cause is in the chain
/// (a timeout, a refused connection). SDK error messages carry no secret values.
pub fn sdk_cause<E: std::error::Error>(err: &E) -> String {
    format!(
        "{}",
        aws_sdk_secretsmanager::error::DisplayErrorContext(err)
    )
}

/// An AWS call's failure, the same way for every service the hooks use (DynamoDB, SQS): worth a
/// retry (throttling, a timeout, a 5xx, no answer), or refused (a missing resource, a role that
/// may not use it). SDK messages carry no payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkFailure {
    /// The same call may succeed later.
    Transient(String),
    /// It will not, until the configuration changes: the error code and message.
    Refused(String, String),
}

/// How the hooks retry one DynamoDB or SQS call: 3 attempts at most, 50-400 ms apart, each
/// within [`CALL_TIMEOUT`], all within the caller's deadline.
pub fn item_call_policy() -> crate::retry::Policy {
    crate::retry::Policy {
        first: std::time::Duration::from_millis(50),
        max: std::time::Duration::from_millis(400),
        attempts: Some(3),
        attempt_time: CALL_TIMEOUT,
    }
}

/// Sorts an SDK error of any AWS service into [`SdkFailure`].
pub fn sdk_failure<E, R>(err: &SdkError<E, R>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    if matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) {
        return SdkFailure::Transient(sdk_cause(err));
    }
    let code = err.code().unwrap_or("Unknown").to_owned();
    let message = err.message().unwrap_or("no message").to_owned();
    let transient = matches!(
        code.as_str(),
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "Throttling"
            | "RequestThrottled"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "InternalError"
            | "ServiceUnavailable"
            | "LimitExceededException"
            | "KmsThrottled"
    );
    if transient {
        SdkFailure::Transient(format!("{code}: {message}"))
    } else {
        SdkFailure::Refused(code, message)
    }
}

/// What one entry of a `BatchGetSecretValue` answer's `Errors` means. `None`: the secret does not
/// exist, which is an answer, not a failure.
fn classify_entry(name: &str, code: &str, message: &str) -> Option<StoreError> {
    let op = "BatchGetSecretValue";
    let name = name.to_owned();
    let message = message.to_owned();
    Some(match code {
        "ResourceNotFoundException" => return None,
        "DecryptionFailure" | "AccessDeniedException" | "KMSAccessDeniedException" => {
            StoreError::AccessDenied { op, name, message }
        }
        "InvalidRequestException"
            if message.contains("marked for deletion") || message.contains("marked deleted") =>
        {
            StoreError::ScheduledForDeletion { name }
        }
        "ThrottlingException" | "ThrottledException" => StoreError::Throttled { op },
        "InternalServiceError" | "InternalFailure" | "ServiceUnavailable" | "RequestTimeout" => {
            StoreError::Transient {
                op,
                message: format!("{name}: {code}: {message}"),
            }
        }
        "InvalidRequestException" | "InvalidParameterException" | "ValidationException" => {
            StoreError::Invalid { op, name, message }
        }
        _ => StoreError::Other {
            op,
            message: format!("{name}: {code}: {message}"),
        },
    })
}

/// No credentials or no region: what the SDK says before it ever reaches AWS, when this machine
/// (or the function's role) is not set up. The sentence to show instead of the SDK's chain.
pub fn setup_problem<E: std::error::Error>(err: &E) -> Option<&'static str> {
    let cause = sdk_cause(err);
    let cause = cause.to_ascii_lowercase();
    if cause.contains("signing region") || cause.contains("no region") {
        return Some(
            "no AWS region is set: set AWS_REGION (against make dev: run the export line its banner prints)",
        );
    }
    let credentials = [
        "credentials",
        "imds",
        "credential provider",
        "no providers in chain",
    ];
    if credentials.iter().any(|k| cause.contains(k))
        && (cause.contains("failed to load")
            || cause.contains("not loaded")
            || cause.contains("no providers")
            || cause.contains("not enabled")
            || cause.contains("could not"))
    {
        return Some(
            "no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE (against make dev: run the export line its banner prints)",
        );
    }
    None
}

/// Maps an SDK error to what the broker must do about it. Messages come from Secrets Manager and
/// never contain secret values.
fn classify<E, R>(op: &'static str, name: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let name = name.to_owned();
    let message = err.message().unwrap_or("no message").to_owned();
    if let Some(fix) = setup_problem(&err) {
        return StoreError::Setup(fix);
    }
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return StoreError::Transient {
                op,
                message: sdk_cause(&err),
            };
        }
        _ => {}
    }
    match err.code() {
        Some("ResourceNotFoundException") => StoreError::NotFound { name },
        Some("ResourceExistsException") if op == "CreateSecret" => {
            StoreError::AlreadyExists { name }
        }
        Some("ResourceExistsException") => StoreError::VersionConflict { name },
        Some("LimitExceededException") => StoreError::QuotaExceeded { name },
        Some("AccessDeniedException")
        | Some("DecryptionFailure")
        | Some("EncryptionFailure")
        | Some("KMSAccessDeniedException") => StoreError::AccessDenied { op, name, message },
        Some("InvalidRequestException")
            if message.contains("marked for deletion") || message.contains("marked deleted") =>
        {
            StoreError::ScheduledForDeletion { name }
        }
        Some("InvalidRequestException")
        | Some("InvalidParameterException")
        | Some("ValidationException") => StoreError::Invalid { op, name, message },
        Some("ThrottlingException") | Some("ThrottledException") => StoreError::Throttled { op },
        Some("InternalServiceError")
        | Some("InternalFailure")
        | Some("ServiceUnavailable")
        | Some("RequestTimeout") => StoreError::Transient { op, message },
        Some(code) => StoreError::Other {
            op,
            message: format!("{code}: {message}"),
        },
        None => StoreError::Other { op, message },
    }
}

impl SecretStore for SecretsManagerStore {
    async fn batch_get(&self, names: &[String]) -> Result<Vec<Option<SecretString>>, StoreError> {
        let mut found: std::collections::HashMap<String, SecretString> = Default::default();
        let mut next_token: Option<String> = None;
        let first = names.first().map(String::as_str).unwrap_or_default();
        loop {
            let out = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(names.to_vec()))
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| classify("BatchGetSecretValue", first, e))?;
            for entry in out.secret_values() {
                if let (Some(name), Some(value)) = (entry.name(), entry.secret_string()) {
                    found.insert(name.to_owned(), SecretString::from(value.to_owned()));
                }
            }
            // Every entry's error is looked at: one failing slot fails the read, named, because a
            // slot left out could be the newest.
            if let Some(e) = out.errors().iter().find_map(|e| {
                classify_entry(
                    e.secret_id().unwrap_or_default(),
                    e.error_code().unwrap_or_default(),
                    e.message().unwrap_or("no message"),
                )
            }) {
                return Err(e);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(names.iter().map(|n| found.remove(n)).collect())
    }

    async fn version_dates(
        &self,
        name: &str,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, StoreError> {
        let mut dates = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let out = match self
                .client
                .list_secret_version_ids()
                .secret_id(name)
                .include_deprecated(true)
                .max_results(100)
                .set_next_token(next_token.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    return match classify("ListSecretVersionIds", name, e) {
                        StoreError::NotFound { .. } => Ok(Vec::new()),
                        other => Err(other),
                    };
                }
            };
            dates.extend(out.versions().iter().filter_map(|v| {
                let created = v.created_date()?;
                chrono::DateTime::from_timestamp(created.secs(), created.subsec_nanos())
            }));
            match out.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(dates)
    }

    async fn get(&self, name: &str) -> Result<Option<SecretString>, StoreError> {
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => Ok(out
                .secret_string()
                .map(|s| SecretString::from(s.to_owned()))),
            Err(e) => match classify("GetSecretValue", name, e) {
                StoreError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn put(&self, name: &str, value: &SecretString, token: &str) -> Result<(), StoreError> {
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.expose_secret())
            .client_request_token(token)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("PutSecretValue", name, e))
    }

    async fn create(
        &self,
        name: &str,
        value: &SecretString,
        token: &str,
    ) -> Result<(), StoreError> {
        let (tag, description) = created_kind(name);
        self.client
            .create_secret()
            .name(name)
            .secret_string(value.expose_secret())
            .client_request_token(token)
            .set_kms_key_id(self.kms_key_id.clone())
            .description(description)
            .tags(Tag::builder().key(MANAGED_TAG_KEY).value(tag).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("CreateSecret", name, e))
    }
}
