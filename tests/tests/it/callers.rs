//! Least privilege for callers: credential areas the proxy never reaches, `paths` per method,
//! credential query parameters never forwarded, tenants kept apart; and every RingCX external
//! auth config type authenticating to the broker (OAuth client credentials in each place, JWT
//! callers, Basic, API key).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker::clock::{Clock as _, ManualClock};
use broker::store::memory::MemoryStore;
use broker_tests::sim::outbound::fetch_token;
use broker_tests::support::{ApiStack, json_of, raw_http, rsa_pems};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

async fn stack(extra: &[(&str, &str)]) -> ApiStack<MemoryStore> {
    let store = MemoryStore::new(Arc::new(ManualClock::starting_now()));
    // Callers are added before a stack's first request, so every instance reads them once.
    ApiStack::start(store, "ringcx/", extra).await
}

/// Spellings RingCX could route to a credential area, as raw request targets.
const CREDENTIAL_TARGETS: &[&str] = &[
    "/v1/engage/v1/admin/token",
    "/v1/engage/v1/admin/token/",
    "/v1/engage/v1/admin/token/aws80:0000-1111",
    "/v1/engage/V1/ADMIN/TOKEN",
    "/v1/engage/v1/admin/Token",
    "/v1/engage/v1/admin/tok%65n",
    "/v1/engage/v1/%61dmin/token",
    "/v1/engage/v1/admin/token.json",
    "/v1/engage/v2/admin/token",
    "/v1/engage/v1/admin/token?x=1",
    "/v1/engage/v1/auth/login",
    "/v1/engage/v1/admin/accounts/333333/external/authConfigs",
    "/v1/engage/v1/admin/accounts/333333/external/authConfigs/x/oauth",
    "/v1/engage/v1/admin/accounts/333333/httpServiceGroups/1/httpServices",
];

#[tokio::test]
async fn no_key_reaches_permanent_tokens_logins_or_auth_configs_through_the_proxy() {
    let s = stack(&[]).await;
    let tokens_before = s.sim.api_tokens_of("admin@example.com").len();
    let mut refused = 0;
    for caller in ["proxy", "all"] {
        for target in CREDENTIAL_TARGETS {
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                let auth = format!("Bearer {}", s.key(caller));
                let (status, body) =
                    raw_http(&s.base, method, target, &[("Authorization", &auth)]).await;
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (403, Some("path_refused")),
                    "{caller} {method} {target}: {body}"
                );
                refused += 1;
            }
        }
    }
    // Encoded spaces, which older Spring trims away, are refused as paths.
    for target in [
        "/v1/engage/v1/admin/token%20",
        "/v1/engage/v1/%20admin/token",
        "/v1/engage/v1/admin/%09token",
    ] {
        let auth = format!("Bearer {}", s.key("all"));
        let (status, body) = raw_http(&s.base, "GET", target, &[("Authorization", &auth)]).await;
        assert_eq!(status, 400, "{target}: {body}");
        refused += 1;
    }
    println!("credential areas: {refused} proxy requests refused, none sent upstream");
    assert_eq!(refused, 2 * CREDENTIAL_TARGETS.len() * 5 + 3);
    assert!(s.sim.requests().is_empty(), "nothing reached RingCX");
    assert_eq!(
        s.sim.api_tokens_of("admin@example.com").len(),
        tokens_before
    );
    // The managed route still works for the admin scope.
    let created = reqwest::Client::new()
        .post(s.url("/v1/api-tokens"))
        .bearer_auth(s.key("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

#[tokio::test]
async fn credential_query_parameters_never_reach_ringcx_however_spelled() {
    let s = stack(&[("ALLOW_QUERY_KEY", "true")]).await;
    let key = s.key("proxy").to_owned();
    let http = reqwest::Client::new();
    for query in [
        format!("api%5Fkey={key}&x=1"),
        format!("API_KEY={key}&x=1"),
        format!("%61pi_key={key}&x=1"),
        format!("api_key={key}&x=1&API%5FKEY={key}"),
        format!("x=1&copy={key}"),
        format!("x=1&access_token={key}&jwt=abc&client_secret=s"),
    ] {
        // The key authenticates in a header; the query only tries to smuggle it.
        let r = http
            .get(s.url(&format!("/v1/engage/v1/sim/echo?{query}")))
            .header("X-Api-Key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{query}");
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["query"], "x=1", "{query}");
    }
    // The key as the query credential itself (enabled here), under a decoded name.
    let r = http
        .get(s.url(&format!("/v1/engage/v1/sim/echo?api_key={key}&x=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for req in s.sim.requests() {
        assert!(
            !req.query.as_deref().unwrap_or("").contains(&key[5..]),
            "the key reached RingCX: {req:?}"
        );
    }
}

#[tokio::test]
async fn paths_allow_and_refuse_per_method_and_keys_stay_in_their_tenant() {
    let s = stack(&[]).await;
    let key = s
        .add_key(
            "campaigns",
            "default",
            &[api::auth::Scope::EngageProxy],
            Some(&[
                "GET v1/sim/echo/accounts/*/campaigns/*",
                "POST v1/sim/echo/accounts/*/campaigns/*/leadLoader/direct",
            ]),
        )
        .await;
    let http = reqwest::Client::new();
    let cases = [
        ("GET", "v1/sim/echo/accounts/1/campaigns/7", 200),
        ("GET", "v1/sim/echo/accounts/1/campaign%73/7", 200),
        ("DELETE", "v1/sim/echo/accounts/1/campaigns/7", 403),
        ("PUT", "v1/sim/echo/accounts/1/campaigns/7", 403),
        ("GET", "v1/sim/echo/accounts/1/campaigns", 403),
        ("GET", "v1/sim/echo/accounts/1/campaigns/", 403),
        ("GET", "v1/sim/echo/accounts//campaigns/7", 400),
        ("GET", "v1/sim/echo/accounts/1/campaigns/7/x", 403),
        (
            "POST",
            "v1/sim/echo/accounts/1/campaigns/7/leadLoader/direct",
            200,
        ),
        (
            "GET",
            "v1/sim/echo/accounts/1/campaigns/7/leadLoader/direct",
            403,
        ),
        ("GET", "v1/admin/accounts", 403),
        ("GET", "V1/sim/echo/accounts/1/campaigns/7", 403),
        ("GET", "v1/admin/token", 403),
    ];
    let mut allowed = 0;
    for (method, path, want) in cases {
        let r = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                s.url(&format!("/v1/engage/{path}")),
            )
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, want, "{method} {path}: {body}");
        if want == 400 {
            continue;
        }
        if want == 403 {
            assert!(
                matches!(
                    body["error"]["code"].as_str(),
                    Some("path_not_allowed" | "path_refused")
                ),
                "{body}"
            );
        } else {
            allowed += 1;
        }
    }
    assert_eq!(
        s.sim.requests().len(),
        allowed,
        "only allowed calls went upstream"
    );
    // Spring's method override cannot turn an allowed POST into a DELETE.
    let direct = s.url("/v1/engage/v1/sim/echo/accounts/1/campaigns/7/leadLoader/direct");
    let r = http
        .post(format!("{direct}?_method=DELETE&x=1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(
        (echo["method"].as_str(), echo["query"].as_str()),
        (Some("POST"), Some("x=1"))
    );
    let r = http
        .post(&direct)
        .bearer_auth(&key)
        .form(&[("_method", "DELETE")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.sim.requests().len(), allowed + 1);
    // A key for `second` never acts for `default`, and its calls use `second`'s session.
    let other = s.key("other");
    let r = http
        .get(s.url("/v1/engage/v1/admin/accounts"))
        .bearer_auth(other)
        .header("X-Tenant", "default")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let mine: Value = json_of(
        http.get(s.url("/v1/engage/v1/admin/accounts"))
            .bearer_auth(other),
    )
    .await;
    assert_eq!(
        mine[0]["accountId"], "333334",
        "the second tenant's own account"
    );
    println!("paths: {} cases, {allowed} allowed", cases.len());
}

/// What RingCX's OAUTH config for the `reader` caller looks like, supplying credentials `where`.
fn oauth_config(s: &ApiStack<MemoryStore>, id: &str, secret: &str, supply_in: &str) -> Value {
    json!({"authType": "OAUTH", "providerName": "broker", "grantType": "CLIENT_CREDENTIALS",
           "tokenUrl": s.url("/v1/oauth/token"), "clientId": id, "secret": secret,
           "clientCredentialsSupplyIn": supply_in})
}

#[tokio::test]
async fn oauth_client_credentials_work_in_each_place_ringcx_supplies_them() {
    let s = stack(&[]).await;
    let http = reqwest::Client::new();
    let mut cases = 0;
    for supply_in in ["BODY", "QUERY_PARAM", "HEADER"] {
        let good = oauth_config(&s, "reader", s.key("reader"), supply_in);
        let (status, answer) = fetch_token(&http, &good).await.unwrap();
        assert_eq!(status, 200, "{supply_in}: {answer}");
        assert_eq!(answer["token_type"], "Bearer");
        assert!(answer["expires_in"].as_i64().unwrap() > 30);
        // The token is RingCX's own: it works against a Voice API directly.
        let direct = http
            .get(format!("{}/voice/api/v1/admin/accounts", s.sim.base_url()))
            .bearer_auth(answer["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(direct.status(), 200, "{supply_in}");
        let wrong = oauth_config(&s, "reader", "rcxb_wrong-secret", supply_in);
        let (status, answer) = fetch_token(&http, &wrong).await.unwrap();
        assert_eq!(
            (status, &answer["error"]),
            (401, &json!("invalid_client")),
            "{supply_in}"
        );
        let unknown = oauth_config(&s, "nobody", s.key("reader"), supply_in);
        let (status, _) = fetch_token(&http, &unknown).await.unwrap();
        assert_eq!(status, 401, "{supply_in}: the id must match the key");
        let proxy_only = oauth_config(&s, "proxy", s.key("proxy"), supply_in);
        let (status, answer) = fetch_token(&http, &proxy_only).await.unwrap();
        assert_eq!(
            (status, &answer["error"]),
            (400, &json!("unauthorized_client")),
            "{supply_in}"
        );
        cases += 4;
    }
    // Credentials in two places at once, and repeated parameters, are refused.
    let twice = http
        .post(s.url("/v1/oauth/token?client_id=reader"))
        .basic_auth("reader", Some(s.key("reader")))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    let repeated =
        http.post(s.url(
            "/v1/oauth/token?grant_type=client_credentials&client_id=reader&client_id=reader",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(repeated.status(), 400);
    cases += 2;
    println!("oauth matrix: {cases} cases over BODY, QUERY_PARAM, HEADER");
}

struct JwtCallers {
    hs_secret: String,
    hs512_b64: String,
    rsa_private: String,
    rsa_public: String,
    other_private: String,
}

async fn with_jwt_callers(s: &ApiStack<MemoryStore>) -> JwtCallers {
    let (rsa_private, rsa_public) = rsa_pems();
    let (other_private, _) = rsa_pems();
    let hs_secret = "hs256-shared-secret-for-ringcx-0123456789".to_owned();
    let hs512_b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    s.add_callers(&[
        json!({"id": "ringcx-hs", "tenant": "default", "scopes": ["engage:proxy"],
               "jwt": {"algorithm": "HS256", "secret": hs_secret, "maxAgeSeconds": 300}}),
        json!({"id": "ringcx-hs512", "tenant": "default", "scopes": ["engage:proxy"],
               "jwt": {"algorithm": "HS512", "secret": hs512_b64, "secretBase64": true,
                       "queryParam": "token"}}),
        json!({"id": "ringcx-rsa", "tenant": "default", "scopes": ["engage:proxy"],
               "jwt": {"algorithm": "RS256", "publicKeyPem": rsa_public}}),
    ])
    .await;
    JwtCallers {
        hs_secret,
        hs512_b64,
        rsa_private,
        rsa_public,
        other_private,
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

#[tokio::test]
async fn jwt_callers_are_accepted_as_ringcx_signs_them_in_a_header_or_the_query() {
    let s = stack(&[]).await;
    let k = with_jwt_callers(&s).await;
    let http = reqwest::Client::new();
    let echo = s.url("/v1/engage/v1/sim/echo");
    // Exactly as RingCX's JWT auth config builds and places them.
    let configs = [
        json!({"authType": "JWT", "algorithm": "HS256", "secret": k.hs_secret,
               "payload": r#"{"iss":"ringcx-hs"}"#, "expirationTime": 60, "isIncludeIssueAt": true,
               "addTokenTo": "REQUEST_HEADER", "headerPrefix": "Bearer "}),
        json!({"authType": "JWT", "algorithm": "HS256", "secret": k.hs_secret,
               "payload": r#"{"iss":"ringcx-hs"}"#, "expirationTime": 60, "isIncludeIssueAt": true,
               "addTokenTo": "QUERY_PARAM", "queryParamName": "jwt"}),
        json!({"authType": "JWT", "algorithm": "HS512", "secret": k.hs512_b64, "isSecretEncoded": true,
               "payload": r#"{"iss":"ringcx-hs512"}"#, "expirationTime": 3600,
               "addTokenTo": "QUERY_PARAM", "queryParamName": "token"}),
        json!({"authType": "JWT", "algorithm": "RS256", "privateKey": k.rsa_private,
               "payload": r#"{"iss":"ringcx-rsa","sub":"ivr"}"#, "expirationTime": 60,
               "addTokenTo": "REQUEST_HEADER", "headerPrefix": "Bearer "}),
        json!({"authType": "JWT", "algorithm": "RS256", "privateKey": k.rsa_private,
               "payload": r#"{"iss":"ringcx-rsa"}"#, "expirationTime": 60,
               "addTokenTo": "REQUEST_HEADER", "headerPrefix": ""}),
        json!({"authType": "JWT", "algorithm": "RS256", "privateKey": k.rsa_private,
               "payload": r#"{"iss":"ringcx-rsa"}"#, "expirationTime": 60,
               "addTokenTo": "QUERY_PARAM", "queryParamName": "jwt"}),
    ];
    for config in &configs {
        let r = broker_tests::sim::outbound::call_out(
            &http,
            config,
            reqwest::Method::GET,
            &format!("{echo}?x=1"),
            s.clock.now(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{config}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["query"], "x=1", "the JWT is not forwarded: {config}");
    }
    assert_eq!(s.sim.requests().len(), configs.len());
    println!("jwt: {} accepted placements", configs.len());
}

#[tokio::test]
async fn jwt_refusals_are_401_with_the_error_shape_and_nothing_upstream() {
    let s = stack(&[]).await;
    let k = with_jwt_callers(&s).await;
    let now = s.clock.now().timestamp();
    let hs = EncodingKey::from_secret(k.hs_secret.as_bytes());
    let rsa = EncodingKey::from_rsa_pem(k.rsa_private.as_bytes()).unwrap();
    let other_rsa = EncodingKey::from_rsa_pem(k.other_private.as_bytes()).unwrap();
    let ok = json!({"iss": "ringcx-hs", "iat": now, "exp": now + 60});
    let valid = sign(Algorithm::HS256, &hs, &ok);
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        let payload = URL_SAFE_NO_PAD
            .encode(json!({"iss": "ringcx-hs", "iat": now, "exp": now + 86400}).to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(ok.to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "ringcx-hs", "iat": now - 200, "exp": now - 100}),
            ),
        ),
        (
            "not yet valid (nbf)",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "ringcx-hs", "nbf": now + 600, "exp": now + 900}),
            ),
        ),
        (
            "issued in the future",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "ringcx-hs", "iat": now + 600, "exp": now + 900}),
            ),
        ),
        (
            "exp at the end of time",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "ringcx-hs", "exp": i64::MAX}),
            ),
        ),
        (
            "iat at the start of time",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "ringcx-hs", "iat": i64::MIN, "exp": now + 60}),
            ),
        ),
        (
            "older than maxAgeSeconds",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "ringcx-hs", "iat": now - 1000, "exp": now + 60}),
            ),
        ),
        (
            "living longer than maxAgeSeconds",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "ringcx-hs", "exp": now + 86400}),
            ),
        ),
        (
            "no exp",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "ringcx-hs", "iat": now}),
            ),
        ),
        (
            "wrong key",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-of-sufficient-length-000"),
                &ok,
            ),
        ),
        ("alg none", unsigned),
        (
            "HS256 signed with the RS256 entry's public key",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(k.rsa_public.as_bytes()),
                &json!({"iss": "ringcx-rsa", "exp": now + 60}),
            ),
        ),
        (
            "RS256 by another private key",
            sign(
                Algorithm::RS256,
                &other_rsa,
                &json!({"iss": "ringcx-rsa", "exp": now + 60}),
            ),
        ),
        (
            "RS256 for the HS256 caller",
            sign(Algorithm::RS256, &rsa, &ok),
        ),
        (
            "unknown iss",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "stranger", "exp": now + 60}),
            ),
        ),
        (
            "iss of a key-only caller",
            sign(
                Algorithm::HS256,
                &hs,
                &json!({"iss": "proxy", "exp": now + 60}),
            ),
        ),
        ("tampered payload", tampered),
    ];
    let http = reqwest::Client::new();
    for (case, token) in &cases {
        for placement in ["header", "query"] {
            let request = match placement {
                "header" => http.get(s.url("/v1/engage/v1/sim/echo")).bearer_auth(token),
                _ => http.get(s.url(&format!("/v1/engage/v1/sim/echo?jwt={token}"))),
            };
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 401, "{case} in the {placement}: {body}");
            assert_eq!(body["error"]["code"], "invalid_token", "{case}: {body}");
            let reason = match *case {
                "expired" => "has expired",
                "not yet valid (nbf)" | "issued in the future" => "not valid yet",
                "older than maxAgeSeconds"
                | "living longer than maxAgeSeconds"
                | "exp at the end of time"
                | "iat at the start of time" => "maxAgeSeconds",
                "no exp" => "no numeric exp",
                "alg none" => "alg none",
                "HS256 signed with the RS256 entry's public key" | "RS256 for the HS256 caller" => {
                    "algorithm is not the one configured"
                }
                "unknown iss" | "iss of a key-only caller" => "names no JWT caller",
                _ => "signature does not verify",
            };
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(reason)),
                "{case}: {body}"
            );
        }
    }
    // The valid token works (the refusals were not for some other reason).
    let r = http
        .get(s.url("/v1/engage/v1/sim/echo"))
        .bearer_auth(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.sim.requests().len(), 1, "no refused JWT reached RingCX");
    println!(
        "jwt: {} refusals, each in a header and in the query",
        cases.len()
    );
}

#[tokio::test]
async fn an_unknown_key_rereads_the_callers_at_most_every_five_seconds() {
    let s = stack(&[("CALLERS_CACHE_SECONDS", "60")]).await;
    let http = reqwest::Client::new();
    let get = |key: String| {
        let http = http.clone();
        let url = s.url("/v1/engage/v1/sim/echo");
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        get(s.key("proxy").to_owned()).await,
        200,
        "the callers are loaded"
    );
    let key = s
        .add_key("late", "default", &[api::auth::Scope::EngageProxy], None)
        .await;
    // Within 5 s of the last read, misses (this one, and a burst of strangers) read nothing.
    assert_eq!(get(key.clone()).await, 401);
    for i in 0..20 {
        assert_eq!(get(format!("rcxb_stranger-{i}")).await, 401);
    }
    s.clock.advance(chrono::Duration::seconds(5));
    assert_eq!(
        get(key.clone()).await,
        200,
        "after 5 s a miss reads the callers again"
    );
}

#[tokio::test]
async fn a_key_found_by_rereading_the_callers_forwards_no_jwt_parameter_the_new_list_names() {
    let s = stack(&[("CALLERS_CACHE_SECONDS", "60")]).await;
    let http = reqwest::Client::new();
    let echo = |key: String, query: &'static str| {
        let http = http.clone();
        let url = s.url(&format!("/v1/engage/v1/sim/echo?{query}"));
        async move { http.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let r = echo(s.key("proxy").to_owned(), "x=1").await;
    assert_eq!(r.status(), 200, "the callers are loaded");
    // Added together: a key, and a JWT caller whose token rides in `?sig_x=`. This instance's
    // list names neither until the unknown key makes it read the callers again.
    let key = s
        .add_key("late", "default", &[api::auth::Scope::EngageProxy], None)
        .await;
    s.add_callers(&[
        json!({"id": "ringcx-late", "tenant": "default", "scopes": ["engage:proxy"],
           "jwt": {"algorithm": "HS256", "secret": "late-shared-secret-0123456789abcdef",
                   "queryParam": "sig_x"}}),
    ])
    .await;
    s.clock.advance(chrono::Duration::seconds(5));
    let r = echo(key, "sig_x=eyJhbGciOiJIUzI1NiJ9.e30.c2ln&x=1").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["query"], "x=1",
        "the newer list's JWT parameter is stripped on the request that read it"
    );
}
