//! Queued delivery (`"delivery": "queued"`): the event as it waits on the hook queue (SQS,
//! `HOOK_QUEUE_URL`), the worker's backoff, and the dead-letter queue (`HOOK_DLQ_URL`) where
//! an event RingCX will never take waits for an operator.
//!
//! A message carries what the templates read (the payload, the visible headers, the query), not
//! the rendered call: the worker renders it again with the hook as it is then, so an event
//! dead-lettered by a wrong template is delivered by a redrive once the hook is fixed. It never
//! carries a signature or a credential (the same headers the templates cannot see are left out).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::Headers;
use crate::clock::SharedClock;
use crate::retry::{Transient, retry};
use crate::store::aws::{SdkFailure, sdk_failure};

/// The largest event accepted: SQS takes 256 KiB a message, and the dead-letter copy adds its
/// reason and timestamps, so 8 KiB stay free. A larger event is refused with `413`.
pub const MAX_MESSAGE_BYTES: usize = 248 * 1024;

/// The first retry's visibility timeout; each later one doubles, up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(30);

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The longest a retry is hidden: SQS allows 12 hours from the receive in all, and the batch
/// may have taken part of that already.
pub const LONGEST_HIDE: Duration = Duration::from_secs(11 * 3600);

/// One accepted event, as it waits on the hook queue or in the dead-letter queue.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedEvent {
    /// The message format (1).
    pub v: u32,
    /// The hook's name.
    pub hook: String,
    /// The hook's tenant when the event was accepted.
    pub tenant: String,
    /// The event id the sender was given in the `202` (a hash: no sender data in clear).
    pub event_id: String,
    /// The accepting request's idempotency record; the delivery's is [`QueuedEvent::delivery_record`].
    pub record: String,
    /// The body as the templates read it.
    pub payload: Json,
    /// The headers the templates may read (no credential, no signature).
    pub headers: Headers,
    /// The query parameters the templates may read (no credential).
    pub query: BTreeMap<String, String>,
    /// When the event was accepted (epoch milliseconds).
    pub first_seen: i64,
    /// When an operator last sent it back from the dead-letter queue (epoch milliseconds): its
    /// age counts from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<i64>,
    /// Delivery attempts made before its last trip to the dead-letter queue.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last attempt failed (a status and RingCX's error code, never a payload value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why it is in the dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it went there (epoch milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_lettered_at: Option<i64>,
}

impl std::fmt::Debug for QueuedEvent {
    /// Without the payload, headers and query (they may carry personal data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedEvent")
            .field("hook", &self.hook)
            .field("tenant", &self.tenant)
            .field("event_id", &self.event_id)
            .field("first_seen", &self.first_seen)
            .field("attempts", &self.attempts)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl QueuedEvent {
    /// The event id of an idempotency record id: its hash, shortened (what `202` and the
    /// operator's `hooks-dlq` show, and what `hooks-redrive ID=` takes).
    pub fn event_id_of(record: &str) -> String {
        record
            .rsplit('#')
            .next()
            .unwrap_or_default()
            .chars()
            .take(32)
            .collect()
    }

    /// The worker's idempotency record: RingCX's answer, once it took the event.
    pub fn delivery_record(&self) -> String {
        format!("{}#delivery", self.record)
    }

    /// Since when its age counts: acceptance, or the operator's last redrive.
    pub fn age_from(&self) -> i64 {
        self.redriven_at
            .unwrap_or(self.first_seen)
            .max(self.first_seen)
    }

    /// The message body. SQS refuses U+FFFE and U+FFFF in a message, which JSON may carry raw:
    /// they are written as `\u` escapes (they can only occur inside JSON strings).
    pub fn to_body(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_default()
            .replace('\u{FFFE}', "\\ufffe")
            .replace('\u{FFFF}', "\\uffff")
    }
}

/// How long a message waits before its next attempt: doubling from [`MIN_BACKOFF`] with the
/// attempt (`receive_count`, 1 for the first), capped at [`MAX_BACKOFF`], the upper half
/// randomised (`jitter` in `0..1`) so a backlog does not come back as one wave; never shorter
/// than RingCX's `Retry-After`.
pub fn backoff(receive_count: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let doubled = MIN_BACKOFF
        .saturating_mul(1u32 << receive_count.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let half = doubled / 2;
    let wait = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    wait.max(retry_after.unwrap_or_default()).min(LONGEST_HIDE)
}

/// An SQS call that failed. Never carries a message body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("SQS {op} failed transiently ({message}): retry")]
    /// Throttling, a timeout, a 5xx: the same call may succeed later.
    Transient {
        /// The SQS operation.
        op: &'static str,
        /// SQS's message.
        message: String,
    },
    #[error(
        "SQS {op} refused ({code}: {message}): check HOOK_QUEUE_URL / HOOK_DLQ_URL and the function's IAM role"
    )]
    /// The queue is missing or the role may not use it.
    Refused {
        /// The SQS operation.
        op: &'static str,
        /// SQS's error code.
        code: String,
        /// SQS's message.
        message: String,
    },
    #[error("no dead-letter queue is configured (HOOK_DLQ_URL)")]
    /// The operator asked for the dead-letter queue of a deployment without one.
    NoDeadLetterQueue,
}

impl Transient for QueueError {
    fn is_transient(&self) -> bool {
        matches!(self, QueueError::Transient { .. })
    }
}

fn classify<E, R>(op: &'static str, err: &SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match sdk_failure(err) {
        SdkFailure::Transient(message) => QueueError::Transient { op, message },
        SdkFailure::Refused(code, message) => QueueError::Refused { op, code, message },
    }
}

/// A message read from the dead-letter queue, for the operator.
#[derive(Clone)]
pub struct DeadLetter {
    /// SQS's message id.
    pub message_id: String,
    /// What deletes it.
    pub receipt_handle: String,
    /// The event, or why the body is not one.
    pub event: Result<QueuedEvent, String>,
    /// The body as it came (for a redrive of a message this version cannot read).
    pub body: String,
    /// When SQS first took the message into the dead-letter queue (epoch milliseconds).
    pub sent: Option<i64>,
}

impl std::fmt::Debug for DeadLetter {
    /// Without the body (the payload may carry personal data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("message_id", &self.message_id)
            .field("event", &self.event)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl DeadLetter {
    /// Why it is there: the worker's reason, or SQS's redrive policy (the worker never answered
    /// for it, e.g. it crashed or timed out on it every time).
    pub fn reason(&self) -> String {
        match &self.event {
            Ok(e) => e.reason.clone().unwrap_or_else(|| {
                "moved by the queue's redrive policy after HOOK_MAX_RECEIVES receives without an answer (the worker crashed or timed out on it)".into()
            }),
            Err(why) => format!("not a hook event: {why}"),
        }
    }

    /// The event id, or SQS's message id for a message that is not an event.
    pub fn id(&self) -> &str {
        self.event
            .as_ref()
            .map_or(self.message_id.as_str(), |e| e.event_id.as_str())
    }
}

/// The hook queue and its dead-letter queue, through a client built once per instance.
pub struct HookQueue {
    client: Client,
    url: String,
    dlq_url: Option<String>,
    clock: SharedClock,
    calls: AtomicU64,
}

impl HookQueue {
    /// `url` is `HOOK_QUEUE_URL`, `dlq_url` `HOOK_DLQ_URL`.
    pub fn new(client: Client, url: String, dlq_url: Option<String>, clock: SharedClock) -> Self {
        Self {
            client,
            url,
            dlq_url,
            clock,
            calls: AtomicU64::new(0),
        }
    }

    /// SQS calls made so far (for the bench's calls per event).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    async fn send_to(
        &self,
        url: &str,
        body: &str,
        deadline: DateTime<Utc>,
    ) -> Result<String, QueueError> {
        let attempt = || async {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match self
                .client
                .send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
            {
                Ok(out) => Ok(out.message_id().unwrap_or_default().to_owned()),
                Err(e) => Err(classify("SendMessage", &e)),
            }
        };
        retry(&self.clock, crate::store::aws::item_call_policy(), deadline, attempt, |e, wait| {
            tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying an SQS send");
        })
        .await
    }

    /// Puts an accepted event on the hook queue; returns SQS's message id.
    pub async fn enqueue(
        &self,
        event: &QueuedEvent,
        deadline: DateTime<Utc>,
    ) -> Result<String, QueueError> {
        self.send_to(&self.url, &event.to_body(), deadline).await
    }

    /// Puts a message body on the dead-letter queue (the event with its reason, or a body that
    /// is not an event, as it came).
    pub async fn dead_letter(
        &self,
        body: &str,
        deadline: DateTime<Utc>,
    ) -> Result<String, QueueError> {
        let dlq = self
            .dlq_url
            .as_deref()
            .ok_or(QueueError::NoDeadLetterQueue)?;
        self.send_to(dlq, body, deadline).await
    }

    /// Hides a received message for `wait` (its backoff) before SQS hands it out again.
    pub async fn retry_later(
        &self,
        receipt_handle: &str,
        wait: Duration,
    ) -> Result<(), QueueError> {
        self.set_visibility(&self.url, receipt_handle, wait).await
    }

    async fn set_visibility(
        &self,
        url: &str,
        receipt_handle: &str,
        wait: Duration,
    ) -> Result<(), QueueError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let seconds = i32::try_from(wait.min(LONGEST_HIDE).as_secs()).unwrap_or(0);
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("ChangeMessageVisibility", &e))
    }

    /// Reads up to `max` messages of the dead-letter queue, hiding each for `hold` so that a
    /// redrive that follows sees the same ones (an SQS receive is the only way to read a queue).
    pub async fn dead_letters(
        &self,
        max: usize,
        hold: Duration,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let dlq = self
            .dlq_url
            .as_deref()
            .ok_or(QueueError::NoDeadLetterQueue)?;
        let mut out: Vec<DeadLetter> = Vec::new();
        let mut empty_polls = 0;
        while out.len() < max && empty_polls < 2 {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let got = self
                .client
                .receive_message()
                .queue_url(dlq)
                .max_number_of_messages(((max - out.len()).min(10)) as i32)
                .visibility_timeout(i32::try_from(hold.as_secs()).unwrap_or(30))
                // A long poll asks every SQS server: a short one may answer empty while
                // messages wait.
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
                .await
                .map_err(|e| classify("ReceiveMessage", &e))?;
            let messages = got.messages();
            if messages.is_empty() {
                empty_polls += 1;
                continue;
            }
            for m in messages {
                let body = m.body().unwrap_or_default().to_owned();
                let message_id = m.message_id().unwrap_or_default().to_owned();
                if out.iter().any(|d| d.message_id == message_id) {
                    continue;
                }
                out.push(DeadLetter {
                    event: serde_json::from_str::<QueuedEvent>(&body)
                        .map_err(|e| super::serde_error(&e)),
                    receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                    sent: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                        .and_then(|t| t.parse().ok()),
                    body,
                    message_id,
                });
            }
        }
        Ok(out)
    }

    /// Makes listed dead letters visible again at once (a listing is not a redrive).
    pub async fn unhold(&self, letters: &[DeadLetter]) -> Result<(), QueueError> {
        let dlq = self
            .dlq_url
            .as_deref()
            .ok_or(QueueError::NoDeadLetterQueue)?;
        for l in letters {
            self.set_visibility(dlq, &l.receipt_handle, Duration::ZERO)
                .await?;
        }
        Ok(())
    }

    /// Sends a dead letter back to the hook queue, its age counting from now, then deletes it
    /// from the dead-letter queue. A delete that fails after the send leaves a copy behind:
    /// harmless, as the worker delivers an event once whatever the copies.
    pub async fn redrive(
        &self,
        letter: &DeadLetter,
        deadline: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let dlq = self
            .dlq_url
            .as_deref()
            .ok_or(QueueError::NoDeadLetterQueue)?;
        let body = match &letter.event {
            Ok(event) => {
                let mut event = event.clone();
                event.redriven_at = Some(self.clock.now().timestamp_millis());
                event.reason = None;
                event.dead_lettered_at = None;
                event.to_body()
            }
            Err(_) => letter.body.clone(),
        };
        self.send_to(&self.url, &body, deadline).await?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.client
            .delete_message()
            .queue_url(dlq)
            .receipt_handle(&letter.receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("DeleteMessage", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap_and_honours_retry_after() {
        let at = |n, j| backoff(n, None, j);
        assert_eq!(at(1, 0.0), Duration::from_secs(15));
        assert_eq!(at(1, 1.0), Duration::from_secs(30));
        assert_eq!(at(2, 0.0), Duration::from_secs(30));
        assert_eq!(at(3, 1.0), Duration::from_secs(120));
        for n in 1..200 {
            let d = at(n, 0.5);
            assert!(d <= MAX_BACKOFF && d >= MIN_BACKOFF / 2, "{n}: {d:?}");
            assert!(d >= at(n.saturating_sub(1).max(1), 0.5));
        }
        assert_eq!(at(40, 1.0), MAX_BACKOFF);
        assert_eq!(at(40, 0.0), MAX_BACKOFF / 2);
        // RingCX's Retry-After wins when longer, even beyond the cap, up to what SQS allows.
        assert_eq!(
            backoff(1, Some(Duration::from_secs(90)), 0.0),
            Duration::from_secs(90)
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3600)), 0.0),
            Duration::from_secs(3600)
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(99 * 3600)), 0.0),
            LONGEST_HIDE
        );
    }

    #[test]
    fn an_event_prints_no_payload_and_round_trips() {
        let event = QueuedEvent {
            v: 1,
            hook: "h".into(),
            tenant: "default".into(),
            event_id: QueuedEvent::event_id_of("hook#h#0123456789abcdef0123456789abcdef0123"),
            record: "hook#h#0123456789abcdef0123456789abcdef0123".into(),
            payload: serde_json::json!({"phone": "5550100-private"}),
            headers: [("x-h".to_owned(), "header-private".to_owned())].into(),
            query: BTreeMap::new(),
            first_seen: 1,
            redriven_at: None,
            attempts: 0,
            last_error: None,
            reason: None,
            dead_lettered_at: None,
        };
        assert_eq!(event.event_id, "0123456789abcdef0123456789abcdef");
        let shown = format!("{event:?}");
        assert!(!shown.contains("private"), "{shown}");
        let back: QueuedEvent = serde_json::from_str(&event.to_body()).unwrap();
        assert!(back == event);
        assert_eq!(back.delivery_record(), format!("{}#delivery", event.record));
        // SQS refuses these two characters raw; escaped, the event reads back the same.
        let mut odd = event.clone();
        odd.payload = serde_json::json!({"name": "a\u{FFFE}b\u{FFFF}"});
        let body = odd.to_body();
        assert!(
            !body.contains('\u{FFFE}') && !body.contains('\u{FFFF}'),
            "{body}"
        );
        assert!(serde_json::from_str::<QueuedEvent>(&body).unwrap() == odd);
        let mut redriven = event.clone();
        redriven.redriven_at = Some(50);
        assert_eq!((event.age_from(), redriven.age_from()), (1, 50));
    }
}
