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
