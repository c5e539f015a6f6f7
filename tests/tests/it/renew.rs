//! The renewal protocol against the simulator and the Secrets Manager model: the normal cycle,
//! recovery from lost refresh tokens, missing or rejected credentials, transient failures and
//! write failures.

use broker::clock::Clock;
use broker::renew::{Outcome, RenewError, RenewSettings};
use broker::session::ObtainedBy;
use broker::store::SecretStore;
use broker::store::memory::{InjectedFault, Op};
use broker_tests::sim::Fault;
use broker_tests::support::{PREFIX, Stack};
use chrono::Duration;
use secrecy::{ExposeSecret, SecretString};

const EXCHANGE: &str = "/api/auth/login/rc/accesstoken";
const REFRESH: &str = "/api/auth/token/refresh";
const ADMIN: &str = "admin@example.com";

async fn stack() -> Stack {
    Stack::new(6, RenewSettings::default()).await
}

async fn bootstrapped() -> Stack {
    let s = stack().await;
    s.put_credentials("default", &s.sim.ringex_credentials(ADMIN).unwrap())
        .await;
    let report = s.renew("default").await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::LoggedIn {
            flow: ObtainedBy::RingExExchange
        }
    );
    s
}

#[tokio::test]
async fn first_run_logs_in_then_skips_then_refreshes_within_the_margin() {
    let s = bootstrapped().await;
    let first = s.newest("default").await.unwrap();
    assert_eq!(first.generation, 1);
    assert_eq!(first.obtained_by.as_deref(), Some("ringex-exchange"));
    assert_eq!(first.account_id.as_deref(), Some("333333"));

    s.clock.advance(Duration::seconds(149));
    let calls = s.sim.requests().len();
    let fresh = s.renew("default").await.unwrap();
    assert_eq!(fresh.outcome, Outcome::Fresh);
    assert_eq!(fresh.seconds_left, Some(151));
    assert_eq!(
        s.sim.requests().len(),
        calls,
        "a fresh token costs no RingCX call"
    );

    s.clock.advance(Duration::seconds(1));
    let renewed = s.renew("default").await.unwrap();
    assert_eq!(renewed.outcome, Outcome::Refreshed);
    assert_eq!(renewed.generation, 2);
    assert_eq!(renewed.seconds_left, Some(300));
    let second = s.newest("default").await.unwrap();
    assert_ne!(
        second.refresh_token.as_ref().unwrap().expose_secret(),
        first.refresh_token.as_ref().unwrap().expose_secret(),
        "the rotated refresh token is what the ring holds"
    );
    assert_eq!(second.account_id.as_deref(), Some("333333"));
    assert_eq!(s.sim.count("POST", EXCHANGE), 1);
}

#[tokio::test]
async fn a_dead_refresh_token_falls_back_to_a_full_login() {
    let s = bootstrapped().await;
    s.sim.revoke_refresh_tokens();
    s.clock.advance(Duration::seconds(200));
    let report = s.renew("default").await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::LoggedIn {
            flow: ObtainedBy::RingExExchange
        }
    );
    assert_eq!(report.generation, 2);
    assert_eq!(s.sim.count("POST", EXCHANGE), 2);
    assert_eq!(s.sim.count("POST", REFRESH), 1);
    // The ring was re-read for someone else's renewal before logging in.
    assert!(s.store.stats().calls[&Op::BatchGet] >= 3);
    let next = s.newest("default").await.unwrap();
    assert!(next.usable_token(s.clock.now(), 30).is_some());
}

#[tokio::test]
async fn engage_login_credentials_work_as_the_fallback_too() {
    let s = stack().await;
    s.put_credentials("legacy", &s.sim.engage_login_credentials(ADMIN).unwrap())
        .await;
    let report = s.renew("legacy").await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::LoggedIn {
            flow: ObtainedBy::EngageLogin
        }
    );
    s.sim.revoke_refresh_tokens();
    s.clock.advance(Duration::seconds(200));
    let report = s.renew("legacy").await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::LoggedIn {
            flow: ObtainedBy::EngageLogin
        }
    );
    assert_eq!(s.sim.count("POST", "/api/auth/login/admin"), 2);
}

/// A ring seeded by an administrator with a refresh token only (no credentials).
async fn seeded_without_credentials() -> (Stack, SecretString) {
    let s = stack().await;
    let client = broker_tests::support::client_for(
        &s.sim,
        std::sync::Arc::new(s.clock.clone()),
        std::time::Duration::from_secs(5),
    );
    let creds = s.sim.ringex_jwt(ADMIN);
    let session = client.login_ringex(&creds).await.unwrap();
    let refresh = session.refresh_token.unwrap();
    let doc = serde_json::json!({"generation": 0, "refreshToken": refresh.expose_secret()});
    let name = s.renewer.ring().names().slot("seeded", 0);
    s.store
        .create(
            &name,
            &SecretString::from(doc.to_string()),
            "00000000-0000-4000-8000-0000000000aa",
        )
        .await
        .unwrap();
    (s, refresh)
}

#[tokio::test]
async fn a_session_seeded_with_only_a_refresh_token_is_renewed() {
    let (s, _) = seeded_without_credentials().await;
    let report = s.renew("seeded").await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert_eq!(report.generation, 1);
    assert!(
        s.newest("seeded")
            .await
            .unwrap()
            .usable_token(s.clock.now(), 30)
            .is_some()
    );
}

#[tokio::test]
async fn without_credentials_a_dead_refresh_token_is_a_loud_error_and_the_session_is_untouched() {
    let (s, _) = seeded_without_credentials().await;
    s.renew("seeded").await.unwrap();
    let before = s.newest("seeded").await.unwrap();
    s.sim.revoke_refresh_tokens();
    s.clock.advance(Duration::seconds(200));
    let err = s.renew("seeded").await.unwrap_err();
    assert!(matches!(err, RenewError::Unrecoverable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("CANNOT RECOVER") && text.contains(&format!("{PREFIX}seeded/credentials")),
        "{text}"
    );
    let after = s.newest("seeded").await.unwrap();
    assert_eq!(after.generation, before.generation);
    assert_eq!(
        after.refresh_token.unwrap().expose_secret(),
        before.refresh_token.unwrap().expose_secret(),
        "nothing was overwritten"
    );
    assert_eq!(
        s.sim.count("POST", EXCHANGE),
        1,
        "the administrator's seeding login only"
    );
}

#[tokio::test]
async fn no_session_and_no_credentials_says_what_to_seed() {
    let s = stack().await;
    let err = s.renew("nobody").await.unwrap_err();
    assert!(matches!(err, RenewError::NoSession { .. }), "{err}");
    assert!(err.to_string().contains("ringcx/nobody/credentials"));
    assert!(s.sim.requests().is_empty());
}

#[tokio::test]
async fn rejected_credentials_fail_once_without_a_retry_storm() {
    let s = stack().await;
    let mut creds = s.sim.ringex_credentials(ADMIN).unwrap();
    creds["jwt"] = "revoked-jwt-credential".into();
    s.put_credentials("default", &creds).await;
    let err = s.renew("default").await.unwrap_err();
    assert!(
        matches!(err, RenewError::CredentialsRejected { .. }),
        "{err}"
    );
    assert_eq!(
        s.sim.count("POST", "/restapi/oauth/token"),
        1,
        "no retry of a rejected credential"
    );
    assert!(s.newest("default").await.is_none());
}

#[tokio::test]
async fn unreadable_credentials_are_reported_without_quoting_them() {
    let s = stack().await;
    s.put_credentials(
        "default",
        &serde_json::json!({"type": "ringex-jwt", "clientId": 5, "jwt": "sekrit-jwt-value"}),
    )
    .await;
    let err = s.renew("default").await.unwrap_err();
    assert!(
        matches!(err, RenewError::CredentialsUnreadable { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("sekrit"), "{err}");
}

#[tokio::test]
async fn transient_failures_are_retried_and_never_become_a_full_login() {
    let s = bootstrapped().await;
    s.clock.advance(Duration::seconds(200));
    s.sim
        .fail_next(REFRESH, Fault::ServerError { status: 503 }, 2);
    s.sim.fail_next(REFRESH, Fault::Drop, 1);
    s.sim
        .fail_next(REFRESH, Fault::RateLimited { retry_after: 2 }, 1);
    let report = s.renew("default").await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert_eq!(report.retries, 4);
    assert_eq!(s.sim.count("POST", EXCHANGE), 1, "only the bootstrap login");
}

#[tokio::test]
async fn failures_until_the_deadline_leave_the_ring_untouched() {
    let s = bootstrapped().await;
    s.clock.advance(Duration::seconds(200));
    s.sim
        .fail_next(REFRESH, Fault::ServerError { status: 500 }, 1000);
    let err = s.renew("default").await.unwrap_err();
    assert!(matches!(err, RenewError::Upstream { .. }), "{err}");
    assert_eq!(s.newest("default").await.unwrap().generation, 1);
    assert_eq!(s.sim.count("POST", EXCHANGE), 1);
    let attempts = s.sim.count("POST", REFRESH);
    assert!(
        (5..40).contains(&attempts),
        "bounded by the deadline: {attempts}"
    );
}

#[tokio::test]
async fn the_exchange_rate_limit_is_waited_out_inside_the_deadline() {
    let s = stack().await;
    s.put_credentials("default", &s.sim.ringex_credentials(ADMIN).unwrap())
        .await;
    s.sim
        .fail_next(EXCHANGE, Fault::RateLimited { retry_after: 20 }, 1);
    let start = s.clock.now();
    let report = s.renew("default").await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::LoggedIn {
            flow: ObtainedBy::RingExExchange
        }
    );
    assert!(
        s.clock.now() - start >= Duration::seconds(20),
        "Retry-After was honoured"
    );
}

#[tokio::test]
async fn a_write_that_times_out_after_landing_is_retried_as_a_no_op() {
    let s = bootstrapped().await;
    s.clock.advance(Duration::seconds(200));
    s.store.inject(Op::Put, InjectedFault::FailAfter);
    s.store.inject(Op::Put, InjectedFault::FailBefore);
    let report = s.renew("default").await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed);
    assert_eq!(report.generation, 2);
    let slot = s.renewer.ring().names().slot("default", 2);
    assert_eq!(
        s.store.version_count(&slot),
        1,
        "the retries created no second version"
    );
}

#[tokio::test]
async fn a_write_that_keeps_failing_is_reported_loudly() {
    let s = bootstrapped().await;
    s.clock.advance(Duration::seconds(200));
    for _ in 0..10 {
        s.store.inject(Op::Create, InjectedFault::FailBefore);
    }
    let err = s.renew("default").await.unwrap_err();
    assert!(matches!(err, RenewError::WriteFailed { .. }), "{err}");
    assert!(err.to_string().contains("log in again"));
}

#[tokio::test]
async fn forced_renewals_respect_the_minimum_age_and_the_daily_budget() {
    let s = Stack::new(
        6,
        RenewSettings {
            forced_per_day: 2,
            ..RenewSettings::default()
        },
    )
    .await;
    s.put_credentials("default", &s.sim.ringex_credentials(ADMIN).unwrap())
        .await;
    s.renew("default").await.unwrap();
    let force = |g: u64| {
        let deadline = s.clock.now() + Duration::seconds(50);
        s.renewer.renew_replacing("default", deadline, g)
    };
    // Refused while the generation is younger than 30 s: no RingCX call, no write.
    s.clock.advance(Duration::seconds(10));
    let err = force(1).await.unwrap_err();
    assert!(
        matches!(err, RenewError::ForcedRenewalRefused { ref reason, .. } if reason.contains("10 s ago")),
        "{err}"
    );
    assert_eq!(s.sim.count("POST", "/api/auth/token/refresh"), 0);
    // Allowed twice, 40 s apart, then the daily budget is spent.
    for g in 1..=2 {
        s.clock.advance(Duration::seconds(40));
        let report = force(g).await.unwrap();
        assert!(report.forced, "{report:?}");
        assert_eq!(report.generation, g + 1);
    }
    s.clock.advance(Duration::seconds(40));
    let err = force(3).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("2 forced renewals in the last 24 h"),
        "{err}"
    );
    assert_eq!(s.newest("default").await.unwrap().generation, 3);
    // Scheduled renewals go on and carry the count; a day later the budget is back.
    for _ in 0..(24 * 60 / 3) {
        s.clock.advance(Duration::seconds(180));
        s.renew("default").await.unwrap();
    }
    let g = s.newest("default").await.unwrap().generation;
    s.clock.advance(Duration::seconds(40));
    assert!(force(g).await.unwrap().forced);
    // A refusal of an older generation uses the newer one, with no call.
    let calls = s.sim.requests().len();
    let report = force(g).await.unwrap();
    assert_eq!(report.outcome, Outcome::RenewedElsewhere);
    assert_eq!(s.sim.requests().len(), calls);
}
