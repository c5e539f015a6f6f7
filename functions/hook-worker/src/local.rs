//! Outside Lambda, the worker plays the event source mapping's part itself: receive a batch from
//! the hook queue, hand it to [`Worker::handle`] as Lambda would, and delete what it did not
//! report as failed. `make dev` runs it against moto's SQS; the tests drive it a batch at a time.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use broker::store::SecretStore;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{Report, Worker};

/// How long a received batch stays hidden from other pollers (Lambda: the queue's visibility
/// timeout, which the template sets above the worker's timeout).
pub const BATCH_VISIBILITY: Duration = Duration::from_secs(120);

/// A batch as the event source mapping delivers it (`SqsEvent`), received from `queue_url`.
pub async fn receive(
    sqs: &Client,
    queue_url: &str,
    max: i32,
    wait: Duration,
) -> Result<SqsEvent, aws_sdk_sqs::Error> {
    let got = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max.clamp(1, 10))
        .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(0).min(20))
        .visibility_timeout(BATCH_VISIBILITY.as_secs() as i32)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await?;
    let records: Vec<_> = got
        .messages()
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:local:000000000000:hooks",
                "awsRegion": "local",
            })
        })
        .collect();
    Ok(
        serde_json::from_value(json!({ "Records": records })).unwrap_or_else(|e| {
            // Our own JSON in SqsEvent's shape: a failure here is a bug, said loudly; the
            // messages come back after BATCH_VISIBILITY.
            tracing::error!(error = %e, "could not hand a received batch to the worker");
            SqsEvent::default()
        }),
    )
}

/// Deletes the batch's messages that `report` does not name as failures, as the event source
/// mapping does after an invocation answers.
pub async fn delete_done(
    sqs: &Client,
    queue_url: &str,
    batch: &SqsEvent,
    report: &Report,
) -> Result<usize, aws_sdk_sqs::Error> {
    let failed: Vec<&str> = report
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let mut deleted = 0;
    for m in &batch.records {
        if failed.contains(&m.message_id.as_deref().unwrap_or_default()) {
            continue;
        }
        if let Some(receipt) = &m.receipt_handle {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(receipt)
                .send()
                .await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// One round: receive (waiting up to `wait`), deliver within `budget`, delete what is done.
/// Returns the report (empty when nothing was waiting).
pub async fn poll_once<S: SecretStore + Clone + 'static>(
    worker: &Worker<S>,
    sqs: &Client,
    queue_url: &str,
    wait: Duration,
    budget: Duration,
) -> Result<Report, aws_sdk_sqs::Error> {
    let batch = receive(sqs, queue_url, 10, wait).await?;
    let deadline: DateTime<Utc> = broker::clock::later(worker.app.clock.now(), budget);
    let report = worker.handle(batch.clone(), deadline).await;
    delete_done(sqs, queue_url, &batch, &report).await?;
    Ok(report)
}
