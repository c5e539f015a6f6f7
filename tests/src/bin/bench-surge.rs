//! `make bench`: a surge of cold HTTP function instances, as Lambda starts them when a campaign
//! or a webhook storm begins: each instance is built as `main` builds it (its own caches and
//! clients) over one Secrets Manager model that enforces AWS's per-region request quotas in real
//! time (BatchGetSecretValue 100/s, GetSecretValue 10,000/s), and makes one proxied request.
//! Instances start in bursts at the top of each second, as Lambda scales out, while the
//! refresher (or any other application in the account) spends half the batch quota, the
//! refresher's default share (READ_RATE_PER_SECOND). RingCX's own rate limit is off: this
//! measures Secrets Manager.
//! Prints failed first requests (target 0), p50/p99 of the first answer, and Secrets Manager
//! calls per instance by API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use broker::clock::{SharedClock, SystemClock};
use broker::store::memory::{MemoryStore, Op};
use broker::store::{SecretNames, SecretStore};
use broker_tests::sim::Behaviour;
use broker_tests::sim::Simulator;
use broker_tests::support::config;
use tower::ServiceExt as _;

#[tokio::main]
async fn main() {
    println!(
        "surge: cold HTTP instances over the Secrets Manager quota model (real time), one proxied request each"
    );
    for (instances, within) in [
        (100usize, Duration::from_secs(1)),
        (1_000, Duration::from_secs(10)),
    ] {
        surge(instances, within).await;
    }
    println!("refresher pass against the quota model (simulated time, all tenants due at once):");
    capacity(
        "default (25 writes/s, 50 reads/s)",
        1_000,
        &[("REFRESH_CONCURRENCY", "32")],
    )
    .await;
    // 10,000 tenants fit no single region at any setting: two shards of 5,000, each in its own
    // region (its own quota), at the economy profile with most of the write quota.
    for shard in ["region A", "region B"] {
        capacity(
            &format!("{shard}: margin 100 s, 45 w/s, 90 r/s"),
            5_000,
            &[
                ("REFRESH_CONCURRENCY", "64"),
                ("REFRESH_MARGIN_SECONDS", "100"),
                ("SESSION_SLOTS", "5"),
                ("WRITE_RATE_PER_SECOND", "45"),
                ("READ_RATE_PER_SECOND", "90"),
            ],
        )
        .await;
    }
}

async fn surge(instances: usize, within: Duration) {
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::start(clock.clone()).await.expect("simulator");
    let store = MemoryStore::new(clock.clone());
    let prefix = "surge/";
    let names = SecretNames::new(prefix);
    let key = broker_tests::support::one_tenant_with_a_caller(&store, prefix, &sim).await;
    // A second apart from the seeding, so the surge starts with the whole quota.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = store.stats();
    let cfg = config(&sim, prefix, "default", &[]);
    let key = Arc::new(key);
    sim.set_behaviour(Behaviour {
        voice_rate_limit_per_minute: None,
        ..sim.behaviour()
    });
    // The rest of the account: 50 batch reads a second for the surge's duration.
    let background_calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let background = {
        let store = store.clone();
        let ring: Vec<String> = (0..20).map(|i| names.slot("other", i)).collect();
        let counted = background_calls.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = store.batch_get(&ring).await;
            }
        })
    };
    let started = Instant::now();
    let per_second = (instances as f64 / within.as_secs_f64()).ceil() as usize;
    let tasks: Vec<_> = (0..instances)
        .map(|i| {
            let (store, clock, cfg, key) = (store.clone(), clock.clone(), cfg.clone(), key.clone());
            let offset = Duration::from_secs((i / per_second) as u64);
            tokio::spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(started + offset)).await;
                let cold = Instant::now();
                let app = Arc::new(api::App::new(&cfg, store, clock).expect("app builds"));
                let request = Request::get("/v1/engage/v1/admin/accounts")
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap();
                let answer = api::router(app).oneshot(request).await.unwrap();
                (answer.status().as_u16(), cold.elapsed())
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (status, took) = t.await.unwrap();
        if status != 200 {
            failed += 1;
        }
        times.push(took);
    }
    background.abort();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let after = store.stats();
    let background = background_calls.load(std::sync::atomic::Ordering::Relaxed);
    let per = |op: Op| {
        let mut n = after.calls.get(&op).copied().unwrap_or(0)
            - before.calls.get(&op).copied().unwrap_or(0);
        if op == Op::BatchGet {
            n = n.saturating_sub(background);
        }
        n as f64 / instances as f64
    };
    let throttled = |op: Op| {
        after.throttled.get(&op).copied().unwrap_or(0)
            - before.throttled.get(&op).copied().unwrap_or(0)
    };
    println!(
        "  {instances:>5} instances within {:>2} s: {failed} failed first requests, first answer p50 {:.0} ms p99 {:.0} ms; per instance {:.2} BatchGetSecretValue, {:.2} GetSecretValue; throttled: {} batch (the background's included), {} get",
        within.as_secs(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        per(Op::BatchGet),
        per(Op::Get),
        throttled(Op::BatchGet),
        throttled(Op::Get),
    );
}

/// One refresher pass over `tenants` due tenants on simulated time against the quota model, at
/// `vars` (a profile): the pass's simulated duration, Secrets Manager calls a second, throttled
/// calls, and tenants renewed and deferred.
async fn capacity(label: &str, tenants: usize, vars: &[(&str, &str)]) {
    use broker::clock::{Clock as _, ManualClock};
    use refresher::{Refresher, TenantOutcome};
    let manual = ManualClock::starting_now();
    let clock: SharedClock = Arc::new(manual.clone());
    let sim = Simulator::start(clock.clone()).await.expect("simulator");
    let store = MemoryStore::new(clock.clone());
    let names = broker_tests::support::seed_due_tenants(
        &store.unmetered(),
        "cap/",
        &sim,
        tenants,
        clock.now(),
    )
    .await;
    let cfg = config(&sim, "cap/", &names.join(","), vars);
    let refresher = Refresher::new(&cfg, store.clone(), clock.clone()).expect("refresher");
    let before = store.stats();
    let started = manual.now();
    let pass = refresher
        .run_pass(manual.now() + chrono::Duration::seconds(58))
        .await;
    let took = (manual.now() - started).num_milliseconds() as f64 / 1000.0;
    let after = store.stats();
    let rate = |op: Op| {
        (after.calls.get(&op).copied().unwrap_or(0) - before.calls.get(&op).copied().unwrap_or(0))
            as f64
            / took
    };
    let count = |o: TenantOutcome| pass.tenants.iter().filter(|t| t.outcome == o).count();
    let throttled = |op: Op| {
        after.throttled.get(&op).copied().unwrap_or(0)
            - before.throttled.get(&op).copied().unwrap_or(0)
    };
    println!(
        "  {label:<34} {tenants:>6} due tenants: pass {took:>5.1} s simulated, {:>5.1} BatchGetSecretValue/s, {:>5.1} PutSecretValue/s, {:>5.1} CreateSecret/s; throttled {} batch, {} writes; {} renewed, {} deferred to the next pass",
        rate(Op::BatchGet),
        rate(Op::Put),
        rate(Op::Create),
        throttled(Op::BatchGet),
        throttled(Op::Put) + throttled(Op::Create),
        count(TenantOutcome::Refreshed),
        count(TenantOutcome::Deferred),
    );
}
