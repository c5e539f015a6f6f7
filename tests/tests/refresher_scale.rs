//! A pass over many tenants is correct, not just fast: every due tenant is renewed exactly once,
//! none is skipped, nobody logs in, with the simulator's rate limits on.

use std::sync::Arc;

use broker::clock::{Clock as _, ManualClock, SharedClock};
use broker::store::memory::MemoryStore;
use broker::store::{SecretNames, SessionRing};
use broker_tests::sim::Simulator;
use broker_tests::support::seed_due_tenants;
use chrono::Duration;
use refresher::Refresher;

const TENANTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_many_due_tenants_renews_each_exactly_once() {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::start(shared.clone()).await.unwrap();
    let store = MemoryStore::new(shared.clone());
    let tenants = seed_due_tenants(&store, "ringcx/", &sim, TENANTS, clock.now()).await;
    let vars: std::collections::HashMap<&str, String> = [
        ("ENGAGE_BASE_URL", sim.base_url()),
        ("RINGCENTRAL_SERVER_URL", sim.base_url()),
        ("SECRET_PREFIX", "ringcx/".to_owned()),
        ("TENANTS", tenants.join(",")),
        ("REFRESH_CONCURRENCY", "16".to_owned()),
    ]
    .into_iter()
    .collect();
    let config = broker::config::Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let refresher = Refresher::new(&config, store.clone(), shared.clone()).unwrap();
    sim.clear_requests();
    let pass = refresher
        .run_pass(clock.now() + Duration::seconds(50))
        .await;
    assert!(pass.ok, "{:?}", pass.tenants.iter().find(|t| !t.usable));
    assert_eq!(pass.tenants.len(), TENANTS, "none skipped");
    assert!(pass.tenants.iter().all(|t| t.outcome == "refreshed"));
    assert_eq!(
        sim.token_stats().refreshes,
        TENANTS as u64,
        "exactly once each"
    );
    assert_eq!(
        sim.count("POST", "/api/auth/login/rc/accesstoken"),
        0,
        "no login"
    );
    let ring = SessionRing::new(
        store.clone(),
        SecretNames::new("ringcx/"),
        6,
        shared.clone(),
    );
    for tenant in &tenants {
        let newest = ring.read(tenant).await.unwrap().newest.unwrap();
        assert_eq!(newest.generation, 2, "{tenant}");
    }
    // A second pass right after finds nothing due and spends no refresh token.
    let again = refresher
        .run_pass(clock.now() + Duration::seconds(50))
        .await;
    assert!(again.ok && again.tenants.iter().all(|t| t.outcome == "fresh"));
    assert_eq!(sim.token_stats().refreshes, TENANTS as u64);
}
