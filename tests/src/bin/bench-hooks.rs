//! `make bench`: a hook's own overhead, RingCX excluded: verify a Standard Webhooks signature,
//! parse the payload, render the lead-loader request, and claim and record the idempotency key in
//! DynamoDB (moto's, through the real SDK), for new events and for repeats. Prints p50/p99 per
//! step and the DynamoDB calls per delivery. Then queued hooks through the HTTP function: events
//! accepted a second by one instance, the 202's p50/p99, SQS and DynamoDB calls per event on each
//! side, and the drain rate of a backlog after an outage (simulated time, two workers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::clock::{SharedClock, SystemClock};
use broker::hooks::idempotency::{Claim, IdempotencyStore, StoredAnswer};
use broker::hooks::verify::sign_standard_webhooks;
use broker::hooks::{Headers, Inbound, parse_hooks};
use broker_tests::hooks::{
    EventSource, SECRET, answer, lead, lead_hook, queued_lead_hook, queued_stack, worker,
};
use broker_tests::sim::{FaultScope, Faults};

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
    queued().await;
}

/// Queued hooks end to end in process: one HTTP instance accepting, two workers draining.
async fn queued() {
    use broker::clock::Clock as _;
    const QUEUED: usize = 400;
    const SENDERS: usize = 8;
    let (h, q) = queued_stack(
        "bench-queued",
        &[],
        serde_json::json!([queued_lead_hook("crm")]),
        100,
    )
    .await;
    // RingCX is down while the events arrive (accepting needs no RingCX).
    h.s.sim.set_faults(Faults {
        error_ratio: 1.0,
        scope: FaultScope::Voice,
        ..Faults::default()
    });
    let body = |n: usize| {
        serde_json::json!({"id": format!("crm-{n}"), "campaign": 42, "phone": format!("555{n:04}"),
                           "first_name": "Ada", "priority": 3})
    };
    println!(
        "queued hooks through one HTTP instance (moto's SQS and DynamoDB over HTTP; RingCX down while accepting)"
    );
    // One sender at a time: the 202's own latency.
    let mut alone = Vec::new();
    for n in 0..100 {
        let request = h.signed(&h.s.base, "crm", &format!("one_{n}"), &body(QUEUED + n));
        let t = Instant::now();
        let (status, _, _) = answer(request).await;
        assert_eq!(status, 202);
        alone.push(t.elapsed());
    }
    percentiles("the 202, one sender at a time", alone);
    // Drain those first, so the backlog below is exactly QUEUED events.
    let purge = q.sqs.purge_queue().queue_url(&q.url).send().await;
    assert!(purge.is_ok(), "{purge:?}");
    let dynamodb_before = h.idempotency_calls();
    let sqs_before = h.s.app.hook_queue.as_ref().map_or(0, |q| q.calls());
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(QUEUED);
    for chunk in (0..QUEUED).collect::<Vec<_>>().chunks(SENDERS) {
        let sends = chunk.iter().map(|n| {
            let request = h.signed(&h.s.base, "crm", &format!("evt_{n}"), &body(*n));
            async move {
                let t = Instant::now();
                let (status, _, _) = answer(request).await;
                assert_eq!(status, 202);
                t.elapsed()
            }
        });
        latencies.extend(futures_util::future::join_all(sends).await);
    }
    let elapsed = started.elapsed();
    let sqs_http = h.s.app.hook_queue.as_ref().map_or(0, |q| q.calls()) - sqs_before;
    let dynamodb_http = h.idempotency_calls() - dynamodb_before;
    println!(
        "  {QUEUED} events from {SENDERS} concurrent senders: accepted a second by one instance {:.0} (bounded by moto, one Python process serving every call)",
        QUEUED as f64 / elapsed.as_secs_f64()
    );
    percentiles("the 202, 8 senders at once", latencies);
    println!(
        "  HTTP side, per event: SQS calls {:.2}, DynamoDB calls {:.2}",
        sqs_http as f64 / QUEUED as f64,
        dynamodb_http as f64 / QUEUED as f64
    );
    // A 10-minute outage, then the backlog drains through two workers (the defaults: 25% of
    // RingCX's 120 a minute, 15 per worker).
    let (w1, w2) = (worker(&h).await, worker(&h).await);
    let (mut a, mut b) = (EventSource::new(&q), EventSource::new(&q));
    let start = h.s.clock.now();
    let recovered = std::sync::Mutex::new(None);
    let lift = |now: chrono::DateTime<chrono::Utc>| {
        let mut r = recovered.lock().unwrap();
        if r.is_none() && now - start >= chrono::Duration::minutes(10) {
            h.s.sim.clear_faults();
            *r = Some(now);
        }
        h.s.sim.lead_loads().len() < QUEUED
    };
    let (one, two) = ([&w1], [&w2]);
    let (ra, rb) = tokio::join!(
        a.drain(&one, &h.s.clock, &lift),
        b.drain(&two, &h.s.clock, &lift)
    );
    let batches = ra.len() + rb.len();
    let recovered = recovered.lock().unwrap().expect("the outage ended");
    let loads = h.s.sim.lead_loads();
    assert_eq!(loads.len(), QUEUED);
    let first = loads.iter().map(|l| l.at).min().unwrap();
    let last = loads.iter().map(|l| l.at).max().unwrap();
    let minutes = (last - first).num_milliseconds() as f64 / 60_000.0;
    let attempts =
        h.s.sim
            .requests()
            .iter()
            .filter(|r| r.path.contains("/leadLoader/"))
            .count();
    let worker_sqs = w1.queue_calls() + w2.queue_calls();
    let worker_dynamodb = w1.idempotency_calls() + w2.idempotency_calls();
    println!(
        "  worker side, per event: DynamoDB calls {:.2} (2 per delivery, 2 per retry), SQS calls {:.2} by the worker (backoffs) and {:.2} by the event source mapping (a receive and a batch delete per batch); {attempts} RingCX attempts for {QUEUED} events",
        worker_dynamodb as f64 / QUEUED as f64,
        worker_sqs as f64 / QUEUED as f64,
        2.0 * batches as f64 / QUEUED as f64,
    );
    println!(
        "  drain after a 10-minute outage: {QUEUED} delivered in {:.1} simulated minutes from the first delivery ({:.1} a minute; the share is 30), the last {:.1} minutes after recovery",
        minutes,
        QUEUED as f64 / minutes,
        (last - recovered).num_milliseconds() as f64 / 60_000.0
    );
}
