//! `hook-worker`: in Lambda, the hook queue's event source mapping invokes it with a batch
//! (`SqsEvent`) and it answers the messages to keep (`SqsBatchResponse`); elsewhere (`make dev`)
//! it polls `HOOK_QUEUE_URL` itself, as the event source mapping would.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use api::App;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use broker::clock::{SharedClock, SystemClock};
use broker::config::Config;
use broker::store::aws::{SecretsManagerStore, sdk_config};
use broker::telemetry;
use chrono::{DateTime, Utc};
use hook_worker::{Worker, local};
use lambda_runtime::{LambdaEvent, service_fn};

/// Outside Lambda, the time one batch may take (Lambda: the function's timeout).
const LOCAL_BATCH_BUDGET: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(arg) = std::env::args().nth(1) {
        anyhow::bail!("the hook-worker binary takes no arguments (got {arg:?})");
    }
    telemetry::init();
    let config = Config::from_env()?;
    let queue_url = config
        .hook_queue
        .url
        .clone()
        .context("HOOK_QUEUE_URL is not set: the worker delivers from that queue")?;
    anyhow::ensure!(
        config.hook_queue.dlq_url.is_some(),
        "HOOK_DLQ_URL is not set: the worker keeps what RingCX will never take in that queue"
    );
    anyhow::ensure!(
        config.idempotency_table.is_some(),
        "IDEMPOTENCY_TABLE is not set: the worker needs it to deliver each event once"
    );
    let clock: SharedClock = Arc::new(SystemClock);
    let sdk = sdk_config().await;
    let store = SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        config.kms_key_id.clone(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let app = App::new(&config, store, clock)
        .context("building the RingCX client")?
        .with_idempotency(&config, aws_sdk_dynamodb::Client::new(&sdk))
        .with_hook_queue(&config, sqs.clone());
    let worker = Worker::new(Arc::new(app), config.hook_queue.clone());
    if telemetry::in_lambda() {
        let handler = |event: LambdaEvent<SqsEvent>| {
            let worker = &worker;
            async move {
                let deadline = i64::try_from(event.context.deadline)
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .unwrap_or_else(|| broker::clock::later(Utc::now(), LOCAL_BATCH_BUDGET));
                let report = worker.handle(event.payload, deadline).await;
                Ok::<SqsBatchResponse, lambda_runtime::Error>(report.response)
            }
        };
        return lambda_runtime::run(service_fn(handler))
            .await
            .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"));
    }
    tracing::info!(queue = %queue_url, "polling the hook queue (outside Lambda)");
    loop {
        if let Err(e) = local::poll_once(
            &worker,
            &sqs,
            &queue_url,
            Duration::from_secs(20),
            LOCAL_BATCH_BUDGET,
        )
        .await
        {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "polling the hook queue failed; trying again");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}
