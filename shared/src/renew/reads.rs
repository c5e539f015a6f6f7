//! Secrets Manager reads under the one retry policy: the ring, and (in `login`) the credentials.

use chrono::{DateTime, Utc};

use super::{RenewError, Renewer};
use crate::retry::{Attempt, Policy, retry};
use crate::store::{CALL_TIMEOUT, RingView, SecretStore, StoreError};

impl<S: SecretStore> Renewer<S> {
    /// The ring, retrying transient read failures (throttling included, with backoff and
    /// jitter) while another attempt fits before `deadline`.
    pub async fn read_view(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
    ) -> Result<RingView, RenewError> {
        self.store_call(tenant, deadline, || self.ring.read(tenant))
            .await
    }

    /// Generation `generation`, if its slot holds it: one `GetSecretValue` (see
    /// [`crate::store::SessionRing::read_generation`]), one attempt: it is a shortcut, and the
    /// whole-ring read behind it has the retries.
    pub async fn read_generation(
        &self,
        tenant: &str,
        generation: u64,
    ) -> Result<Option<crate::session::SessionState>, RenewError> {
        self.ring
            .read_generation(tenant, generation)
            .await
            .map_err(|source| RenewError::Store {
                tenant: tenant.to_owned(),
                source,
            })
    }

    /// The protocol's backoff, for calls of which at most `attempts` are made and each may take
    /// `attempt_time`.
    pub(super) fn policy(
        &self,
        attempts: Option<u32>,
        attempt_time: std::time::Duration,
    ) -> Policy {
        Policy {
            first: self.settings.first_backoff,
            max: self.settings.max_backoff,
            attempts,
            attempt_time,
        }
    }

    /// A Secrets Manager call under the one retry policy: transient failures are retried while
    /// another attempt fits before `deadline`.
    pub(super) async fn store_call<T: Send>(
        &self,
        tenant: &str,
        deadline: DateTime<Utc>,
        call: impl Attempt<T, StoreError>,
    ) -> Result<T, RenewError> {
        retry(
            &self.clock,
            self.policy(None, CALL_TIMEOUT),
            deadline,
            call,
            |e: &StoreError, _| {
                tracing::warn!(tenant, error = %e, "Secrets Manager failed transiently; retrying");
            },
        )
        .await
        .map_err(|source| RenewError::Store {
            tenant: tenant.to_owned(),
            source,
        })
    }
}
