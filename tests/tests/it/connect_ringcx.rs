//! `connect-ringcx` end to end: the real `api` binary against moto and the simulator creates the
//! OAUTH auth config in the tenant's RingCX account; RingCX then does what it does with that
//! config (a client-credentials request to the broker, as `clientCredentialsSupplyIn` says) and
//! calls a Voice API with the token. Re-running changes nothing; `--rotate` leaves one working key.

use broker::store::{SecretNames, SecretStore};
use broker_tests::sim::outbound::fetch_token;
use broker_tests::support::{ApiStack, moto_store, unique_prefix};
use chrono::Duration;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const ACCOUNT: &str = "333333";
const PROVIDER: &str = "Broker (test)";

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn connect(s: &ApiStack<broker::store::aws::SecretsManagerStore>, args: &[&str]) -> Run {
    let mut all = vec![
        "connect-ringcx",
        "--api-url",
        &s.base,
        "--provider-name",
        PROVIDER,
    ];
    all.extend_from_slice(args);
    let out = s.operator_command(&all);
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn callers_raw(s: &ApiStack<broker::store::aws::SecretsManagerStore>) -> String {
    let name = SecretNames::new(s.prefix.clone()).callers();
    s.store
        .get(&name)
        .await
        .unwrap()
        .unwrap()
        .expose_secret()
        .to_owned()
}

fn ours(raw: &str) -> Vec<String> {
    let list: Vec<Value> = serde_json::from_str(raw).unwrap();
    list.iter()
        .filter_map(|c| c["id"].as_str())
        .filter(|id| id.starts_with("ringcx-default-"))
        .map(str::to_owned)
        .collect()
}

fn the_config(s: &ApiStack<broker::store::aws::SecretsManagerStore>) -> Value {
    let mine: Vec<Value> = s
        .sim
        .auth_configs(ACCOUNT)
        .into_iter()
        .filter(|c| c["providerName"] == PROVIDER && c["authType"] == "OAUTH")
        .collect();
    assert_eq!(mine.len(), 1, "exactly one broker auth config: {mine:?}");
    mine[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_ringcx_wires_ringcx_to_the_broker_idempotently_and_rotates_cleanly() {
    let store = moto_store().await;
    let s = ApiStack::start(store, &unique_prefix("connect"), &[]).await;
    // More configs than one list page holds, and a namesake of another type, so the command
    // must page and must match the type too.
    for i in 0..30 {
        s.sim.put_auth_config(
            ACCOUNT,
            json!({"authConfigId": uuid::Uuid::new_v4().to_string(), "authType": "BASIC",
                   "providerName": if i == 29 { PROVIDER.to_owned() } else { format!("other-{i}") },
                   "username": "u", "password": "p"}),
        );
    }
    let http = reqwest::Client::new();

    let first = connect(&s, &["--tenant", "default"]);
    assert!(first.ok, "{}{}", first.stdout, first.stderr);
    let list = format!("/voice/api/v1/admin/accounts/{ACCOUNT}/external/authConfigs");
    assert!(s.sim.count("GET", &list) >= 2, "the list was paged");
    assert!(first.stdout.contains("created"), "{}", first.stdout);
    let config = the_config(&s);
    let id = config["authConfigId"].as_str().unwrap().to_owned();
    assert!(first.stdout.contains(&id), "the id is printed");
    assert_eq!(config["tokenUrl"], s.url("/v1/oauth/token"));
    assert_eq!(config["grantType"], "CLIENT_CREDENTIALS");
    assert_eq!(config["clientCredentialsSupplyIn"], "BODY");
    assert!(
        !first.stdout.contains(config["secret"].as_str().unwrap()),
        "the key is not printed"
    );
    // What RingCX does with the config: a token from the broker, then a Voice API call.
    let (status, answer) = fetch_token(&http, &config).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let voice = http
        .get(format!("{}/voice/api/v1/admin/accounts", s.sim.base_url()))
        .bearer_auth(answer["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(voice.status(), 200);

    // Again: nothing changes, in RingCX or in the callers secret.
    let callers_before = callers_raw(&s).await;
    let again = connect(&s, &["--tenant", "default"]);
    assert!(again.ok, "{}", again.stderr);
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    assert_eq!(the_config(&s), config);
    assert_eq!(callers_raw(&s).await, callers_before);
    assert_eq!(s.sim.auth_configs(ACCOUNT).len(), 31);

    // Rotation: a new key in RingCX, the old one gone; exactly one working key.
    let rotated = connect(&s, &["--tenant", "default", "--rotate"]);
    assert!(rotated.ok, "{}", rotated.stderr);
    let after = the_config(&s);
    assert_eq!(
        after["authConfigId"], config["authConfigId"],
        "the same config"
    );
    assert_ne!(after["clientId"], config["clientId"]);
    assert_ne!(after["secret"], config["secret"]);
    let keys = ours(&callers_raw(&s).await);
    assert_eq!(
        keys,
        [after["clientId"].as_str().unwrap()],
        "one broker key left"
    );
    // Instances drop the old key within CALLERS_CACHE_SECONDS.
    s.clock.advance(Duration::seconds(61));
    let (status, answer) = fetch_token(&http, &config).await.unwrap();
    assert_eq!((status, &answer["error"]), (401, &json!("invalid_client")));
    let (status, _) = fetch_token(&http, &after).await.unwrap();
    assert_eq!(status, 200);

    // A second config (another provider name) leaves the first one's key alone.
    let second = connect(&s, &["--tenant", "default", "--provider-name", "Second"]);
    assert!(second.ok, "{}", second.stderr);
    assert_eq!(ours(&callers_raw(&s).await).len(), 2);
    let (status, _) = fetch_token(&http, &the_config(&s)).await.unwrap();
    assert_eq!(status, 200, "the first config still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_from_ringcx_still_leaves_exactly_the_key_ringcx_holds() {
    let store = moto_store().await;
    let s = ApiStack::start(store, &unique_prefix("connect-lost"), &[]).await;
    let http = reqwest::Client::new();
    // RingCX creates the config, then the connection drops before the answer.
    let one = format!("/voice/api/v1/admin/accounts/{ACCOUNT}/external/authConfigs/");
    s.sim
        .fail_next(&one, broker_tests::sim::Fault::DropAfter, 1);
    let first = connect(&s, &["--tenant", "default"]);
    assert!(first.ok, "{}{}", first.stdout, first.stderr);
    assert_eq!(s.sim.token_stats().lost_answers, 1, "the answer was lost");
    let config = the_config(&s);
    assert_eq!(
        ours(&callers_raw(&s).await),
        [config["clientId"].as_str().unwrap()]
    );
    assert_eq!(fetch_token(&http, &config).await.unwrap().0, 200);
    // The same on a rotation: RingCX took the new key, its answer is lost.
    s.sim
        .fail_next(&one, broker_tests::sim::Fault::DropAfter, 1);
    let rotated = connect(&s, &["--tenant", "default", "--rotate"]);
    assert!(rotated.ok, "{}{}", rotated.stdout, rotated.stderr);
    assert_eq!(s.sim.token_stats().lost_answers, 2);
    let after = the_config(&s);
    assert_ne!(after["clientId"], config["clientId"]);
    assert_eq!(
        ours(&callers_raw(&s).await),
        [after["clientId"].as_str().unwrap()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_ringcx_fails_clearly_and_leaves_no_key_behind() {
    let store = moto_store().await;
    let s = ApiStack::start(store, &unique_prefix("connect-fail"), &[]).await;
    let callers_before = callers_raw(&s).await;
    // An API URL RingCX would send the secret to in clear.
    let plain = s.operator_command(&[
        "connect-ringcx",
        "--tenant",
        "default",
        "--api-url",
        "http://broker.example.com",
    ]);
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("https"));
    // The second tenant's RingCX user is not an admin: RingCX refuses, the new key is withdrawn.
    let refused = connect(&s, &["--tenant", "second", "--account", "333334"]);
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains("may not manage external auth configs"),
        "{}",
        refused.stderr
    );
    assert_eq!(callers_raw(&s).await, callers_before, "no key left behind");
    assert!(s.sim.auth_configs("333334").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_caller_makes_a_jwt_caller_that_ringcx_can_sign_for() {
    let store = moto_store().await;
    let s = ApiStack::start(store, &unique_prefix("jwt-caller"), &[]).await;
    let out = s.operator_command(&[
        "add-caller",
        "--id",
        "ringcx-ivr",
        "--jwt",
        "HS256",
        "--paths",
        "GET v1/sim/echo/**",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("the secret is printed once")
        .to_owned();
    let raw = callers_raw(&s).await;
    assert!(!raw.contains("keySha256\":null"), "no empty key field");
    // RingCX's JWT auth config with that secret, base64-encoded as the command says.
    let config = json!({"authType": "JWT", "algorithm": "HS256", "secret": secret,
        "isSecretEncoded": true, "payload": r#"{"iss":"ringcx-ivr"}"#, "expirationTime": 60,
        "isIncludeIssueAt": true, "addTokenTo": "REQUEST_HEADER", "headerPrefix": "Bearer "});
    let http = reqwest::Client::new();
    let now = broker::clock::Clock::now(&s.clock);
    let call = |url: String| {
        let (http, config) = (http.clone(), config.clone());
        async move {
            broker_tests::sim::outbound::call_out(&http, &config, reqwest::Method::GET, &url, now)
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(s.url("/v1/engage/v1/sim/echo/a")).await, 200);
    assert_eq!(
        call(s.url("/v1/engage/v1/admin/accounts")).await,
        403,
        "outside its paths"
    );
    let refused = s.operator_command(&["add-caller", "--id", "ringcx-rsa", "--jwt", "RS256"]);
    assert!(
        !refused.status.success(),
        "RS256 without a public key is refused"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("publicKeyPem"));
}
