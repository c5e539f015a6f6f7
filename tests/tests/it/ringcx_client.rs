//! Every RingCX client flow and every error kind, against the simulator over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use broker::clock::{Clock, ManualClock, SharedClock};
use broker::ringcx::{
    ApiPath, ExpirySource, Method, RingCxClient, RingCxError, Service, VoiceAuth, VoiceRequest,
};
use broker_tests::sim::{
    Behaviour, CreatedTokenFormat, DeleteAnswer, Fault, Simulator, TokenListFormat,
};
use broker_tests::support::client_for;
use chrono::Duration as ChronoDuration;
use secrecy::{ExposeSecret, SecretString};

const ADMIN: &str = "admin@example.com";
const AGENT: &str = "agent@example.com";

struct Env {
    clock: ManualClock,
    sim: Simulator,
    client: RingCxClient,
}

async fn env() -> Env {
    env_with_timeout(Duration::from_secs(5)).await
}

async fn env_with_timeout(timeout: Duration) -> Env {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::start(shared.clone())
        .await
        .expect("simulator starts");
    let client = client_for(&sim, shared, timeout);
    Env { clock, sim, client }
}

fn ringex(sim: &Simulator, user: &str) -> broker::credentials::RingExJwtCredentials {
    sim.ringex_jwt(user)
}

/// A GET under `/voice/api/`; RingCX's answer, whatever its status.
async fn get(e: &Env, auth: VoiceAuth<'_>, path: &str) -> broker::ringcx::VoiceResponse {
    e.client
        .voice(
            auth,
            VoiceRequest::new(Method::GET, ApiPath::new(path).unwrap()),
        )
        .await
        .unwrap()
}

/// Refreshes `session` expecting RingCX to refuse; the error.
async fn refresh_err(e: &Env, session: &broker::ringcx::RingCxSession) -> RingCxError {
    e.client
        .refresh(session.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err()
}

fn engage_login(sim: &Simulator, user: &str) -> broker::credentials::EngageLoginCredentials {
    sim.engage_login(user)
}

// ---- flows ----

#[tokio::test]
async fn ringex_jwt_grant_then_exchange_yields_a_refreshable_session() {
    let e = env().await;
    let creds = ringex(&e.sim, ADMIN);
    let platform = e.client.ringex_jwt_token(&creds).await.unwrap();
    assert_eq!(platform.expires_in, Some(3600));
    let session = e.client.exchange(&platform.access_token).await.unwrap();
    assert!(
        session.refresh_token.is_some(),
        "includeRefresh=true must yield a refresh token"
    );
    assert_eq!(session.expiry_source, ExpirySource::JwtLifetime);
    assert_eq!(
        session.expires_at,
        e.clock.now() + ChronoDuration::seconds(300)
    );
    assert_eq!(session.account_id.as_deref(), Some("333333"));
    assert_eq!(session.main_account_id.as_deref(), Some("333000"));
    assert_eq!(session.token_type, "Bearer");

    let log = e.sim.requests();
    let grant = &log[0];
    assert_eq!(grant.path, "/restapi/oauth/token");
    assert!(
        grant.headers.contains(&"authorization".to_owned()),
        "Basic client credentials"
    );
    assert!(
        grant
            .body
            .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
    );
    let exchange = &log[1];
    assert_eq!(exchange.path, "/api/auth/login/rc/accesstoken");
    assert_eq!(exchange.query.as_deref(), Some("includeRefresh=true"));
    assert!(exchange.body.contains("rcTokenType=Bearer"));
}

#[tokio::test]
async fn login_ringex_runs_both_steps() {
    let e = env().await;
    let session = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    assert!(session.refresh_token.is_some());
    assert_eq!(e.sim.count("POST", "/restapi/oauth/token"), 1);
    assert_eq!(e.sim.count("POST", "/api/auth/login/rc/accesstoken"), 1);
}

#[tokio::test]
async fn engage_login_keeps_the_password_out_of_the_url() {
    let e = env().await;
    let session = e
        .client
        .login_engage(&engage_login(&e.sim, ADMIN))
        .await
        .unwrap();
    assert!(session.refresh_token.is_some());
    let login = &e.sim.requests()[0];
    assert_eq!(login.path, "/api/auth/login/admin");
    assert_eq!(
        login.query, None,
        "credentials travel in the form body, not the URL"
    );
    assert!(login.body.contains("platformId=c01"));
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_spends_the_old_one() {
    let e = env().await;
    let first = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    let old = first.refresh_token.unwrap();
    e.clock.advance(ChronoDuration::seconds(200));
    let second = e.client.refresh(&old).await.unwrap();
    let new = second.refresh_token.clone().unwrap();
    assert_ne!(new.expose_secret(), old.expose_secret());
    assert_ne!(
        second.access_token.expose_secret(),
        first.access_token.expose_secret()
    );
    assert_eq!(
        second.expires_at,
        e.clock.now() + ChronoDuration::seconds(300)
    );
    // Single use: the old one is now refused, the new one works.
    let err = e.client.refresh(&old).await.unwrap_err();
    assert!(
        matches!(err, RingCxError::RefreshTokenRejected { status: 401, .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    e.client.refresh(&new).await.unwrap();
}

#[tokio::test]
async fn permanent_tokens_create_list_delete_with_either_auth_header() {
    let e = env().await;
    let session = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    let bearer = VoiceAuth::Bearer(&session.access_token);
    let a = e.client.create_api_token(bearer).await.unwrap();
    assert!(a.expose_secret().starts_with("aws80:"));
    let x_auth = VoiceAuth::ApiToken(&a);
    let b = e.client.create_api_token(x_auth).await.unwrap();
    let listed: Vec<String> = e
        .client
        .list_api_tokens(x_auth)
        .await
        .unwrap()
        .iter()
        .map(|t| t.expose_secret().to_owned())
        .collect();
    assert_eq!(listed, [a.expose_secret(), b.expose_secret()]);
    e.client.delete_api_token(bearer, &b).await.unwrap();
    assert_eq!(e.sim.api_tokens_of(ADMIN), [a.expose_secret().to_owned()]);
    let headers = e.sim.requests().last().unwrap().headers.clone();
    assert!(headers.contains(&"authorization".to_owned()));
    // A permanent token keeps working after the access token has expired.
    e.clock.advance(ChronoDuration::seconds(3600));
    assert_eq!(e.client.list_api_tokens(x_auth).await.unwrap().len(), 1);
    let err = e.client.delete_api_token(x_auth, &b).await.unwrap_err();
    assert!(matches!(err, RingCxError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn token_answers_in_every_documented_shape() {
    let e = env().await;
    let session = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    let auth = VoiceAuth::Bearer(&session.access_token);
    e.sim.set_behaviour(Behaviour {
        token_list: TokenListFormat::BraceSet,
        created_token: CreatedTokenFormat::JsonString,
        delete_answer: DeleteAnswer::NoContent,
        ..Behaviour::default()
    });
    let a = e.client.create_api_token(auth).await.unwrap();
    assert!(
        !a.expose_secret().contains('"'),
        "JSON-string token is unquoted"
    );
    let b = e.client.create_api_token(auth).await.unwrap();
    let list = e.client.list_api_tokens(auth).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].expose_secret(), b.expose_secret());
    assert!(
        e.sim
            .requests()
            .iter()
            .any(|r| r.status == 200 && r.path.ends_with("/token"))
    );
    e.client.delete_api_token(auth, &a).await.unwrap();
    assert_eq!(e.sim.requests().last().unwrap().status, 204);
    assert_eq!(e.client.list_api_tokens(auth).await.unwrap().len(), 1);
}

#[tokio::test]
async fn accounts_and_users_are_typed_and_permission_errors_are_clear() {
    let e = env().await;
    let admin = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    let accounts = e
        .client
        .accounts(VoiceAuth::Bearer(&admin.access_token))
        .await
        .unwrap();
    let ids: Vec<&str> = accounts.iter().map(|a| a.account_id.as_str()).collect();
    assert_eq!(
        ids,
        ["333333", "333334"],
        "ids arrive as a string and as a number"
    );
    assert!(
        accounts[0].other.contains_key("timezoneName"),
        "unknown fields are kept"
    );
    let users = e
        .client
        .users(VoiceAuth::Bearer(&admin.access_token))
        .await
        .unwrap();
    assert_eq!(users[0].user_id.as_deref(), Some("1111"));
    assert_eq!(users[1].user_name.as_deref(), Some(AGENT));

    let agent = e
        .client
        .login_engage(&engage_login(&e.sim, AGENT))
        .await
        .unwrap();
    let err = e
        .client
        .users(VoiceAuth::Bearer(&agent.access_token))
        .await
        .unwrap_err();
    match &err {
        RingCxError::Forbidden { code, message } => {
            assert_eq!(code, "access.denied.exception");
            assert!(message.contains("MANAGE_USERS"));
        }
        other => panic!("expected Forbidden, got {other}"),
    }
    assert!(err.to_string().contains("lacks the role"));
}

#[tokio::test]
async fn generic_voice_call_passes_method_query_and_body_through() {
    let e = env().await;
    let s = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    let auth = VoiceAuth::Bearer(&s.access_token);
    for (ct, body) in [
        ("application/json", r#"{"ani":"+15551234567"}"#),
        (
            "application/x-www-form-urlencoded",
            "ani=%2B15551234567&dnis=800",
        ),
    ] {
        let answer = e
            .client
            .voice(
                auth,
                VoiceRequest::new(Method::PUT, ApiPath::new("v1/sim/echo/x").unwrap())
                    .with_query("a=1&b=two")
                    .with_body(ct, body),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        let echoed: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(echoed["method"], "PUT");
        assert_eq!(echoed["path"], "/voice/api/v1/sim/echo/x");
        assert_eq!(echoed["query"], "a=1&b=two");
        assert_eq!(echoed["contentType"], ct);
        assert_eq!(echoed["body"], body);
    }
    // Upstream statuses are answers, not errors.
    let missing = get(&e, auth, "v1/admin/nothing-here").await;
    assert_eq!(missing.status, 404);
    assert!(!missing.is_jwt_expired());
    e.clock.advance(ChronoDuration::seconds(301));
    let expired = get(&e, auth, "v1/admin/accounts").await;
    assert!(expired.is_jwt_expired());
}

// ---- error kinds ----

#[tokio::test]
async fn expired_access_token_is_recognised() {
    let e = env().await;
    let s = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    e.clock.advance(ChronoDuration::seconds(299));
    e.client
        .accounts(VoiceAuth::Bearer(&s.access_token))
        .await
        .unwrap();
    e.clock.advance(ChronoDuration::seconds(1));
    let err = e
        .client
        .accounts(VoiceAuth::Bearer(&s.access_token))
        .await
        .unwrap_err();
    assert!(matches!(err, RingCxError::AccessTokenExpired), "{err}");
    assert_eq!(e.sim.requests().last().unwrap().status, 401);
}

#[tokio::test]
async fn an_unknown_access_token_is_unauthorized_not_expired() {
    let e = env().await;
    let bogus = SecretString::from("not-a-token".to_owned());
    let err = e
        .client
        .accounts(VoiceAuth::Bearer(&bogus))
        .await
        .unwrap_err();
    assert!(matches!(err, RingCxError::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn revoked_refresh_tokens_are_rejected() {
    let e = env().await;
    let s = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    assert_eq!(e.sim.revoke_refresh_tokens(), 1);
    let err = refresh_err(&e, &s).await;
    assert!(
        matches!(err, RingCxError::RefreshTokenRejected { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("log in again"));
}

#[tokio::test]
async fn rejected_credentials_name_the_service_and_are_not_transient() {
    let e = env().await;
    let mut creds = ringex(&e.sim, ADMIN);
    creds.jwt = SecretString::from("wrong-jwt-credential".to_owned());
    let err = e.client.login_ringex(&creds).await.unwrap_err();
    assert!(
        matches!(
            err,
            RingCxError::CredentialsRejected {
                service: Service::Platform,
                status: 400,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("invalid_grant"));
    creds.client_secret = SecretString::from("wrong-secret".to_owned());
    let err = e.client.login_ringex(&creds).await.unwrap_err();
    assert!(
        matches!(err, RingCxError::CredentialsRejected { status: 401, .. }),
        "{err}"
    );
    assert!(!err.is_transient());

    let mut login = engage_login(&e.sim, ADMIN);
    login.password = SecretString::from("wrong-password".to_owned());
    let err = e.client.login_engage(&login).await.unwrap_err();
    assert!(
        matches!(
            err,
            RingCxError::CredentialsRejected {
                service: Service::RingCx,
                status: 401,
                ..
            }
        ),
        "{err}"
    );
    let bogus = SecretString::from("expired-or-bogus-rc-token".to_owned());
    let err = e.client.exchange(&bogus).await.unwrap_err();
    assert!(
        matches!(err, RingCxError::CredentialsRejected { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn exchange_is_limited_to_five_a_minute_with_retry_after() {
    let e = env().await;
    let creds = ringex(&e.sim, ADMIN);
    for _ in 0..5 {
        e.client.login_ringex(&creds).await.unwrap();
        e.clock.advance(ChronoDuration::seconds(5));
    }
    let err = e.client.login_ringex(&creds).await.unwrap_err();
    assert!(
        matches!(
            err,
            RingCxError::RateLimited {
                service: Service::RingCx,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_transient());
    // The first exchange happened 25 s ago: the window frees in 35 s.
    assert_eq!(err.retry_after(), Some(Duration::from_secs(35)));
    e.clock.advance(ChronoDuration::seconds(35));
    e.client.login_ringex(&creds).await.unwrap();
}

#[tokio::test]
async fn platform_429_carries_retry_after() {
    let e = env().await;
    e.sim.fail_next(
        "/restapi/oauth/token",
        Fault::RateLimited { retry_after: 7 },
        1,
    );
    let err = e
        .client
        .ringex_jwt_token(&ringex(&e.sim, ADMIN))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RingCxError::RateLimited {
                service: Service::Platform,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.to_string().contains("retry after 7 s"));
}

#[tokio::test]
async fn server_errors_are_transient_upstream_errors() {
    let e = env().await;
    let s = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    e.sim.fail_next(
        "/api/auth/token/refresh",
        Fault::ServerError { status: 503 },
        1,
    );
    let err = refresh_err(&e, &s).await;
    assert!(
        matches!(err, RingCxError::Upstream { status: 503, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    // Nothing was spent: the same refresh token still works.
    e.client
        .refresh(s.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_slow_upstream_times_out() {
    let e = env_with_timeout(Duration::from_millis(300)).await;
    e.sim.fail_next(
        "/voice/api/v1/admin/accounts",
        Fault::Delay { ms: 10_000 },
        1,
    );
    let token = SecretString::from("irrelevant".to_owned());
    let err = e
        .client
        .accounts(VoiceAuth::Bearer(&token))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RingCxError::Timeout {
                service: Service::RingCx
            }
        ),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_closed_port_is_a_connection_failure() {
    let clock: SharedClock = Arc::new(ManualClock::starting_now());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let client = RingCxClient::new(
        &broker::ringcx::RingCxConfig::new(base.clone(), base),
        clock,
    )
    .unwrap();
    let token = SecretString::from("irrelevant".to_owned());
    let err = client.refresh(&token).await.unwrap_err();
    assert!(matches!(err, RingCxError::Connect { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("check the base URL"));
}

#[tokio::test]
async fn a_dropped_connection_is_reported_as_such() {
    let e = env().await;
    let s = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    e.sim.fail_next("/api/auth/token/refresh", Fault::Drop, 1);
    let err = refresh_err(&e, &s).await;
    assert!(
        matches!(err, RingCxError::ConnectionDropped { .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(
        e.sim.requests().last().unwrap().status,
        0,
        "the simulator never answered"
    );
}

#[tokio::test]
async fn odd_bodies_are_unexpected_body_errors_that_quote_nothing() {
    let e = env().await;
    let s = e.client.login_ringex(&ringex(&e.sim, ADMIN)).await.unwrap();
    let auth = VoiceAuth::Bearer(&s.access_token);
    e.sim
        .fail_next("/api/auth/token/refresh", Fault::Garbage, 1);
    let err = refresh_err(&e, &s).await;
    assert!(
        matches!(err, RingCxError::UnexpectedBody { status: 200, .. }),
        "{err}"
    );
    assert!(
        !err.to_string().contains("maintenance"),
        "the body is described, not quoted: {err}"
    );
    e.sim
        .fail_next("/voice/api/v1/admin/token", Fault::Garbage, 2);
    let err = e.client.list_api_tokens(auth).await.unwrap_err();
    assert!(matches!(err, RingCxError::UnexpectedBody { .. }), "{err}");
    let err = e.client.create_api_token(auth).await.unwrap_err();
    assert!(matches!(err, RingCxError::UnexpectedBody { .. }), "{err}");
    e.sim
        .fail_next("/voice/api/v1/admin/accounts", Fault::Garbage, 1);
    let err = e.client.accounts(auth).await.unwrap_err();
    assert!(matches!(err, RingCxError::UnexpectedBody { .. }), "{err}");
}

#[tokio::test]
async fn the_generic_call_refuses_paths_outside_voice_api() {
    let e = env().await;
    let err = ApiPath::new("../../api/auth/token/refresh").unwrap_err();
    assert!(matches!(err, RingCxError::InvalidPath { .. }), "{err}");
    assert!(e.sim.requests().is_empty());
}

#[tokio::test]
async fn clocks_agree_between_client_and_simulator() {
    let e = env().await;
    assert_eq!(e.sim.now(), e.clock.now());
    e.sim.advance(ChronoDuration::seconds(10));
    assert_eq!(e.sim.now() - e.clock.now(), ChronoDuration::seconds(10));
}
