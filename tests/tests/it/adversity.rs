//! Production under adversity, on the real binaries: each function runs behind the Lambda Runtime
//! API harness against moto (through the AWS SDK) and the RingCX simulator, which is made hostile
//! on purpose. Each test asserts a bound: ring versions written, logins made, answer time against
//! the invocation's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker::clock::{SharedClock, SystemClock};
use broker::credentials::Credentials;
use broker::ringcx::RingCxSession;
use broker::session::{ObtainedBy, SessionState};
use broker::store::aws::SecretsManagerStore;
use broker::store::{SecretNames, SecretStore, SessionRing};
use broker_tests::lambda::{Invocation, LambdaProcess, RuntimeApi};
use broker_tests::sim::{Behaviour, Fault, Simulator, TokenRefusal};
use broker_tests::support::{client_for, function_env, moto_store, refresh_with, unique_prefix};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const EXCHANGE: &str = "/api/auth/login/rc/accesstoken";
const REFRESH: &str = "/api/auth/token/refresh";
const PLATFORM: &str = "/restapi/oauth/token";

/// One tenant's world: the simulator on the real clock, moto, and names under a fresh prefix.
struct World {
    sim: Simulator,
    store: SecretsManagerStore,
    prefix: String,
    names: SecretNames,
    clock: SharedClock,
}

impl World {
    async fn new(test: &str) -> Self {
        let clock: SharedClock = Arc::new(SystemClock);
        let prefix = unique_prefix(test);
        Self {
            sim: Simulator::start(clock.clone()).await.unwrap(),
            store: moto_store().await,
            names: SecretNames::new(prefix.clone()),
            prefix,
            clock,
        }
    }

    fn ring(&self, slots: u32) -> SessionRing<SecretsManagerStore> {
        SessionRing::new(
            self.store.clone(),
            self.names.clone(),
            slots,
            self.clock.clone(),
        )
    }

    async fn put(&self, name: &str, doc: &Value) {
        broker::store::upsert(&self.store, name, &SecretString::from(doc.to_string()))
            .await
            .unwrap();
    }

    async fn seed_credentials(&self, tenant: &str) {
        let doc = self.sim.ringex_credentials("admin@example.com").unwrap();
        self.put(&self.names.credentials(tenant), &doc).await;
    }

    /// A RingCX session straight from the simulator (a login the test makes itself).
    async fn login(&self) -> RingCxSession {
        let doc = self.sim.ringex_credentials("admin@example.com").unwrap();
        let Credentials::RingExJwt(creds) = serde_json::from_value(doc).unwrap() else {
            unreachable!()
        };
        client_for(&self.sim, self.clock.clone(), Duration::from_secs(5))
            .login_ringex(&creds)
            .await
            .unwrap()
    }

    /// Writes `state` as generation `base + 1` of a ring of `slots`.
    async fn publish(&self, tenant: &str, slots: u32, base: u64, state: &SessionState) {
        self.ring(slots)
            .publish(
                tenant,
                base,
                state,
                Utc::now() + chrono::Duration::seconds(30),
            )
            .await
            .unwrap();
    }

    async fn newest(&self, tenant: &str) -> SessionState {
        self.ring(6)
            .read(tenant)
            .await
            .unwrap()
            .newest
            .expect("a session")
    }

    fn logins(&self) -> usize {
        self.sim.count("POST", EXCHANGE) + self.sim.count("POST", "/api/auth/login/admin")
    }

    fn env(&self, tenants: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut env = function_env(&self.sim, &self.prefix, tenants);
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    }
}

fn scheduler_event() -> Value {
    json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}})
}

fn proxy_event(key: &str) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/v1/engage/v1/admin/accounts",
        "rawQueryString": "", "headers": {"authorization": format!("Bearer {key}")},
        "requestContext": {
            "accountId": "anonymous", "apiId": "x", "domainName": "x.lambda-url.us-east-1.on.aws",
            "domainPrefix": "x", "http": {"method": "GET", "path": "/v1/engage/v1/admin/accounts",
            "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "RingCX-IVR"},
            "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1795428000000u64
        },
        "isBase64Encoded": false
    })
}

/// Status, error code and `Retry-After` of a Function URL answer.
fn http_answer(result: &Invocation) -> (u16, String, Option<String>, Value) {
    let Invocation::Response(r) = result else {
        panic!("function error: {result:?}")
    };
    let raw = r["body"].as_str().unwrap_or_default();
    let text = if r["isBase64Encoded"] == true {
        String::from_utf8(STANDARD.decode(raw).unwrap()).unwrap()
    } else {
        raw.to_owned()
    };
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let retry = r["headers"]["retry-after"].as_str().map(str::to_owned);
    (
        r["statusCode"].as_u64().unwrap_or(0) as u16,
        code,
        retry,
        body,
    )
}

/// An api binary with one proxy caller for `tenant`; returns it and the caller's key.
async fn api_function(w: &World, runtime: &RuntimeApi, tenant: &str) -> (LambdaProcess, String) {
    let (key, entry) =
        api::auth::generate_key("ivr", tenant, vec![api::auth::Scope::EngageProxy]).unwrap();
    w.put(&w.names.callers(), &json!([entry])).await;
    let function = LambdaProcess::start("api", runtime, &w.env(tenant, &[]));
    (function, key.expose_secret().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_storm_writes_the_ring_at_most_once_and_never_logs_in() {
    let w = World::new("storm").await;
    w.seed_credentials("t").await;
    refresh_with(w.store.clone(), &w.prefix, &w.sim, 6, "t")
        .await
        .unwrap();
    // The current generation is 40 s old, so one forced renewal is allowed.
    let mut aged = w.newest("t").await;
    aged.obtained_at = Some(Utc::now() - chrono::Duration::seconds(40));
    w.publish("t", 6, 1, &aged).await;
    let runtime = RuntimeApi::start().await.unwrap();
    let (function, key) = api_function(&w, &runtime, "t").await;
    w.sim.clear_requests();

    // RingCX refuses every token as expired: 60 proxied calls.
    w.sim.set_behaviour(Behaviour {
        token_refusal: TokenRefusal::Expired,
        ..Behaviour::default()
    });
    let started = Instant::now();
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let answer = runtime
            .invoke(proxy_event(&key), Duration::from_secs(20))
            .await;
        let (status, code, retry, _) = http_answer(&answer);
        *codes.entry((status, code)).or_insert(0) += 1;
        assert!(retry.is_some(), "a 502 tells when to retry");
    }
    let elapsed = started.elapsed();
    let written = w.newest("t").await.generation - 2;
    let refreshes = w.sim.count("POST", REFRESH);
    println!(
        "refusal storm (every token refused as expired): 60 proxied calls in {:.1} s -> {codes:?}, \
         {written} ring versions written, {refreshes} refreshes, {} logins",
        elapsed.as_secs_f64(),
        w.logins()
    );
    assert_eq!(
        codes.get(&(502, "upstream_unauthorized".to_owned())),
        Some(&60),
        "{codes:?}\n{}",
        function.output()
    );
    assert!(written <= 1, "{written} versions written during the storm");
    assert!(refreshes <= 1);
    assert_eq!(w.logins(), 0, "the HTTP function never logs in");

    // 401s that are not about expiry are RingCX's answer, relayed, and cost nothing.
    w.sim.set_behaviour(Behaviour {
        token_refusal: TokenRefusal::Unauthenticated,
        ..Behaviour::default()
    });
    let before = w.newest("t").await.generation;
    for _ in 0..30 {
        let answer = runtime
            .invoke(proxy_event(&key), Duration::from_secs(20))
            .await;
        let (status, _, _, body) = http_answer(&answer);
        assert_eq!(status, 401, "{body}");
        assert_eq!(
            body["errorCode"], "authentication.exception",
            "relayed as it came"
        );
    }
    assert_eq!(w.newest("t").await.generation, before, "no write");
    assert_eq!(w.sim.count("POST", REFRESH), refreshes, "no refresh");

    // The storm ends: the broker's token works again without any help.
    w.sim.set_behaviour(Behaviour::default());
    let (status, _, _, body) = http_answer(
        &runtime
            .invoke(proxy_event(&key), Duration::from_secs(20))
            .await,
    );
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_function_never_logs_in_and_answers_503_with_retry_after() {
    let w = World::new("no-login").await;
    w.seed_credentials("t").await;
    refresh_with(w.store.clone(), &w.prefix, &w.sim, 6, "t")
        .await
        .unwrap();
    // The stored token is about to expire and its refresh token was revoked.
    let mut dying = w.newest("t").await;
    dying.access_token_expires_at = Some(Utc::now() + chrono::Duration::seconds(10));
    w.publish("t", 6, 1, &dying).await;
    w.sim.revoke_refresh_tokens();
    let runtime = RuntimeApi::start().await.unwrap();
    let (mut function, key) = api_function(&w, &runtime, "t").await;
    w.sim.clear_requests();

    for _ in 0..5 {
        let answer = runtime
            .invoke(proxy_event(&key), Duration::from_secs(20))
            .await;
        let (status, code, retry, body) = http_answer(&answer);
        assert_eq!(
            (status, code.as_str(), retry.as_deref()),
            (503, "token_unavailable", Some("60")),
            "{body}\n{}",
            function.output()
        );
    }
    assert_eq!(
        w.sim.count("POST", EXCHANGE) + w.sim.count("POST", PLATFORM),
        0,
        "no RingEX grant, no exchange: the credentials were never used"
    );
    assert_eq!(
        w.sim.count("POST", REFRESH),
        1,
        "one refresh attempt, then the verdict is remembered"
    );
    function.stop();
    assert!(
        !function.output().contains("credentials"),
        "the function never looked for the credentials"
    );
    // The refresher, which may log in, recovers the tenant with one login.
    refresh_with(w.store.clone(), &w.prefix, &w.sim, 6, "t")
        .await
        .unwrap();
    assert_eq!(w.logins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_newest_slot_costs_one_login_and_the_ring_moves_on() {
    let w = World::new("corrupt").await;
    w.seed_credentials("t").await;
    // Generation 1 holds a refresh token that generation 2's refresh spent; generation 2 is
    // then hand-edited into garbage. Generation 1's token is due.
    let first = w.login().await;
    let client = client_for(&w.sim, w.clock.clone(), Duration::from_secs(5));
    let second = client
        .refresh(first.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    let mut g1 = SessionState::next(None, first, ObtainedBy::RingExExchange);
    g1.access_token_expires_at = Some(Utc::now() + chrono::Duration::seconds(100));
    w.publish("t", 6, 0, &g1).await;
    w.publish(
        "t",
        6,
        1,
        &SessionState::next(Some(&g1), second, ObtainedBy::Refresh),
    )
    .await;
    let corrupted = w.names.slot("t", 2);
    w.store
        .put(
            &corrupted,
            &SecretString::from("{\"generation\": 2, oops".to_owned()),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await
        .unwrap();
    w.sim.clear_requests();

    let runtime = RuntimeApi::start().await.unwrap();
    let mut function = LambdaProcess::start("refresher", &runtime, &w.env("t", &[]));
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let Invocation::Response(summary) = runtime
            .invoke(scheduler_event(), Duration::from_secs(60))
            .await
        else {
            panic!("{}", function.output())
        };
        outcomes.push(
            summary["tenants"][0]["outcome"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        assert_eq!(
            summary["tenants"][0]["unreadableSlots"][0],
            corrupted.as_str()
        );
    }
    let newest = w.newest("t").await;
    println!(
        "corrupted newest slot: outcomes {outcomes:?}, {} logins, ring now at generation {}",
        w.logins(),
        newest.generation
    );
    assert_eq!(outcomes, ["logged-in", "fresh", "fresh"]);
    assert_eq!(w.logins(), 1, "recovery takes one login, once");
    assert_eq!(
        newest.generation, 3,
        "written past the generation it could not rule out"
    );
    function.stop();
    let output = function.output();
    assert!(output.contains(&corrupted), "the slot is reported by name");
    assert!(
        output.contains("\"UnreadableSlots\":1.0"),
        "and counted in a metric: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_session_slots_either_way_finds_the_newest_session() {
    let w = World::new("resize").await;
    // A tenant seeded with a session only (no credentials), whose newest generation sits in slot
    // 5 of a ring of 6.
    let session = w.login().await;
    let rt = session.refresh_token.unwrap().expose_secret().to_owned();
    w.put(
        &w.names.slot("t", 5),
        &json!({"generation": 5, "refreshToken": rt}),
    )
    .await;
    w.put(
        &w.names.slot("t", 4),
        &json!({"generation": 4, "refreshToken": "rt-spent"}),
    )
    .await;
    w.sim.clear_requests();
    let runtime = RuntimeApi::start().await.unwrap();
    // Lowered to 4 (the fewest slots the quota allows for 5-minute tokens; 3 is refused at start).
    let narrow = LambdaProcess::start(
        "refresher",
        &runtime,
        &w.env(
            "t",
            &[("SESSION_SLOTS", "4"), ("REFRESH_MARGIN_SECONDS", "100")],
        ),
    );
    let Invocation::Response(summary) = runtime
        .invoke(scheduler_event(), Duration::from_secs(60))
        .await
    else {
        panic!("{}", narrow.output())
    };
    assert_eq!(summary["ok"], true, "{summary}\n{}", narrow.output());
    assert_eq!(summary["tenants"][0]["outcome"], "refreshed");
    assert_eq!(summary["tenants"][0]["generation"], 6);
    assert!(
        w.store.get(&w.names.slot("t", 2)).await.unwrap().is_some(),
        "generation 6 goes to slot 6 mod 4"
    );
    drop(narrow);
    // Raised to 8: generation 6 in slot 2 is still the newest.
    let wide = LambdaProcess::start(
        "refresher",
        &runtime,
        &w.env("t", &[("SESSION_SLOTS", "8")]),
    );
    let Invocation::Response(summary) = runtime
        .invoke(scheduler_event(), Duration::from_secs(60))
        .await
    else {
        panic!("{}", wide.output())
    };
    assert_eq!(summary["tenants"][0]["outcome"], "fresh", "{summary}");
    assert_eq!(summary["tenants"][0]["generation"], 6);
    assert_eq!(w.logins(), 0, "no login, no CANNOT RECOVER");
    // And a K the quota cannot hold is refused at start with the fix.
    let refused = LambdaProcess::start(
        "refresher",
        &runtime,
        &w.env("t", &[("SESSION_SLOTS", "3")]),
    );
    let started = Instant::now();
    while !refused.output().contains("SESSION_SLOTS") && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused.output().contains("set SESSION_SLOTS to at least"),
        "{}",
        refused.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ringcx_never_outlives_the_invocation_and_never_spends_a_token_it_cannot_save() {
    let w = World::new("slow").await;
    w.seed_credentials("t").await;
    let session = w.login().await;
    let mut due = SessionState::next(None, session, ObtainedBy::RingExExchange);
    due.access_token_expires_at = Some(Utc::now() + chrono::Duration::seconds(120));
    w.publish("t", 6, 0, &due).await;
    w.sim.clear_requests();
    let runtime = RuntimeApi::start().await.unwrap();
    let mut worst: f64 = 0.0;

    // 1. An 8 s invocation and a 10 s RingCX timeout: no refresh can be saved in time, so none
    //    is started, and the answer comes at once.
    w.sim
        .fail_next(REFRESH, Fault::DelayAfter { ms: 10_000 }, 1);
    let f = LambdaProcess::start("refresher", &runtime, &w.env("t", &[]));
    let deadline = Duration::from_secs(8);
    let started = Instant::now();
    let Invocation::Response(summary) = runtime.invoke(scheduler_event(), deadline).await else {
        panic!("{}", f.output())
    };
    let took = started.elapsed();
    worst = worst.max(took.as_secs_f64() / deadline.as_secs_f64());
    assert_eq!(summary["tenants"][0]["outcome"], "deferred", "{summary}");
    assert!(
        summary["tenants"][0]["error"]
            .as_str()
            .unwrap()
            .contains("ENGAGE_TIMEOUT_MS")
    );
    assert_eq!(summary["ok"], true, "the stored token still has 2 minutes");
    assert_eq!(w.sim.count("POST", REFRESH), 0, "no refresh token spent");
    drop(f);

    // 2. A 2 s timeout in a 12 s invocation: the refresh is processed, its answer comes too late
    //    and is lost. The refresher answers before its deadline all the same.
    let f = LambdaProcess::start(
        "refresher",
        &runtime,
        &w.env("t", &[("ENGAGE_TIMEOUT_MS", "2000")]),
    );
    let deadline = Duration::from_secs(12);
    let started = Instant::now();
    let answer = runtime.invoke(scheduler_event(), deadline).await;
    let took = started.elapsed();
    worst = worst.max(took.as_secs_f64() / deadline.as_secs_f64());
    println!(
        "slow RingCX: lost-answer invocation answered in {:.2} s of a {} s deadline: {answer:?}",
        took.as_secs_f64(),
        deadline.as_secs()
    );
    assert!(
        took < deadline - Duration::from_millis(1500),
        "answered {took:?} into a {deadline:?} invocation\n{}",
        f.output()
    );
    assert_eq!(
        w.sim.token_stats().refreshes,
        1,
        "RingCX processed the refresh"
    );

    // 3. The next run (a normal 60 s one) recovers with exactly one login: the one the lost
    //    answer cost.
    w.sim.clear_faults();
    let deadline = Duration::from_secs(60);
    let started = Instant::now();
    let Invocation::Response(summary) = runtime.invoke(scheduler_event(), deadline).await else {
        panic!("{}", f.output())
    };
    worst = worst.max(started.elapsed().as_secs_f64() / deadline.as_secs_f64());
    assert_eq!(summary["tenants"][0]["outcome"], "logged-in", "{summary}");
    assert_eq!(w.logins(), 1);
    println!(
        "slow RingCX: worst answer time {:.0}% of the invocation's deadline",
        worst * 100.0
    );
}
