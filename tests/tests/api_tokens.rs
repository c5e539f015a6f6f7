//! Permanent API tokens as managed credentials: labels and expiry, the merged list, rotation with
//! a grace period, deletion, the registry that records them (concurrent writers included), the
//! refresher's sweep, and the audit lines.

use std::sync::Arc;

use broker::api_tokens::{Registries, token_sha256};
use broker::clock::{Clock as _, ManualClock, SharedClock};
use broker::store::SecretNames;
use broker::store::memory::MemoryStore;
use broker_tests::support::{ApiStack, CapturedLogs, moto_store, unique_prefix};
use chrono::Duration;
use refresher::Refresher;
use secrecy::SecretString;
use serde_json::{Value, json};

const ADMIN_USER: &str = "admin@example.com";

fn config_for<S>(s: &ApiStack<S>) -> broker::config::Config {
    let vars: std::collections::HashMap<&str, String> = [
        ("ENGAGE_BASE_URL", s.sim.base_url()),
        ("RINGCENTRAL_SERVER_URL", s.sim.base_url()),
        ("SECRET_PREFIX", s.prefix.clone()),
        ("TENANTS", "default,second".to_owned()),
        ("ENGAGE_TIMEOUT_MS", "2000".to_owned()),
    ]
    .into_iter()
    .collect();
    broker::config::Config::from_lookup(|k| vars.get(k).cloned()).unwrap()
}

async fn send(
    s: &ApiStack<impl broker::store::SecretStore + Clone + 'static>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, s.url(path))
        .bearer_auth(s.key("admin"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Whether RingCX accepts `token` as `X-Auth-Token` on a Voice API.
async fn works(s: &ApiStack<impl Sized>, token: &str) -> bool {
    reqwest::Client::new()
        .get(format!("{}/voice/api/v1/admin/accounts", s.sim.base_url()))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap()
        .status()
        == 200
}

#[test]
fn tokens_are_created_listed_rotated_swept_and_deleted_with_their_registry_and_audit() {
    let logs = CapturedLogs::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokens = runtime.block_on(async {
        let store = MemoryStore::new(Arc::new(ManualClock::starting_now()));
        let s = ApiStack::start(store.clone(), "ringcx/", &[]).await;
        let registries = Registries::new(store.clone(), SecretNames::new("ringcx/"));
        let post = reqwest::Method::POST;
        let (status, ivr) = send(
            &s,
            post.clone(),
            "/v1/api-tokens",
            Some(json!({"label": "ivr-main-flow", "expiresInDays": 30})),
        )
        .await;
        assert_eq!(status, 201, "{ivr}");
        assert_eq!(ivr["label"], "ivr-main-flow");
        assert!(ivr["expiresAt"].is_string());
        let ivr_token = ivr["token"].as_str().unwrap().to_owned();
        let (_, plain) = send(&s, post.clone(), "/v1/api-tokens", None).await;
        let plain_token = plain["token"].as_str().unwrap().to_owned();
        let outside = s.sim.issue_api_token(ADMIN_USER).unwrap();
        // Bad bodies are refused and create nothing.
        for bad in [
            json!({"label": "x", "expiresInDays": 0}),
            json!({"expiresInDays": 99999}),
            json!({"label": "a".repeat(101)}),
            json!({"lable": "typo"}),
            json!({"label": 7}),
            json!([]),
            json!("label"),
        ] {
            let (status, body) = send(&s, post.clone(), "/v1/api-tokens", Some(bad.clone())).await;
            assert_eq!(status, 400, "{bad}: {body}");
        }
        assert_eq!(s.sim.api_tokens_of(ADMIN_USER).len(), 3);

        // The merged list: managed ones with their metadata, the outside one unmanaged.
        let (_, list) = send(&s, reqwest::Method::GET, "/v1/api-tokens", None).await;
        assert_eq!(list["count"], 3);
        let by_tail = |tail: &str| -> Value {
            list["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["token"].as_str().unwrap().ends_with(tail))
                .cloned()
                .unwrap()
        };
        let listed = by_tail(&ivr_token[ivr_token.len() - 4..]);
        assert_eq!(
            (&listed["managed"], &listed["label"], &listed["createdBy"]),
            (&json!(true), &json!("ivr-main-flow"), &json!("admin"))
        );
        assert_eq!(by_tail(&outside[outside.len() - 4..])["managed"], false);
        assert!(!list.to_string().contains(&ivr_token[6..]), "masked");
        let (_, revealed) =
            send(&s, reqwest::Method::GET, "/v1/api-tokens?reveal=true", None).await;
        assert!(revealed.to_string().contains(&ivr_token));

        // Rotation: both work during the grace period, only the new one after the sweep.
        let (status, rotated) = send(
            &s,
            post.clone(),
            &format!("/v1/api-tokens/{ivr_token}/rotate"),
            Some(json!({"graceHours": 2})),
        )
        .await;
        assert_eq!(status, 201, "{rotated}");
        let new_token = rotated["token"].as_str().unwrap().to_owned();
        assert_eq!(rotated["label"], "ivr-main-flow", "same label");
        assert!(works(&s, &ivr_token).await && works(&s, &new_token).await);
        let (status, _) = send(
            &s,
            post.clone(),
            &format!("/v1/api-tokens/{ivr_token}/rotate"),
            None,
        )
        .await;
        assert_eq!(status, 409, "a rotated token is not rotated twice");
        for bad in [
            json!({"graceHours": 721}),
            json!({"graceHours": -1}),
            json!({"graceHours": "x"}),
        ] {
            let (status, _) = send(
                &s,
                post.clone(),
                &format!("/v1/api-tokens/{plain_token}/rotate"),
                Some(bad.clone()),
            )
            .await;
            assert_eq!(status, 400, "{bad}");
        }
        let (status, _) = send(&s, reqwest::Method::DELETE, "/v1/api-tokens/..", None).await;
        assert!(status == 400 || status == 404, "{status}");
        assert_eq!(
            s.sim.api_tokens_of(ADMIN_USER).len(),
            4,
            "nothing revoked by bad input"
        );
        let refresher = Refresher::new(
            &config_for(&s),
            store.clone(),
            Arc::new(s.clock.clone()) as SharedClock,
        )
        .unwrap();
        let pass = refresher
            .run_pass(s.clock.now() + Duration::seconds(40))
            .await;
        assert_eq!(
            pass.tenants[0].api_tokens_revoked, 0,
            "still in its grace period"
        );
        s.clock.advance(Duration::hours(2) + Duration::seconds(1));
        let pass = refresher
            .run_pass(s.clock.now() + Duration::seconds(40))
            .await;
        assert!(pass.ok, "{pass:?}");
        assert_eq!(pass.tenants[0].api_tokens_revoked, 1);
        assert!(!works(&s, &ivr_token).await, "the old token is revoked");
        assert!(works(&s, &new_token).await && works(&s, &plain_token).await);

        // Expiry: 30 days on, the rotated token (same lifetime) is swept; nothing else is.
        s.clock.advance(Duration::days(30));
        let pass = refresher
            .run_pass(s.clock.now() + Duration::seconds(40))
            .await;
        assert_eq!(pass.tenants[0].api_tokens_revoked, 1);
        assert!(!works(&s, &new_token).await);
        assert!(works(&s, &plain_token).await && works(&s, &outside).await);

        // Delete: gone from RingCX and from the registry.
        let (status, _) = send(
            &s,
            reqwest::Method::DELETE,
            &format!("/v1/api-tokens/{plain_token}"),
            None,
        )
        .await;
        assert_eq!(status, 204);
        let registry = registries.read("default").await.unwrap();
        assert!(registry.tokens.is_empty(), "{registry:?}");
        assert_eq!(
            s.sim.api_tokens_of(ADMIN_USER),
            std::slice::from_ref(&outside)
        );
        vec![ivr_token, new_token, plain_token, outside]
    });
    let text = logs.text();
    let audits: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("audit=\"api_token\""))
        .collect();
    let count = |action: &str| {
        audits
            .iter()
            .filter(|l| l.contains(&format!("action=\"{action}\"")))
            .count()
    };
    // Two creates, one rotation (naming its replacement), three revocations: the rotated token
    // and the expired one by the refresher, the deleted one by the admin.
    assert_eq!(
        (count("create"), count("rotate"), count("revoke")),
        (2, 1, 3),
        "{audits:#?}"
    );
    assert!(audits.iter().any(|l| l.contains("replaced by aws80:")));
    assert!(audits.iter().any(|l| l.contains("reason=\"expired\"")));
    assert!(audits.iter().any(|l| l.contains("reason=\"rotated\"")));
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a token reached the logs");
        assert!(!text.contains(&token[6..]), "a token reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_creates_on_two_instances_lose_no_registry_entry() {
    let store = moto_store().await;
    let s = ApiStack::start(store.clone(), &unique_prefix("registry"), &[]).await;
    // A second instance: its own caches and its own in-process lock, same store and RingCX.
    let second =
        Arc::new(api::App::new(&config_for(&s), store.clone(), Arc::new(s.clock.clone())).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_base = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(second.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let url = if i % 2 == 0 {
            s.url("/v1/api-tokens")
        } else {
            format!("{second_base}/v1/api-tokens")
        };
        let key = s.key("admin").to_owned();
        tasks.spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&json!({"label": format!("flow-{i}")}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
    }
    let mut created = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["managed"], true, "{body}");
        created.push(body["token"].as_str().unwrap().to_owned());
    }
    let elapsed = started.elapsed();
    let registry = Registries::new(store.clone(), SecretNames::new(s.prefix.clone()))
        .read("default")
        .await
        .unwrap();
    assert_eq!(registry.tokens.len(), 20, "no entry lost");
    for token in &created {
        let sha = token_sha256(&SecretString::from(token.clone()));
        assert!(registry.find(&sha).is_some());
    }
    let conflicts = s.app.registries.conflicts() + second.registries.conflicts();
    println!(
        "registry: 20 concurrent creates on 2 instances, {} entries, {} revisions, {conflicts} fenced conflicts re-applied, {} ms",
        registry.tokens.len(),
        registry.revision,
        elapsed.as_millis()
    );
    server.abort();
}

#[tokio::test]
async fn a_tenant_served_by_a_permanent_token_alone() {
    let store = MemoryStore::new(Arc::new(ManualClock::starting_now()));
    let s = ApiStack::start(
        store.clone(),
        "ringcx/",
        &[
            ("TENANTS", "default,second,perm"),
            ("CALLERS_CACHE_SECONDS", "0"),
        ],
    )
    .await;
    let names = SecretNames::new("ringcx/");
    let seed = |token: &str| {
        let (store, name) = (store.clone(), names.credentials("perm"));
        let doc = json!({"type": "api-token", "token": token}).to_string();
        async move {
            broker::store::upsert(&store, &name, &SecretString::from(doc))
                .await
                .unwrap();
        }
    };
    let first = s.sim.issue_api_token("agent@example.com").unwrap();
    seed(&first).await;
    let vars: std::collections::HashMap<&str, String> = [
        ("ENGAGE_BASE_URL", s.sim.base_url()),
        ("RINGCENTRAL_SERVER_URL", s.sim.base_url()),
        ("SECRET_PREFIX", "ringcx/".to_owned()),
        ("TENANTS", "perm".to_owned()),
        ("ENGAGE_TIMEOUT_MS", "2000".to_owned()),
    ]
    .into_iter()
    .collect();
    let config = broker::config::Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let refresher = Refresher::new(
        &config,
        store.clone(),
        Arc::new(s.clock.clone()) as SharedClock,
    )
    .unwrap();
    let pass = refresher
        .run_pass(s.clock.now() + Duration::seconds(40))
        .await;
    assert!(pass.ok, "{pass:?}");
    let generation = pass.tenants[0].generation;

    let (key, entry) = api::auth::generate_key(
        "perm-ivr",
        "perm",
        vec![
            api::auth::Scope::EngageProxy,
            api::auth::Scope::TokenRead,
            api::auth::Scope::ApiTokensAdmin,
        ],
    )
    .unwrap();
    s.add_callers(&[serde_json::to_value(&entry).unwrap()])
        .await;
    let key = secrecy::ExposeSecret::expose_secret(&key).to_owned();
    let http = reqwest::Client::new();
    let proxied = |http: reqwest::Client, key: String| {
        let url = s.url("/v1/engage/v1/admin/accounts");
        async move { http.get(url).bearer_auth(key).send().await.unwrap() }
    };
    s.sim.clear_requests();
    let r = proxied(http.clone(), key.clone()).await;
    assert_eq!(r.status(), 200);
    let accounts: Value = r.json().await.unwrap();
    assert_eq!(accounts[0]["accountId"], "333334", "the token's own user");
    let upstream = s.sim.requests();
    assert_eq!(upstream.len(), 1);
    assert!(upstream[0].headers.contains(&"x-auth-token".to_owned()));
    assert!(
        !upstream[0].headers.contains(&"authorization".to_owned()),
        "no Bearer"
    );
    // No short-lived token to hand out.
    let r = http
        .get(s.url("/v1/token"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permanent_token_tenant");
    let r = http
        .post(s.url("/v1/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "perm-ivr"),
            ("client_secret", key.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
    // The token the tenant runs on can be neither rotated nor deleted through the broker.
    for (method, path) in [
        (
            reqwest::Method::POST,
            format!("/v1/api-tokens/{first}/rotate"),
        ),
        (reqwest::Method::DELETE, format!("/v1/api-tokens/{first}")),
    ] {
        let r = http
            .request(method, s.url(&path))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{path}");
    }
    // Managed tokens work with X-Auth-Token too, and the sweep revokes an expired one.
    let r = http
        .post(s.url("/v1/api-tokens"))
        .bearer_auth(&key)
        .json(&json!({"label": "short", "expiresInDays": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let short: Value = r.json().await.unwrap();
    let short = short["token"].as_str().unwrap().to_owned();
    s.clock.advance(Duration::days(1) + Duration::seconds(1));
    let pass = refresher
        .run_pass(s.clock.now() + Duration::seconds(40))
        .await;
    assert!(pass.ok, "{pass:?}");
    assert_eq!(pass.tenants[0].api_tokens_revoked, 1);
    assert!(!works(&s, &short).await && works(&s, &first).await);
    // Nothing is renewed: the next pass writes nothing.
    s.clock.advance(Duration::minutes(10));
    let pass = refresher
        .run_pass(s.clock.now() + Duration::seconds(40))
        .await;
    assert!(
        pass.ok && pass.tenants[0].generation == generation,
        "{pass:?}"
    );

    // RingCX revokes the token: the refresher fails loudly.
    let revoked = http
        .delete(format!(
            "{}/voice/api/v1/admin/token/{first}",
            s.sim.base_url()
        ))
        .header("X-Auth-Token", &first)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let pass = refresher
        .run_pass(s.clock.now() + Duration::seconds(40))
        .await;
    assert!(!pass.ok);
    let error = pass.tenants[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("no longer accepts the permanent API token"),
        "{error}"
    );
    assert!(
        !error.contains(&first[6..]),
        "the token is not in the error"
    );
    // The HTTP function loads the (revoked) token; RingCX's refusal is relayed.
    assert_eq!(proxied(http.clone(), key.clone()).await.status(), 401);

    // A new token seeded: taken up at the next pass, and by the HTTP function within a minute
    // (until then its instance keeps the token it loaded).
    let second = s.sim.issue_api_token("agent@example.com").unwrap();
    seed(&second).await;
    let pass = refresher
        .run_pass(s.clock.now() + Duration::seconds(40))
        .await;
    assert!(pass.ok, "{pass:?}");
    assert_eq!(pass.tenants[0].generation, generation + 1);
    assert_eq!(
        proxied(http.clone(), key.clone()).await.status(),
        401,
        "still cached"
    );
    s.clock.advance(Duration::seconds(91));
    assert_eq!(proxied(http.clone(), key.clone()).await.status(), 200);
}

#[tokio::test]
async fn a_restored_registry_is_written_past_not_wedged() {
    use broker::api_tokens::TokenRecord;
    use broker::store::SecretStore as _;
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new(Arc::new(clock.clone()));
    let registries = Registries::new(store.clone(), SecretNames::new("ringcx/"));
    let record = |n: u8| TokenRecord {
        sha256: format!("{n:064x}"),
        masked: format!("aws80:…{n:04}"),
        label: None,
        created_at: clock.now(),
        created_by: "test".into(),
        expires_at: None,
        rotated_to: None,
        revoke_after: None,
    };
    let budget = std::time::Duration::from_secs(8);
    registries
        .update("t", budget, |r| r.tokens.push(record(1)))
        .await
        .unwrap();
    let name = SecretNames::new("ringcx/").api_tokens("t");
    let first = store.get(&name).await.unwrap().unwrap();
    registries
        .update("t", budget, |r| r.tokens.push(record(2)))
        .await
        .unwrap();
    // An operator restores the first version (a new version with the old bytes).
    store
        .put(&name, &first, &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap();
    let written = registries
        .update("t", budget, |r| r.tokens.push(record(3)))
        .await
        .expect("the change goes through");
    let shas: Vec<&str> = written.tokens.iter().map(|t| t.masked.as_str()).collect();
    assert_eq!(shas, ["aws80:…0001", "aws80:…0003"]);
    assert!(
        registries.conflicts() >= 1,
        "it did collide with the old version"
    );
}
