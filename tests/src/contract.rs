//! The store contract: what the broker relies on from Secrets Manager. Run against the moto
//! server through the real AWS SDK and against the in-memory model, so both mean the same thing.
//! Each check uses its own secret names under `prefix`, so runs never interfere.

use std::sync::Arc;

use broker::clock::SharedClock;
use broker::session::SessionState;
use broker::store::{
    PublishOutcome, SecretNames, SecretStore, SessionRing, StoreError, UnreadableSlot,
};
use secrecy::{ExposeSecret, SecretString};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// The fencing-token shaped id `n` (a UUID, as Secrets Manager requires).
fn token(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Creates `name` with `value` under token `n`; the write must succeed.
async fn create_ok<S: SecretStore>(store: &S, name: &str, value: &str, n: u32) {
    store.create(name, &secret(value), &token(n)).await.unwrap();
}

/// Puts `value` into `name` under token `n`; the write must succeed.
async fn put_ok<S: SecretStore>(store: &S, name: &str, value: &str, n: u32) {
    store.put(name, &secret(value), &token(n)).await.unwrap();
}

fn shown(v: &Option<SecretString>) -> Option<&str> {
    v.as_ref().map(|s| s.expose_secret())
}

/// Runs every contract check; panics with the failing check's name.
pub async fn run_all<S: SecretStore + Clone>(store: &S, prefix: &str, clock: SharedClock) {
    missing_secrets_read_as_none(store, prefix).await;
    create_then_put_moves_current(store, prefix).await;
    same_token_same_value_is_a_no_op(store, prefix).await;
    same_token_other_value_is_a_conflict(store, prefix).await;
    create_on_an_existing_name_fails(store, prefix).await;
    ring_publishes_reads_and_fences(store.clone(), prefix, clock.clone()).await;
    ring_retry_after_an_ambiguous_create_is_idempotent(store.clone(), prefix, clock.clone()).await;
    ring_reads_every_slot_whatever_k_is(store.clone(), prefix, clock).await;
}

async fn missing_secrets_read_as_none<S: SecretStore>(store: &S, prefix: &str) {
    let a = format!("{prefix}missing/a");
    let b = format!("{prefix}missing/b");
    assert_eq!(
        store.get(&a).await.unwrap().map(|_| ()),
        None,
        "get of a missing secret"
    );
    create_ok(store, &b, "B", 1).await;
    let got = store
        .batch_get(&[a.clone(), b.clone(), format!("{prefix}missing/c")])
        .await
        .unwrap();
    assert_eq!(got.len(), 3, "one answer per name, in order");
    assert!(got[0].is_none() && got[2].is_none());
    assert_eq!(shown(&got[1]), Some("B"));
    let err = store
        .put(&a, &secret("x"), "00000000-0000-4000-8000-000000000002")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound { name: a },
        "put on a missing secret"
    );
}

async fn create_then_put_moves_current<S: SecretStore>(store: &S, prefix: &str) {
    let name = format!("{prefix}moves/s");
    create_ok(store, &name, "v1", 11).await;
    put_ok(store, &name, "v2", 12).await;
    assert_eq!(
        shown(&store.get(&name).await.unwrap()),
        Some("v2"),
        "the put value is current"
    );
    put_ok(store, &name, "v3", 13).await;
    let got = store.batch_get(std::slice::from_ref(&name)).await.unwrap();
    assert_eq!(shown(&got[0]), Some("v3"), "batch reads see the newest put");
}

async fn same_token_same_value_is_a_no_op<S: SecretStore>(store: &S, prefix: &str) {
    let name = format!("{prefix}noop/s");
    create_ok(store, &name, "v1", 21).await;
    put_ok(store, &name, "v2", 22).await;
    put_ok(store, &name, "v3", 23).await;
    // Retrying v2's write (same token, same value) changes nothing: v3 stays current.
    put_ok(store, &name, "v2", 22).await;
    assert_eq!(
        shown(&store.get(&name).await.unwrap()),
        Some("v3"),
        "an idempotent retry is a no-op"
    );
    // The same holds for the creating version.
    put_ok(store, &name, "v1", 21).await;
    assert_eq!(shown(&store.get(&name).await.unwrap()), Some("v3"));
}

async fn same_token_other_value_is_a_conflict<S: SecretStore>(store: &S, prefix: &str) {
    let name = format!("{prefix}conflict/s");
    create_ok(store, &name, "v1", 31).await;
    store
        .put(
            &name,
            &secret("mine"),
            "00000000-0000-4000-8000-000000000032",
        )
        .await
        .unwrap();
    let err = store
        .put(
            &name,
            &secret("theirs"),
            "00000000-0000-4000-8000-000000000032",
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::VersionConflict { name: name.clone() },
        "a second value under one token"
    );
    assert_eq!(
        shown(&store.get(&name).await.unwrap()),
        Some("mine"),
        "the loser changed nothing"
    );
}

async fn create_on_an_existing_name_fails<S: SecretStore>(store: &S, prefix: &str) {
    let name = format!("{prefix}exists/s");
    create_ok(store, &name, "v1", 41).await;
    let err = store
        .create(&name, &secret("v2"), "00000000-0000-4000-8000-000000000042")
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::AlreadyExists { name: name.clone() });
    assert_eq!(shown(&store.get(&name).await.unwrap()), Some("v1"));
}

fn state(access: &str, refresh: &str) -> SessionState {
    serde_json::from_value(serde_json::json!({
        "generation": 0, "accessToken": access, "refreshToken": refresh,
        "accessTokenExpiresAt": "2030-01-01T00:00:00Z", "obtainedBy": "refresh"
    }))
    .expect("a valid session document")
}

async fn ring_publishes_reads_and_fences<S: SecretStore>(
    store: S,
    prefix: &str,
    clock: SharedClock,
) {
    let ring = SessionRing::new(store, SecretNames::new(format!("{prefix}ring/")), 3, clock);
    let tenant = "t1";
    assert!(
        ring.read(tenant).await.unwrap().newest.is_none(),
        "an empty ring"
    );
    for g in 0..7u64 {
        let out = ring
            .publish(
                tenant,
                g,
                &state(&format!("at{}", g + 1), &format!("rt{}", g + 1)),
                soon(),
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            PublishOutcome::Published {
                generation: g + 1,
                quota_skips: 0
            }
        );
        let view = ring.read(tenant).await.unwrap();
        let newest = view.newest.expect("a newest state");
        assert_eq!(
            newest.generation,
            g + 1,
            "the newest generation wins across slots"
        );
        assert_eq!(
            newest.refresh_token.unwrap().expose_secret(),
            format!("rt{}", g + 1)
        );
        assert_eq!(
            view.present,
            (g as u32 + 1).min(3),
            "generation g lives in slot g mod 3"
        );
    }
    // A second writer deriving generation 8 from 7 loses to the first.
    let first = ring
        .publish(tenant, 7, &state("at8-a", "rt8-a"), soon())
        .await
        .unwrap();
    assert_eq!(
        first,
        PublishOutcome::Published {
            generation: 8,
            quota_skips: 0
        }
    );
    let second = ring
        .publish(tenant, 7, &state("at8-b", "rt8-b"), soon())
        .await
        .unwrap();
    assert_eq!(
        second,
        PublishOutcome::Lost { generation: 8 },
        "exactly one writer per generation"
    );
    // A stale writer from generation 2 cannot overwrite newer slots: generation 3's token exists.
    let stale = ring
        .publish(tenant, 2, &state("old", "old"), soon())
        .await
        .unwrap();
    assert_eq!(stale, PublishOutcome::Lost { generation: 3 });
    let newest = ring.read(tenant).await.unwrap().newest.unwrap();
    assert_eq!(newest.generation, 8);
    assert_eq!(newest.access_token.unwrap().expose_secret(), "at8-a");
    // A slot that holds something else is skipped, not fatal.
    let junk = ring.names().slot(tenant, 0);
    ring.store()
        .put(
            &junk,
            &secret("not json"),
            "00000000-0000-4000-8000-000000000051",
        )
        .await
        .unwrap();
    // Slot 0 is where generation 9 would go: it could hold it, so the next write goes past 9.
    let view = ring.read(tenant).await.unwrap();
    assert_eq!(
        view.unreadable,
        vec![UnreadableSlot {
            slot: 0,
            name: junk.clone(),
            generation: None
        }]
    );
    assert_eq!(view.newest.as_ref().unwrap().generation, 8);
    assert_eq!(view.highest_possible, 9);
    let past = ring
        .publish(
            tenant,
            view.highest_possible,
            &state("at10", "rt10"),
            soon(),
        )
        .await
        .unwrap();
    assert!(
        matches!(past, PublishOutcome::Published { generation: 10, .. }),
        "{past:?}"
    );
    // Once a newer generation is readable, the junk (older, elsewhere) costs nothing.
    let view = ring.read(tenant).await.unwrap();
    assert_eq!(view.highest_possible, 10);
    // A slot whose JSON still names its generation counts as that generation.
    ring.store()
        .put(
            &junk,
            &secret(r#"{"generation": 12, "accessToken": 5}"#),
            "00000000-0000-4000-8000-000000000052",
        )
        .await
        .unwrap();
    let view = ring.read(tenant).await.unwrap();
    assert_eq!(view.newest.unwrap().generation, 10);
    assert_eq!(view.highest_possible, 12);
}

async fn ring_reads_every_slot_whatever_k_is<S: SecretStore + Clone>(
    store: S,
    prefix: &str,
    clock: SharedClock,
) {
    let names = SecretNames::new(format!("{prefix}resize/"));
    let wide = SessionRing::new(store.clone(), names.clone(), 6, clock.clone());
    for g in 0..5u64 {
        wide.publish("t", g, &state(&format!("at{}", g + 1), "rt"), soon())
            .await
            .unwrap();
    }
    // Generation 5 sits in slot 5, which a ring of 3 never writes: it is still found.
    let narrow = SessionRing::new(store.clone(), names.clone(), 3, clock.clone());
    assert_eq!(
        narrow.read("t").await.unwrap().newest.unwrap().generation,
        5
    );
    let out = narrow
        .publish("t", 5, &state("at6", "rt"), soon())
        .await
        .unwrap();
    assert!(matches!(
        out,
        PublishOutcome::Published { generation: 6, .. }
    ));
    assert!(store.get(&names.slot("t", 0)).await.unwrap().is_some());
    // And back to 20: generation 6 (slot 0) is the newest.
    let widest = SessionRing::new(store, names, 20, clock);
    assert_eq!(
        widest.read("t").await.unwrap().newest.unwrap().generation,
        6
    );
}

/// A deadline far enough away for any contract write.
fn soon() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::seconds(60)
}

async fn ring_retry_after_an_ambiguous_create_is_idempotent<S: SecretStore>(
    store: S,
    prefix: &str,
    clock: SharedClock,
) {
    let ring = SessionRing::new(store, SecretNames::new(format!("{prefix}retry/")), 2, clock);
    let s = state("a", "r");
    ring.publish("t", 0, &s, soon()).await.unwrap();
    // The same publish again (a retry after a lost answer) is a no-op, not a conflict.
    let again = ring.publish("t", 0, &s, soon()).await.unwrap();
    assert_eq!(
        again,
        PublishOutcome::Published {
            generation: 1,
            quota_skips: 0
        }
    );
}

/// A shared clock for contract runs.
pub fn system_clock() -> SharedClock {
    Arc::new(broker::clock::SystemClock)
}
