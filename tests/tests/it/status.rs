//! `make status` (`operator status`) against moto and the simulator: a healthy tenant, one whose
//! renewal is late, and one without credentials, in text and `--json`.

use std::sync::Arc;

use broker::clock::{SharedClock, SystemClock};
use broker::session::SessionState;
use broker::store::{SecretNames, SessionRing};
use broker_tests::support::{ApiStack, moto_store, unique_prefix};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_gives_each_tenant_its_verdict_in_text_and_json() {
    let store = moto_store().await;
    let s = ApiStack::start(store.clone(), &unique_prefix("status"), &[]).await;
    // `second` is late: its newest generation has 80 s left, under the margin less one run.
    let clock: SharedClock = Arc::new(SystemClock);
    let ring = SessionRing::new(
        store.clone(),
        SecretNames::new(s.prefix.clone()),
        6,
        clock.clone(),
    );
    let view = ring.read("second").await.unwrap();
    let now = chrono::Utc::now();
    let late: SessionState = serde_json::from_value(json!({
        "generation": view.highest_possible + 1,
        "accessToken": "late-access-token", "refreshToken": "late-refresh-token",
        "accessTokenExpiresAt": now + chrono::Duration::seconds(80),
        "obtainedAt": now - chrono::Duration::seconds(220), "obtainedBy": "refresh"
    }))
    .unwrap();
    ring.publish(
        "second",
        view.highest_possible,
        &late,
        now + chrono::Duration::seconds(20),
    )
    .await
    .unwrap();
    let run = |json: bool| {
        if json {
            s.operator_command(&["status", "--json"])
        } else {
            s.operator_command(&["status"])
        }
    };
    let text = run(false);
    assert!(
        !text.status.success(),
        "a failing tenant makes the command fail"
    );
    let stdout = String::from_utf8_lossy(&text.stdout);
    let verdict_of = |tenant: &str| -> String {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(tenant))
            .unwrap_or_else(|| {
                panic!(
                    "no line for {tenant}: {stdout} {}",
                    String::from_utf8_lossy(&text.stderr)
                )
            });
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    assert_eq!(verdict_of("default"), "healthy", "{stdout}");
    assert_eq!(verdict_of("second"), "renewing-late", "{stdout}");
    assert_eq!(verdict_of("empty"), "failing", "{stdout}");
    assert!(stdout.contains("no credentials"), "{stdout}");
    assert!(!stdout.contains("late-access-token") && !stdout.contains("late-refresh-token"));

    let json_out = run(true);
    let tenants: Vec<Value> = serde_json::from_slice(&json_out.stdout).unwrap();
    let by = |t: &str| tenants.iter().find(|x| x["tenant"] == t).cloned().unwrap();
    assert_eq!(by("default")["verdict"], "healthy");
    assert_eq!(by("second")["verdict"], "renewing-late");
    assert_eq!(by("empty")["verdict"], "failing");
    assert_eq!(by("empty")["hasCredentials"], false);
    assert!(
        by("default")["writes24h"].as_u64().unwrap() >= 1,
        "the first login's write counts"
    );
    assert!(by("second")["secondsLeft"].as_i64().unwrap() <= 80);
    assert!(!String::from_utf8_lossy(&json_out.stdout).contains("late-access-token"));
}
