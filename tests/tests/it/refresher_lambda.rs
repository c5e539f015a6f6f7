//! The real `refresher` binary, driven through the Lambda Runtime API with an EventBridge
//! Scheduler event, against moto (through the AWS SDK) and the RingCX simulator.

use std::sync::Arc;
use std::time::Duration;

use broker::clock::{SharedClock, SystemClock};
use broker::store::aws::SecretsManagerStore;
use broker::store::{SecretNames, SecretStore, SessionRing};
use broker::telemetry::Metric;
use broker_tests::lambda::{Invocation, LambdaProcess, RuntimeApi};
use broker_tests::sim::{CLIENT_SECRET, Simulator};
use broker_tests::support::{function_env, moto_store, unique_prefix};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

fn scheduler_event() -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": "2026-11-21T20:43:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/ringcx-refresher"],
        "detail": "{}"
    })
}

/// The simulator, moto and a prefix of this test's own.
async fn world(
    test: &str,
) -> (
    SharedClock,
    Simulator,
    SecretsManagerStore,
    String,
    SecretNames,
) {
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::start(clock.clone()).await.unwrap();
    let prefix = unique_prefix(test);
    let names = SecretNames::new(prefix.clone());
    (clock, sim, moto_store().await, prefix, names)
}

async fn put(store: &impl SecretStore, name: &str, doc: &Value) {
    broker_tests::support::seed(store, name, &doc.to_string()).await;
}

fn env(sim: &Simulator, prefix: &str, tenants: &str) -> Vec<(&'static str, String)> {
    let mut vars = function_env(sim, prefix, tenants);
    vars.push(("SESSION_SLOTS", "6".into()));
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_invocations_renew_every_tenant_into_moto() {
    let (clock, sim, store, prefix, names) = world("refresher").await;
    put(
        &store,
        &names.credentials("default"),
        &sim.ringex_credentials("admin@example.com").unwrap(),
    )
    .await;
    put(
        &store,
        &names.credentials("legacy"),
        &sim.engage_login_credentials("agent@example.com").unwrap(),
    )
    .await;

    let runtime = RuntimeApi::start().await.unwrap();
    let mut function =
        LambdaProcess::start("refresher", &runtime, &env(&sim, &prefix, "default,legacy"));

    let first = runtime
        .invoke(scheduler_event(), Duration::from_secs(60))
        .await;
    let Invocation::Response(summary) = first else {
        panic!("{first:?}\n{}", function.output())
    };
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["tenants"][0]["tenant"], "default");
    assert_eq!(summary["tenants"][0]["outcome"], "logged-in");
    assert_eq!(summary["tenants"][1]["outcome"], "logged-in");

    // The slot secrets it wrote, read back through the real SDK.
    let ring = SessionRing::new(store.clone(), names.clone(), 6, clock.clone());
    for tenant in ["default", "legacy"] {
        let newest = ring
            .read(tenant)
            .await
            .unwrap()
            .newest
            .expect("a session in the ring");
        assert_eq!(newest.generation, 1);
        assert!(newest.usable_token(chrono::Utc::now(), 250).is_some());
        assert!(newest.refresh_token.is_some());
        assert!(
            store.get(&names.slot(tenant, 1)).await.unwrap().is_some(),
            "generation 1 lives in slot 1"
        );
    }
    assert_eq!(
        ring.read("legacy")
            .await
            .unwrap()
            .newest
            .unwrap()
            .obtained_by
            .as_deref(),
        Some("engage-login")
    );

    // A second tick within the margin changes nothing and costs no RingCX call.
    let calls = sim.requests().len();
    let second = runtime
        .invoke(scheduler_event(), Duration::from_secs(60))
        .await;
    let Invocation::Response(summary) = second else {
        panic!("{second:?}")
    };
    assert_eq!(summary["tenants"][0]["outcome"], "fresh");
    assert_eq!(sim.requests().len(), calls);

    // One structured line and one EMF document per tenant per invocation; no secret anywhere.
    function.stop();
    let stdout = function.stdout();
    let emf: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 4, "{stdout}");
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "RingCxBroker"
    );
    assert!(
        emf.iter()
            .any(|d| d["Tenant"] == "legacy" && d["FallbackLogins"] == 1.0)
    );
    // Every metric summed across tenants; per tenant only what the dashboard draws per tenant.
    for doc in &emf {
        let mut across = Vec::new();
        let mut per_tenant = Vec::new();
        for directive in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            let names = directive["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["Name"].as_str().unwrap().to_owned());
            match directive["Dimensions"].to_string().as_str() {
                "[[]]" => across.extend(names),
                r#"[["Tenant"]]"# => per_tenant.extend(names),
                other => panic!("unexpected dimensions {other}"),
            }
        }
        let all: Vec<String> = Metric::REFRESHER
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(across, all, "{doc}");
        assert_eq!(per_tenant, ["SecondsLeft"], "{doc}");
    }
    let renewal_lines = stdout.lines().filter(|l| l.contains("\"renewal\"")).count();
    assert_eq!(renewal_lines, 4, "{stdout}");
    let output = function.output();
    let mut secrets = vec![CLIENT_SECRET.to_owned()];
    for u in sim.users() {
        secrets.push(u.password);
        secrets.push(u.jwt_credential);
    }
    for tenant in ["default", "legacy"] {
        let s = ring.read(tenant).await.unwrap().newest.unwrap();
        secrets.push(s.access_token.unwrap().expose_secret().to_owned());
        secrets.push(s.refresh_token.unwrap().expose_secret().to_owned());
    }
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a secret reached the function's output"
        );
    }
    assert!(runtime.init_errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_fails_when_a_tenant_has_no_usable_token() {
    let (_, sim, store, prefix, names) = world("refresher-fail").await;
    put(
        &store,
        &names.credentials("good"),
        &sim.ringex_credentials("admin@example.com").unwrap(),
    )
    .await;
    let runtime = RuntimeApi::start().await.unwrap();
    let function = LambdaProcess::start("refresher", &runtime, &env(&sim, &prefix, "good,nobody"));
    let result = runtime
        .invoke(scheduler_event(), Duration::from_secs(60))
        .await;
    let Invocation::Error {
        error_type,
        error_message,
    } = result
    else {
        panic!(
            "expected a function error: {result:?}\n{}",
            function.output()
        )
    };
    assert_eq!(error_type, "TenantsWithoutToken");
    assert!(error_message.contains("1 of 2 tenants"), "{error_message}");
    assert!(
        error_message.contains("nobody")
            && error_message.contains(&format!("{prefix}nobody/credentials")),
        "{error_message}"
    );
    assert!(
        !error_message.contains("good:"),
        "the healthy tenant is not blamed: {error_message}"
    );
    // The healthy tenant was renewed all the same.
    let ring = SessionRing::new(store, names, 6, Arc::new(SystemClock));
    assert_eq!(
        ring.read("good").await.unwrap().newest.unwrap().generation,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_lambda_once_runs_one_pass_and_reports_by_exit_status() {
    let (_, sim, store, prefix, names) = world("refresher-once").await;
    put(
        &store,
        &names.credentials("default"),
        &sim.ringex_credentials("admin@example.com").unwrap(),
    )
    .await;
    let binary = broker_tests::lambda::binary("refresher");
    let run = |vars: Vec<(&'static str, String)>| {
        let binary = binary.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(binary);
            cmd.arg("--once")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
            cmd.envs(vars);
            cmd.output().unwrap()
        })
    };
    let out = run(env(&sim, &prefix, "default")).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["tenants"][0]["outcome"], "logged-in");
    let out = run(env(&sim, &prefix, "default,nobody")).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a tenant without a token fails the run"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("renewal failed"));
}
