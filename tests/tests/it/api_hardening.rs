//! The HTTP function's defences: the auth matrix over every route, traversal and smuggling
//! payloads on the proxy, and the OpenAPI document matching the router exactly.

use std::sync::Arc;

use api::ROUTES;
use broker::clock::ManualClock;
use broker::store::memory::MemoryStore;
use broker_tests::support::{ApiStack, raw_http};
use serde_json::Value;

async fn stack(extra: &[(&str, &str)]) -> ApiStack<MemoryStore> {
    let store = MemoryStore::new(Arc::new(ManualClock::starting_now()));
    ApiStack::start(store, "ringcx/", extra).await
}

/// Every authenticated route as (method, concrete path) with the scope a key needs.
fn authenticated_routes() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("POST", "/v1/oauth/token", "reader"),
        ("GET", "/v1/token", "reader"),
        ("GET", "/v1/engage/v1/admin/accounts", "proxy"),
        ("POST", "/v1/engage/v1/sim/echo", "proxy"),
        ("PUT", "/v1/engage/v1/sim/echo", "proxy"),
        ("PATCH", "/v1/engage/v1/sim/echo", "proxy"),
        ("DELETE", "/v1/engage/v1/sim/echo", "proxy"),
        ("GET", "/v1/api-tokens", "admin"),
        ("POST", "/v1/api-tokens", "admin"),
        ("DELETE", "/v1/api-tokens/aws80:0000", "admin"),
    ]
}

#[tokio::test]
async fn the_auth_matrix_refuses_every_bad_key_on_every_route_and_calls_nothing_upstream() {
    let s = stack(&[]).await;
    let http = reqwest::Client::new();
    let wrong_scope = |needed: &str| if needed == "proxy" { "reader" } else { "proxy" };
    let mut checked = 0;
    for (method, path, needed) in authenticated_routes() {
        let oauth = path == "/v1/oauth/token";
        let key = s.key(needed).to_owned();
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let request = |url: String| {
            let r = http.request(m.clone(), url);
            if oauth {
                r.header("content-type", "application/x-www-form-urlencoded")
                    .body("grant_type=client_credentials")
            } else {
                r
            }
        };
        let other_key = s.key("other").to_owned();
        let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
            (
                "no key",
                request(s.url(path)),
                401,
                if oauth {
                    "invalid_client"
                } else {
                    "missing_credentials"
                },
            ),
            (
                "malformed key",
                request(s.url(path)).header("Authorization", "Basic %%%not-base64"),
                401,
                if oauth {
                    "invalid_client"
                } else {
                    "malformed_credentials"
                },
            ),
            (
                "wrong key",
                request(s.url(path)).basic_auth(needed, Some("rcxb_wrong")),
                401,
                if oauth {
                    "invalid_client"
                } else {
                    "invalid_credentials"
                },
            ),
            (
                "wrong scope",
                request(s.url(path))
                    .basic_auth(wrong_scope(needed), Some(s.key(wrong_scope(needed)))),
                if oauth { 400 } else { 403 },
                if oauth {
                    "unauthorized_client"
                } else {
                    "insufficient_scope"
                },
            ),
            (
                "another tenant's key",
                request(s.url(path))
                    .basic_auth("other", Some(&other_key))
                    .header("X-Tenant", "default"),
                403,
                if oauth {
                    "access_denied"
                } else {
                    "wrong_tenant"
                },
            ),
            (
                "key in the query while disabled",
                request(s.url(&format!(
                    "{path}{}api_key={key}",
                    if path.contains('?') { "&" } else { "?" }
                ))),
                401,
                if oauth {
                    "invalid_client"
                } else {
                    "missing_credentials"
                },
            ),
        ];
        for (case, builder, status, code) in cases {
            let response = builder.send().await.unwrap();
            let got_status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let got_code = body["error"]["code"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("<none>");
            assert_eq!(
                (got_status, got_code),
                (status, code),
                "{method} {path}: {case}: {body}"
            );
            checked += 1;
        }
    }
    println!(
        "auth matrix: {checked} cases over {} route methods",
        authenticated_routes().len()
    );
    assert_eq!(checked, 60);
    assert!(
        s.sim.requests().is_empty(),
        "no refused request reached RingCX"
    );
}

#[tokio::test]
async fn a_query_key_works_only_when_enabled_and_is_not_forwarded() {
    let s = stack(&[("ALLOW_QUERY_KEY", "true")]).await;
    let url = s.url(&format!(
        "/v1/engage/v1/sim/echo?x=1&api_key={}",
        s.key("proxy")
    ));
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["query"], "x=1");
}

/// Paths that try to leave `/voice/api/` or smuggle something past the check.
const PAYLOADS: &[&str] = &[
    "/v1/engage/../api/auth/token/refresh",
    "/v1/engage/../../api/auth/login/admin",
    "/v1/engage/..%2fapi%2fauth%2ftoken%2frefresh",
    "/v1/engage/%2e%2e/api/auth/login/admin",
    "/v1/engage/%2E%2E/%2E%2E/api/auth",
    "/v1/engage/v1/../../api/auth/token/refresh",
    "/v1/engage/v1/%2e%2e/%2e%2e/api/auth",
    "/v1/engage/v1%2f..%2f..%2fapi%2fauth",
    "/v1/engage/v1/..%5c..%5capi%5cauth",
    "/v1/engage/v1//admin/accounts",
    "/v1/engage//v1/admin/accounts",
    "/v1/engage/v1/%252e%252e/%252e%252e/api/auth",
    "/v1/engage/v1/./admin/accounts",
    "/v1/engage/v1/admin/accounts/.",
    "/v1/engage/v1/%00/admin",
    "/v1/engage/v1/admin%2faccounts",
    "/v1/engage/.%2e/api/auth",
    "/v1/engage/%2e./api/auth",
    "/v1/engage/v1/admin/..;/..;/api/auth",
    "/v1/engage/v1/%c0%ae%c0%ae/%c0%ae%c0%ae/api/auth",
    "/v1/engage/v1/admin%0d%0aX-Injected:%20yes",
    "/v1/engage/v1/admin/%3b/x",
    "/v1/engage/v1/%ef%bc%8e%ef%bc%8e/api",
    "/v1/engage/",
    "/v1/engage/v1/admin\\..\\..\\api\\auth",
];

#[tokio::test]
async fn traversal_and_smuggling_payloads_are_refused_with_nothing_sent_upstream() {
    let s = stack(&[]).await;
    // Obtain the tenant's token first, so every RingCX call below is one the payloads caused.
    let warm = reqwest::Client::new()
        .get(s.url("/v1/token"))
        .bearer_auth(s.key("all"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    s.sim.clear_requests();
    let auth = format!("Bearer {}", s.key("proxy"));
    let mut refused = 0;
    for payload in PAYLOADS {
        let (status, body) = raw_http(
            &s.base,
            "GET",
            payload,
            &[("Authorization", &auth), ("X-Auth-Token", "aws80:smuggled")],
        )
        .await;
        assert!(
            (400..500).contains(&status),
            "{payload} got {status}: {body}"
        );
        refused += 1;
    }
    // Header smuggling on an allowed path: the caller's headers stay behind.
    let (status, _) = raw_http(
        &s.base,
        "GET",
        "/v1/engage/v1/sim/echo",
        &[
            ("Authorization", &auth),
            ("Cookie", "a=b"),
            ("X-Auth-Token", "aws80:smuggled"),
            ("X-Forwarded-Host", "evil.example"),
        ],
    )
    .await;
    println!("traversal: {refused} payloads refused");
    assert!(refused >= 20);
    let upstream = s.sim.requests();
    assert!(
        upstream.iter().all(|r| r.path == "/voice/api/v1/sim/echo"),
        "only the allowed call went out: {upstream:?}"
    );
    assert_eq!(status, 200, "the allowed call is served");
    assert_eq!(
        upstream.len(),
        1,
        "exactly one request reached RingCX: {upstream:?}"
    );
    for smuggled in ["cookie", "x-auth-token", "x-forwarded-host"] {
        assert!(
            !upstream[0].headers.iter().any(|h| h == smuggled),
            "{smuggled} was forwarded"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let doc: Value =
        serde_json::from_str(include_str!("../../../functions/api/openapi.json")).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((path.clone(), method.clone()));
        }
    }
    let mut routed: Vec<(String, String)> = ROUTES
        .iter()
        .flat_map(|(p, ms)| {
            ms.iter()
                .map(move |m| (p.replace("{*path}", "{path}"), m.as_str().to_owned()))
        })
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(
        documented, routed,
        "the OpenAPI paths and the router's table differ"
    );

    // And the router really serves each documented method (no 404/405), and nothing else.
    let s = stack(&[]).await;
    let http = reqwest::Client::new();
    for (path, _) in &documented {
        let concrete = path
            .replace("{path}", "v1/sim/echo")
            .replace("{token}", "aws80:x")
            .replace("{name}", "no-such-hook");
        for candidate in ["get", "post", "put", "patch", "delete"] {
            let m = reqwest::Method::from_bytes(candidate.to_uppercase().as_bytes()).unwrap();
            let r = http.request(m, s.url(&concrete)).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let served = documented.iter().any(|(p, m)| p == path && m == candidate);
            if served {
                // A served route may answer 404 about what it looks up (hook_not_found), never
                // route_not_found.
                assert!(
                    code != "route_not_found" && status != 405,
                    "{candidate} {concrete} is documented but got {status} {code}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{candidate} {concrete} is not documented but got {status}"
                );
            }
        }
    }
}
