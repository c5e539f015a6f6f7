//! One store contract, two implementations: moto (through the real AWS SDK) and the in-memory
//! model. Then the AWS rules only the model enforces (moto does not): the version quota,
//! staging labels, value size and batch size.

use std::sync::Arc;

use broker::clock::{Clock as _, ManualClock, SharedClock};
use broker::session::SessionState;
use broker::store::memory::{MAX_VERSIONS, MemoryStore};
use broker::store::{PublishOutcome, SecretNames, SecretStore, SessionRing, StoreError};
use broker_tests::contract;
use broker_tests::support::{moto_store, unique_prefix};
use chrono::Duration;
use secrecy::SecretString;

#[tokio::test]
async fn moto_through_the_aws_sdk_meets_the_contract() {
    contract::run_all(
        &moto_store().await,
        &unique_prefix("contract"),
        contract::system_clock(),
    )
    .await;
}

#[tokio::test]
async fn the_model_meets_the_contract() {
    let clock: SharedClock = Arc::new(ManualClock::starting_now());
    contract::run_all(&MemoryStore::new(clock.clone()), "model/", clock).await;
}

fn token(i: u64) -> String {
    uuid::Uuid::from_u64_pair(0, i).to_string()
}

fn value(i: u64) -> SecretString {
    SecretString::from(format!("value-{i}"))
}

#[tokio::test]
async fn model_enforces_the_version_quota_until_versions_age_past_24_hours() {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new(Arc::new(clock.clone()));
    store.create("s", &value(0), &token(0)).await.unwrap();
    // One write every 3 minutes: the naive single-secret design.
    let mut i = 1;
    let err = loop {
        clock.advance(Duration::minutes(3));
        match store.put("s", &value(i), &token(i)).await {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, StoreError::QuotaExceeded { name: "s".into() });
    assert_eq!(i as usize, MAX_VERSIONS, "the 101st version is refused");
    let elapsed = Duration::minutes(3 * i as i64);
    assert!(
        elapsed < Duration::hours(6),
        "a single secret breaks within hours ({elapsed})"
    );
    // Once the oldest unlabeled versions are older than 24 h, AWS removes them and puts work again.
    clock.advance(Duration::hours(24));
    store.put("s", &value(i), &token(i)).await.unwrap();
    assert_eq!(store.version_count("s"), MAX_VERSIONS);
}

#[tokio::test]
async fn model_moves_awscurrent_and_awsprevious() {
    let clock: SharedClock = Arc::new(ManualClock::starting_now());
    let store = MemoryStore::new(clock);
    store.create("s", &value(1), &token(1)).await.unwrap();
    assert_eq!(store.labels("s"), vec![(token(1), vec!["AWSCURRENT"])]);
    store.put("s", &value(2), &token(2)).await.unwrap();
    store.put("s", &value(3), &token(3)).await.unwrap();
    assert_eq!(
        store.labels("s"),
        vec![
            (token(3), vec!["AWSCURRENT"]),
            (token(2), vec!["AWSPREVIOUS"]),
            (token(1), vec![])
        ]
    );
    // An idempotent retry moves no label.
    store.put("s", &value(2), &token(2)).await.unwrap();
    assert_eq!(store.labels("s")[0], (token(3), vec!["AWSCURRENT"]));
}

#[tokio::test]
async fn model_refuses_oversized_values_and_batches() {
    let clock: SharedClock = Arc::new(ManualClock::starting_now());
    let store = MemoryStore::new(clock);
    let big = SecretString::from("x".repeat(65_537));
    assert!(matches!(
        store.create("s", &big, &token(1)).await,
        Err(StoreError::Invalid { .. })
    ));
    let names: Vec<String> = (0..21).map(|i| format!("n{i}")).collect();
    assert!(matches!(
        store.batch_get(&names).await,
        Err(StoreError::Invalid { .. })
    ));
}

#[tokio::test]
async fn ring_moves_past_a_slot_over_quota_and_every_writer_agrees() {
    let clock = ManualClock::starting_now();
    let shared: SharedClock = Arc::new(clock.clone());
    let store = MemoryStore::new(shared.clone());
    let ring = SessionRing::new(store.clone(), SecretNames::new("q/"), 3, shared);
    // Fill slot 1 to the quota with versions younger than 24 h.
    let slot1 = ring.names().slot("t", 1);
    store.create(&slot1, &value(0), &token(1000)).await.unwrap();
    for i in 1..MAX_VERSIONS as u64 {
        // Within the write quota (50 a second).
        clock.advance(Duration::milliseconds(20));
        store
            .put(&slot1, &value(i), &token(1000 + i))
            .await
            .unwrap();
    }
    let state: SessionState =
        serde_json::from_str(r#"{"generation":0,"refreshToken":"r"}"#).unwrap();
    let deadline = clock.now() + chrono::Duration::seconds(60);
    let first = ring.publish("t", 0, &state, deadline).await.unwrap();
    assert_eq!(
        first,
        PublishOutcome::Published {
            generation: 2,
            quota_skips: 1
        }
    );
    let mut other = state.clone();
    other.refresh_token = Some(SecretString::from("r-other".to_owned()));
    let second = ring.publish("t", 0, &other, deadline).await.unwrap();
    assert_eq!(
        second,
        PublishOutcome::Lost { generation: 2 },
        "the skip is deterministic, so fencing still holds"
    );
    assert_eq!(ring.read("t").await.unwrap().newest.unwrap().generation, 2);
    assert_eq!(store.stats().limit_exceeded, 2);
}

#[tokio::test]
async fn model_enforces_the_request_quotas_per_region_as_aws_documents_them() {
    use broker::store::memory::{Op, RateClass, quota};
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new(Arc::new(clock.clone()));
    let other_instance = store.clone();
    let names: Vec<String> = (0..20).map(|i| format!("q/session-{i}")).collect();
    // BatchGetSecretValue: 100 a second across every client of the region (clones included).
    assert_eq!(quota(RateClass::BatchGet), 100);
    for i in 0..100 {
        let s = if i % 2 == 0 { &store } else { &other_instance };
        s.batch_get(&names).await.unwrap();
    }
    let err = store.batch_get(&names).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Throttled {
            op: "BatchGetSecretValue"
        }
    );
    assert!(err.is_transient() && err.is_throttled());
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
    clock.advance(Duration::milliseconds(999));
    assert!(
        store.batch_get(&names).await.is_err(),
        "still within the second"
    );
    clock.advance(Duration::milliseconds(1));
    store.batch_get(&names).await.unwrap();
    // GetSecretValue has its own, far larger quota, untouched by the batch calls.
    assert_eq!(quota(RateClass::Get), 10_000);
    for _ in 0..10_000 {
        store.get("q/session-0").await.unwrap();
    }
    assert_eq!(
        store.get("q/session-0").await.unwrap_err(),
        StoreError::Throttled {
            op: "GetSecretValue"
        }
    );
    // PutSecretValue (with UpdateSecret and the other writes): 50; CreateSecret: 50 of its own.
    assert_eq!(
        (
            quota(RateClass::Write),
            quota(RateClass::Create),
            quota(RateClass::Tag)
        ),
        (50, 50, 50)
    );
    for i in 0..50u64 {
        store
            .create(&format!("q/c{i}"), &value(i), &token(i))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .create("q/c50", &value(50), &token(50))
            .await
            .unwrap_err(),
        StoreError::Throttled { op: "CreateSecret" }
    );
    for i in 0..50u64 {
        store
            .put(&format!("q/c{i}"), &value(100 + i), &token(100 + i))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .put("q/c0", &value(999), &token(999))
            .await
            .unwrap_err(),
        StoreError::Throttled {
            op: "PutSecretValue"
        }
    );
    assert_eq!(
        store.version_count("q/c0"),
        2,
        "a throttled write changes nothing"
    );
    let stats = store.stats();
    assert_eq!(stats.throttled.get(&Op::BatchGet), Some(&2));
    assert_eq!(stats.throttled.get(&Op::Get), Some(&1));
    assert_eq!(stats.throttled.get(&Op::Put), Some(&1));
    assert_eq!(stats.throttled.get(&Op::Create), Some(&1));
    // A scaled-down region, for tests that spend a quota with a handful of instances.
    let small = MemoryStore::with_scaled_quotas(Arc::new(clock.clone()), 0.05);
    for _ in 0..5 {
        small.batch_get(&names).await.unwrap();
    }
    assert!(small.batch_get(&names).await.unwrap_err().is_throttled());
}
