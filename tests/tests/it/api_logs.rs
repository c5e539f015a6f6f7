//! A full run of the HTTP function under a TRACE subscriber for every crate: no caller key,
//! access or refresh token, permanent token or credential appears in what it logged.

use std::sync::Arc;

use broker::clock::ManualClock;
use broker::store::memory::MemoryStore;
use broker::store::{SecretNames, SecretStore};
use broker_tests::sim::{CLIENT_SECRET, Fault};
use broker_tests::support::{ApiStack, CapturedLogs, json_of};
use chrono::Duration;
use secrecy::ExposeSecret;
use serde_json::Value;

#[test]
fn a_full_run_logs_no_secret() {
    let logs = CapturedLogs::default();
    let secrets = logs.run(async {
        let store = MemoryStore::new(Arc::new(ManualClock::starting_now()));
        let s = ApiStack::start(store.clone(), "ringcx/", &[("ALLOW_QUERY_KEY", "true")]).await;
        let jwt_secret = "jwt-shared-secret-that-must-never-be-logged-0001";
        s.add_callers(
            &[serde_json::json!({"id": "ringcx-jwt", "tenant": "default",
            "scopes": ["engage:proxy"], "jwt": {"algorithm": "HS256", "secret": jwt_secret}})],
        )
        .await;
        let http = reqwest::Client::new();
        let mut secrets: Vec<String> = s.keys.values().cloned().collect();
        secrets.push(jwt_secret.to_owned());
        let now = broker::clock::Clock::now(&s.clock).timestamp();
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"iss": "ringcx-jwt", "exp": now + 60}),
            &jsonwebtoken::EncodingKey::from_secret(jwt_secret.as_bytes()),
        )
        .unwrap();
        secrets.push(jwt.clone());
        let accepted = http
            .get(s.url(&format!("/v1/engage/v1/admin/accounts?jwt={jwt}")))
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 200, "the JWT in the query works");
        let bad_jwt = format!("{jwt}x");
        http.get(s.url("/v1/engage/v1/admin/accounts"))
            .bearer_auth(&bad_jwt)
            .send()
            .await
            .unwrap();
        http.post(s.url(&format!(
            "/v1/oauth/token?grant_type=client_credentials&client_id=reader&client_secret={}",
            s.key("reader")
        )))
        .send()
        .await
        .unwrap();
        secrets.push(CLIENT_SECRET.to_owned());
        for u in s.sim.users() {
            secrets.push(u.password.clone());
            secrets.push(u.jwt_credential.clone());
        }
        let get = |path: &str, key: &str| http.get(s.url(path)).bearer_auth(key).send();
        get("/v1/token", s.key("reader")).await.unwrap();
        http.post(s.url("/v1/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "reader"),
                ("client_secret", s.key("reader")),
            ])
            .send()
            .await
            .unwrap();
        http.post(s.url("/v1/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "reader"),
                ("client_secret", "rcxb_wrong-secret-value"),
            ])
            .send()
            .await
            .unwrap();
        get(
            &format!("/v1/engage/v1/admin/accounts?api_key={}", s.key("proxy")),
            "",
        )
        .await
        .unwrap();
        get("/v1/engage/v1/admin/accounts", s.key("proxy"))
            .await
            .unwrap();
        get("/v1/engage/%2e%2e/api/auth", s.key("proxy"))
            .await
            .unwrap();
        let created: Value = json_of(
            http.post(s.url("/v1/api-tokens"))
                .bearer_auth(s.key("admin")),
        )
        .await;
        let api_token = created["token"].as_str().unwrap().to_owned();
        secrets.push(api_token.clone());
        get("/v1/api-tokens?reveal=true", s.key("admin"))
            .await
            .unwrap();
        http.delete(s.url(&format!("/v1/api-tokens/{api_token}")))
            .bearer_auth(s.key("admin"))
            .send()
            .await
            .unwrap();
        http.delete(s.url(&format!("/v1/api-tokens/{api_token}")))
            .bearer_auth(s.key("admin"))
            .send()
            .await
            .unwrap();
        // RingCX's clock runs ahead of a 40 s old token: a forced renewal.
        s.clock.advance(Duration::seconds(40));
        s.sim.advance(Duration::seconds(301));
        get("/v1/engage/v1/admin/accounts", s.key("proxy"))
            .await
            .unwrap();
        s.sim.fail_next("/voice/api/", Fault::Drop, 1);
        get("/v1/engage/v1/admin/accounts", s.key("proxy"))
            .await
            .unwrap();
        get("/v1/engage/v1/admin/accounts", "rcxb_not-a-real-key-at-all")
            .await
            .unwrap();
        // Every session the ring ever held.
        let names = SecretNames::new("ringcx/");
        for i in 0..6 {
            if let Ok(Some(v)) = store.get(&names.slot("default", i)).await {
                let doc: Value = serde_json::from_str(v.expose_secret()).unwrap();
                for field in ["accessToken", "refreshToken"] {
                    if let Some(t) = doc[field].as_str() {
                        secrets.push(t.to_owned());
                    }
                }
            }
        }
        secrets
    });
    let text = logs.text();
    assert!(
        text.contains("RingCX refused the access token"),
        "the run logged its work"
    );
    assert!(
        text.contains("hyper"),
        "transport TRACE output is captured too"
    );
    assert!(secrets.len() >= 15, "{}", secrets.len());
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret reached the logs");
    }
}

#[test]
fn wrong_hook_entries_are_logged_by_name_the_rest_serve_and_no_hook_secret_is_logged() {
    let logs = CapturedLogs::default();
    let (secrets, signatures) = logs.run(async {
        let mut broken = broker_tests::hooks::lead_hook("broken-hook");
        broken["request"]["path"] = serde_json::json!("v1/admin/token");
        let h = broker_tests::hooks::hooks_stack(
            "hooks-logs",
            &[],
            serde_json::json!([broker_tests::hooks::lead_hook("crm-new-lead"), broken]),
        )
        .await;
        let base = h.s.base.clone();
        let request = h
            .signed(&base, "crm-new-lead", "msg_l", &broker_tests::hooks::lead())
            .build()
            .unwrap();
        let signature = request.headers()["webhook-signature"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(h.http.execute(request).await.unwrap().status(), 200);
        let (status, _, _) = broker_tests::hooks::answer(h.signed(
            &base,
            "broken-hook",
            "msg_l",
            &broker_tests::hooks::lead(),
        ))
        .await;
        assert_eq!(status, 404, "a refused entry does not serve");
        // A 422 and a 401 too: their messages and the audit lines they cause.
        let mut partial = broker_tests::hooks::lead();
        partial.as_object_mut().unwrap().remove("phone");
        let (status, _, _) =
            broker_tests::hooks::answer(h.signed(&base, "crm-new-lead", "msg_p", &partial)).await;
        assert_eq!(status, 422);
        let (status, _, _) = broker_tests::hooks::answer(
            h.signed(&base, "crm-new-lead", "msg_s", &broker_tests::hooks::lead())
                .body("{\"tampered\": true}"),
        )
        .await;
        assert_eq!(status, 401);
        // The RingCX access token the delivery used.
        let deadline = broker::clock::Clock::now(&h.s.clock) + chrono::Duration::seconds(10);
        let token = h.s.app.tokens.get("default", deadline).await.unwrap();
        (
            vec![
                broker_tests::hooks::SECRET.to_owned(),
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
                token.token.expose_secret().to_owned(),
            ],
            vec![signature],
        )
    });
    let text = logs.text();
    assert!(
        text.contains("refusing a hooks entry")
            && text.contains("broken-hook")
            && text.contains("permanent API tokens"),
        "{text}"
    );
    assert!(
        text.contains("hook=crm-new-lead"),
        "the audit line names the hook: {text}"
    );
    for s in secrets.iter().chain(&signatures) {
        assert!(
            !text.contains(s.as_str()),
            "a secret or signature reached the logs"
        );
    }
    assert!(
        !text.contains("msg_l"),
        "the idempotency key is logged hashed only"
    );
}
