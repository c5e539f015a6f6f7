//! Why a renewal ended without a new token, each with what to do about it.

use crate::ringcx::RingCxError;
use crate::session::ObtainedBy;
use crate::store::StoreError;

/// Why a tenant ended a renewal without a new token.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("tenant {tenant}: reading or writing Secrets Manager failed: {source}")]
    /// Secrets Manager failed for good, or kept failing until the deadline.
    Store {
        /// The tenant.
        tenant: String,
        #[source]
        /// What failed underneath.
        source: StoreError,
    },
    #[error(
        "tenant {tenant}: no session and no credentials: put a credentials document in {secret} \
         (or seed a session with a refresh token)"
    )]
    /// Neither a session nor credentials: nothing to renew from.
    NoSession {
        /// The tenant.
        tenant: String,
        /// The secret to fix, by name.
        secret: String,
    },
    #[error(
        "tenant {tenant} CANNOT RECOVER: RingCX rejected the stored refresh token and there is no \
         credentials secret {secret}. Put RingEX JWT or Engage login credentials there, or seed a \
         new refresh token into the ring"
    )]
    /// The refresh token was refused and there are no credentials to log in with.
    Unrecoverable {
        /// The tenant.
        tenant: String,
        /// The secret to fix, by name.
        secret: String,
    },
    #[error(
        "tenant {tenant}: the ring holds no refresh token RingCX accepts; only the refresher logs \
         in again, at its next run"
    )]
    /// A login is needed, and this renewer (the HTTP function) may not log in.
    LoginNeeded {
        /// The tenant.
        tenant: String,
    },
    #[error(
        "tenant {tenant}: the credentials secret {secret} is not a valid credentials document ({reason})"
    )]
    /// The credentials secret is not a credentials document.
    CredentialsUnreadable {
        /// The tenant.
        tenant: String,
        /// The secret to fix, by name.
        secret: String,
        /// Why, in words that name no secret.
        reason: String,
    },
    #[error("tenant {tenant}: RingCX refused the credentials, fix {secret}: {source}")]
    /// RingCX or the platform refused the credentials.
    CredentialsRejected {
        /// The tenant.
        tenant: String,
        /// The secret to fix, by name.
        secret: String,
        #[source]
        /// What failed underneath.
        source: RingCxError,
    },
    #[error(
        "tenant {tenant}: RingCX no longer accepts the permanent API token in {secret} (revoked?): \
         create a new token and store it with `make seed-credentials TENANT={tenant}`: {source}"
    )]
    /// RingCX refused the tenant's permanent API token.
    ApiTokenRefused {
        /// The tenant.
        tenant: String,
        /// The secret to fix, by name.
        secret: String,
        #[source]
        /// What failed underneath.
        source: RingCxError,
    },
    #[error("tenant {tenant}: RingCX kept failing until the deadline: {source}")]
    /// RingCX kept failing transiently until the deadline.
    Upstream {
        /// The tenant.
        tenant: String,
        #[source]
        /// What failed underneath.
        source: RingCxError,
    },
    #[error(
        "tenant {tenant}: {left_ms} ms left before the deadline, but a renewal needs {needed_ms} ms \
         (the RingCX timeout, ENGAGE_TIMEOUT_MS, plus the write): not started, so no refresh token \
         is spent without time to save its answer. Raise the function's timeout or lower \
         ENGAGE_TIMEOUT_MS"
    )]
    /// Too little time left to save a renewal's answer: not started.
    NoTime {
        /// The tenant.
        tenant: String,
        /// Milliseconds left before the deadline.
        left_ms: u128,
        /// Milliseconds a renewal needs.
        needed_ms: u128,
    },
    #[error("tenant {tenant}: no forced renewal: {reason}")]
    /// A forced renewal outside its bounds.
    ForcedRenewalRefused {
        /// The tenant.
        tenant: String,
        /// Why, in words that name no secret.
        reason: String,
    },
    #[error(
        "tenant {tenant}: RingCX answered the {flow} without a refreshToken; the new access token \
         was saved (generation {generation}), but the next renewal needs a full login"
    )]
    /// RingCX answered without a refresh token (the access token was saved).
    RefreshTokenMissing {
        /// The tenant.
        tenant: String,
        /// How the session was obtained.
        flow: ObtainedBy,
        /// The generation that was written.
        generation: u64,
    },
    #[error(
        "tenant {tenant}: the renewed session could not be written ({source}); the next run \
         will log in again from the credentials"
    )]
    /// The renewed session could not be written.
    WriteFailed {
        /// The tenant.
        tenant: String,
        #[source]
        /// What failed underneath.
        source: StoreError,
    },
}
