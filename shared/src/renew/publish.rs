//! Publishing a renewal's result: the fenced write of the next generation, and what a lost race
//! means (another renewer's newer generation is used as it is).

use chrono::{DateTime, Utc};

use super::{Outcome, RenewError, Renewer, Report};
use crate::session::SessionState;
use crate::store::{PublishOutcome, SecretStore};

impl<S: SecretStore> Renewer<S> {
    pub(super) async fn publish(
        &self,
        tenant: &str,
        base: u64,
        state: &SessionState,
        deadline: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<u64, RenewError> {
        match self.ring.publish(tenant, base, state, deadline).await {
            Ok(PublishOutcome::Published {
                generation,
                quota_skips,
            }) => {
                report.generation = generation;
                report.quota_skips = quota_skips;
                report.seconds_left = state.seconds_left(self.clock.now());
                Ok(generation)
            }
            Ok(PublishOutcome::Lost { generation }) => {
                tracing::info!(
                    tenant,
                    generation,
                    "another renewer published this generation first; discarding ours"
                );
                report.cas_conflicts += 1;
                let newest = self.read_view(tenant, deadline).await?.newest;
                if let Some(newer) = newest {
                    *report = self.elsewhere(report.clone(), &newer);
                }
                Ok(report.generation)
            }
            Err(source) => {
                tracing::error!(tenant, error = %source, "could not write the renewed session");
                Err(RenewError::WriteFailed {
                    tenant: tenant.to_owned(),
                    source,
                })
            }
        }
    }

    pub(super) fn elsewhere(&self, mut report: Report, newer: &SessionState) -> Report {
        report.outcome = Outcome::RenewedElsewhere;
        report.generation = newer.generation;
        report.seconds_left = newer.seconds_left(self.clock.now());
        report
    }
}
