//! Why a renewal ended without a new token, each with what to do about it.

use crate::ringcx::RingCxError;
use crate::session::ObtainedBy;
use crate::store::StoreError;

/// Why a tenant ended a renewal without a new token.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("tenant {tenant}: reading or writing Secrets Manager failed: {source}")]
    Store {
        tenant: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "tenant {tenant}: no session and no credentials: put a credentials document in {secret} \
         (or seed a session with a refresh token)"
    )]
    NoSession { tenant: String, secret: String },
    #[error(
        "tenant {tenant} CANNOT RECOVER: RingCX rejected the stored refresh token and there is no \
         credentials secret {secret}. Put RingEX JWT or Engage login credentials there, or seed a \
         new refresh token into the ring"
    )]
    Unrecoverable { tenant: String, secret: String },
    #[error(
        "tenant {tenant}: the ring holds no refresh token RingCX accepts; only the refresher logs \
         in again, at its next run"
    )]
    LoginNeeded { tenant: String },
    #[error(
        "tenant {tenant}: the credentials secret {secret} is not a valid credentials document ({reason})"
    )]
    CredentialsUnreadable {
        tenant: String,
        secret: String,
        reason: String,
    },
    #[error("tenant {tenant}: RingCX refused the credentials, fix {secret}: {source}")]
    CredentialsRejected {
        tenant: String,
        secret: String,
        #[source]
        source: RingCxError,
    },
    #[error(
        "tenant {tenant}: RingCX no longer accepts the permanent API token in {secret} (revoked?): \
         create a new token and store it with `make seed-credentials TENANT={tenant}`: {source}"
    )]
    PermanentTokenRefused {
        tenant: String,
        secret: String,
        #[source]
        source: RingCxError,
    },
    #[error("tenant {tenant}: RingCX kept failing until the deadline: {source}")]
    Upstream {
        tenant: String,
        #[source]
        source: RingCxError,
    },
    #[error(
        "tenant {tenant}: {left_ms} ms left before the deadline, but a renewal needs {needed_ms} ms \
         (the RingCX timeout, ENGAGE_TIMEOUT_MS, plus the write): not started, so no refresh token \
         is spent without time to save its answer. Raise the function's timeout or lower \
         ENGAGE_TIMEOUT_MS"
    )]
    NoTime {
        tenant: String,
        left_ms: u128,
        needed_ms: u128,
    },
    #[error("tenant {tenant}: no forced renewal: {reason}")]
    ForcedRenewalRefused { tenant: String, reason: String },
    #[error(
        "tenant {tenant}: RingCX answered the {flow} without a refreshToken; the new access token \
         was saved (generation {generation}), but the next renewal needs a full login"
    )]
    RefreshTokenMissing {
        tenant: String,
        flow: ObtainedBy,
        generation: u64,
    },
    #[error(
        "tenant {tenant}: the renewed session could not be written ({source}); the next run \
         will log in again from the credentials"
    )]
    WriteFailed {
        tenant: String,
        #[source]
        source: StoreError,
    },
}
