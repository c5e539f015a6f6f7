//! Whether a schedule fits the Secrets Manager version quota: the writes a margin and a period
//! make per day against what K slots hold, and the settings that contradict each other.

use std::time::Duration;

use super::{Config, ConfigError};
use crate::renew::RenewSettings;

/// The refresher's Lambda timeout (template.yaml): a pass ends 2 s before it.
const PASS_SECONDS: f64 = 60.0;

/// Writes a slot secret takes per 24 h, kept under the Secrets Manager quota of about 100
/// versions younger than 24 h with room for hand edits and retries.
pub const SLOT_WRITES_PER_DAY: u64 = 90;

/// The access token lifetime the schedule is planned for (RingCX documents 5 minutes).
const TOKEN_LIFETIME_SECS: u64 = 300;

/// Scheduled renewals per tenant per day with margin `margin` and schedule period `period`: a
/// token obtained at a run is renewed at the first run where it has `margin` or less left.
pub fn scheduled_writes_per_day(margin: Duration, period: Duration) -> u64 {
    let (m, p) = (margin.as_secs(), period.as_secs().max(1));
    let runs = TOKEN_LIFETIME_SECS.saturating_sub(m).div_ceil(p).max(1);
    86_400u64.div_ceil(runs * p)
}

impl Config {
    /// Refuses settings that contradict each other, with the sentence that fixes them.
    pub(super) fn check_consistency(&self) -> Result<(), ConfigError> {
        let (margin, min_ttl) = (self.refresh_margin.as_secs(), self.min_token_ttl.as_secs());
        let period = self.refresh_interval.as_secs();
        let (remembered, max_age) = (
            self.hook_idempotency.as_secs() / 3600,
            self.hook_queue.max_age.as_secs() / 3600,
        );
        if self.hook_queue.url.is_some() && remembered < max_age {
            return Err(ConfigError::Contradiction {
                name: "HOOK_IDEMPOTENCY_HOURS",
                value: remembered.to_string(),
                fix: format!(
                    "queued events may wait HOOK_MAX_AGE_HOURS ({max_age}) and their copies as \
                     long: their delivery records must be kept at least that long, or a late copy \
                     is delivered again; raise HOOK_IDEMPOTENCY_HOURS or lower HOOK_MAX_AGE_HOURS"
                ),
            });
        }
        if min_ttl >= margin {
            return Err(ConfigError::Contradiction {
                name: "MIN_TOKEN_TTL_SECONDS",
                value: min_ttl.to_string(),
                fix: format!(
                    "it must be below REFRESH_MARGIN_SECONDS ({margin}), or tokens become unusable \
                     before they are renewed; lower MIN_TOKEN_TTL_SECONDS or raise \
                     REFRESH_MARGIN_SECONDS"
                ),
            });
        }
        if margin < period + min_ttl {
            return Err(ConfigError::Contradiction {
                name: "REFRESH_MARGIN_SECONDS",
                value: margin.to_string(),
                fix: format!(
                    "with a refresher run every {period} s (REFRESH_INTERVAL_SECONDS), a token can \
                     be renewed with only {} s left, under MIN_TOKEN_TTL_SECONDS ({min_ttl}); raise \
                     REFRESH_MARGIN_SECONDS to at least {} or run the schedule more often",
                    margin.saturating_sub(period),
                    period + min_ttl
                ),
            });
        }
        let writes = scheduled_writes_per_day(self.refresh_margin, self.refresh_interval);
        let capacity = SLOT_WRITES_PER_DAY * u64::from(self.session_slots);
        if writes > capacity {
            let needed = writes.div_ceil(SLOT_WRITES_PER_DAY);
            let fix = if needed <= u64::from(crate::store::MAX_SLOTS) {
                format!("set SESSION_SLOTS to at least {needed}, or lower REFRESH_MARGIN_SECONDS")
            } else {
                "lower REFRESH_MARGIN_SECONDS (no K up to 20 holds that many)".to_owned()
            };
            return Err(ConfigError::Contradiction {
                name: "SESSION_SLOTS",
                value: self.session_slots.to_string(),
                fix: format!(
                    "{} slots hold about {capacity} writes a day under the Secrets Manager \
                     version quota, but a {margin} s margin with a run every {period} s renews \
                     {writes} times a day; {fix}",
                    self.session_slots
                ),
            });
        }
        self.check_request_quotas(writes)
    }

    /// Refuses a deployment whose tenants' renewals cannot fit the refresher's share of the
    /// Secrets Manager request quotas: each renewal is one ring read and one slot write, and
    /// renewals start only while a pass can still finish one (from its start until its deadline,
    /// the refresher's 60 s timeout less 2 s, less one renewal's time).
    fn check_request_quotas(&self, writes_per_tenant_day: u64) -> Result<(), ConfigError> {
        let tenants = self.tenants.len() as u64;
        let per_second = (tenants * writes_per_tenant_day) as f64 / 86_400.0;
        let period = self.refresh_interval.as_secs_f64().max(1.0);
        let renewal =
            (self.ringcx.request_timeout + RenewSettings::default().write_reserve).as_secs_f64();
        let window = (period.min(PASS_SECONDS) - 2.0 - renewal).max(1.0);
        let limits = [
            (
                "WRITE_RATE_PER_SECOND",
                self.write_rate_per_second,
                50,
                "PutSecretValue",
            ),
            (
                "READ_RATE_PER_SECOND",
                self.read_rate_per_second,
                100,
                "BatchGetSecretValue",
            ),
        ];
        for (name, rate, quota, api) in limits {
            let effective = f64::from(rate) * window / period;
            if per_second > effective {
                let fits = (effective * 86_400.0 / writes_per_tenant_day as f64) as u64;
                return Err(ConfigError::Contradiction {
                    name,
                    value: rate.to_string(),
                    fix: format!(
                        "TENANTS lists {tenants} tenants, each renewed {writes_per_tenant_day} \
                         times a day: {per_second:.1} renewals a second, more than the \
                         {effective:.1} a second that {name}={rate} gives when renewals start in \
                         the first {window:.0} s of each {period:.0} s period (Secrets Manager's \
                         {api} quota is {quota} a second per region, shared by the whole \
                         account). At these settings one deployment holds {fits} tenants: split \
                         the tenants over deployments in other regions or accounts (each has its \
                         own quota), raise {name} toward {quota} if nothing else in the account \
                         uses {api}, or lower REFRESH_MARGIN_SECONDS; and keep \
                         REFRESH_CONCURRENCY high enough (renewals a second are about \
                         REFRESH_CONCURRENCY divided by RingCX's answer time)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Forced renewals each tenant may make per 24 h: the slots' daily capacity less the
    /// scheduled writes.
    pub fn forced_renewals_per_day(&self) -> u32 {
        let capacity = SLOT_WRITES_PER_DAY * u64::from(self.session_slots);
        let scheduled = scheduled_writes_per_day(self.refresh_margin, self.refresh_interval);
        u32::try_from(capacity.saturating_sub(scheduled)).unwrap_or(u32::MAX)
    }
}
