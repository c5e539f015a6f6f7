//! The refresher's handler as a plain async function with synthetic events: many tenants at
//! bounded concurrency, per-tenant results, and the failure rule (fail only when a tenant has no
//! usable token).

use std::collections::HashMap;
use std::sync::Arc;

use broker::clock::{Clock, SharedClock};
use broker::config::Config;
use broker::renew::RenewSettings;
use broker_tests::sim::Fault;
use broker_tests::support::{PREFIX, Stack};
use chrono::Duration;
use lambda_runtime::{Context, LambdaEvent};
use refresher::{Refresher, TenantOutcome, handler};
use serde_json::json;

fn config(stack: &Stack, tenants: &str) -> Config {
    let vars: HashMap<&str, String> = HashMap::from([
        ("ENGAGE_BASE_URL", stack.sim.base_url()),
        ("RINGCENTRAL_SERVER_URL", stack.sim.base_url()),
        ("SECRET_PREFIX", PREFIX.to_owned()),
        ("TENANTS", tenants.to_owned()),
        ("REFRESH_CONCURRENCY", "3".to_owned()),
    ]);
    Config::from_lookup(|k| vars.get(k).cloned()).unwrap()
}

fn event(stack: &Stack) -> LambdaEvent<serde_json::Value> {
    let mut context = Context::default();
    context.deadline = (stack.clock.now() + Duration::seconds(60)).timestamp_millis() as u64;
    LambdaEvent::new(json!({"source": "aws.scheduler"}), context)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_tenants_are_renewed_in_one_pass() {
    let stack = Stack::new(6, RenewSettings::default()).await;
    let tenants: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    for (i, t) in tenants.iter().enumerate() {
        let doc = if i % 2 == 0 {
            stack.sim.ringex_credentials("admin@example.com")
        } else {
            stack.sim.engage_login_credentials("admin@example.com")
        };
        stack.put_credentials(t, &doc.unwrap()).await;
    }
    // Twelve RingEX-or-login bootstraps in one minute: lift the exchange limit for this test only.
    stack.sim.set_behaviour(broker_tests::sim::Behaviour {
        exchange_limit_per_minute: 100,
        ..Default::default()
    });
    let clock: SharedClock = Arc::new(stack.clock.clone());
    let refresher = Refresher::new(
        &config(&stack, &tenants.join(",")),
        stack.store.clone(),
        clock,
    )
    .unwrap();
    let summary = handler(&refresher, event(&stack))
        .await
        .expect("every tenant renewed");
    assert!(summary.ok);
    let names: Vec<&str> = summary.tenants.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(
        names,
        tenants.iter().map(String::as_str).collect::<Vec<_>>(),
        "results in configured order"
    );
    assert!(
        summary
            .tenants
            .iter()
            .all(|t| t.outcome == TenantOutcome::LoggedIn && t.generation == 1)
    );

    stack.clock.advance(Duration::seconds(200));
    let summary = handler(&refresher, event(&stack)).await.unwrap();
    assert!(
        summary
            .tenants
            .iter()
            .all(|t| t.outcome == TenantOutcome::Refreshed && t.generation == 2)
    );
}

#[tokio::test]
async fn a_failed_renewal_with_time_left_is_reported_but_does_not_fail_the_pass() {
    let stack = Stack::new(6, RenewSettings::default()).await;
    stack
        .put_credentials(
            "a",
            &stack.sim.ringex_credentials("admin@example.com").unwrap(),
        )
        .await;
    let clock: SharedClock = Arc::new(stack.clock.clone());
    let mut cfg = config(&stack, "a");
    cfg.refresh_margin = std::time::Duration::from_secs(250);
    let refresher = Refresher::new(&cfg, stack.store.clone(), clock).unwrap();
    handler(&refresher, event(&stack)).await.unwrap();
    // Within the margin but with 240 s left, RingCX fails until the deadline.
    stack.clock.advance(Duration::seconds(60));
    stack.sim.fail_next(
        "/api/auth/token/refresh",
        Fault::ServerError { status: 503 },
        10_000,
    );
    let summary = handler(&refresher, event(&stack))
        .await
        .expect("a token is still usable");
    let t = &summary.tenants[0];
    assert_eq!(t.outcome, TenantOutcome::Failed);
    assert!(t.usable);
    assert!(t.error.as_deref().unwrap().contains("503"), "{t:?}");
}
