//! `make bench`: one refresher pass over 10, 100 and 1,000 tenants whose tokens are all due, with
//! RingCX answering after 50 ms (the simulator's latency) and the Secrets Manager model, then 10
//! and 100 tenants on moto (the real SDK over HTTP); prints the pass time, tenants per second and
//! the process's peak RSS after each size, so growth shows.

use std::sync::Arc;
use std::time::Instant;

use broker::clock::{SharedClock, SystemClock};
use broker::store::SecretStore;
use broker::store::memory::MemoryStore;
use broker_tests::sim::{Faults, Simulator};
use broker_tests::support::seed_due_tenants;
use refresher::{Refresher, TenantOutcome};

/// The concurrency the README documents for large deployments.
const CONCURRENCY: &str = "32";
const LATENCY_MS: u64 = 50;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    println!(
        "refresher pass: all tokens due, RingCX latency {LATENCY_MS} ms, REFRESH_CONCURRENCY={CONCURRENCY}"
    );
    let clock: SharedClock = Arc::new(SystemClock);
    for size in [10usize, 100, 1_000] {
        pass("model", MemoryStore::new(clock.clone()), size).await;
    }
    let moto = broker_tests::support::moto_store().await;
    for size in [10usize, 100] {
        pass("moto", moto.clone(), size).await;
    }
}

async fn pass<S: SecretStore + Clone + 'static>(label: &str, store: S, size: usize) {
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::start(clock.clone()).await.expect("simulator");
    let prefix = broker_tests::support::unique_prefix(&format!("bench{size}"));
    let tenants = seed_due_tenants(&store, &prefix, &sim, size, clock.now()).await;
    sim.set_faults(Faults {
        latency_ms: LATENCY_MS,
        ..Faults::default()
    });
    let config = broker_tests::support::config(
        &sim,
        &prefix,
        &tenants.join(","),
        &[("REFRESH_CONCURRENCY", CONCURRENCY)],
    );
    let refresher = Refresher::new(&config, store, clock.clone()).expect("refresher");
    let started = Instant::now();
    let pass = refresher
        .run_pass(clock.now() + chrono::Duration::seconds(50))
        .await;
    let secs = started.elapsed().as_secs_f64();
    let renewed = pass
        .tenants
        .iter()
        .filter(|t| t.outcome == TenantOutcome::Refreshed)
        .count();
    println!(
        "  {label:<5} {size:>5} tenants: {secs:>6.2} s, {:>7.1} tenants/s, {renewed} renewed, ok={}, peak RSS {} KiB",
        renewed as f64 / secs,
        pass.ok,
        peak_rss_kib()
    );
}
