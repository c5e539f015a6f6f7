//! Secrets Manager's request quotas (the model enforces AWS's figures on the simulated clock):
//! a throttled ring read falls back to one read per slot, an instance finds the next generation
//! with one call, a read budget that runs out answers 503 with `Retry-After`, a handed-out token
//! is the newest, a due ring is renewed rather than forced, and a refresher pass over 1,000
//! tenants stays within its share of the quotas.

use std::sync::Arc;

use broker::clock::{Clock as _, ManualClock, SharedClock};
use broker::store::memory::{InjectedFault, MemoryStore, Op};
use broker::store::{SecretNames, SecretStore, SessionRing};
use broker_tests::sim::Behaviour;
use broker_tests::support::{ApiStack, config, seed_due_tenants};
use chrono::Duration;
use refresher::{Refresher, TenantOutcome};
use reqwest::StatusCode;
use serde_json::Value;

async fn stack() -> (ApiStack<MemoryStore>, ManualClock) {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new(Arc::new(clock.clone()));
    // The callers list stays cached, so every Secrets Manager call counted here is the ring's.
    let s = ApiStack::start_on(
        clock.clone(),
        store,
        "ringcx/",
        &[("CALLERS_CACHE_SECONDS", "3600")],
    )
    .await;
    (s, clock)
}

fn calls(store: &MemoryStore, op: Op) -> u64 {
    store.stats().calls.get(&op).copied().unwrap_or(0)
}

fn throttled(store: &MemoryStore, op: Op) -> u64 {
    store.stats().throttled.get(&op).copied().unwrap_or(0)
}

async fn accounts(
    s: &ApiStack<MemoryStore>,
    key: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = reqwest::Client::new()
        .get(s.url("/v1/engage/v1/admin/accounts"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_throttled_batch_read_falls_back_to_one_read_per_slot() {
    let (s, _clock) = stack().await;
    // Warm the callers list with the default tenant; tenant `second`'s ring is still unread.
    assert_eq!(accounts(&s, s.key("proxy")).await.0, 200);
    // The rest of the account spends this second's 100 BatchGetSecretValue.
    let names: Vec<String> = (0..20).map(|i| format!("other/session-{i}")).collect();
    let mut spent = 0;
    while s.store.batch_get(&names).await.is_ok() {
        spent += 1;
    }
    assert!(spent <= 100, "{spent}");
    let (batch, gets) = (calls(&s.store, Op::BatchGet), calls(&s.store, Op::Get));
    let (status, _, body) = accounts(&s, s.key("other")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        calls(&s.store, Op::BatchGet) - batch,
        1,
        "one batch call, throttled"
    );
    assert_eq!(
        calls(&s.store, Op::Get) - gets,
        20,
        "then one GetSecretValue per slot"
    );
    assert_eq!(throttled(&s.store, Op::Get), 0);
}

#[tokio::test]
async fn an_instance_that_knows_g_finds_g_plus_one_with_one_call() {
    let (s, clock) = stack().await;
    assert_eq!(accounts(&s, s.key("proxy")).await.0, 200);
    let known = s.app.tokens.ring_reads();
    // The refresher renews (the cached token is within the margin), then the cached token runs
    // under MIN_TOKEN_TTL_SECONDS and the instance looks again.
    clock.advance(Duration::seconds(200));
    s.refresh_now("default").await.unwrap();
    clock.advance(Duration::seconds(75));
    let (batch, gets) = (calls(&s.store, Op::BatchGet), calls(&s.store, Op::Get));
    assert_eq!(accounts(&s, s.key("proxy")).await.0, 200);
    assert_eq!(
        calls(&s.store, Op::Get) - gets,
        1,
        "one GetSecretValue of g+1's slot"
    );
    assert_eq!(calls(&s.store, Op::BatchGet) - batch, 0, "no batch read");
    assert_eq!(s.app.tokens.ring_reads(), known, "the ring was not read");
    assert_eq!(s.app.tokens.slot_reads(), 1);
}

#[tokio::test]
async fn a_read_budget_that_runs_out_answers_503_with_retry_after_and_never_hangs() {
    let (s, clock) = stack().await;
    assert_eq!(accounts(&s, s.key("proxy")).await.0, 200);
    for _ in 0..2_000 {
        s.store.inject(Op::BatchGet, InjectedFault::Throttle);
        s.store.inject(Op::Get, InjectedFault::Throttle);
    }
    let started = clock.now();
    let batch = calls(&s.store, Op::BatchGet);
    let (status, headers, body) = accounts(&s, s.key("other")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "token_unavailable");
    assert!(headers.contains_key("retry-after"));
    let waited = (clock.now() - started).to_std().unwrap();
    // How long the backoff waited is jittered (each wait falls in [d/2, d]); that it retried
    // after waiting is not.
    let attempts = calls(&s.store, Op::BatchGet) - batch;
    assert!(
        attempts >= 2 && waited > std::time::Duration::ZERO,
        "it retried with backoff: {attempts} batch reads in {waited:?}"
    );
    assert!(
        waited <= s.app.token_budget,
        "within the request's budget: {waited:?}"
    );
}

#[tokio::test]
async fn a_handed_out_token_is_the_newest_the_ring_holds() {
    let (s, clock) = stack().await;
    let token = |key: String| {
        let url = s.url("/v1/token");
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let reader = s.key("reader").to_owned();
    let first = token(reader.clone()).await;
    assert!(first["expires_in"].as_i64().unwrap() > 290);
    // 100 s left on the cached token: inside the margin, where the refresher renews.
    clock.advance(Duration::seconds(200));
    s.refresh_now("default").await.unwrap();
    let gets = calls(&s.store, Op::Get);
    let handed = token(reader.clone()).await;
    assert!(
        handed["expires_in"].as_i64().unwrap() > 290,
        "the successor, not the cached token: {handed}"
    );
    assert_ne!(handed["access_token"], first["access_token"]);
    assert_eq!(
        calls(&s.store, Op::Get) - gets,
        1,
        "found with one GetSecretValue"
    );
    // Without a successor, an instance looks at most once per 10 s.
    clock.advance(Duration::seconds(200));
    let gets = calls(&s.store, Op::Get);
    for _ in 0..5 {
        token(reader.clone()).await;
    }
    assert_eq!(
        calls(&s.store, Op::Get) - gets,
        1,
        "one look, then the cached token"
    );
    clock.advance(Duration::seconds(5));
    token(reader.clone()).await;
    assert_eq!(
        calls(&s.store, Op::Get) - gets,
        1,
        "5 s later: still the cached token"
    );
    clock.advance(Duration::seconds(6));
    token(reader.clone()).await;
    assert_eq!(
        calls(&s.store, Op::Get) - gets,
        2,
        "11 s after the first look: another"
    );
}

#[tokio::test]
async fn a_refused_token_whose_newer_generation_is_already_due_is_renewed_not_forced() {
    let (s, clock) = stack().await;
    assert_eq!(accounts(&s, s.key("proxy")).await.0, 200);
    clock.advance(Duration::seconds(120));
    // The ring's newest generation: a newer token whose own claims say it has expired (a
    // shorter life than the one this instance holds), with the same live refresh token.
    let ring = SessionRing::new(
        s.store.clone(),
        SecretNames::new("ringcx/"),
        6,
        Arc::new(clock.clone()) as SharedClock,
    );
    let view = ring.read("default").await.unwrap();
    let g = view.newest_generation();
    let raw = s
        .store
        .get(&SecretNames::new("ringcx/").slot("default", (g % 6) as u32))
        .await
        .unwrap()
        .unwrap();
    let mut doc: Value = serde_json::from_str(secrecy::ExposeSecret::expose_secret(&raw)).unwrap();
    doc["generation"] = (g + 1).into();
    doc["accessTokenExpiresAt"] = (clock.now() - Duration::seconds(1)).to_rfc3339().into();
    let state = serde_json::from_value(doc).unwrap();
    ring.publish("default", g, &state, clock.now() + Duration::seconds(30))
        .await
        .unwrap();
    // RingCX's validation runs 200 s ahead: the cached token (180 s left) is refused as expired.
    s.sim.set_behaviour(Behaviour {
        validation_skew_secs: 200,
        ..s.sim.behaviour()
    });
    let (status, _, body) = accounts(&s, s.key("proxy")).await;
    assert_eq!(
        status, 200,
        "an ordinary due renewal, not a refused forced one: {body}"
    );
    let newest = ring.read("default").await.unwrap().newest.unwrap();
    assert_eq!(newest.generation, g + 2);
    assert!(newest.forced_renewals.is_empty(), "not counted as forced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_a_thousand_tenants_stays_within_the_quotas() {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = broker_tests::sim::Simulator::start(shared.clone())
        .await
        .unwrap();
    let store = MemoryStore::new(shared.clone());
    let tenants = seed_due_tenants(&store.unmetered(), "ringcx/", &sim, 1_000, clock.now()).await;
    let config = config(
        &sim,
        "ringcx/",
        &tenants.join(","),
        &[("REFRESH_CONCURRENCY", "32")],
    );
    let refresher = Refresher::new(&config, store.clone(), shared).unwrap();
    let before = store.stats();
    let started = clock.now();
    let pass = refresher
        .run_pass(clock.now() + Duration::seconds(58))
        .await;
    let took = (clock.now() - started).num_milliseconds() as f64 / 1000.0;
    let failed: Vec<_> = pass
        .tenants
        .iter()
        .filter(|t| t.outcome != TenantOutcome::Refreshed)
        .collect();
    assert!(
        failed.is_empty(),
        "{} not refreshed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    let stats = store.stats();
    assert!(
        stats.throttled.is_empty(),
        "no ThrottlingException: {:?}",
        stats.throttled
    );
    assert!(
        pass.tenants
            .iter()
            .all(|t| t.error.as_deref().is_none_or(|e| !e.contains("Throttling"))),
    );
    // 1,000 writes at WRITE_RATE_PER_SECOND=25 take 40 s of simulated time at least.
    assert!(took >= 39.0, "{took} s");
    let during = |op: Op| {
        (stats.calls.get(&op).copied().unwrap_or(0) - before.calls.get(&op).copied().unwrap_or(0))
            as f64
            / took
    };
    println!(
        "quotas: 1,000 due tenants in {took:.1} simulated s: {:.1} BatchGetSecretValue/s, {:.1} PutSecretValue/s, {:.1} CreateSecret/s, 0 throttled",
        during(Op::BatchGet),
        during(Op::Put),
        during(Op::Create),
    );
}

/// A Function URL event (payload 2.0) for a GET.
fn get_event(path: &str, key: &str) -> Value {
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {key}")},
        "requestContext": {"accountId": "anonymous", "apiId": "surge", "domainName": "surge.lambda-url.us-east-1.on.aws",
            "domainPrefix": "surge", "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.9", "userAgent": "RingCX-IVR"}, "requestId": "surge", "routeKey": "$default",
            "stage": "$default", "time": "01/Dec/2026:22:00:00 +0000", "timeEpoch": 1796162400000u64},
        "isBase64Encoded": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_surge_of_cold_real_binaries_is_served_while_the_batch_call_is_throttled() {
    use broker_tests::lambda::{Invocation, LambdaProcess, RuntimeApi};
    use broker_tests::support::{function_env, moto_store, moto_url, unique_prefix};
    const INSTANCES: usize = 8;
    let clock: SharedClock = Arc::new(broker::clock::SystemClock);
    let sim = broker_tests::sim::Simulator::start(clock).await.unwrap();
    let store = moto_store().await;
    let prefix = unique_prefix("surge");
    let key = broker_tests::support::one_tenant_with_a_caller(&store, &prefix, &sim).await;
    // Secrets Manager as a busy account sees it: BatchGetSecretValue at 2 a second (the quota
    // scaled down), every other call through to moto.
    let proxy = broker_tests::throttle::ThrottlingProxy::start(
        &moto_url(),
        "secretsmanager.BatchGetSecretValue",
        2,
    )
    .await;
    let mut env = function_env(&sim, &prefix, "default");
    for (k, v) in env.iter_mut() {
        if *k == "AWS_ENDPOINT_URL_SECRETS_MANAGER" {
            *v = proxy.url();
        }
    }
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        let runtime = RuntimeApi::start().await.unwrap();
        let function = LambdaProcess::start("api", &runtime, &env);
        assert!(
            runtime.first_poll(std::time::Duration::from_secs(20)).await,
            "{}",
            function.output()
        );
        instances.push((runtime, function));
    }
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all(instances.iter().map(|(runtime, _)| {
        runtime.invoke(
            get_event("/v1/engage/v1/admin/accounts", &key),
            std::time::Duration::from_secs(5),
        )
    }))
    .await;
    let took = started.elapsed();
    for (answer, (_, function)) in answers.iter().zip(&instances) {
        let Invocation::Response(r) = answer else {
            panic!("{answer:?}\n{}", function.output())
        };
        assert_eq!(r["statusCode"], 200, "{r}\n{}", function.output());
    }
    assert!(
        took < std::time::Duration::from_secs(5),
        "every first request answered within 5 s: {took:?}"
    );
    assert!(
        proxy.throttled() >= 1,
        "the batch call was throttled ({} passed)",
        proxy.passed()
    );
    // Every throttled instance read its ring slot by slot (20 each), and the callers once each.
    assert!(
        proxy.forwarded("secretsmanager.GetSecretValue")
            >= 20 * proxy.throttled() + INSTANCES as u64,
        "{} GetSecretValue for {} throttled batch calls",
        proxy.forwarded("secretsmanager.GetSecretValue"),
        proxy.throttled()
    );
    println!(
        "surge (real binaries): {INSTANCES} cold instances, BatchGetSecretValue at 2/s: all 200 in {} ms; {} batch calls throttled, {} passed",
        took.as_millis(),
        proxy.throttled(),
        proxy.passed()
    );
}

#[tokio::test]
async fn the_per_slot_view_is_the_batch_view() {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let store = MemoryStore::new(shared.clone());
    let names = SecretNames::new("v/");
    let ring = SessionRing::new(store.clone(), names.clone(), 3, shared);
    // Generations 4, 5 and 6 in slots 1, 2 and 0, then slot 1 hand-edited into junk, and a slot
    // beyond K (an older K of 8) holding generation 7.
    for g in 4..=6u64 {
        let state: broker::session::SessionState =
            serde_json::from_str(&format!(r#"{{"generation":{g},"refreshToken":"r{g}"}}"#))
                .unwrap();
        ring.publish("t", g - 1, &state, clock.now() + Duration::seconds(30))
            .await
            .unwrap();
        clock.advance(Duration::seconds(1));
    }
    broker::store::upsert(
        &store,
        &names.slot("t", 1),
        &secrecy::SecretString::from("{not json"),
    )
    .await
    .unwrap();
    broker::store::upsert(
        &store,
        &names.slot("t", 7),
        &secrecy::SecretString::from(r#"{"generation":7,"refreshToken":"r7"}"#),
    )
    .await
    .unwrap();
    clock.advance(Duration::seconds(2));
    let batch = ring.read("t").await.unwrap();
    for _ in 0..2_000 {
        store.inject(Op::BatchGet, InjectedFault::Throttle);
    }
    let gets = calls(&store, Op::Get);
    let slots = ring.read("t").await.unwrap();
    assert_eq!(calls(&store, Op::Get) - gets, 20, "read slot by slot");
    assert_eq!(slots.newest.as_ref().map(|s| s.generation), Some(7));
    assert_eq!(
        (
            slots.newest_generation(),
            slots.present,
            slots.highest_possible,
            slots.unreadable.clone()
        ),
        (
            batch.newest_generation(),
            batch.present,
            batch.highest_possible,
            batch.unreadable.clone()
        )
    );
    assert_eq!(slots.unreadable_names(), ["v/t/session-1"]);
}
