//! The simulator's own promises: its HTTP controls under `/__sim/`, its rate limits, and that
//! random faults follow their ratios and scope.

use broker_tests::support::json_of;
use std::sync::Arc;
use std::time::Duration;

use broker::clock::{Clock, ManualClock, SharedClock};
use broker::ringcx::{RingCxError, VoiceAuth};
use broker_tests::sim::{Behaviour, FaultScope, Faults, Simulator};
use broker_tests::support::client_for;
use chrono::Duration as ChronoDuration;
use serde_json::{Value, json};

async fn start() -> (ManualClock, Simulator, broker::ringcx::RingCxClient) {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::start(shared.clone()).await.unwrap();
    let client = client_for(&sim, shared, Duration::from_secs(5));
    (clock, sim, client)
}

fn ringex(sim: &Simulator) -> broker::credentials::RingExJwtCredentials {
    sim.ringex_jwt("admin@example.com")
}

#[tokio::test]
async fn http_controls_drive_clock_faults_formats_and_log() {
    let (clock, sim, client) = start().await;
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("{}/__sim/{path}", sim.base_url());

    let session = client.login_ringex(&ringex(&sim)).await.unwrap();
    let answer: Value = json_of(
        http.post(admin("clock/advance"))
            .json(&json!({"seconds": 301})),
    )
    .await;
    assert!(answer["now"].is_string());
    assert_eq!(sim.now() - clock.now(), ChronoDuration::seconds(301));
    let err = client
        .accounts(VoiceAuth::Bearer(&session.access_token))
        .await
        .unwrap_err();
    assert!(matches!(err, RingCxError::AccessTokenExpired), "{err}");
    let backwards = http
        .post(admin("clock/advance"))
        .json(&json!({"seconds": -5}))
        .send()
        .await
        .unwrap();
    assert_eq!(backwards.status(), 400);

    let revoked: Value = json_of(http.post(admin("refresh-tokens/revoke"))).await;
    assert_eq!(revoked["revoked"], 1);
    let err = client
        .refresh(session.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, RingCxError::RefreshTokenRejected { .. }));

    let next = http
        .post(admin("faults/next"))
        .json(&json!({"pathPrefix": "/api/auth/", "fault": {"kind": "server-error", "status": 502}, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 204);
    let err = client.login_ringex(&ringex(&sim)).await.unwrap_err();
    assert!(
        matches!(err, RingCxError::Upstream { status: 502, .. }),
        "{err}"
    );

    http.put(admin("faults"))
        .json(&json!({"errorRatio": 1.0, "scope": "voice"}))
        .send()
        .await
        .unwrap();
    let fresh = client.login_ringex(&ringex(&sim)).await.unwrap();
    let err = client
        .accounts(VoiceAuth::Bearer(&fresh.access_token))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RingCxError::Upstream { .. }),
        "voice scope is faulted: {err}"
    );
    http.delete(admin("faults")).send().await.unwrap();
    client
        .accounts(VoiceAuth::Bearer(&fresh.access_token))
        .await
        .unwrap();

    let behaviour = http
        .put(admin("behaviour"))
        .json(&json!({"tokenList": "brace-set", "createdToken": "json-string"}))
        .send()
        .await
        .unwrap();
    assert_eq!(behaviour.status(), 200);
    assert_eq!(
        sim.behaviour().token_list,
        broker_tests::sim::TokenListFormat::BraceSet
    );

    let counters: Value = json_of(http.get(admin("counters"))).await;
    // Two logins plus the one answered 502.
    assert_eq!(
        counters["requests"]["POST /api/auth/login/rc/accesstoken"],
        3
    );
    let log: Vec<Value> = json_of(http.get(admin("requests"))).await;
    assert_eq!(log.len(), sim.requests().len());
    assert!(
        log.iter()
            .all(|r| !r["path"].as_str().unwrap().starts_with("/__sim"))
    );
    http.delete(admin("requests")).send().await.unwrap();
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn voice_calls_are_limited_to_120_a_minute_per_user() {
    let (clock, sim, client) = start().await;
    let s = client.login_ringex(&ringex(&sim)).await.unwrap();
    let auth = VoiceAuth::Bearer(&s.access_token);
    for _ in 0..120 {
        client.accounts(auth).await.unwrap();
    }
    let err = client.accounts(auth).await.unwrap_err();
    assert!(matches!(err, RingCxError::RateLimited { .. }), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    clock.advance(ChronoDuration::seconds(60));
    client.accounts(auth).await.unwrap();
    sim.set_behaviour(Behaviour {
        voice_rate_limit_per_minute: None,
        ..Behaviour::default()
    });
    for _ in 0..150 {
        client.accounts(auth).await.unwrap();
    }
}

#[tokio::test]
async fn random_faults_follow_their_ratio_and_scope() {
    let (_clock, sim, client) = start().await;
    let s = client.login_ringex(&ringex(&sim)).await.unwrap();
    sim.set_behaviour(Behaviour {
        voice_rate_limit_per_minute: None,
        ..Behaviour::default()
    });
    sim.set_faults(Faults {
        error_ratio: 0.3,
        scope: FaultScope::Voice,
        ..Faults::default()
    });
    let mut failed = 0;
    for _ in 0..400 {
        if client
            .accounts(VoiceAuth::Bearer(&s.access_token))
            .await
            .is_err()
        {
            failed += 1;
        }
    }
    assert!(
        (80..=160).contains(&failed),
        "30% of 400 should fail, {failed} did"
    );
    // Auth endpoints are outside the voice scope and never fault.
    for _ in 0..5 {
        client.ringex_jwt_token(&ringex(&sim)).await.unwrap();
    }
}

#[tokio::test]
async fn auth_configs_are_typed_as_the_openapi_says() {
    let (_clock, sim, _client) = start().await;
    let (admin, _) = sim.mint_session("admin@example.com").unwrap();
    let (agent, _) = sim.mint_session("agent@example.com").unwrap();
    let http = reqwest::Client::new();
    let url = |kind: &str| {
        format!(
            "{}/voice/api/v1/admin/accounts/333333/external/authConfigs/{}/{kind}",
            sim.base_url(),
            uuid::Uuid::new_v4()
        )
    };
    let post = |token: &str, kind: &str, body: Value| {
        http.post(url(kind)).bearer_auth(token).json(&body).send()
    };
    let jwt = json!({"providerName": "p", "algorithm": "HS256", "payload": "{}",
                     "addTokenTo": "REQUEST_HEADER", "secret": "s"});
    let mut bad_type = jwt.clone();
    bad_type["expirationTime"] = json!("sixty");
    let mut bad_flag = jwt.clone();
    bad_flag["isSecretEncoded"] = json!("yes");
    let mut other_type = jwt.clone();
    other_type["authType"] = json!("BASIC");
    for (case, body) in [
        ("string expirationTime", bad_type),
        ("string flag", bad_flag),
        ("authType", other_type),
    ] {
        let r = post(&admin, "jwt", body).await.unwrap();
        assert_eq!(r.status(), 400, "{case}");
    }
    let mut extra = jwt.clone();
    extra["notInTheSpec"] = json!(1);
    let r = post(&admin, "jwt", extra).await.unwrap();
    assert_eq!(r.status(), 200);
    let stored: Value = r.json().await.unwrap();
    assert!(
        stored.get("notInTheSpec").is_none(),
        "unknown properties are ignored"
    );
    assert_eq!(stored["secret"], "****", "secrets are never shown again");
    let r = post(&agent, "jwt", jwt).await.unwrap();
    assert_eq!(
        r.status(),
        404,
        "another account's configs are not the agent's"
    );
}
