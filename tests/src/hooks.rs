//! Hook test support: a stack with an idempotency table and a hooks document, signed senders.

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use broker::clock::Clock as _;
use broker::hooks::verify::sign_standard_webhooks;
use broker::store::aws::SecretsManagerStore;
use broker::store::{SecretNames, upsert};

use crate::support::{ApiStack, idempotency_table, moto_store, unique_prefix};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const STRIPE_SECRET: &str = "whsec_stripe_0123456789abcdef";

/// A Standard Webhooks request to `url`: `webhook-id` says `id`, the signature (with `secret`, at
/// `ts`) covers `signed_id` (the same, unless a test forges it) and exactly `raw`.
pub fn standard_webhook(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    id: &str,
    signed_id: &str,
    ts: i64,
    raw: &str,
) -> reqwest::RequestBuilder {
    let sig = sign_standard_webhooks(secret, signed_id, ts, raw.as_bytes()).unwrap();
    http.post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(raw.to_owned())
}

pub fn lead_hook(name: &str) -> Value {
    json!({"name": name, "tenant": "default",
        "verify": {"scheme": "standard-webhooks", "secrets": [SECRET]},
        "request": {"method": "POST",
            "path": "v1/admin/accounts/{{ account_id }}/campaigns/{{ payload.campaign }}/leadLoader/direct",
            "body": {"description": "crm", "listState": "ACTIVE", "duplicateHandling": "{{ payload.dupes | default('REMOVE_FROM_LIST') }}",
                     "uploadLeads": [{"leadPhone": "{{ payload.phone }}", "firstName": "{{ payload.first_name }}",
                                      "externId": "{{ payload.id }}", "leadPriority": "{{ payload.priority }}"}]}}})
}

pub struct Hooks {
    pub s: ApiStack<SecretsManagerStore>,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
    pub http: reqwest::Client,
}

pub async fn hooks_stack(test: &str, extra: &[(&str, &str)], hooks: Value) -> Hooks {
    let (dynamodb, table) = idempotency_table(test).await;
    let mut config: Vec<(&str, &str)> = vec![("IDEMPOTENCY_TABLE", table.as_str())];
    config.extend_from_slice(extra);
    let s = ApiStack::start(moto_store().await, &unique_prefix(test), &config).await;
    let name = SecretNames::new(s.prefix.clone()).hooks();
    upsert(&s.store, &name, &SecretString::from(hooks.to_string()))
        .await
        .unwrap();
    Hooks {
        s,
        dynamodb,
        table,
        http: reqwest::Client::new(),
    }
}

impl Hooks {
    /// A Standard Webhooks delivery of `body` with event id `id`, signed at the current time.
    pub fn signed(
        &self,
        base: &str,
        hook: &str,
        id: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let url = format!("{base}/v1/hooks/{hook}");
        let ts = self.s.clock.now().timestamp();
        standard_webhook(&self.http, &url, SECRET, id, id, ts, &body.to_string())
    }

    pub fn loads(&self) -> usize {
        self.s.sim.lead_loads().len()
    }

    pub fn idempotency_calls(&self) -> u64 {
        self.s.app.idempotency.as_ref().map_or(0, |i| i.calls())
    }
}

pub fn lead() -> Value {
    json!({"id": "crm-1", "campaign": 42, "phone": "5550100", "first_name": "Ada", "priority": 3})
}

pub async fn answer(r: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = r.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The lead hook, queued.
pub fn queued_lead_hook(name: &str) -> Value {
    let mut hook = lead_hook(name);
    hook["delivery"] = json!("queued");
    hook
}

/// The hook queue and its dead-letter queue of a [`queued_stack`].
pub struct Queues {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
    pub dlq: String,
}

impl Queues {
    /// Every message a queue holds now (received, then made visible again), as event JSON.
    pub async fn peek(&self, url: &str) -> Vec<Value> {
        let mut seen: Vec<(String, String, Value)> = Vec::new();
        for _ in 0..50 {
            let got = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .send()
                .await
                .unwrap();
            if got.messages().is_empty() {
                break;
            }
            for m in got.messages() {
                let id = m.message_id().unwrap().to_owned();
                if !seen.iter().any(|(i, _, _)| *i == id) {
                    let body = serde_json::from_str(m.body().unwrap())
                        .unwrap_or(Value::String(m.body().unwrap().to_owned()));
                    seen.push((id, m.receipt_handle().unwrap().to_owned(), body));
                }
            }
        }
        for (_, receipt, _) in &seen {
            self.sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        seen.into_iter().map(|(_, _, body)| body).collect()
    }
}

/// A hooks stack whose instances enqueue queued hooks (moto's SQS), with `max_receives` for the
/// redrive policy and `HOOK_MAX_RECEIVES`.
pub async fn queued_stack(
    test: &str,
    extra: &[(&str, &str)],
    hooks: Value,
    max_receives: u32,
) -> (Hooks, Queues) {
    let (sqs, url, dlq) = crate::support::hook_queues(test, max_receives).await;
    let receives = max_receives.to_string();
    let mut config: Vec<(&str, &str)> = vec![
        ("HOOK_QUEUE_URL", url.as_str()),
        ("HOOK_DLQ_URL", dlq.as_str()),
        ("HOOK_MAX_RECEIVES", receives.as_str()),
    ];
    config.extend_from_slice(extra);
    let h = hooks_stack(test, &config, hooks).await;
    (h, Queues { sqs, url, dlq })
}

/// A worker instance of `h`'s world, as `hook-worker`'s main builds it (its own caches, token
/// cache and pacer), on the stack's clock.
pub async fn worker(h: &Hooks) -> hook_worker::Worker<SecretsManagerStore> {
    let clock: broker::clock::SharedClock = std::sync::Arc::new(h.s.clock.clone());
    let app = crate::support::instance(&h.s.config, h.s.store.clone(), clock).await;
    hook_worker::Worker::new(app, h.s.config.hook_queue.clone())
}

/// Lambda's event source mapping, played against moto's SQS on the simulated clock: receive a
/// batch, invoke the worker with the invocation's deadline, delete what it did not report as
/// failed. SQS's visibility timeouts run on the wall clock; the backoffs the worker set are kept
/// here in simulated time, and [`EventSource::release_due`] makes a message visible again once
/// the simulated clock has passed its backoff (the hour passing, in milliseconds).
pub struct EventSource {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
    /// Messages waiting out a backoff: receipt handle and when they become visible (simulated).
    waiting: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// Every backoff the worker asked for, in order.
    pub backoffs: Vec<std::time::Duration>,
}

impl EventSource {
    pub fn new(q: &Queues) -> Self {
        Self {
            sqs: q.sqs.clone(),
            url: q.url.clone(),
            waiting: Vec::new(),
            backoffs: Vec::new(),
        }
    }

    /// One invocation with up to `batch` messages and a `timeout` in simulated time; `None`
    /// when nothing was visible.
    pub async fn round(
        &mut self,
        worker: &hook_worker::Worker<SecretsManagerStore>,
        clock: &broker::clock::ManualClock,
        batch: i32,
        timeout: std::time::Duration,
    ) -> Option<hook_worker::Report> {
        let event =
            hook_worker::local::receive(&self.sqs, &self.url, batch, std::time::Duration::ZERO)
                .await
                .unwrap();
        if event.records.is_empty() {
            return None;
        }
        let deadline = broker::clock::later(clock.now(), timeout);
        let report = worker.handle(event.clone(), deadline).await;
        hook_worker::local::delete_done(&self.sqs, &self.url, &event, &report)
            .await
            .unwrap();
        for (id, fate) in &report.fates {
            if let hook_worker::Fate::Retry { after, .. } = fate {
                let receipt = event
                    .records
                    .iter()
                    .find(|m| m.message_id.as_deref() == Some(id.as_str()))
                    .and_then(|m| m.receipt_handle.clone())
                    .unwrap();
                self.backoffs.push(*after);
                // The worker set the backoff on SQS's wall clock; held here until the simulated
                // clock passes it instead.
                self.sqs
                    .change_message_visibility()
                    .queue_url(&self.url)
                    .receipt_handle(&receipt)
                    .visibility_timeout(3600)
                    .send()
                    .await
                    .unwrap();
                self.waiting
                    .push((receipt, broker::clock::later(clock.now(), *after)));
            }
        }
        Some(report)
    }

    /// When the next waiting message becomes visible (simulated), if any waits.
    pub fn next_due(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.waiting.iter().map(|(_, at)| *at).min()
    }

    /// Makes the messages whose backoff has passed on `clock` visible again.
    pub async fn release_due(&mut self, clock: &broker::clock::ManualClock) {
        let now = clock.now();
        let (due, later): (Vec<_>, Vec<_>) = self.waiting.drain(..).partition(|(_, at)| *at <= now);
        self.waiting = later;
        for (receipt, _) in due {
            match self
                .sqs
                .change_message_visibility()
                .queue_url(&self.url)
                .receipt_handle(&receipt)
                .visibility_timeout(0)
                .send()
                .await
            {
                Ok(_) => {}
                // Received and finished by the other source meanwhile (a test that drains counts
                // every delivery, so a message lost here would fail it).
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_receipt_handle_is_invalid()) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    /// Runs rounds until the queue is empty and nothing waits, moving the clock to each next
    /// backoff's end when nothing is visible; `each` runs before every round (to lift an outage
    /// at its hour, say) and says whether to go on while this source has nothing to do (another
    /// may still hold messages). Returns every report. `workers` take turns, one invocation at a
    /// time: each call reaches RingCX at the simulated time it was paced (two drains at once are
    /// two concurrent invocations, whose calls may arrive after the other's sleeps moved the
    /// shared clock on).
    pub async fn drain(
        &mut self,
        workers: &[&hook_worker::Worker<SecretsManagerStore>],
        clock: &broker::clock::ManualClock,
        each: &(dyn Fn(chrono::DateTime<chrono::Utc>) -> bool + Sync),
    ) -> Vec<hook_worker::Report> {
        use broker::clock::Clock as _;
        let mut reports = Vec::new();
        for turn in 0..100_000 {
            let go_on = each(clock.now());
            self.release_due(clock).await;
            let worker = workers[turn % workers.len()];
            match self
                .round(worker, clock, 10, std::time::Duration::from_secs(120))
                .await
            {
                Some(r) => reports.push(r),
                None => match self.next_due() {
                    Some(at) => {
                        clock.advance_to(at);
                        self.release_due(clock).await;
                    }
                    // A long poll's worth of waiting, for what the other source holds.
                    None if go_on => clock.sleep(std::time::Duration::from_secs(1)).await,
                    None => return reports,
                },
            }
        }
        panic!("the queue did not drain");
    }
}
