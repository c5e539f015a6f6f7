//! Secrets never reach logs, error messages or `Debug` output: every flow and failure is run
//! under a TRACE subscriber for all crates (ours, reqwest, hyper), then everything printed is
//! scanned for every secret the run handled.

use std::sync::Arc;
use std::time::Duration;

use broker::clock::{ManualClock, SharedClock};
use broker::credentials::Credentials;
use broker::ringcx::{ApiPath, Method, RingCxError, VoiceAuth, VoiceRequest};
use broker_tests::sim::{CLIENT_SECRET, Fault, Simulator};
use broker_tests::support::{CapturedLogs, client_for};
use chrono::Duration as ChronoDuration;
use secrecy::{ExposeSecret, SecretString};

#[test]
fn no_secret_in_logs_errors_or_debug_output() {
    let logs = CapturedLogs::default();
    let (secrets, printed) = logs.run(exercise());

    let log_text = logs.text();
    assert!(
        log_text.contains("RingCX session obtained"),
        "the capture works: {log_text:.300}"
    );
    assert!(log_text.contains("deprecated RingCX admin login"));
    assert!(
        log_text.contains("hyper"),
        "transport-level TRACE output is captured too"
    );
    assert!(
        secrets.len() >= 12,
        "the run handled {} secrets",
        secrets.len()
    );
    for secret in &secrets {
        assert!(
            secret.len() >= 8,
            "{} is long enough to search for",
            secret.len()
        );
        assert!(
            !log_text.contains(secret.as_str()),
            "a secret reached the logs"
        );
        assert!(
            !printed.contains(secret.as_str()),
            "a secret reached Debug/Display output"
        );
    }
}

/// Runs every flow, including failures; returns every secret seen and everything printed.
async fn exercise() -> (Vec<String>, String) {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::start(shared.clone()).await.unwrap();
    let client = client_for(&sim, shared, Duration::from_millis(500));
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.to_owned()];
    for u in sim.users() {
        secrets.push(u.password.clone());
        secrets.push(u.jwt_credential.clone());
    }
    let mut printed = String::new();
    let mut show = |label: &str, text: String| {
        tracing::info!(label, "{text}");
        printed.push_str(&text);
        printed.push('\n');
    };

    let creds: Credentials =
        serde_json::from_value(sim.ringex_credentials("admin@example.com").unwrap()).unwrap();
    show("credentials", format!("{creds:?}"));
    let Credentials::RingExJwt(ringex) = creds else {
        unreachable!()
    };
    let platform = client.ringex_jwt_token(&ringex).await.unwrap();
    secrets.push(platform.access_token.expose_secret().to_owned());
    show("platform", format!("{platform:?}"));
    let session = client.exchange(&platform.access_token).await.unwrap();
    show("session", format!("{session:?}"));
    let login: Credentials =
        serde_json::from_value(sim.engage_login_credentials("agent@example.com").unwrap()).unwrap();
    let Credentials::EngageLogin(login) = login else {
        unreachable!()
    };
    let agent = client.login_engage(&login).await.unwrap();
    let mut sessions = vec![session.clone(), agent.clone()];
    let refreshed = client
        .refresh(session.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    sessions.push(refreshed.clone());
    let auth = VoiceAuth::Bearer(&refreshed.access_token);
    let api_token = client.create_api_token(auth).await.unwrap();
    show(
        "api token",
        format!("{api_token:?} {:?}", client.list_api_tokens(auth).await),
    );
    let proxied_list = client
        .voice(
            auth,
            VoiceRequest::new(Method::GET, ApiPath::new("v1/admin/token").unwrap())
                .with_query(format!("t={}", api_token.expose_secret())),
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&proxied_list.body).contains(api_token.expose_secret()));
    show("proxied token list", format!("{proxied_list:?}"));
    secrets.push(api_token.expose_secret().to_owned());

    // Every failure path, with its message and Debug form printed.
    let mut errors: Vec<RingCxError> = Vec::new();
    errors.push(
        client
            .refresh(session.refresh_token.as_ref().unwrap())
            .await
            .unwrap_err(),
    );
    errors.push(
        client
            .users(VoiceAuth::Bearer(&agent.access_token))
            .await
            .unwrap_err(),
    );
    let mut bad = ringex.clone();
    bad.jwt = SecretString::from("a-wrong-jwt-credential".to_owned());
    secrets.push("a-wrong-jwt-credential".to_owned());
    errors.push(client.login_ringex(&bad).await.unwrap_err());
    let mut bad_login = login.clone();
    bad_login.password = SecretString::from("a-wrong-password".to_owned());
    secrets.push("a-wrong-password".to_owned());
    errors.push(client.login_engage(&bad_login).await.unwrap_err());
    sim.fail_next("/voice/api/v1/admin/token/", Fault::Drop, 1);
    errors.push(client.delete_api_token(auth, &api_token).await.unwrap_err());
    sim.fail_next("/voice/api/v1/admin/token/", Fault::Delay { ms: 5_000 }, 1);
    errors.push(client.delete_api_token(auth, &api_token).await.unwrap_err());
    sim.fail_next(
        "/api/auth/token/refresh",
        Fault::ServerError { status: 502 },
        1,
    );
    errors.push(
        client
            .refresh(refreshed.refresh_token.as_ref().unwrap())
            .await
            .unwrap_err(),
    );
    sim.fail_next("/api/auth/token/refresh", Fault::Garbage, 1);
    errors.push(
        client
            .refresh(refreshed.refresh_token.as_ref().unwrap())
            .await
            .unwrap_err(),
    );
    client.delete_api_token(auth, &api_token).await.unwrap();
    errors.push(client.delete_api_token(auth, &api_token).await.unwrap_err());
    clock.advance(ChronoDuration::seconds(400));
    errors.push(client.accounts(auth).await.unwrap_err());
    let answer = client
        .voice(
            auth,
            VoiceRequest::new(Method::GET, ApiPath::new("v1/admin/accounts").unwrap()),
        )
        .await
        .unwrap();
    show("voice", format!("{answer:?}"));
    for e in &errors {
        show("error", format!("{e} | {e:?}"));
    }
    for s in &sessions {
        secrets.push(s.access_token.expose_secret().to_owned());
        if let Some(r) = &s.refresh_token {
            secrets.push(r.expose_secret().to_owned());
        }
        show("session", format!("{s:?}"));
    }
    (secrets, printed)
}
