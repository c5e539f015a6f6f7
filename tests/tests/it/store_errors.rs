//! How Secrets Manager's failures reach the broker: the real AWS SDK client against a stub that
//! answers exactly as Secrets Manager does (the awsJson1.1 protocol, its error codes and
//! per-entry batch errors), since moto produces none of these. Plus one case moto does produce:
//! a slot scheduled for deletion.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::config::{Credentials, Region};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use broker::clock::{SharedClock, SystemClock};
use broker::session::SessionState;
use broker::store::aws::SecretsManagerStore;
use broker::store::{PublishOutcome, SecretNames, SecretStore, SessionRing, StoreError};
use broker_tests::support::{moto_store, unique_prefix};
use secrecy::SecretString;
use serde_json::{Value, json};

/// A scripted Secrets Manager: answers queued per operation, every request counted.
#[derive(Clone, Default)]
struct Stub {
    answers: Arc<Mutex<VecDeque<(String, u16, Value)>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    fn answer(&self, op: &str, status: u16, body: Value) {
        self.answers
            .lock()
            .unwrap()
            .push_back((op.to_owned(), status, body));
    }

    fn error(&self, op: &str, status: u16, code: &str, message: &str) {
        self.answer(op, status, json!({"__type": code, "message": message}));
    }

    fn seen(&self, op: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|o| *o == op)
            .count()
    }
}

async fn handle(State(stub): State<Stub>, headers: HeaderMap) -> Response {
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("secretsmanager."))
        .unwrap_or_default()
        .to_owned();
    stub.seen.lock().unwrap().push(op.clone());
    let mut answers = stub.answers.lock().unwrap();
    let Some(i) = answers.iter().position(|(o, _, _)| *o == op) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "unscripted").into_response();
    };
    let (_, status, body) = answers.remove(i).unwrap();
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

/// The broker's store (its own SDK settings: call timeouts, no SDK retries) aimed at the stub.
async fn store_on_stub() -> (SecretsManagerStore, Stub) {
    let stub = Stub::default();
    let app = Router::new()
        .fallback(axum::routing::post(handle))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "stub"));
    let config = SecretsManagerStore::configure(loader).load().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    (SecretsManagerStore::new(client, None), stub)
}

fn value(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

const TOKEN: &str = "00000000-0000-4000-8000-000000000001";

#[tokio::test]
async fn operation_errors_map_to_what_the_broker_must_do() {
    let (store, stub) = store_on_stub().await;
    let n = "ringcx/t/session-1";
    stub.error(
        "PutSecretValue",
        400,
        "LimitExceededException",
        "You have exceeded the maximum number of versions",
    );
    assert_eq!(
        store.put(n, &value("v"), TOKEN).await.unwrap_err(),
        StoreError::QuotaExceeded { name: n.into() }
    );
    stub.error(
        "PutSecretValue",
        400,
        "ThrottlingException",
        "Rate exceeded",
    );
    let throttled = store.put(n, &value("v"), TOKEN).await.unwrap_err();
    assert!(throttled.is_transient(), "{throttled}");
    stub.error("PutSecretValue", 500, "InternalServiceError", "oops");
    assert!(
        store
            .put(n, &value("v"), TOKEN)
            .await
            .unwrap_err()
            .is_transient()
    );
    assert_eq!(
        stub.seen("PutSecretValue"),
        3,
        "one request per call: the SDK's retries are off, the broker's own retries decide"
    );
    stub.error(
        "GetSecretValue",
        400,
        "AccessDeniedException",
        "User is not authorized to perform: secretsmanager:GetSecretValue",
    );
    let denied = store.get("ringcx/t/credentials").await.unwrap_err();
    assert!(
        matches!(denied, StoreError::AccessDenied { ref name, .. } if name == "ringcx/t/credentials")
    );
    stub.error(
        "GetSecretValue",
        400,
        "DecryptionFailure",
        "Secrets Manager can't decrypt the protected secret text using the provided KMS key.",
    );
    let kms = store.get(n).await.unwrap_err();
    assert!(kms.to_string().contains("kms:Decrypt"), "{kms}");
    stub.error(
        "PutSecretValue",
        400,
        "ResourceExistsException",
        "A resource with the ID you requested already exists.",
    );
    assert_eq!(
        store.put(n, &value("v"), TOKEN).await.unwrap_err(),
        StoreError::VersionConflict { name: n.into() }
    );
}

#[tokio::test]
async fn per_entry_batch_errors_are_classified_and_name_the_secret() {
    let (store, stub) = store_on_stub().await;
    let names: Vec<String> = (0..3).map(|i| format!("ringcx/t/session-{i}")).collect();
    let batch = |errors: Value| {
        json!({
            "SecretValues": [{"ARN": "arn:aws:secretsmanager:us-east-1:1:secret:ringcx/t/session-0-a",
                              "Name": "ringcx/t/session-0", "SecretString": "{}",
                              "VersionId": TOKEN, "VersionStages": ["AWSCURRENT"],
                              "CreatedDate": 1795428000.0}],
            "Errors": errors
        })
    };
    let entry = |i: usize, code: &str, message: &str| json!({"SecretId": names[i], "ErrorCode": code, "Message": message});
    // Missing slots are answers, not failures.
    stub.answer(
        "BatchGetSecretValue",
        200,
        batch(json!([
            entry(1, "ResourceNotFoundException", "not found"),
            entry(2, "ResourceNotFoundException", "not found")
        ])),
    );
    let got = store.batch_get(&names).await.unwrap();
    assert_eq!(
        got.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, false]
    );
    let cases = [
        ("DecryptionFailure", "can't decrypt", "AccessDenied"),
        ("AccessDeniedException", "not authorized", "AccessDenied"),
        ("ThrottlingException", "Rate exceeded", "Throttled"),
        ("InternalServiceError", "internal", "Transient"),
        (
            "InvalidRequestException",
            "You can't perform this operation on the secret because it was marked for deletion.",
            "ScheduledForDeletion",
        ),
    ];
    for (code, message, want) in cases {
        stub.answer(
            "BatchGetSecretValue",
            200,
            batch(json!([
                entry(1, "ResourceNotFoundException", "nf"),
                entry(2, code, message)
            ])),
        );
        let err = store.batch_get(&names).await.unwrap_err();
        let kind = format!("{err:?}");
        assert!(kind.starts_with(want), "{code}: {kind}");
        if want != "Transient" && want != "Throttled" {
            assert!(
                err.to_string().contains(&names[2]),
                "names the secret: {err}"
            );
        }
    }
    let deleted = format!(
        "{}",
        StoreError::ScheduledForDeletion {
            name: names[2].clone()
        }
    );
    assert!(deleted.contains("restore-secret") && deleted.contains("force-delete"));
}

#[tokio::test]
async fn a_throttled_session_write_is_retried_once_with_the_same_token() {
    let (store, stub) = store_on_stub().await;
    let clock: SharedClock = Arc::new(SystemClock);
    let ring = SessionRing::new(store, SecretNames::new("ringcx/"), 6, clock);
    let state: SessionState =
        serde_json::from_str(r#"{"generation":0,"refreshToken":"rt"}"#).unwrap();
    stub.error(
        "PutSecretValue",
        400,
        "ThrottlingException",
        "Rate exceeded",
    );
    stub.answer(
        "PutSecretValue",
        200,
        json!({"ARN": "arn", "Name": "ringcx/t/session-1", "VersionId": TOKEN,
               "VersionStages": ["AWSCURRENT"]}),
    );
    let out = ring
        .publish(
            "t",
            0,
            &state,
            chrono::Utc::now() + chrono::Duration::seconds(10),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        PublishOutcome::Published {
            generation: 1,
            quota_skips: 0
        }
    );
    assert_eq!(stub.seen("PutSecretValue"), 2);
    // With no time left for another attempt, the throttling is reported, not retried.
    stub.error(
        "PutSecretValue",
        400,
        "ThrottlingException",
        "Rate exceeded",
    );
    let err = ring
        .publish(
            "t",
            1,
            &state,
            chrono::Utc::now() + chrono::Duration::seconds(1),
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(stub.seen("PutSecretValue"), 3);
}

#[tokio::test]
async fn a_slot_scheduled_for_deletion_fails_the_read_with_the_repair() {
    // moto answers this one as Secrets Manager does.
    let store = moto_store().await;
    let prefix = unique_prefix("deleted-slot");
    let names = SecretNames::new(prefix.clone());
    let slot = names.slot("t", 2);
    store
        .create(&slot, &value(r#"{"generation":2}"#), TOKEN)
        .await
        .unwrap();
    // Explicit test credentials: nothing from the machine's own AWS profile goes anywhere.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&config)
        .delete_secret()
        .secret_id(&slot)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    let ring = SessionRing::new(store, names, 6, Arc::new(SystemClock));
    let err = ring.read("t").await.unwrap_err();
    assert_eq!(err, StoreError::ScheduledForDeletion { name: slot });
}
