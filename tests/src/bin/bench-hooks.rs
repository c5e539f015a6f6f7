//! `make bench`: a hook's own overhead, RingCX excluded: verify a Standard Webhooks signature,
//! parse the payload, render the lead-loader request, and claim and record the idempotency key in
//! DynamoDB (moto's, through the real SDK), for new events and for repeats. Prints p50/p99 per
//! step and the DynamoDB calls per delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::clock::{SharedClock, SystemClock};
use broker::hooks::idempotency::{Claim, IdempotencyStore, StoredAnswer};
use broker::hooks::verify::sign_standard_webhooks;
use broker::hooks::{Headers, Inbound, parse_hooks};
use broker_tests::hooks::{SECRET, lead, lead_hook};

const EVENTS: usize = 500;

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "  {label:<34} p50 {:>7.3} ms   p99 {:>7.3} ms",
        at(0.50).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let clock: SharedClock = Arc::new(SystemClock);
    let (set, refused) = parse_hooks(
        &serde_json::json!([lead_hook("crm-new-lead")]).to_string(),
        &["default".to_owned()],
    );
    assert!(refused.is_empty());
    let hook = set.get("crm-new-lead").expect("the hook loads");
    let (client, table) = broker_tests::support::idempotency_table("bench-hooks").await;
    let store = IdempotencyStore::new(client, table, clock.clone(), Duration::from_secs(86_400));
    let raw = lead().to_string();
    let query = std::collections::BTreeMap::new();
    let (mut local, mut claim, mut complete, mut whole, mut replays) =
        (vec![], vec![], vec![], vec![], vec![]);
    let answer = StoredAnswer {
        status: 200,
        content_type: Some("application/json".into()),
        body: Some(bytes::Bytes::from_static(
            br#"{"leadsAccepted":1,"leadsSupplied":1}"#,
        )),
        body_len: 37,
    };
    println!(
        "hooks: {EVENTS} new events, then {EVENTS} repeats; DynamoDB is moto's over HTTP (RingCX excluded)"
    );
    for i in 0..EVENTS {
        let id = format!("msg_{i}");
        let ts = clock.now().timestamp();
        let mut headers = Headers::new();
        headers.insert("webhook-id".into(), id.clone());
        headers.insert("webhook-timestamp".into(), ts.to_string());
        headers.insert(
            "webhook-signature".into(),
            sign_standard_webhooks(SECRET, &id, ts, raw.as_bytes()).unwrap(),
        );
        let started = Instant::now();
        hook.scheme
            .verify(&headers, raw.as_bytes(), ts)
            .expect("verifies");
        let payload: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let inbound = Inbound {
            payload: &payload,
            headers: &headers,
            query: &query,
            raw_body: raw.as_bytes(),
            account_id: Some("333333"),
        };
        let rendered = hook.render(&inbound).expect("renders");
        let record =
            IdempotencyStore::record_id(&hook.name, &hook.tenant, &rendered.idempotency_key);
        local.push(started.elapsed());
        let deadline = clock.now() + chrono::Duration::seconds(20);
        let t = Instant::now();
        let Claim::Claimed(lease) = store
            .claim(&record, deadline, deadline)
            .await
            .expect("claims")
        else {
            panic!("a new event is claimed")
        };
        claim.push(t.elapsed());
        let t = Instant::now();
        store
            .complete(&lease, &answer, deadline)
            .await
            .expect("records");
        complete.push(t.elapsed());
        whole.push(started.elapsed());
    }
    let calls_new = store.calls();
    for i in 0..EVENTS {
        let record = IdempotencyStore::record_id(&hook.name, &hook.tenant, &format!("msg_{i}"));
        let deadline = clock.now() + chrono::Duration::seconds(20);
        let t = Instant::now();
        match store
            .claim(&record, deadline, deadline)
            .await
            .expect("claims")
        {
            Claim::Replay(a) => assert_eq!(a, answer),
            other => panic!("a repeat replays, got {other:?}"),
        }
        replays.push(t.elapsed());
    }
    let calls_replay = store.calls() - calls_new;
    percentiles("verify + parse + render", local);
    percentiles("claim (PutItem, conditional)", claim);
    percentiles("record (PutItem, conditional)", complete);
    percentiles("a new event's whole overhead", whole);
    percentiles("a repeat (one PutItem, ALL_OLD)", replays);
    println!(
        "  DynamoDB calls per delivery: {:.2} for a new event, {:.2} for a repeat",
        calls_new as f64 / EVENTS as f64,
        calls_replay as f64 / EVENTS as f64
    );
}
