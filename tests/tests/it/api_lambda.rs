//! The real `api` binary under a Lambda Runtime API, with Function URL (payload 2.0) events:
//! a JSON body, a base64-encoded form body, Basic auth; against moto and the simulator.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker::clock::{SharedClock, SystemClock};
use broker::store::SecretNames;
use broker_tests::lambda::{Invocation, LambdaProcess, RuntimeApi};
use broker_tests::sim::Simulator;
use broker_tests::support::{function_env, moto_store, refresh_with, unique_prefix};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// A Function URL event, as Lambda delivers it (payload format 2.0).
fn function_url_event(
    method: &str,
    path: &str,
    query: &str,
    headers: Value,
    body: Option<(&str, bool)>,
) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghij",
            "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghij",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "RingCX-IVR"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "21/Nov/2026:20:43:00 +0000",
            "timeEpoch": 1795294980000u64
        },
        "body": body.map(|(b, _)| b),
        "isBase64Encoded": body.is_some_and(|(_, b64)| b64)
    })
}

fn answer(result: Invocation) -> (u16, Value, Value) {
    let Invocation::Response(r) = result else {
        panic!("function error: {result:?}")
    };
    let status = r["statusCode"].as_u64().unwrap_or(0) as u16;
    let raw = r["body"].as_str().unwrap_or_default();
    let text = if r["isBase64Encoded"] == true {
        String::from_utf8(STANDARD.decode(raw).unwrap()).unwrap()
    } else {
        raw.to_owned()
    };
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        r["headers"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_url_events_reach_ringcx_through_the_real_binary() {
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::start(clock).await.unwrap();
    let store = moto_store().await;
    let prefix = unique_prefix("api-lambda");
    let names = SecretNames::new(prefix.clone());
    let seed = |name: String, doc: String| {
        let store = store.clone();
        async move { broker_tests::support::seed(&store, &name, &doc).await }
    };
    seed(
        names.credentials("default"),
        sim.ringex_credentials("admin@example.com")
            .unwrap()
            .to_string(),
    )
    .await;
    let (key, entry) = api::auth::generate_key(
        "ivr-main",
        "default",
        vec![api::auth::Scope::EngageProxy, api::auth::Scope::TokenRead],
    )
    .unwrap();
    seed(names.callers(), json!([entry]).to_string()).await;
    refresh_with(store.clone(), &prefix, &sim, 6, "default")
        .await
        .expect("the refresher's first login");

    // A hook, and the idempotency table the template makes.
    seed(
        names.hooks(),
        json!([broker_tests::hooks::lead_hook("crm-new-lead")]).to_string(),
    )
    .await;
    let (_dynamodb, table) = broker_tests::support::idempotency_table("api-lambda").await;

    let runtime = RuntimeApi::start().await.unwrap();
    let mut env = function_env(&sim, &prefix, "default");
    env.push(("IDEMPOTENCY_TABLE", table));
    let mut function = LambdaProcess::start("api", &runtime, &env);
    let key = key.expose_secret().to_owned();
    let basic = format!("Basic {}", STANDARD.encode(format!("ivr-main:{key}")));
    let timeout = Duration::from_secs(30);

    // JSON body with Bearer auth.
    let event = function_url_event(
        "POST",
        "/v1/engage/v1/sim/echo",
        "ani=%2B15551234567",
        json!({"authorization": format!("Bearer {key}"), "content-type": "application/json"}),
        Some((r#"{"digits":"1234"}"#, false)),
    );
    let (status, body, _) = answer(runtime.invoke(event, timeout).await);
    assert_eq!(status, 200, "{body}\n{}", function.output());
    assert_eq!(body["method"], "POST");
    assert_eq!(body["query"], "ani=%2B15551234567");
    assert_eq!(body["body"], r#"{"digits":"1234"}"#);

    // A base64-encoded form body with Basic auth, as an IVR Remote HTTP Service sends it.
    let form = "ani=%2B15551234567&dnis=8005550100";
    let event = function_url_event(
        "PUT",
        "/v1/engage/v1/sim/echo/call",
        "",
        json!({"authorization": basic, "content-type": "application/x-www-form-urlencoded"}),
        Some((&STANDARD.encode(form), true)),
    );
    let (status, body, _) = answer(runtime.invoke(event, timeout).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["contentType"], "application/x-www-form-urlencoded");
    assert_eq!(body["body"], form, "the base64 body arrives decoded");

    // A webhook whose body a Function URL hands over base64-encoded: the signature is over the
    // raw bytes, which must arrive exactly as sent (non-ASCII included).
    let lead = "{\"id\":\"crm-7\",\"campaign\":42,\"phone\":\"5550100\",\"first_name\":\"Zo\u{eb}\",\"priority\":2}";
    let now = chrono::Utc::now().timestamp();
    let signature = broker::hooks::verify::sign_standard_webhooks(
        broker_tests::hooks::SECRET,
        "msg_b64",
        now,
        lead.as_bytes(),
    )
    .unwrap();
    let hook_event = function_url_event(
        "POST",
        "/v1/hooks/crm-new-lead",
        "",
        json!({"content-type": "application/json", "webhook-id": "msg_b64",
               "webhook-timestamp": now.to_string(), "webhook-signature": signature}),
        Some((&STANDARD.encode(lead), true)),
    );
    // At the deadline: an invocation with less left than a RingCX call and its record need
    // (ENGAGE_TIMEOUT_MS 10 s + 2 s) does not call RingCX, and leaves the event unclaimed.
    let short = Duration::from_secs(4);
    let (status, body, headers) = answer(runtime.invoke(hook_event.clone(), short).await);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "hook_delivery_failed");
    assert!(headers.get("retry-after").is_some());
    assert!(sim.lead_loads().is_empty(), "nothing was sent");
    let (status, body, headers) = answer(runtime.invoke(hook_event.clone(), timeout).await);
    assert_eq!(status, 200, "{body}\n{}", function.output());
    assert_eq!(body["leadsAccepted"], 1);
    assert!(headers.get("idempotent-replayed").is_none());
    let loads = sim.lead_loads();
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].request["uploadLeads"][0]["firstName"], "Zo\u{eb}");
    let (status, _, headers) = answer(runtime.invoke(hook_event, timeout).await);
    assert_eq!(
        (status, headers["idempotent-replayed"].as_str()),
        (200, Some("true"))
    );
    assert_eq!(
        sim.lead_loads().len(),
        1,
        "the repeat was answered from DynamoDB"
    );
    // The token endpoint, and errors in the broker's JSON shape.
    let (status, body, headers) = answer(
        runtime
            .invoke(
                function_url_event("GET", "/v1/token", "", json!({"x-api-key": key}), None),
                timeout,
            )
            .await,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().unwrap().contains('.'));
    assert_eq!(headers["cache-control"], "no-store");
    let (status, body, _) = answer(
        runtime
            .invoke(
                function_url_event("GET", "/v1/token", "", json!({}), None),
                timeout,
            )
            .await,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("missing_credentials"))
    );
    let (status, body, _) = answer(
        runtime
            .invoke(
                function_url_event(
                    "GET",
                    "/v1/engage/%2e%2e/api/auth/token/refresh",
                    "",
                    json!({"authorization": format!("Bearer {key}")}),
                    None,
                ),
                timeout,
            )
            .await,
    );
    // lambda_http resolves dot segments (encoded or not) while building the request URI, so the
    // path arrives as `/v1/api/auth/...`, which no route serves; outside Lambda the proxy's own
    // check answers 400 invalid_path. Either way it is refused.
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("route_not_found"))
    );
    let (status, body, _) = answer(
        runtime
            .invoke(
                function_url_event("GET", "/v1/health", "", json!({}), None),
                timeout,
            )
            .await,
    );
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    assert!(
        sim.requests()
            .iter()
            .all(|r| !r.path.starts_with("/api/auth/token")),
        "the traversal never reached RingCX"
    );
    function.stop();
    let output = function.output();
    assert!(
        !output.contains(&key),
        "the caller key never reaches the logs"
    );
    assert!(!output.contains(&signature), "no signature in the logs");
    // One EMF document per hook request on stdout, where CloudWatch reads it under Lambda.
    let stdout = function.stdout();
    for metric in [
        "\"HooksFailed\":1",
        "\"HooksDelivered\":1",
        "\"HooksReplayed\":1",
    ] {
        assert!(stdout.contains(metric), "{metric} missing from\n{stdout}");
    }
    assert!(stdout.contains("\"Namespace\":\"RingCxBroker\""));
    assert!(runtime.init_errors().is_empty());
}
