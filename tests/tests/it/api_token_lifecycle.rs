//! Permanent API tokens' lifecycle under a TRACE capture of every crate: labels and expiry, the
//! merged list, rotation with a grace period, the refresher's sweep, deletion, the registry, and
//! exactly one audit line per action with no token in any log. Alone in its test binary, since
//! the log capture is per thread and the audit callsites must not be first hit elsewhere.

use std::sync::Arc;

use broker::api_tokens::Registries;
use broker::clock::{Clock as _, ManualClock};
use broker::store::SecretNames;
use broker::store::memory::MemoryStore;
use broker_tests::support::{ApiStack, CapturedLogs, raw_http, token_works};
use chrono::Duration;
use serde_json::{Value, json};

const ADMIN_USER: &str = "admin@example.com";

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

#[test]
fn tokens_are_created_listed_rotated_swept_and_deleted_with_their_registry_and_audit() {
    let logs = CapturedLogs::default();
    let tokens = logs.run(async {
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
        assert!(token_works(&s.sim, &ivr_token).await && token_works(&s.sim, &new_token).await);
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
        // Raw, so no client resolves the dot segment away before the broker sees it.
        let auth = format!("Bearer {}", s.key("admin"));
        for target in [
            "/v1/api-tokens/..",
            "/v1/api-tokens/.",
            "/v1/api-tokens/.../rotate",
        ] {
            let method = if target.ends_with("rotate") {
                "POST"
            } else {
                "DELETE"
            };
            let (status, body) =
                raw_http(&s.base, method, target, &[("Authorization", &auth)]).await;
            assert_eq!(status, 400, "{target}: {body}");
        }
        assert_eq!(
            s.sim.api_tokens_of(ADMIN_USER).len(),
            4,
            "nothing revoked by bad input"
        );
        let refresher = s.refresher_for("default,second");
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
        assert!(
            !token_works(&s.sim, &ivr_token).await,
            "the old token is revoked"
        );
        assert!(token_works(&s.sim, &new_token).await && token_works(&s.sim, &plain_token).await);

        // Expiry: 30 days on, the rotated token (same lifetime) is swept; nothing else is.
        s.clock.advance(Duration::days(30));
        let pass = refresher
            .run_pass(s.clock.now() + Duration::seconds(40))
            .await;
        assert_eq!(pass.tenants[0].api_tokens_revoked, 1);
        assert!(!token_works(&s.sim, &new_token).await);
        assert!(token_works(&s.sim, &plain_token).await && token_works(&s.sim, &outside).await);

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
