//! Every route of the HTTP function, happy path and bad input, against moto (through the AWS SDK)
//! and the RingCX simulator.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker::store::aws::SecretsManagerStore;
use broker_tests::sim::Fault;
use broker_tests::support::{ApiStack, moto_store, unique_prefix};
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn stack() -> ApiStack<SecretsManagerStore> {
    ApiStack::start(moto_store().await, &unique_prefix("api"), &[]).await
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn health_reports_token_availability_without_names() {
    let s = stack().await;
    let (status, body) = json_of(http().get(s.url("/v1/health")).send().await.unwrap()).await;
    assert_eq!(status, 503, "no tenant has a token yet: {body}");
    assert_eq!(body["usableToken"], false);
    for tenant in ["default", "second"] {
        http()
            .get(s.url("/v1/token"))
            .bearer_auth(s.key(if tenant == "default" {
                "reader"
            } else {
                "other"
            }))
            .send()
            .await
            .unwrap();
    }
    s.clock.advance(Duration::seconds(10));
    let reads = s.app.tokens.ring_reads();
    let (status, body) = json_of(http().get(s.url("/v1/health")).send().await.unwrap()).await;
    assert_eq!(status, 503, "`empty` has no credentials: {body}");
    for _ in 0..20 {
        http().get(s.url("/v1/health")).send().await.unwrap();
    }
    assert_eq!(
        s.app.tokens.ring_reads(),
        reads + 1,
        "unauthenticated health checks cannot drive Secrets Manager reads"
    );
    assert_eq!(body["tenantsWithToken"], 2);
    assert_eq!(body["tenants"], 3);
    let text = body.to_string();
    assert!(
        !text.contains("default") && !text.contains("second"),
        "no tenant names: {text}"
    );
}

#[tokio::test]
async fn get_token_serves_the_ring_from_memory_and_refreshes_inline_when_the_refresher_is_late() {
    let s = stack().await;
    let r = http()
        .get(s.url("/v1/token"))
        .header("X-Api-Key", s.key("reader"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (status, body) = json_of(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["account_id"], "333333");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.app.tokens.renewals(),
        0,
        "the refresher's session, as it is"
    );
    let reads = s.app.tokens.ring_reads();
    for _ in 0..20 {
        let (_, again) = json_of(
            http()
                .get(s.url("/v1/token"))
                .bearer_auth(s.key("all"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(again["access_token"], token.as_str());
    }
    assert_eq!(s.app.tokens.ring_reads(), reads, "served from memory");
    // Near expiry the ring is read again.
    s.clock.advance(Duration::seconds(271));
    let (_, late) = json_of(
        http()
            .get(s.url("/v1/token"))
            .bearer_auth(s.key("all"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(
        late["access_token"],
        token.as_str(),
        "a new token once the old one is within MIN_TOKEN_TTL"
    );
    assert_eq!(
        s.app.tokens.ring_reads(),
        reads + 2,
        "one read found nothing usable, one after renewing"
    );
    assert_eq!(s.app.tokens.renewals(), 1, "one inline refresh");
    assert_eq!(
        s.sim.count("POST", "/api/auth/token/refresh"),
        1,
        "the refresher being late costs one refresh"
    );
    assert_eq!(
        s.sim.count("POST", "/api/auth/login/rc/accesstoken")
            + s.sim.count("POST", "/restapi/oauth/token"),
        0,
        "and never a login"
    );
}

#[tokio::test]
async fn oauth_client_credentials_in_form_or_basic() {
    let s = stack().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "reader"),
        ("client_secret", s.key("reader")),
    ];
    let (status, body) = json_of(
        http()
            .post(s.url("/v1/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["access_token"].as_str().unwrap().contains('.'),
        "a JWT"
    );
    let (status, _) = json_of(
        http()
            .post(s.url("/v1/oauth/token"))
            .basic_auth("reader", Some(s.key("reader")))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http()
                .post(s.url("/v1/oauth/token"))
                .form(&[("client_id", "reader")]),
            400,
            "invalid_request",
        ),
        (
            http().post(s.url("/v1/oauth/token")).form(&[
                ("grant_type", "password"),
                ("client_id", "reader"),
                ("client_secret", s.key("reader")),
            ]),
            400,
            "unsupported_grant_type",
        ),
        (
            http().post(s.url("/v1/oauth/token")).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "reader"),
                ("client_secret", "wrong"),
            ]),
            401,
            "invalid_client",
        ),
        (
            http().post(s.url("/v1/oauth/token")).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "proxy"),
                ("client_secret", s.key("reader")),
            ]),
            401,
            "invalid_client",
        ),
        (
            http()
                .post(s.url("/v1/oauth/token"))
                .form(&[("grant_type", "client_credentials")]),
            401,
            "invalid_client",
        ),
        (
            http()
                .post(s.url("/v1/oauth/token"))
                .json(&json!({"grant_type": "client_credentials"})),
            400,
            "invalid_request",
        ),
        (
            http()
                .post(s.url("/v1/oauth/token"))
                .basic_auth("reader", Some(s.key("reader")))
                .form(&form),
            400,
            "invalid_request",
        ),
        (
            http().post(s.url("/v1/oauth/token")).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "proxy"),
                ("client_secret", s.key("proxy")),
            ]),
            400,
            "unauthorized_client",
        ),
        (
            http()
                .post(s.url("/v1/oauth/token"))
                .header("X-Tenant", "default")
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "other"),
                    ("client_secret", s.key("other")),
                ]),
            403,
            "access_denied",
        ),
    ];
    for (i, (request, status, code)) in cases.into_iter().enumerate() {
        let (got, body) = json_of(request.send().await.unwrap()).await;
        assert_eq!(
            (got.as_u16(), body["error"].as_str().unwrap_or("")),
            (status, code),
            "case {i}: {body}"
        );
    }
}

#[tokio::test]
async fn proxy_passes_query_json_and_form_bodies_and_upstream_answers() {
    let s = stack().await;
    let (status, body) = json_of(
        http()
            .get(s.url("/v1/engage/v1/admin/accounts?activeOnly=true"))
            .bearer_auth(s.key("proxy"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["accountId"], "333333");
    assert_eq!(
        s.sim.requests().last().unwrap().query.as_deref(),
        Some("activeOnly=true")
    );

    let (status, echo) = json_of(
        http()
            .post(s.url("/v1/engage/v1/sim/echo/ivr?ani=%2B15551234567"))
            .bearer_auth(s.key("proxy"))
            .json(&json!({"dnis": "8005550100", "digits": "42"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["query"], "ani=%2B15551234567");
    assert_eq!(echo["contentType"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(echo["body"].as_str().unwrap()).unwrap()["digits"],
        "42"
    );

    let (_, echo) = json_of(
        http()
            .put(s.url("/v1/engage/v1/sim/echo"))
            .basic_auth("proxy", Some(s.key("proxy")))
            .form(&[("ani", "+15551234567"), ("agent_id", "1001")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body"], "ani=%2B15551234567&agent_id=1001");

    let (status, body) = json_of(
        http()
            .delete(s.url("/v1/engage/v1/admin/nothing"))
            .bearer_auth(s.key("proxy"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "RingCX's own 404 comes back: {body}");
    assert_eq!(body["errorCode"], "not.found");
    s.sim.fail_next(
        "/voice/api/v1/admin/accounts",
        Fault::ServerError { status: 503 },
        1,
    );
    let r = http()
        .get(s.url("/v1/engage/v1/admin/accounts"))
        .bearer_auth(s.key("proxy"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "an upstream 5xx is relayed as RingCX's answer"
    );
}

#[tokio::test]
async fn proxy_turns_transport_failures_into_502_and_504() {
    let s = stack().await;
    http()
        .get(s.url("/v1/engage/v1/admin/accounts"))
        .bearer_auth(s.key("proxy"))
        .send()
        .await
        .unwrap();
    s.sim.fail_next(
        "/voice/api/v1/admin/accounts",
        Fault::Delay { ms: 5_000 },
        1,
    );
    let (status, body) = json_of(
        http()
            .get(s.url("/v1/engage/v1/admin/accounts"))
            .bearer_auth(s.key("proxy"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (504, "upstream_timeout")
    );
    s.sim
        .fail_next("/voice/api/v1/admin/accounts", Fault::Drop, 1);
    let (status, body) = json_of(
        http()
            .get(s.url("/v1/engage/v1/admin/accounts"))
            .bearer_auth(s.key("proxy"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (502, "upstream_error"),
        "{body}"
    );
}

#[tokio::test]
async fn proxy_retries_once_when_ringcx_refuses_the_token() {
    let s = stack().await;
    http()
        .get(s.url("/v1/engage/v1/admin/accounts"))
        .bearer_auth(s.key("proxy"))
        .send()
        .await
        .unwrap();
    // RingCX's clock runs ahead: it calls the cached token (40 s old) expired while the broker
    // does not.
    s.clock.advance(Duration::seconds(40));
    s.sim.advance(Duration::seconds(301));
    s.sim.clear_requests();
    let r = http()
        .get(s.url("/v1/engage/v1/admin/accounts"))
        .bearer_auth(s.key("proxy"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let statuses: Vec<(String, u16)> = s
        .sim
        .requests()
        .iter()
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("/voice/api/v1/admin/accounts".to_owned(), 401),
            ("/api/auth/token/refresh".to_owned(), 200),
            ("/voice/api/v1/admin/accounts".to_owned(), 200)
        ]
    );
}

#[tokio::test]
async fn proxy_refuses_bad_bodies_and_never_forwards_caller_credentials() {
    let s = stack().await;
    let big = "x".repeat(256 * 1024 + 1);
    let (status, body) = json_of(
        http()
            .post(s.url("/v1/engage/v1/sim/echo"))
            .bearer_auth(s.key("proxy"))
            .header("content-type", "text/plain")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (413, "body_too_large")
    );
    let (status, body) = json_of(
        http()
            .post(s.url("/v1/engage/v1/sim/echo"))
            .bearer_auth(s.key("proxy"))
            .header("content-type", "application/octet-stream")
            .body("abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (415, "unsupported_media_type")
    );
    assert!(s.sim.requests().is_empty(), "nothing reached RingCX");

    let r = http()
        .get(s.url("/v1/engage/v1/sim/echo?api_key=leak"))
        .bearer_auth(s.key("proxy"))
        .header("Cookie", "session=abc")
        .header("X-Auth-Token", "aws80:someone-elses-token")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let upstream = s
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/sim/echo"))
        .unwrap();
    assert!(
        upstream.headers.contains(&"authorization".to_owned()),
        "the broker's own bearer token"
    );
    for h in ["cookie", "x-auth-token", "x-forwarded-for", "x-api-key"] {
        assert!(
            !upstream.headers.contains(&h.to_owned()),
            "{h} was forwarded"
        );
    }
    assert_eq!(upstream.query, None, "api_key is never forwarded");
}

#[tokio::test]
async fn proxy_without_any_obtainable_token_answers_503_with_retry_after() {
    let s = ApiStack::start(moto_store().await, &unique_prefix("api-empty"), &[]).await;
    // A key for the `empty` tenant (served, no credentials).
    let (key, entry) =
        api::auth::generate_key("lonely", "empty", vec![api::auth::Scope::EngageProxy]).unwrap();
    use broker::store::SecretStore as _;
    use secrecy::ExposeSecret as _;
    let name = broker::store::SecretNames::new(s.prefix.clone()).callers();
    let mut entries: Vec<Value> =
        serde_json::from_str(s.store.get(&name).await.unwrap().unwrap().expose_secret()).unwrap();
    entries.push(serde_json::to_value(entry).unwrap());
    s.store
        .put(
            &name,
            &secrecy::SecretString::from(Value::Array(entries).to_string()),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await
        .unwrap();
    s.clock.advance(Duration::seconds(61)); // the callers cache expires
    let r = http()
        .get(s.url("/v1/engage/v1/admin/accounts"))
        .bearer_auth(key.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let (_, body) = json_of(r).await;
    assert_eq!(error_code(&body), "token_unavailable");
}

#[tokio::test]
async fn api_tokens_are_created_listed_masked_and_revoked() {
    let s = stack().await;
    let key = s.key("admin");
    let r = http()
        .post(s.url("/v1/api-tokens"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (status, created) = json_of(r).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("aws80:"));

    let (status, list) = json_of(
        http()
            .get(s.url("/v1/api-tokens"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["masked"], true);
    let shown = list["tokens"][0]["token"].as_str().unwrap();
    assert_eq!(shown, format!("aws80:…{}", &token[token.len() - 4..]));
    assert_eq!(list["tokens"][0]["managed"], true);
    assert!(
        !list.to_string().contains(&token[6..]),
        "masked listing hides the token"
    );
    let (_, revealed) = json_of(
        http()
            .get(s.url("/v1/api-tokens?reveal=true"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(revealed["tokens"][0]["token"], token.as_str());
    let (status, body) = json_of(
        http()
            .get(s.url("/v1/api-tokens?reveal=maybe"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), error_code(&body)), (400, "invalid_query"));

    let r = http()
        .delete(s.url(&format!("/v1/api-tokens/{token}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(s.sim.api_tokens_of("admin@example.com").is_empty());
    let (status, body) = json_of(
        http()
            .delete(s.url(&format!("/v1/api-tokens/{token}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (404, "api_token_not_found")
    );
    let (status, body) = json_of(
        http()
            .delete(s.url("/v1/api-tokens/%20bad%20"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), error_code(&body)), (400, "invalid_token"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let s = stack().await;
    let (status, body) = json_of(http().get(s.url("/v1/nope")).send().await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (404, "route_not_found")
    );
    // What it points to is served, without a key: the document the tests check the routes by.
    assert!(body.to_string().contains("/v1/openapi.json"), "{body}");
    let r = http().get(s.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served: serde_json::Value = r.json().await.unwrap();
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../../../functions/api/openapi.json")).unwrap();
    assert_eq!(served, file);
    assert!(served["paths"]["/v1/openapi.json"]["get"].is_object());
    let (status, body) = json_of(http().put(s.url("/v1/token")).send().await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (405, "method_not_allowed")
    );
    // HEAD is served wherever GET is (axum's rule), so it needs a key like GET does.
    let r = http()
        .head(s.url("/v1/engage/v1/admin/accounts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn basic_auth_as_an_ivr_remote_http_service_sends_it() {
    let s = stack().await;
    let basic = STANDARD.encode(format!("proxy:{}", s.key("proxy")));
    let r = http()
        .get(s.url("/v1/engage/v1/admin/accounts"))
        .header("Authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The right key under another caller's id is refused.
    let wrong_id = STANDARD.encode(format!("reader:{}", s.key("proxy")));
    let (status, body) = json_of(
        http()
            .get(s.url("/v1/engage/v1/admin/accounts"))
            .header("Authorization", format!("Basic {wrong_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (401, "invalid_credentials")
    );
}
