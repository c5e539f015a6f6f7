//! The hook worker: delivers queued hook events from the hook queue to RingCX, once each.
//!
//! Fed by the queue's event source mapping (`ReportBatchItemFailures`): each message of a batch
//! is delivered, retried later (its visibility timeout set to a growing backoff, and reported as
//! a failure so SQS keeps it), or moved to the dead-letter queue with its reason. SQS delivers at
//! least once; the delivery's own idempotency record makes RingCX see an event once, whatever
//! the copies (a redelivery after a crash, a redrive, a second enqueue by a racing pair).
//!
//! RingCX's per-user limit is shared with the IVR callouts: each instance paces its calls to its
//! part of `HOOK_RINGCX_SHARE_PERCENT`, so a backlog draining after an outage leaves them room.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod local;

use std::sync::Arc;
use std::time::Duration;

use api::App;
use api::error::ErrorCode;
use api::hooks::{attempt, find};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use broker::config::HookQueueSettings;
use broker::hooks::Inbound;
use broker::hooks::idempotency::{Claim, IdempotencyStore, Lease};
use broker::hooks::queue::{QueuedEvent, backoff};
use broker::rate::Pacer;
use broker::store::{CALL_TIMEOUT, SecretStore};
use broker::telemetry::{self, Metric};
use chrono::{DateTime, Utc};

/// A retry that is not RingCX's fault (no place in the pace, the invocation ending, another copy
/// in flight) waits about this long.
const SHORT_WAIT: Duration = Duration::from_secs(10);

/// The pace's window: a minute, as RingCX counts, and a margin for calls that reach RingCX a
/// little later than they were paced (network, retries), so RingCX's count stays within the share.
const PACE_WINDOW: Duration = Duration::from_secs(62);

/// Kept free at the end of an invocation, beyond one SQS call per message still to answer for:
/// Lambda stops the process at its deadline, and a delivery record written after that would be
/// lost (and the event delivered again after its lease).
const TAIL_MARGIN: Duration = Duration::from_secs(2);

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// RingCX took the event (its status).
    Delivered(u16),
    /// RingCX had taken it already (a copy): nothing sent.
    AlreadyDelivered,
    /// Not this time: back on the queue, visible again after `after`.
    Retry {
        /// The backoff.
        after: Duration,
        /// Why (no payload value).
        reason: String,
    },
    /// In the dead-letter queue.
    DeadLettered {
        /// The `Reason` dimension: a short code.
        kind: &'static str,
        /// The sentence the operator reads.
        reason: String,
    },
}

/// A batch's outcome: the answer for the event source mapping, and each message's fate.
#[derive(Debug)]
pub struct Report {
    /// `batchItemFailures`: the messages SQS must keep.
    pub response: SqsBatchResponse,
    /// Each message's fate, by message id.
    pub fates: Vec<(String, Fate)>,
}

/// The worker, built once per execution environment.
pub struct Worker<S> {
    pub(crate) app: Arc<App<S>>,
    settings: HookQueueSettings,
    pacer: Pacer,
}

impl<S: SecretStore + Clone + 'static> Worker<S> {
    /// `app` must have the idempotency table and the hook queue.
    pub fn new(app: Arc<App<S>>, settings: HookQueueSettings) -> Self {
        let pacer = Pacer::new(
            settings.calls_per_minute_per_worker(),
            PACE_WINDOW,
            app.clock.clone(),
        );
        Self {
            app,
            settings,
            pacer,
        }
    }

    /// SQS calls this worker made (backoffs, dead letters), for the bench.
    pub fn queue_calls(&self) -> u64 {
        self.app.hook_queue.as_ref().map_or(0, |q| q.calls())
    }

    /// DynamoDB calls this worker made (delivery claims, records, releases), for the bench.
    pub fn idempotency_calls(&self) -> u64 {
        self.app.idempotency.as_ref().map_or(0, |i| i.calls())
    }

    /// Delivers a batch, one message after another, within `deadline` (the invocation's).
    pub async fn handle(&self, event: SqsEvent, deadline: DateTime<Utc>) -> Report {
        let mut response = SqsBatchResponse::default();
        let total = event.records.len();
        let mut fates = Vec::with_capacity(total);
        for (i, message) in event.records.iter().enumerate() {
            let id = message.message_id.clone().unwrap_or_default();
            // This message's work ends in time for its own backoff call and every later
            // message's, within the invocation.
            let still_to_answer = u32::try_from(total - i).unwrap_or(u32::MAX);
            let tail = CALL_TIMEOUT.saturating_mul(still_to_answer) + TAIL_MARGIN;
            let work_until = deadline - chrono::Duration::from_std(tail).unwrap_or_default();
            // Boxed: the delivery future is deep (token renewal inside the RingCX call inside the claim).
            let (fate, event_id, hook) = Box::pin(self.one(message, work_until)).await;
            if let Fate::Retry { after, .. } = &fate {
                if let (Some(queue), Some(receipt)) =
                    (&self.app.hook_queue, message.receipt_handle.as_deref())
                    && let Err(e) = queue.retry_later(receipt, *after).await
                {
                    tracing::warn!(error = %e, "could not set the message's backoff: SQS hands it out again after the queue's visibility timeout");
                }
                response.add_failure(id.clone());
            }
            log(&fate, &event_id, &hook, receive_count(message));
            let (metric, reason) = match &fate {
                Fate::Delivered(_) => (Metric::HooksDelivered, None),
                Fate::AlreadyDelivered => (Metric::HooksReplayed, None),
                Fate::Retry { .. } => (Metric::HooksRetried, None),
                Fate::DeadLettered { kind, .. } => (Metric::HooksDeadLettered, Some(*kind)),
            };
            telemetry::emit(&telemetry::hook_emf(
                metric,
                reason,
                self.app.clock.now().timestamp_millis(),
            ));
            fates.push((id, fate));
        }
        Report { response, fates }
    }

    /// One message, all its work (the delivery record included) done by `deadline`: its fate,
    /// with the event id and hook for the log line.
    async fn one(&self, message: &SqsMessage, deadline: DateTime<Utc>) -> (Fate, String, String) {
        let body = message.body.as_deref().unwrap_or_default();
        let event: QueuedEvent = match serde_json::from_str(body) {
            Ok(e) => e,
            Err(e) => {
                let reason = format!(
                    "the message is not a hook event ({})",
                    broker::hooks::serde_error(&e)
                );
                let fate = self
                    .dead_letter_raw(body, "unreadable", reason, deadline)
                    .await;
                return (fate, "-".into(), "-".into());
            }
        };
        let age = (self.app.clock.now().timestamp_millis() - event.age_from()).max(0) / 1000;
        telemetry::emit(&telemetry::hook_age_emf(
            age as u64,
            self.app.clock.now().timestamp_millis(),
        ));
        let fate = self.deliver(&event, receive_count(message), deadline).await;
        let fate = match fate {
            Fate::DeadLettered { kind, reason } => {
                self.dead_letter(&event, receive_count(message), kind, reason, deadline)
                    .await
            }
            Fate::Retry { reason, .. } if receive_count(message) >= self.settings.max_receives => {
                let reason = format!(
                    "not delivered after {} attempts (HOOK_MAX_RECEIVES): {reason}",
                    receive_count(message)
                );
                self.dead_letter(
                    &event,
                    receive_count(message),
                    "max_receives",
                    reason,
                    deadline,
                )
                .await
            }
            other => other,
        };
        (fate, event.event_id.clone(), event.hook.clone())
    }

    async fn deliver(&self, event: &QueuedEvent, receives: u32, deadline: DateTime<Utc>) -> Fate {
        let app = &self.app;
        let now = app.clock.now();
        let jitter = fastrand::f64();
        let retry = |reason: String, retry_after: Option<Duration>| Fate::Retry {
            after: backoff(receives, retry_after, jitter),
            reason,
        };
        let short = |reason: &str| Fate::Retry {
            after: SHORT_WAIT + SHORT_WAIT.mul_f64(jitter),
            reason: reason.to_owned(),
        };
        let Some(store) = app.idempotency.as_ref() else {
            return retry(
                "the worker has no IDEMPOTENCY_TABLE: it delivers nothing it could deliver twice"
                    .into(),
                None,
            );
        };
        // What one delivery needs once it starts: a token (perhaps renewed), the call, the record.
        let needed = app.token_budget + app.request_timeout + CALL_TIMEOUT * 3;
        if broker::clock::later(now, needed) > deadline {
            return short("too little of this invocation is left to start a delivery");
        }
        let lease = match store
            .claim(&event.delivery_record(), deadline, deadline)
            .await
        {
            Ok(Claim::Claimed(lease)) => lease,
            Ok(Claim::Replay(_)) => return Fate::AlreadyDelivered,
            Ok(Claim::InProgress { retry_after }) => {
                return Fate::Retry {
                    after: retry_after.max(Duration::from_secs(1)) + SHORT_WAIT.mul_f64(jitter),
                    reason: "another copy of this event is being delivered".into(),
                };
            }
            Err(e) => return retry(format!("the idempotency table: {e}"), None),
        };
        let age = now.timestamp_millis() - event.age_from();
        if age > self.settings.max_age.as_millis() as i64 {
            release(store, &lease, deadline).await;
            return Fate::DeadLettered {
                kind: "too_old",
                reason: format!(
                    "not delivered within HOOK_MAX_AGE_HOURS ({} h){}",
                    self.settings.max_age.as_secs() / 3600,
                    event
                        .last_error
                        .as_deref()
                        .map_or(String::new(), |e| format!("; last error: {e}"))
                ),
            };
        }
        let hook = match find(app, &event.hook).await {
            Ok(h) => h,
            Err(e) if e.code == ErrorCode::HookNotFound => {
                release(store, &lease, deadline).await;
                return Fate::DeadLettered {
                    kind: "hook_not_found",
                    reason: format!(
                        "no hook named {:?} now (removed or renamed): restore it, then redrive",
                        event.hook
                    ),
                };
            }
            Err(e) => {
                release(store, &lease, deadline).await;
                return retry(e.message, None);
            }
        };
        if hook.tenant != event.tenant {
            release(store, &lease, deadline).await;
            return Fate::DeadLettered {
                kind: "tenant_changed",
                reason: format!(
                    "the hook now acts for tenant {:?}, the event was accepted for {:?}: it is not delivered to another account",
                    hook.tenant, event.tenant
                ),
            };
        }
        let token = match app
            .tokens
            .get(&hook.tenant, app.deadline().min(deadline))
            .await
        {
            Ok(t) => t,
            Err(e) => {
                release(store, &lease, deadline).await;
                return retry(format!("no usable token ({})", e.code), None);
            }
        };
        let no_body = b"";
        let inbound = Inbound {
            payload: &event.payload,
            headers: &event.headers,
            query: &event.query,
            raw_body: no_body,
            account_id: token.account_id.as_deref(),
        };
        // The event keeps the identity it was accepted with: only the call is rendered again.
        let rendered = match hook.render_request(&inbound) {
            Ok(r) => r,
            Err(e) => {
                release(store, &lease, deadline).await;
                return Fate::DeadLettered {
                    kind: "template",
                    reason: format!(
                        "the hook's templates cannot fill it: {e}; fix the hook, then redrive"
                    ),
                };
            }
        };
        let pace_until = deadline - chrono::Duration::from_std(needed).unwrap_or_default();
        if self.pacer.acquire(pace_until).await.is_err() {
            release(store, &lease, deadline).await;
            return short("the worker's share of RingCX's rate limit is spent for now");
        }
        let taken = |status: u16| status < 400;
        match attempt(
            app, &hook, &rendered, store, &lease, deadline, deadline, taken,
        )
        .await
        {
            Ok(answer) => Fate::Delivered(answer.status),
            Err(not) => match not.status {
                Some(s) if (400..500).contains(&s) && s != 429 && s != 401 && s != 408 => {
                    Fate::DeadLettered {
                        kind: "ringcx_refused",
                        reason: format!(
                            "{}: RingCX will not take it as it is; fix the hook or the data, then redrive",
                            not.reason
                        ),
                    }
                }
                _ => retry(not.reason, not.retry_after),
            },
        }
    }

    /// Moves an event to the dead-letter queue with its reason; if that fails, it stays on the
    /// hook queue (nothing is lost).
    async fn dead_letter(
        &self,
        event: &QueuedEvent,
        receives: u32,
        kind: &'static str,
        reason: String,
        deadline: DateTime<Utc>,
    ) -> Fate {
        let mut letter = event.clone();
        letter.attempts = event.attempts.saturating_add(receives);
        letter.last_error = Some(reason.clone());
        letter.reason = Some(reason.clone());
        letter.dead_lettered_at = Some(self.app.clock.now().timestamp_millis());
        self.dead_letter_raw(&letter.to_body(), kind, reason, deadline)
            .await
    }

    async fn dead_letter_raw(
        &self,
        body: &str,
        kind: &'static str,
        reason: String,
        deadline: DateTime<Utc>,
    ) -> Fate {
        let Some(queue) = self.app.hook_queue.as_ref() else {
            return Fate::Retry {
                after: SHORT_WAIT,
                reason: "the worker has no HOOK_QUEUE_URL".into(),
            };
        };
        match queue.dead_letter(body, deadline).await {
            Ok(_) => Fate::DeadLettered { kind, reason },
            Err(e) => {
                tracing::error!(error = %e, "could not move an event to the dead-letter queue: it stays on the hook queue");
                Fate::Retry {
                    after: SHORT_WAIT * 3,
                    reason: format!("{reason} (and the dead-letter queue refused it: {e})"),
                }
            }
        }
    }
}

/// Gives the delivery claim up (nothing was sent), so the next attempt may deliver.
async fn release(store: &IdempotencyStore, lease: &Lease, deadline: DateTime<Utc>) {
    if let Err(e) = store.release(lease, deadline).await {
        tracing::warn!(error = %e, "could not release the delivery claim: the next attempt waits for the lease to end");
    }
}

/// SQS's count of this message's receives (1 for the first).
fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// The worker's line per message: never a payload, a header or a secret.
fn log(fate: &Fate, event_id: &str, hook: &str, receives: u32) {
    let (outcome, status, reason, wait) = match fate {
        Fate::Delivered(s) => ("delivered", *s, "-", 0),
        Fate::AlreadyDelivered => ("already_delivered", 0, "-", 0),
        Fate::Retry { after, reason } => ("retry", 0, reason.as_str(), after.as_secs()),
        Fate::DeadLettered { reason, .. } => ("dead_lettered", 0, reason.as_str(), 0),
    };
    let hook: String = hook.chars().take(64).collect();
    if matches!(fate, Fate::DeadLettered { .. }) {
        tracing::error!(%hook, event = event_id, outcome, ringcx_status = status, reason, receives, "hook event");
    } else {
        tracing::info!(%hook, event = event_id, outcome, ringcx_status = status, reason, retry_in_s = wait, receives, "hook event");
    }
}
