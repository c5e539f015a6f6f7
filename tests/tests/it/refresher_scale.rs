//! A pass over many tenants is correct, not just fast: every due tenant is renewed exactly once,
//! none is skipped, nobody logs in, with refresh-token reuse detection on (a token presented twice
//! would revoke its family). RingCX documents no rate limit on the refresh call, so none applies.

use std::sync::Arc;

use broker::clock::{Clock as _, ManualClock, SharedClock};
use broker::store::memory::MemoryStore;
use broker::store::{SecretNames, SessionRing};
use broker_tests::sim::Simulator;
use broker_tests::support::{config, seed_due_tenants};
use chrono::Duration;
use refresher::{Refresher, TenantOutcome};

const TENANTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_many_due_tenants_renews_each_exactly_once() {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::start(shared.clone()).await.unwrap();
    let store = MemoryStore::new(shared.clone());
    let tenants = seed_due_tenants(&store.unmetered(), "ringcx/", &sim, TENANTS, clock.now()).await;
    sim.set_behaviour(broker_tests::sim::Behaviour {
        refresh_reuse_detection: true,
        ..sim.behaviour()
    });
    let config = config(
        &sim,
        "ringcx/",
        &tenants.join(","),
        &[("REFRESH_CONCURRENCY", "16")],
    );
    let refresher = Refresher::new(&config, store.clone(), shared.clone()).unwrap();
    sim.clear_requests();
    let pass = refresher
        .run_pass(clock.now() + Duration::seconds(50))
        .await;
    assert!(pass.ok, "{:?}", pass.tenants.iter().find(|t| !t.usable));
    assert_eq!(pass.tenants.len(), TENANTS, "none skipped");
    assert!(
        pass.tenants
            .iter()
            .all(|t| t.outcome == TenantOutcome::Refreshed)
    );
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
    assert!(
        again.ok
            && again
                .tenants
                .iter()
                .all(|t| t.outcome == TenantOutcome::Fresh)
    );
    assert_eq!(sim.token_stats().refreshes, TENANTS as u64);
}

#[tokio::test]
async fn a_warm_refresher_skips_reads_but_never_misses_a_generation_written_behind_its_back() {
    use broker::store::memory::Op;
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::start(shared.clone()).await.unwrap();
    sim.set_behaviour(broker_tests::sim::Behaviour {
        refresh_reuse_detection: true,
        ..sim.behaviour()
    });
    let store = MemoryStore::new(shared.clone());
    let tenants = seed_due_tenants(&store.unmetered(), "ringcx/", &sim, 1, clock.now()).await;
    let tenant = tenants[0].as_str();
    let config = config(&sim, "ringcx/", tenant, &[]);
    let refresher = Refresher::new(&config, store.clone(), shared.clone()).unwrap();
    let pass = |at: Duration| {
        clock.advance(at);
        refresher.run_pass(clock.now() + Duration::seconds(50))
    };
    let reads = || store.stats().calls.get(&Op::BatchGet).copied().unwrap_or(0);
    let first = pass(Duration::zero()).await;
    assert_eq!(first.tenants[0].generation, 2);
    // Another writer (the HTTP function's bounded forced renewal) publishes generation 3,
    // spending generation 2's refresh token, behind the refresher's back.
    clock.advance(Duration::seconds(40));
    let other = broker::renew::Renewer::new(
        SessionRing::new(
            store.clone(),
            SecretNames::new("ringcx/"),
            6,
            shared.clone(),
        ),
        broker_tests::support::client_for(&sim, shared.clone(), std::time::Duration::from_secs(5)),
        shared.clone(),
        config.api_renew_settings(),
    );
    let forced = other
        .renew_replacing(tenant, clock.now() + Duration::seconds(10), 2)
        .await
        .unwrap();
    assert!(forced.forced && forced.generation == 3);
    // The runs at +60 s and +120 s cannot be due: no ring read at all.
    let before = reads();
    for step in [20, 60] {
        let p = pass(Duration::seconds(step)).await;
        assert!(p.ok && p.tenants[0].outcome == TenantOutcome::Fresh);
    }
    assert_eq!(reads(), before, "two runs, no ring read");
    // At +180 s the remembered expiry is within the margin: the ring is read and generation 3,
    // written behind the refresher's back, is found (not yet due itself).
    let seen = pass(Duration::seconds(60)).await;
    assert!(reads() > before);
    assert_eq!(
        (seen.tenants[0].outcome.as_str(), seen.tenants[0].generation),
        ("fresh", 3)
    );
    // When it is due, its refresh token (not the spent one) is used.
    let due = pass(Duration::seconds(30)).await;
    assert!(due.ok, "{due:?}");
    assert_eq!(due.tenants[0].outcome, TenantOutcome::Refreshed);
    assert_eq!(due.tenants[0].generation, 4);
    let stats = sim.token_stats();
    assert_eq!(
        (stats.reuses, stats.families_revoked),
        (0, 0),
        "no spent token reused"
    );
}
