//! `make bench`: the HTTP function's proxy overhead, measured against calling the RingCX
//! simulator directly in the same run. Prints p50/p99 latency of both and the difference,
//! requests per second at concurrency, and Secrets Manager reads per 1,000 proxied requests.
//!
//! Everything runs on this machine over loopback: the simulator, the broker's router (local mode,
//! the same router the Lambda runs), the Secrets Manager model (it counts reads) and the load
//! generator. Figures are for comparison within one run, not absolute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::clock::{SharedClock, SystemClock};
use broker::store::memory::{MemoryStore, Op};
use broker_tests::sim::Behaviour;
use broker_tests::support::ApiStack;

const LATENCY_REQUESTS: usize = 4_000;
const LOAD_SECONDS: u64 = 5;
const LOAD_CONCURRENCY: usize = 32;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sequential requests, one at a time: the cleanest view of per-request cost.
async fn latencies(http: &reqwest::Client, url: &str, auth: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let r = http
            .get(url)
            .header("authorization", auth)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{url}");
        r.bytes().await.expect("body");
        out.push(start.elapsed());
    }
    out.sort();
    out
}

/// `concurrency` workers for `seconds`: requests per second.
async fn throughput(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    concurrency: usize,
    seconds: u64,
) -> f64 {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, url, auth) = (http.clone(), url.to_owned(), auth.to_owned());
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let r = http
                    .get(&url)
                    .header("authorization", &auth)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status(), 200);
                r.bytes().await.expect("body");
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.expect("worker");
    }
    total as f64 / seconds as f64
}

fn reads(store: &MemoryStore) -> u64 {
    let calls = store.stats().calls;
    calls.get(&Op::BatchGet).copied().unwrap_or(0) + calls.get(&Op::Get).copied().unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let clock: SharedClock = Arc::new(SystemClock);
    let store = MemoryStore::new(clock.clone());
    let stack = ApiStack::start(store.clone(), "ringcx/", &[]).await;
    stack.sim.set_behaviour(Behaviour {
        voice_rate_limit_per_minute: None,
        ..Behaviour::default()
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let proxy_url = stack.url("/v1/engage/v1/admin/accounts");
    let proxy_auth = format!("Bearer {}", stack.key("proxy"));
    // Warm up: callers and token caches, connection pools.
    latencies(&http, &proxy_url, &proxy_auth, 200).await;
    let token = stack
        .app
        .tokens
        .get("default", clock.now() + chrono::Duration::seconds(10))
        .await
        .expect("token");
    let direct_url = format!("{}/voice/api/v1/admin/accounts", stack.sim.base_url());
    let direct_auth = {
        use secrecy::ExposeSecret as _;
        format!("Bearer {}", token.token.expose_secret())
    };
    latencies(&http, &direct_url, &direct_auth, 200).await;

    let reads_before = reads(&store);
    let direct = latencies(&http, &direct_url, &direct_auth, LATENCY_REQUESTS).await;
    let proxied = latencies(&http, &proxy_url, &proxy_auth, LATENCY_REQUESTS).await;
    let direct_rps = throughput(
        &http,
        &direct_url,
        &direct_auth,
        LOAD_CONCURRENCY,
        LOAD_SECONDS,
    )
    .await;
    let proxied_rps = throughput(
        &http,
        &proxy_url,
        &proxy_auth,
        LOAD_CONCURRENCY,
        LOAD_SECONDS,
    )
    .await;
    let proxied_requests = LATENCY_REQUESTS as f64 + proxied_rps * LOAD_SECONDS as f64;
    let sm_reads = reads(&store) - reads_before;

    let (d50, d99) = (percentile(&direct, 0.50), percentile(&direct, 0.99));
    let (p50, p99) = (percentile(&proxied, 0.50), percentile(&proxied, 0.99));
    println!(
        "proxy benchmark (loopback, {LATENCY_REQUESTS} sequential requests each; {LOAD_CONCURRENCY} workers x {LOAD_SECONDS} s for throughput)"
    );
    println!(
        "  direct to simulator : p50 {:.3} ms  p99 {:.3} ms  {:.0} req/s",
        ms(d50),
        ms(d99),
        direct_rps
    );
    println!(
        "  through the proxy   : p50 {:.3} ms  p99 {:.3} ms  {:.0} req/s",
        ms(p50),
        ms(p99),
        proxied_rps
    );
    println!(
        "  added by the proxy  : p50 {:.3} ms (target <= 0.5)  p99 {:.3} ms (target <= 2)",
        ms(p50.saturating_sub(d50)),
        ms(p99.saturating_sub(d99))
    );
    println!(
        "  Secrets Manager reads: {sm_reads} over {proxied_requests:.0} proxied requests = {:.3} per 1,000 (target <= 1)",
        sm_reads as f64 * 1000.0 / proxied_requests
    );
    println!(
        "  steady state: one ring read per token generation (~270 s of use), i.e. {:.4} per 1,000 requests at the measured rate",
        1000.0 / (proxied_rps * 270.0)
    );
}
