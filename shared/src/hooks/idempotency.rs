//! Exactly once per idempotency key, across any number of instances: a DynamoDB table
//! (`IDEMPOTENCY_TABLE`, partition key `id`, TTL on `expiresAt`) and conditional writes only,
//! the way Powertools for AWS Lambda's idempotency utility does it.
//!
//! - **Claim**: one `PutItem` of an `IN_PROGRESS` record whose lease ends with the invocation's
//!   deadline, on the condition that no record exists, the existing one has expired, or it is an
//!   in-progress record whose lease has ended (a crashed invocation never wedges a key). When the
//!   condition fails, DynamoDB hands back the existing record in the same call
//!   (`ReturnValuesOnConditionCheckFailure=ALL_OLD`): a replay costs one call.
//! - **Complete**: one `PutItem` of the `COMPLETED` record with RingCX's status and body (capped),
//!   on the condition that the claim is still ours.
//! - **Release**: one `DeleteItem` of our claim, so the sender's retry delivers.
//!
//! DynamoDB deletes expired items only eventually (within days), so every read compares
//! `expiresAt` with the clock itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::clock::SharedClock;
use crate::retry::{Transient, retry};
use crate::store::aws::SdkFailure;

/// The largest RingCX answer body kept for replays (DynamoDB items hold at most 400 KB).
pub const MAX_STORED_BODY: usize = 64 * 1024;

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

/// A DynamoDB call that failed. Never carries a payload or a key in clear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyError {
    #[error("DynamoDB {op} failed transiently ({message}): retry")]
    /// Throttling, a timeout, a 5xx: the same call may succeed later.
    Transient {
        /// The DynamoDB operation.
        op: &'static str,
        /// DynamoDB's message.
        message: String,
    },
    #[error(
        "DynamoDB {op} refused ({code}: {message}): check IDEMPOTENCY_TABLE and the function's IAM role"
    )]
    /// The table is missing or the role may not use it.
    Refused {
        /// The DynamoDB operation.
        op: &'static str,
        /// DynamoDB's error code.
        code: String,
        /// DynamoDB's message.
        message: String,
    },
    #[error("the idempotency claim was taken over by another invocation (the lease ended first)")]
    /// Our claim is no longer ours.
    LeaseLost,
}

impl Transient for IdempotencyError {
    fn is_transient(&self) -> bool {
        matches!(self, IdempotencyError::Transient { .. })
    }
}

/// RingCX's answer to a delivered event, as kept for replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// RingCX's status.
    pub status: u16,
    /// RingCX's content type.
    pub content_type: Option<String>,
    /// RingCX's body, or `None` when it was larger than [`MAX_STORED_BODY`].
    pub body: Option<Bytes>,
    /// The size of the body RingCX sent.
    pub body_len: usize,
}

/// Our hold on a key between the claim and its completion or release.
#[derive(Debug, Clone)]
pub struct Lease {
    id: String,
    claim: String,
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The key is ours to deliver.
    Claimed(Lease),
    /// Delivered already: the first answer, to give again.
    Replay(StoredAnswer),
    /// Another invocation is delivering it; its lease ends in this long.
    InProgress {
        /// Time until the other invocation's lease ends.
        retry_after: Duration,
    },
}

/// The idempotency table, through a client built once per instance.
pub struct IdempotencyStore {
    client: Client,
    table: String,
    clock: SharedClock,
    window: Duration,
    calls: AtomicU64,
}

impl IdempotencyStore {
    /// Records are kept (and repeats replayed) for `window` (`HOOK_IDEMPOTENCY_HOURS`).
    pub fn new(client: Client, table: String, clock: SharedClock, window: Duration) -> Self {
        Self {
            client,
            table,
            clock,
            window,
            calls: AtomicU64::new(0),
        }
    }

    /// DynamoDB calls made so far (for the bench's calls per delivery).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The record's partition key: the hook and a hash of the tenant and the key, so the table
    /// never holds a sender's event id (which may carry personal data) in clear.
    pub fn record_id(hook: &str, tenant: &str, key: &str) -> String {
        let mut material = Vec::with_capacity(tenant.len() + key.len() + 1);
        material.extend_from_slice(tenant.as_bytes());
        material.push(0);
        material.extend_from_slice(key.as_bytes());
        format!(
            "hook#{hook}#{}",
            crate::secret::hex(&crate::secret::sha256(&material))
        )
    }

    /// Claims `id` until `lease_until`, or says why not. `deadline` bounds the retries.
    pub async fn claim(
        &self,
        id: &str,
        lease_until: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> Result<Claim, IdempotencyError> {
        let now = self.clock.now();
        let claim = uuid::Uuid::new_v4().to_string();
        let expires = now.timestamp() + self.window.as_secs() as i64;
        let call = || {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.client
                .put_item()
                .table_name(&self.table)
                .item("id", s(id))
                .item("status", s(IN_PROGRESS))
                .item("claim", s(&claim))
                .item("leaseUntil", n(lease_until.timestamp_millis()))
                .item("expiresAt", n(expires))
                .condition_expression(
                    "attribute_not_exists(id) OR expiresAt < :now OR (#status = :in_progress AND leaseUntil < :now_ms)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":now", n(now.timestamp()))
                .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
                .expression_attribute_values(":in_progress", s(IN_PROGRESS))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
        };
        let attempt = || async {
            match call().await {
                Ok(_) => Ok(None),
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    let existing = match e.err() {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                            c.item().cloned()
                        }
                        _ => None,
                    };
                    Ok(Some(existing.unwrap_or_default()))
                }
                Err(e) => Err(classify("PutItem", e)),
            }
        };
        let found = retry(&self.clock, crate::store::aws::item_call_policy(), deadline, attempt, |e, wait| {
            tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying the idempotency claim");
        })
        .await?;
        Ok(match found {
            None => Claim::Claimed(Lease {
                id: id.to_owned(),
                claim,
            }),
            Some(item) => self.existing(&item, &claim, id, now),
        })
    }

    fn existing(
        &self,
        item: &HashMap<String, AttributeValue>,
        claim: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Claim {
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        // Our own claim: a first attempt that landed but whose answer was lost, then retried.
        if text("status").as_deref() == Some(IN_PROGRESS) && text("claim").as_deref() == Some(claim)
        {
            return Claim::Claimed(Lease {
                id: id.to_owned(),
                claim: claim.to_owned(),
            });
        }
        let number = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
        };
        if text("status").as_deref() == Some(COMPLETED)
            && let Some(status) = number("statusCode").and_then(|c| u16::try_from(c).ok())
        {
            let body = item
                .get("body")
                .and_then(|v| v.as_b().ok())
                .map(|b| Bytes::copy_from_slice(b.as_ref()));
            return Claim::Replay(StoredAnswer {
                status,
                content_type: text("contentType"),
                body_len: number("bodyLength")
                    .and_then(|l| usize::try_from(l).ok())
                    .unwrap_or_else(|| body.as_ref().map_or(0, Bytes::len)),
                body,
            });
        }
        // In progress (or a record we cannot read, which the condition kept): wait for its lease.
        let lease_ms = number("leaseUntil").unwrap_or(now.timestamp_millis() + 1000);
        let left = (lease_ms - now.timestamp_millis()).max(1000);
        Claim::InProgress {
            retry_after: Duration::from_millis(left as u64),
        }
    }

    /// Records RingCX's answer under our claim: repeats replay it until the window ends.
    pub async fn complete(
        &self,
        lease: &Lease,
        answer: &StoredAnswer,
        deadline: DateTime<Utc>,
    ) -> Result<(), IdempotencyError> {
        let now = self.clock.now();
        let expires = now.timestamp() + self.window.as_secs() as i64;
        let attempt = || async {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("id", s(&lease.id))
                .item("status", s(COMPLETED))
                .item("claim", s(&lease.claim))
                .item("statusCode", n(i64::from(answer.status)))
                .item("bodyLength", n(answer.body_len as i64))
                .item("completedAt", n(now.timestamp()))
                .item("expiresAt", n(expires))
                .condition_expression("claim = :claim")
                .expression_attribute_values(":claim", s(&lease.claim));
            if let Some(ct) = &answer.content_type {
                put = put.item("contentType", s(ct));
            }
            if let Some(body) = answer.body.as_ref().filter(|b| b.len() <= MAX_STORED_BODY) {
                put = put.item("body", AttributeValue::B(Blob::new(body.to_vec())));
            }
            match put.send().await {
                Ok(_) => Ok(()),
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    Err(IdempotencyError::LeaseLost)
                }
                Err(e) => Err(classify("PutItem", e)),
            }
        };
        retry(&self.clock, crate::store::aws::item_call_policy(), deadline, attempt, |e, wait| {
            tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying the idempotency record");
        })
        .await
    }

    /// Gives the key up (the delivery failed), so the sender's retry delivers it.
    pub async fn release(
        &self,
        lease: &Lease,
        deadline: DateTime<Utc>,
    ) -> Result<(), IdempotencyError> {
        let attempt = || async {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("id", s(&lease.id))
                .condition_expression("claim = :claim")
                .expression_attribute_values(":claim", s(&lease.claim))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Someone else holds it now: nothing of ours to release.
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    Ok(())
                }
                Err(e) => Err(classify("DeleteItem", e)),
            }
        };
        retry(&self.clock, crate::store::aws::item_call_policy(), deadline, attempt, |e, wait| {
            tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying the idempotency release");
        })
        .await
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn classify<E, R>(op: &'static str, err: SdkError<E, R>) -> IdempotencyError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match crate::store::aws::sdk_failure(&err) {
        SdkFailure::Transient(message) => IdempotencyError::Transient { op, message },
        SdkFailure::Refused(code, message) => IdempotencyError::Refused { op, code, message },
    }
}
