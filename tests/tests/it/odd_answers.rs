//! Answers no documented RingCX gives but a real one might: a refresh without its new refresh
//! token, and an answer too large to read. Each gets a precise error and loses nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker::clock::{SharedClock, SystemClock};
use broker::renew::{RenewError, RenewSettings, Renewer};
use broker::ringcx::{MAX_UPSTREAM_BODY_BYTES, RingCxClient, RingCxConfig, RingCxError, VoiceAuth};
use broker::store::memory::MemoryStore;
use broker::store::{SecretNames, SessionRing, upsert};
use chrono::Utc;
use secrecy::SecretString;
use serde_json::json;

/// A RingCX that answers a refresh without a refresh token and serves a 6 MB account list.
async fn odd_ringcx() -> (RingCxClient, SharedClock) {
    let now = Utc::now().timestamp();
    let claims = json!({"iat": now, "exp": now + 300}).to_string();
    let access = format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let app = Router::new()
        .route(
            "/api/auth/token/refresh",
            post(move || {
                let access = access.clone();
                async move {
                    axum::Json(json!({"accessToken": access, "refreshToken": null,
                                      "agentDetails": "not a list"}))
                }
            }),
        )
        .route(
            "/voice/api/v1/admin/accounts",
            get(|| async { "x".repeat(MAX_UPSTREAM_BODY_BYTES + 1) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let clock: SharedClock = Arc::new(SystemClock);
    let mut config = RingCxConfig::new(url.clone(), url);
    config.request_timeout = Duration::from_secs(5);
    (RingCxClient::new(&config, clock.clone()).unwrap(), clock)
}

#[tokio::test]
async fn a_refresh_without_a_refresh_token_saves_the_access_token_and_says_so() {
    let (ringcx, clock) = odd_ringcx().await;
    let store = MemoryStore::new(clock.clone());
    let names = SecretNames::new("ringcx/");
    upsert(
        &store,
        &names.slot("t", 0),
        &SecretString::from(r#"{"generation":0,"refreshToken":"rt-0"}"#.to_owned()),
    )
    .await
    .unwrap();
    let ring = SessionRing::new(store, names, 6, clock.clone());
    let renewer = Renewer::new(ring, ringcx, clock, RenewSettings::default());
    let err = renewer
        .renew("t", Utc::now() + chrono::Duration::seconds(30))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RenewError::RefreshTokenMissing { generation: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("without a refreshToken"), "{err}");
    let newest = renewer.ring().read("t").await.unwrap().newest.unwrap();
    assert_eq!(newest.generation, 1);
    assert!(
        newest.usable_token(Utc::now(), 250).is_some(),
        "the new access token was kept, despite an odd optional field"
    );
    assert!(newest.refresh_token.is_none());
}

#[tokio::test]
async fn an_answer_over_five_megabytes_is_refused_clearly() {
    let (ringcx, _) = odd_ringcx().await;
    let token = SecretString::from("at".to_owned());
    let err = ringcx
        .accounts(VoiceAuth::Bearer(&token))
        .await
        .unwrap_err();
    assert!(matches!(err, RingCxError::BodyTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("5242880 bytes"), "{err}");
    assert!(!err.is_transient());
}
