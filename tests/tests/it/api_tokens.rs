//! Permanent API tokens as managed credentials: labels and expiry, the merged list, rotation with
//! a grace period, deletion, the registry that records them (concurrent writers included), the
//! refresher's sweep, and the audit lines.

use std::sync::Arc;

use broker::api_tokens::{Registries, token_sha256};
use broker::clock::{Clock as _, ManualClock};
use broker::store::SecretNames;
use broker::store::memory::MemoryStore;
use broker_tests::support::{ApiStack, config_for, moto_store, token_works, unique_prefix};
use chrono::Duration;
use secrecy::SecretString;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_creates_on_two_instances_lose_no_registry_entry() {
    let store = moto_store().await;
    let s = ApiStack::start(store.clone(), &unique_prefix("registry"), &[]).await;
    // A second instance: its own caches and its own in-process lock, same store and RingCX.
    let second = Arc::new(
        api::App::new(
            &config_for(&s, "default,second"),
            store.clone(),
            Arc::new(s.clock.clone()),
        )
        .unwrap(),
    );
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
        &[("TENANTS", "default,second,perm")],
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
    let refresher = s.refresher_for("perm");
    let pass = refresher
        .run_pass(s.clock.now() + Duration::seconds(40))
        .await;
    assert!(pass.ok, "{pass:?}");
    let generation = pass.tenants[0].generation;

    let key = s
        .add_key(
            "perm-ivr",
            "perm",
            &[
                api::auth::Scope::EngageProxy,
                api::auth::Scope::TokenRead,
                api::auth::Scope::ApiTokensAdmin,
            ],
            None,
        )
        .await;
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
    assert!(!token_works(&s.sim, &short).await && token_works(&s.sim, &first).await);
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
    // The instance loaded the revoked token at the call above: it keeps it for a minute.
    s.clock.advance(Duration::seconds(59));
    assert_eq!(proxied(http.clone(), key.clone()).await.status(), 401);
    s.clock.advance(Duration::seconds(2));
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

#[tokio::test]
async fn the_sweep_reads_the_registry_every_ten_minutes_and_when_a_token_falls_due() {
    let store = MemoryStore::new(Arc::new(ManualClock::starting_now()));
    let s = ApiStack::start(store.clone(), "ringcx/", &[]).await;
    let registry = SecretNames::new("ringcx/").api_tokens("default");
    let http = reqwest::Client::new();
    let r = http
        .post(s.url("/v1/api-tokens"))
        .bearer_auth(s.key("admin"))
        .json(&json!({"label": "flow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let old = created["token"].as_str().unwrap().to_owned();
    let refresher = s.refresher_for("default");
    let reads = || store.stats().reads.get(&registry).copied().unwrap_or(0);
    // Registry reads made by the refresher's pass alone, and what the pass revoked.
    let pass = || async {
        let before = reads();
        let pass = refresher
            .run_pass(s.clock.now() + Duration::seconds(40))
            .await;
        assert!(pass.ok, "{pass:?}");
        (reads() - before, pass.tenants[0].api_tokens_revoked)
    };
    assert_eq!(pass().await, (1, 0), "a cold instance reads the registry");
    let mut read_at = Vec::new();
    let mut revoked_at = None;
    for minute in 1..=64 {
        s.clock.advance(Duration::minutes(1));
        if minute == 3 {
            // Its grace ends at minute 63, between two of the 10-minute reads.
            let r = http
                .post(s.url(&format!("/v1/api-tokens/{old}/rotate")))
                .bearer_auth(s.key("admin"))
                .json(&json!({"graceHours": 1}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let (read, revoked) = pass().await;
        if read > 0 {
            read_at.push(minute);
        }
        if revoked > 0 {
            revoked_at.get_or_insert(minute);
        }
    }
    assert_eq!(
        read_at,
        [10, 20, 30, 40, 50, 60, 63],
        "every 10 minutes, and when a known grace ends"
    );
    assert_eq!(revoked_at, Some(63), "revoked at the pass its grace ends");
    assert!(!token_works(&s.sim, &old).await);
}

#[tokio::test]
async fn a_due_token_the_tenant_runs_on_is_kept_without_rereading_every_pass() {
    let store = MemoryStore::new(Arc::new(ManualClock::starting_now()));
    let s = ApiStack::start(store.clone(), "ringcx/", &[("TENANTS", "perm")]).await;
    let names = SecretNames::new("ringcx/");
    let token = s.sim.issue_api_token("agent@example.com").unwrap();
    let doc = json!({"type": "api-token", "token": token}).to_string();
    broker_tests::support::seed(&store, &names.credentials("perm"), &doc).await;
    // A hand-edited (or restored) registry: the token it runs on expired a minute ago.
    let secret = SecretString::from(token.clone());
    let now = s.clock.now();
    Registries::new(store.clone(), names.clone())
        .update("perm", std::time::Duration::from_secs(5), |r| {
            r.tokens.push(broker::api_tokens::TokenRecord::created(
                &secret,
                None,
                now - Duration::days(2),
                "test",
                Some(now - Duration::minutes(1)),
            ))
        })
        .await
        .unwrap();
    let refresher = s.refresher_for("perm");
    let registry = names.api_tokens("perm");
    let reads = || store.stats().reads.get(&registry).copied().unwrap_or(0);
    let mut read_at = Vec::new();
    for minute in 0..12 {
        let before = reads();
        let pass = refresher
            .run_pass(s.clock.now() + Duration::seconds(40))
            .await;
        assert!(pass.ok, "{pass:?}");
        assert_eq!(pass.tenants[0].api_tokens_revoked, 0, "never revoked");
        if reads() > before {
            read_at.push(minute);
        }
        s.clock.advance(Duration::minutes(1));
    }
    assert_eq!(read_at, [0, 10], "kept, not looked at again every pass");
    assert!(token_works(&s.sim, &token).await);
}
