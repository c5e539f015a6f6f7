//! The token lifecycle over time: eight renewers racing on one tenant, and a simulated week of
//! scheduler ticks with upstream faults, dropped connections and revoked refresh tokens. All on
//! one simulated clock shared by the simulator, the Secrets Manager model and the broker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use broker::clock::Clock;
use broker::renew::{Outcome, RenewSettings};
use broker::store::memory::{InjectedFault, Op};
use broker_tests::sim::{Behaviour, FaultScope, Faults};
use broker_tests::support::Stack;
use chrono::Duration;

const TENANT: &str = "default";
const EXCHANGE: &str = "/api/auth/login/rc/accesstoken";

async fn bootstrapped() -> Stack {
    let s = Stack::new(6, RenewSettings::default()).await;
    s.put_credentials(
        TENANT,
        &s.sim.ringex_credentials("admin@example.com").unwrap(),
    )
    .await;
    s.renew(TENANT).await.expect("bootstrap login");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_racing_renewers_publish_each_generation_once_and_never_go_back() {
    let s = Arc::new(bootstrapped().await);
    let rounds = 30;
    let racers = 8;
    // A reader samples the ring throughout and checks it never goes backwards.
    let stop = Arc::new(AtomicBool::new(false));
    let regressions = Arc::new(AtomicU64::new(0));
    let reader = {
        let (s, stop, regressions) = (s.clone(), stop.clone(), regressions.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = s.newest(TENANT).await.map_or(0, |n| n.generation);
                if g < last {
                    regressions.fetch_add(1, Ordering::Relaxed);
                }
                last = last.max(g);
                samples += 1;
                // 200 reads a simulated second: within Secrets Manager's request quotas, which
                // the model enforces (a busy loop on a stopped clock would not be).
                broker::clock::Clock::sleep(&s.clock, std::time::Duration::from_millis(5)).await;
            }
            samples
        })
    };
    let mut conflicts = 0;
    let mut write_faults = 0;
    for round in 0..rounds {
        s.clock.advance(Duration::seconds(160));
        if round % 3 == 0 {
            s.store.inject(Op::Put, InjectedFault::FailAfter);
            write_faults += 1;
        }
        if round % 4 == 1 {
            s.store.inject(Op::Put, InjectedFault::FailBefore);
            s.store.inject(Op::Create, InjectedFault::FailAfter);
            write_faults += 2;
        }
        let before = s.newest(TENANT).await.unwrap().generation;
        let deadline = s.clock.now() + Duration::seconds(50);
        let mut tasks = Vec::new();
        for _ in 0..racers {
            // Separate instances (a clone would share the in-process single-flight): only the
            // fencing token keeps them apart.
            let renewer = s.instance();
            tasks.push(tokio::spawn(async move {
                renewer.renew(TENANT, deadline).await
            }));
        }
        let mut winners = 0;
        let mut outcomes = BTreeMap::new();
        for t in tasks {
            let report = t
                .await
                .unwrap()
                .expect("every racer ends with a usable token");
            *outcomes.entry(report.outcome.as_str()).or_insert(0) += 1;
            conflicts += report.cas_conflicts;
            if matches!(
                report.outcome,
                Outcome::Refreshed | Outcome::LoggedIn { .. }
            ) {
                winners += 1;
                assert_eq!(report.generation, before + 1);
            }
            assert!(report.seconds_left.unwrap() > 150, "{report:?}");
        }
        let after = s.newest(TENANT).await.unwrap();
        assert_eq!(
            after.generation,
            before + 1,
            "round {round}: one new generation ({outcomes:?})"
        );
        assert_eq!(
            winners, 1,
            "round {round}: exactly one winner ({outcomes:?})"
        );
        assert!(after.usable_token(s.clock.now(), 150).is_some());
    }
    stop.store(true, Ordering::Relaxed);
    let samples = reader.await.unwrap();
    let logins = s.sim.count("POST", EXCHANGE) - 1;
    let refreshes = s.sim.count("POST", "/api/auth/token/refresh");
    println!(
        "races: {rounds} rounds x {racers} renewers, {write_faults} injected write faults, \
         {refreshes} refresh calls, {conflicts} CAS conflicts, {logins} full logins, \
         {samples} reader samples, {} regressions",
        regressions.load(Ordering::Relaxed)
    );
    assert_eq!(
        regressions.load(Ordering::Relaxed),
        0,
        "no generation ever went backwards"
    );
    assert_eq!(logins, 0, "no full login caused by our own races");
    assert!(samples > 0);
}

/// What a simulated week came to.
struct Week {
    samples: u64,
    expired: u64,
    min_left: i64,
    failed: u32,
    fallback_logins: u64,
    limit_exceeded: u64,
    revocations: u64,
    lost_refreshes: u64,
}

/// A week of scheduler ticks on one tenant: 10% upstream 5xx, 1% connections dropped before
/// RingCX acts, `lost_answers` of answers lost after it acted, 2% single skipped ticks, 3%
/// overlapping ticks, refresh tokens revoked twice.
async fn simulated_week(label: &str, reuse_detection: bool, lost_answers: f64) -> Week {
    let s = bootstrapped().await;
    s.sim.set_behaviour(Behaviour {
        refresh_reuse_detection: reuse_detection,
        ..Behaviour::default()
    });
    s.sim.set_faults(Faults {
        error_ratio: 0.10,
        drop_ratio: 0.01,
        lost_answer_ratio: lost_answers,
        scope: FaultScope::All,
        ..Faults::default()
    });
    let mut rng = fastrand::Rng::with_seed(2026);
    let start = s.clock.now();
    let ticks: i64 = 7 * 24 * 60;
    let revoke_at = [2_000, 6_500];
    let sample_every = Duration::seconds(5);
    let mut next_sample = start;
    let (mut samples, mut expired, mut min_left) = (0u64, 0u64, i64::MAX);
    let (mut skipped, mut duplicated, mut failed) = (0, 0, 0);
    let mut skipped_last = false;
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut retries = 0;
    for tick in 0..ticks {
        let tick_at = start + Duration::seconds(60 * tick);
        while next_sample <= tick_at {
            s.clock.advance_to(next_sample);
            let now = s.clock.now();
            let newest = s.newest(TENANT).await.expect("a session");
            match newest.seconds_left(now) {
                Some(left) if left > 0 => min_left = min_left.min(left),
                _ => expired += 1,
            }
            samples += 1;
            next_sample += sample_every;
        }
        s.clock.advance_to(tick_at);
        if revoke_at.contains(&tick) {
            s.sim.revoke_refresh_tokens();
        }
        // A single skipped tick now and then, never two in a row.
        if !skipped_last && rng.f64() < 0.02 {
            skipped_last = true;
            skipped += 1;
            continue;
        }
        skipped_last = false;
        let results = if rng.f64() < 0.03 {
            duplicated += 1;
            let (a, b) = tokio::join!(s.renew(TENANT), s.renew(TENANT));
            vec![a, b]
        } else {
            vec![s.renew(TENANT).await]
        };
        for r in results {
            match r {
                Ok(report) => {
                    *outcomes.entry(report.outcome.as_str()).or_default() += 1;
                    retries += report.retries;
                }
                Err(e) => {
                    println!("{label} tick {tick}: {e}");
                    failed += 1;
                }
            }
        }
    }
    let stats = s.store.stats();
    let days = (s.clock.now() - start).num_seconds() as f64 / 86_400.0;
    let writes: Vec<String> = (0..6)
        .map(|i| {
            let name = s.renewer.ring().names().slot(TENANT, i);
            format!(
                "{:.1}",
                *stats.writes.get(&name).unwrap_or(&0) as f64 / days
            )
        })
        .collect();
    let fallback_logins = outcomes.get("logged-in").copied().unwrap_or(0);
    let tokens = s.sim.token_stats();
    println!(
        "{label}: {days:.2} simulated days, {ticks} ticks ({skipped} skipped, {duplicated} \
         overlapping), {samples} samples, {expired} expired, minimum seconds left {min_left}, \
         writes per slot per day [{}], fallback logins {fallback_logins} ({} revocations + {} lost \
         refresh answers; {} refresh-token reuses, {} families revoked), upstream retries \
         {retries}, failed renewals {failed}, LimitExceeded {}, outcomes {outcomes:?}",
        writes.join(", "),
        revoke_at.len(),
        tokens.lost_refreshes,
        tokens.reuses,
        tokens.families_revoked,
        stats.limit_exceeded,
    );
    Week {
        samples,
        expired,
        min_left,
        failed,
        fallback_logins,
        limit_exceeded: stats.limit_exceeded,
        revocations: revoke_at.len() as u64,
        lost_refreshes: tokens.lost_refreshes,
    }
}

fn assert_healthy(w: &Week) {
    assert_eq!(w.expired, 0, "no sample saw an expired newest token");
    assert_eq!(w.limit_exceeded, 0, "the ring never hit the version quota");
    assert!(w.samples >= 120_000, "{}", w.samples);
    assert!(w.min_left > 30, "the margin held: {}", w.min_left);
    // A renewal can still fail when every retry inside its deadline hits a fault (the next tick
    // retries while the stored token has time left; `expired` above is what callers see).
    assert!(w.failed <= 2, "{} renewals failed", w.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_week_never_serves_an_expired_token_nor_hits_the_version_quota() {
    let w = simulated_week("week", false, 0.0).await;
    assert_healthy(&w);
    assert_eq!(
        w.fallback_logins, w.revocations,
        "one full login per refresh-token revocation, none otherwise"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_lost_refresh_answers_under_reuse_detection_costs_one_login_each() {
    let w = simulated_week("week, lost answers + reuse detection", true, 0.01).await;
    assert_healthy(&w);
    assert!(w.lost_refreshes >= 3, "the faults really hit refreshes");
    assert_eq!(
        w.fallback_logins,
        w.revocations + w.lost_refreshes,
        "fallback logins are the revocations plus the lost answers, nothing more"
    );
}
