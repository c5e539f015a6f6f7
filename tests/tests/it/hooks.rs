//! `POST /v1/hooks/{name}` end to end in process: Secrets Manager and DynamoDB are moto's through
//! the real SDK, RingCX is the simulator with its strict direct lead loader, and every instance
//! shares the simulated clock.

use aws_sdk_dynamodb::types::AttributeValue;
use broker::clock::Clock as _;
use broker::hooks::idempotency::IdempotencyStore;
use broker::store::{SecretNames, upsert};
use broker_tests::sim::Fault;
use broker_tests::support::{ApiStack, moto_store, unique_prefix};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use broker_tests::hooks::{
    GITHUB_SECRET, SECRET, STRIPE_SECRET, answer, hooks_stack, lead, lead_hook, standard_webhook,
};

#[tokio::test]
async fn a_crm_lead_reaches_the_lead_loader_once_and_repeats_replay() {
    let h = hooks_stack("hooks-once", &[], json!([lead_hook("crm-new-lead")])).await;
    let base = h.s.base.clone();
    let (status, headers, body) = answer(h.signed(&base, "crm-new-lead", "msg_1", &lead())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["leadsAccepted"], 1);
    assert!(headers.get("idempotent-replayed").is_none());
    let loads = h.s.sim.lead_loads();
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].account_id, "333333");
    assert_eq!(loads[0].campaign_id, 42);
    let sent = &loads[0].request["uploadLeads"][0];
    assert_eq!(sent["leadPhone"], "5550100");
    assert_eq!(
        sent["leadPriority"], 3,
        "one expression keeps its JSON type"
    );
    assert_eq!(loads[0].request["duplicateHandling"], "REMOVE_FROM_LIST");
    assert_eq!(h.idempotency_calls(), 2, "a new event: claim and record");

    // The sender retries (its own timeout fired): the first answer again, RingCX not called.
    h.s.clock.advance(chrono::Duration::seconds(30));
    let (status, headers, again) = answer(h.signed(&base, "crm-new-lead", "msg_1", &lead())).await;
    assert_eq!((status, &again), (StatusCode::OK, &body));
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(h.loads(), 1);
    assert_eq!(h.idempotency_calls(), 3, "a replay: one call");

    // Another event is another lead.
    let (status, _, _) = answer(h.signed(&base, "crm-new-lead", "msg_2", &lead())).await;
    assert_eq!(status, 200);
    assert_eq!(h.loads(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_copies_on_two_instances_make_one_ringcx_call() {
    let h = hooks_stack("hooks-race", &[], json!([lead_hook("crm-new-lead")])).await;
    let (second, _server) = h.s.another_instance().await;
    // RingCX takes a moment, so the copies overlap the first delivery.
    h.s.sim.set_faults(broker_tests::sim::Faults {
        latency_ms: 150,
        scope: broker_tests::sim::FaultScope::Voice,
        ..Default::default()
    });
    let copies: Vec<_> = (0..20)
        .map(|i| {
            let base = if i % 2 == 0 {
                h.s.base.clone()
            } else {
                second.clone()
            };
            let request = h.signed(&base, "crm-new-lead", "msg_race", &lead());
            tokio::spawn(async move { answer(request).await })
        })
        .collect();
    let mut delivered = 0;
    let mut replayed = 0;
    let mut in_progress = 0;
    for c in copies {
        let (status, headers, body) = c.await.unwrap();
        match status.as_u16() {
            200 if headers.get("idempotent-replayed").is_some() => replayed += 1,
            200 => delivered += 1,
            409 => {
                assert_eq!(body["error"]["code"], "hook_in_progress");
                assert!(headers.contains_key("retry-after"));
                in_progress += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        delivered, 1,
        "replayed {replayed}, in progress {in_progress}"
    );
    assert_eq!(delivered + replayed + in_progress, 20);
    assert_eq!(h.loads(), 1, "exactly one RingCX call");
    h.s.sim.clear_faults();
    let (status, headers, _) = answer(h.signed(&second, "crm-new-lead", "msg_race", &lead())).await;
    assert_eq!(
        (status.as_u16(), headers.contains_key("idempotent-replayed")),
        (200, true)
    );
}

#[tokio::test]
async fn a_crashed_invocations_claim_does_not_wedge_its_key() {
    let h = hooks_stack("hooks-crash", &[], json!([lead_hook("crm-new-lead")])).await;
    // What an invocation that died mid-delivery leaves: an in-progress record, lease 20 s.
    let now = h.s.clock.now();
    h.dynamodb
        .put_item()
        .table_name(&h.table)
        .item(
            "id",
            AttributeValue::S(IdempotencyStore::record_id(
                "crm-new-lead",
                "default",
                "msg_c",
            )),
        )
        .item("status", AttributeValue::S("IN_PROGRESS".into()))
        .item("claim", AttributeValue::S("crashed".into()))
        .item(
            "leaseUntil",
            AttributeValue::N((now.timestamp_millis() + 20_000).to_string()),
        )
        .item(
            "expiresAt",
            AttributeValue::N((now.timestamp() + 86_400).to_string()),
        )
        .send()
        .await
        .unwrap();
    let base = h.s.base.clone();
    let (status, headers, body) = answer(h.signed(&base, "crm-new-lead", "msg_c", &lead())).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "hook_in_progress");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((19..=20).contains(&wait), "{wait}");
    assert_eq!(h.loads(), 0);
    h.s.clock.advance(chrono::Duration::seconds(21));
    let (status, _, body) = answer(h.signed(&base, "crm-new-lead", "msg_c", &lead())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.loads(), 1, "the next copy after the lease delivers");
}

#[tokio::test]
async fn ringcx_down_then_healthy_delivers_once() {
    let h = hooks_stack("hooks-503", &[], json!([lead_hook("crm-new-lead")])).await;
    let base = h.s.base.clone();
    let loader = "/voice/api/v1/admin/accounts/333333/campaigns/42/leadLoader";
    h.s.sim
        .fail_next(loader, Fault::ServerError { status: 503 }, 1);
    let (status, headers, body) = answer(h.signed(&base, "crm-new-lead", "msg_d", &lead())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "hook_delivery_failed");
    assert!(headers.contains_key("retry-after"));
    h.s.sim
        .fail_next(loader, Fault::RateLimited { retry_after: 7 }, 1);
    let (status, headers, _) = answer(h.signed(&base, "crm-new-lead", "msg_d", &lead())).await;
    assert_eq!(status, 503);
    assert_eq!(
        headers["retry-after"], "7",
        "RingCX's Retry-After is the sender's"
    );
    assert_eq!(h.loads(), 0);
    // RingCX is back: the sender's retry delivers, once.
    let (status, _, _) = answer(h.signed(&base, "crm-new-lead", "msg_d", &lead())).await;
    assert_eq!(status, 200);
    let (status, headers, _) = answer(h.signed(&base, "crm-new-lead", "msg_d", &lead())).await;
    assert_eq!(
        (status.as_u16(), headers.contains_key("idempotent-replayed")),
        (200, true)
    );
    assert_eq!(h.loads(), 1);
    // No usable token: the same answer, nothing recorded.
    h.s.sim.fail_next(loader, Fault::Drop, 1);
    let (status, _, body) = answer(h.signed(&base, "crm-new-lead", "msg_e", &lead())).await;
    assert_eq!(status, 503, "{body}");
    let (status, _, _) = answer(h.signed(&base, "crm-new-lead", "msg_e", &lead())).await;
    assert_eq!(status, 200);
    assert_eq!(h.loads(), 2);
}

#[tokio::test]
async fn a_repeat_after_the_idempotency_window_is_delivered_again() {
    let h = hooks_stack(
        "hooks-window",
        &[("HOOK_IDEMPOTENCY_HOURS", "1")],
        json!([lead_hook("crm-new-lead")]),
    )
    .await;
    let base = h.s.base.clone();
    assert_eq!(
        answer(h.signed(&base, "crm-new-lead", "msg_w", &lead()))
            .await
            .0,
        200
    );
    h.s.clock.advance(chrono::Duration::minutes(59));
    h.s.refresh_now("default").await.unwrap();
    let (status, headers, _) = answer(h.signed(&base, "crm-new-lead", "msg_w", &lead())).await;
    assert_eq!(
        (status.as_u16(), headers.contains_key("idempotent-replayed")),
        (200, true)
    );
    h.s.clock.advance(chrono::Duration::minutes(2));
    h.s.refresh_now("default").await.unwrap();
    let (status, headers, _) = answer(h.signed(&base, "crm-new-lead", "msg_w", &lead())).await;
    assert_eq!(
        (status.as_u16(), headers.contains_key("idempotent-replayed")),
        (200, false)
    );
    assert_eq!(
        h.loads(),
        2,
        "past HOOK_IDEMPOTENCY_HOURS a repeat is a new event"
    );
}

#[tokio::test]
async fn refusals_send_nothing_and_say_why() {
    let h = hooks_stack("hooks-refuse", &[], json!([lead_hook("crm-new-lead")])).await;
    let base = h.s.base.clone();
    let url = format!("{base}/v1/hooks/crm-new-lead");
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_owned();
    // Unsigned, wrongly signed, replayed from long ago.
    let (status, _, body) = answer(h.http.post(&url).json(&lead())).await;
    assert_eq!(
        (status.as_u16(), code(&body).as_str()),
        (401, "invalid_signature")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("webhook-id")
    );
    // A signature made with another key (reqwest's `.header` appends, so build it whole).
    let ts = h.s.clock.now().timestamp();
    let other_key = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let raw = lead().to_string();
    let forged = standard_webhook(&h.http, &url, other_key, "msg_f", "msg_f", ts, &raw);
    let (status, _, body) = answer(forged).await;
    assert_eq!(
        (status.as_u16(), code(&body).as_str()),
        (401, "invalid_signature")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no signature matches")
    );
    // Its id signed under another: the signature covers the id.
    let resigned = standard_webhook(&h.http, &url, SECRET, "msg_other", "msg_f", ts, &raw);
    assert_eq!(answer(resigned).await.0, 401);
    let tampered = h
        .signed(&base, "crm-new-lead", "msg_f", &lead())
        .body(json!({"id": "crm-1", "campaign": 43}).to_string());
    assert_eq!(answer(tampered).await.0, 401);
    let old = h.signed(&base, "crm-new-lead", "msg_f", &lead());
    h.s.clock.advance(chrono::Duration::seconds(301));
    assert_eq!(answer(old).await.0, 401, "outside the tolerance");
    h.s.refresh_now("default").await.unwrap();
    // No such hook.
    let (status, _, body) = answer(h.signed(&base, "nope", "msg_f", &lead())).await;
    assert_eq!(
        (status.as_u16(), code(&body).as_str()),
        (404, "hook_not_found")
    );
    // A payload the templates cannot fill: 422 naming the field, and the key stays free.
    let mut partial = lead();
    partial.as_object_mut().unwrap().remove("phone");
    let (status, _, body) = answer(h.signed(&base, "crm-new-lead", "msg_g", &partial)).await;
    assert_eq!(
        (status.as_u16(), code(&body).as_str()),
        (422, "hook_payload_invalid"),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("uploadLeads[0].leadPhone") && message.contains("payload.phone"),
        "{message}"
    );
    let (status, _, _) = answer(h.signed(&base, "crm-new-lead", "msg_g", &lead())).await;
    assert_eq!(
        status, 200,
        "a fixed payload under the same id still delivers"
    );
    // A path value cannot reach a credential area or add a segment.
    let mut evil = lead();
    evil["campaign"] = json!("1/../../../token");
    let (status, _, body) = answer(h.signed(&base, "crm-new-lead", "msg_h", &evil)).await;
    assert_eq!(
        (status.as_u16(), code(&body).as_str()),
        (422, "hook_payload_invalid"),
        "{body}"
    );
    // Malformed, oversized, or of a type no sender means.
    let ts = h.s.clock.now().timestamp();
    let raw = "{not json";
    let bad = standard_webhook(&h.http, &url, SECRET, "msg_i", "msg_i", ts, raw);
    let (status, _, body) = answer(bad).await;
    assert_eq!(
        (status.as_u16(), code(&body).as_str()),
        (400, "invalid_body")
    );
    let big = h
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b' '; 300 * 1024]);
    assert_eq!(answer(big).await.0, 413);
    // RingCX's own refusal (an enum value the lead loader does not know) is its answer: relayed,
    // recorded, replayed; the sender's retry cannot help.
    let mut odd = lead();
    odd["dupes"] = json!("KEEP_ALL");
    let (status, _, body) = answer(h.signed(&base, "crm-new-lead", "msg_j", &odd)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["generalMessage"]
            .as_str()
            .unwrap()
            .contains("duplicateHandling")
    );
    let (status, headers, _) = answer(h.signed(&base, "crm-new-lead", "msg_j", &odd)).await;
    assert_eq!(
        (status.as_u16(), headers.contains_key("idempotent-replayed")),
        (400, true)
    );
    assert_eq!(h.loads(), 1, "only the good payload loaded a lead");
}

#[tokio::test]
async fn github_stripe_and_caller_senders() {
    let hooks = json!([
        {"name": "github-push", "tenant": "default",
         "verify": {"scheme": "hmac-sha256", "secrets": [GITHUB_SECRET], "header": "X-Hub-Signature-256", "prefix": "sha256="},
         "request": {"method": "POST", "path": "v1/sim/echo/{{ payload.repository.name }}", "query": {"ref": "{{ payload.ref }}"},
                     "body": {"pusher": "{{ payload.pusher.name }}"}}},
        {"name": "form-lead", "tenant": "default",
         "verify": {"scheme": "hmac-sha256", "secrets": [GITHUB_SECRET], "header": "X-Signature", "encoding": "base64"},
         "request": {"method": "POST", "path": "v1/sim/echo/form", "body": {"phone": "{{ payload.phone }}", "tags": "{{ payload.tag }}"}}},
        {"name": "stripe-paid", "tenant": "default",
         "verify": {"scheme": "stripe", "secrets": [STRIPE_SECRET]},
         "request": {"method": "POST", "path": "v1/sim/echo/paid", "body": {"amount": "{{ payload.data.object.amount }}"}}},
        {"name": "ringcx-call-ended", "tenant": "default",
         "verify": {"scheme": "caller"},
         "request": {"method": "POST", "path": "v1/sim/echo/ended", "body": {"ani": "{{ payload.ani }}", "q": "{{ query }}"}}}
    ]);
    let h = hooks_stack("hooks-senders", &[], hooks).await;
    let base = h.s.base.clone();
    let hmac_hex = |secret: &str, data: &[u8]| -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        aws_lc_rs::hmac::sign(&key, data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    // GitHub: the signature over the exact bytes, the delivery id as the key.
    let push = r#"{"ref":"refs/heads/main","repository":{"name":"crm"},"pusher":{"name":"ada"}}"#;
    let github = |delivery: &str| {
        h.http
            .post(format!("{base}/v1/hooks/github-push"))
            .header("content-type", "application/json")
            .header("x-github-delivery", delivery)
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(GITHUB_SECRET, push.as_bytes())),
            )
            .body(push)
    };
    let (status, _, body) = answer(github("d-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/voice/api/v1/sim/echo/crm");
    assert_eq!(body["query"], "ref=refs%2Fheads%2Fmain");
    assert_eq!(body["body"], r#"{"pusher":"ada"}"#);
    assert_eq!(answer(github("d-1")).await.1["idempotent-replayed"], "true");
    // The delivery header is not signed: a captured request under a new one is still a repeat
    // (the default key is the signed body's hash).
    assert_eq!(
        answer(github("d-replayed")).await.1["idempotent-replayed"],
        "true"
    );
    assert_eq!(
        h.s.sim
            .requests()
            .iter()
            .filter(|r| r.path == "/voice/api/v1/sim/echo/crm")
            .count(),
        1
    );
    // A form body fills payload; a field sent twice is a list.
    let form = "phone=5550100&tag=a&tag=b";
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, GITHUB_SECRET.as_bytes());
    use base64::Engine as _;
    let sig = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::hmac::sign(&key, form.as_bytes()).as_ref());
    let (status, _, body) = answer(
        h.http
            .post(format!("{base}/v1/hooks/form-lead"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-signature", sig)
            .body(form),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], r#"{"phone":"5550100","tags":["a","b"]}"#);
    // Stripe: t and v1, the event's id as the key.
    let event = r#"{"id":"evt_1","type":"charge.succeeded","data":{"object":{"amount":4200}}}"#;
    let t = h.s.clock.now().timestamp();
    let v1 = hmac_hex(STRIPE_SECRET, format!("{t}.{event}").as_bytes());
    let stripe = || {
        h.http
            .post(format!("{base}/v1/hooks/stripe-paid"))
            .header("content-type", "application/json")
            .header("stripe-signature", format!("t={t},v1={v1}"))
            .body(event)
    };
    let (status, _, body) = answer(stripe()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], r#"{"amount":4200}"#);
    assert_eq!(answer(stripe()).await.1["idempotent-replayed"], "true");
    // RingCX's own Remote HTTP Service: a caller key with hooks:invoke, Basic as RingCX sends it.
    use api::auth::Scope;
    let invoker =
        h.s.add_key("ringcx-events", "default", &[Scope::HooksInvoke], None)
            .await;
    let proxy_only = h.s.key("proxy").to_owned();
    // A key added a moment ago works once the instance may read the callers again (MISS_RELOAD).
    h.s.clock.advance(chrono::Duration::seconds(6));
    let other_tenant =
        h.s.add_key("other-invoker", "second", &[Scope::HooksInvoke], None)
            .await;
    let ended = |user: &str, key: &str| {
        h.http
            .post(format!(
                "{base}/v1/hooks/ringcx-call-ended?uii=123&api_key={key}"
            ))
            .basic_auth(user, Some(key))
            .json(&json!({"ani": "5550100"}))
    };
    let (status, _, body) = answer(ended("ringcx-events", &invoker)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["body"], r#"{"ani":"5550100","q":{"uii":"123"}}"#,
        "no credential reaches a template"
    );
    let (status, _, body) = answer(ended("proxy", &proxy_only)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, _, body) = answer(ended("other-invoker", &other_tenant)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (403, Some("wrong_tenant"))
    );
    let (status, _, _) = answer(
        h.http
            .post(format!("{base}/v1/hooks/ringcx-call-ended"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 401);
    // A signature is not a caller key, nor a caller key a signature.
    let (status, _, body) = answer(
        h.http
            .post(format!("{base}/v1/hooks/github-push"))
            .header("content-type", "application/json")
            .basic_auth("ringcx-events", Some(&invoker))
            .body(push),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (401, Some("invalid_signature"))
    );
    let (status, _, body) = answer(
        h.http
            .post(format!("{base}/v1/hooks/ringcx-call-ended"))
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(GITHUB_SECRET, b"{}")),
            )
            .body("{}"),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (401, Some("missing_credentials"))
    );
}

#[tokio::test]
async fn operator_hook_commands_add_list_test_and_remove() {
    let h = hooks_stack("hooks-operator", &[], json!([])).await;
    let dir = std::env::temp_dir().join(unique_prefix("hook-cli").trim_end_matches('/'));
    std::fs::create_dir_all(&dir).unwrap();
    let mut entry = lead_hook("crm-new-lead");
    entry["verify"]["secrets"] = json!([]);
    let entry_file = dir.join("hook.json");
    std::fs::write(&entry_file, entry.to_string()).unwrap();
    let run = |args: &[&str]| {
        let out = h.s.operator_command(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = entry_file.to_str().unwrap();
    let (ok, out, err) = run(&["hook", "add", "--file", file, "--generate-secret"]);
    assert!(ok, "{out}{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("the secret is printed once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    // The sender signs with it, and the broker delivers.
    let raw = lead().to_string();
    let ts = h.s.clock.now().timestamp();
    let url = h.s.url("/v1/hooks/crm-new-lead");
    let delivered = standard_webhook(&h.http, &url, &secret, "op-1", "op-1", ts, &raw);
    assert_eq!(answer(delivered).await.0, 200);
    let (ok, listed, _) = run(&["hook", "list"]);
    assert!(
        ok && listed.contains("crm-new-lead") && listed.contains("serving"),
        "{listed}"
    );
    assert!(
        !listed.contains(&secret) && !listed.contains(&secret[6..]),
        "list shows no secret"
    );
    let (ok, _, err) = run(&["hook", "add", "--file", file, "--generate-secret"]);
    assert!(!ok && err.contains("--replace"), "{err}");
    let mut bad = entry.clone();
    bad["name"] = json!("bad-path");
    bad["request"]["path"] = json!("v1/admin/token");
    let bad_file = dir.join("bad.json");
    std::fs::write(&bad_file, bad.to_string()).unwrap();
    let (ok, _, err) = run(&[
        "hook",
        "add",
        "--file",
        bad_file.to_str().unwrap(),
        "--generate-secret",
    ]);
    assert!(
        !ok && err.contains("would be refused") && err.contains("permanent API tokens"),
        "{err}"
    );
    // What a payload would make, without sending it.
    let payload_file = dir.join("payload.json");
    std::fs::write(&payload_file, lead().to_string()).unwrap();
    let before = h.s.sim.requests().len();
    let (ok, out, err) = run(&[
        "hook",
        "test",
        "--name",
        "crm-new-lead",
        "--payload",
        payload_file.to_str().unwrap(),
        "--header",
        "webhook-id: t-1",
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(
            "POST /voice/api/v1/admin/accounts/333333/campaigns/42/leadLoader/direct\n"
        ),
        "{out}"
    );
    assert!(out.contains("\"leadPriority\": 3"), "{out}");
    assert!(err.contains("idempotency key: t-1"), "{err}");
    assert_eq!(h.s.sim.requests().len(), before, "hook test sends nothing");
    let mut partial = lead();
    partial.as_object_mut().unwrap().remove("phone");
    std::fs::write(&payload_file, partial.to_string()).unwrap();
    let (ok, _, err) = run(&[
        "hook",
        "test",
        "--name",
        "crm-new-lead",
        "--payload",
        payload_file.to_str().unwrap(),
        "--header",
        "webhook-id: t-1",
    ]);
    assert!(!ok && err.contains("payload.phone"), "{err}");
    // A caller for RingCX's own services: add-caller takes the hooks:invoke scope.
    let (ok, out, err) = run(&[
        "add-caller",
        "--id",
        "ringcx-events",
        "--scopes",
        "hooks:invoke",
    ]);
    assert!(ok && out.contains("\"hooks:invoke\""), "{out}{err}");
    let (ok, _, _) = run(&["hook", "remove", "--name", "crm-new-lead"]);
    assert!(ok);
    let (ok, listed, _) = run(&["hook", "list"]);
    assert!(ok && listed.contains("no hooks"), "{listed}");
    let (ok, _, err) = run(&["hook", "remove", "--name", "crm-new-lead"]);
    assert!(!ok && err.contains("no hook"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn what_ringcx_or_the_session_did_not_take_is_not_recorded() {
    let mut empty_tenant = lead_hook("empty-tenant");
    empty_tenant["tenant"] = json!("empty");
    let echo = json!({"name": "echo", "tenant": "default",
        "verify": {"scheme": "standard-webhooks", "secrets": [SECRET]},
        "request": {"method": "POST", "path": "v1/sim/echo/big", "body": {"blob": "{{ payload.blob }}"}}});
    let h = hooks_stack(
        "hooks-not-taken",
        &[],
        json!([lead_hook("crm-new-lead"), empty_tenant, echo]),
    )
    .await;
    let base = h.s.base.clone();
    // A tenant without a session: no usable token, 503, and a payload that could never be
    // delivered is still told so.
    let (status, headers, body) = answer(h.signed(&base, "empty-tenant", "msg_t", &lead())).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("hook_delivery_failed")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    let mut partial = lead();
    partial.as_object_mut().unwrap().remove("phone");
    let (status, _, body) = answer(h.signed(&base, "empty-tenant", "msg_t2", &partial)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (422, Some("hook_payload_invalid"))
    );
    // RingCX refusing the broker's token (a 401 that is not "Jwt is expired"): not delivered.
    let loader = "/voice/api/v1/admin/accounts/333333/campaigns/42/leadLoader";
    h.s.sim.set_behaviour(broker_tests::sim::Behaviour {
        token_refusal: broker_tests::sim::TokenRefusal::Unauthenticated,
        ..h.s.sim.behaviour()
    });
    let (status, _, body) = answer(h.signed(&base, "crm-new-lead", "msg_u", &lead())).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("hook_delivery_failed")),
        "{body}"
    );
    h.s.sim.set_behaviour(broker_tests::sim::Behaviour {
        token_refusal: broker_tests::sim::TokenRefusal::None,
        ..h.s.sim.behaviour()
    });
    let (status, _, _) = answer(h.signed(&base, "crm-new-lead", "msg_u", &lead())).await;
    assert_eq!(status, 200, "the retry delivers");
    assert_eq!(h.loads(), 1);
    assert!(h.s.sim.count("POST", &format!("{loader}/direct")) >= 1);
    // An answer larger than what is kept: its status and a note on replay.
    let blob = "x".repeat(100 * 1024);
    let (status, _, first) =
        answer(h.signed(&base, "echo", "msg_big", &json!({"blob": blob}))).await;
    assert_eq!(status, 200);
    assert!(first["body"].as_str().unwrap().len() > 100 * 1024);
    let (status, headers, again) =
        answer(h.signed(&base, "echo", "msg_big", &json!({"blob": blob}))).await;
    assert_eq!(
        (
            status.as_u16(),
            headers["idempotent-replayed"].to_str().unwrap()
        ),
        (200, "true")
    );
    assert_eq!(again["replayed"], true);
    assert!(
        again["note"].as_str().unwrap().contains("64 KiB"),
        "{again}"
    );
}

/// A hook whose deployment has no usable idempotency table: `table` unset, or naming none.
async fn without_a_usable_table(test: &str, table: Option<&str>) {
    let extra: Vec<(&str, &str)> = table
        .map(|t| ("IDEMPOTENCY_TABLE", t))
        .into_iter()
        .collect();
    let s = ApiStack::start(moto_store().await, &unique_prefix(test), &extra).await;
    upsert(
        &s.store,
        &SecretNames::new(s.prefix.clone()).hooks(),
        &SecretString::from(json!([lead_hook("crm-new-lead")]).to_string()),
    )
    .await
    .unwrap();
    let raw = lead().to_string();
    let ts = s.clock.now().timestamp();
    let url = s.url("/v1/hooks/crm-new-lead");
    let r = standard_webhook(&reqwest::Client::new(), &url, SECRET, "m", "m", ts, &raw);
    let (status, headers, body) = answer(r).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("idempotency_unavailable")),
        "{table:?}: {body}"
    );
    assert!(headers.contains_key("retry-after"));
    assert!(s.sim.lead_loads().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn without_a_usable_idempotency_table_nothing_is_sent() {
    without_a_usable_table("hooks-notable", None).await;
    without_a_usable_table("hooks-missing-table", Some("no-such-table")).await;
}

/// Another instance of the stack's HTTP function whose DynamoDB client goes through `proxy`.
async fn instance_through(
    h: &broker_tests::hooks::Hooks,
    proxy: &broker_tests::throttle::ThrottlingProxy,
) -> (String, tokio::task::JoinHandle<()>) {
    let sdk = broker::store::aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(proxy.url())
            .build(),
    );
    let clock: broker::clock::SharedClock = std::sync::Arc::new(h.s.clock.clone());
    let app = std::sync::Arc::new(
        api::App::new(&h.s.config, h.s.store.clone(), clock)
            .unwrap()
            .with_idempotency(&h.s.config, dynamodb),
    );
    broker_tests::support::serve(app).await
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_still_ours_and_a_throttled_table_sends_nothing() {
    use broker_tests::throttle::ThrottlingProxy;
    let h = hooks_stack(
        "hooks-dynamo-faults",
        &[],
        json!([lead_hook("crm-new-lead")]),
    )
    .await;
    // DynamoDB applies the claim, then its answer is lost: the retry meets our own claim.
    let proxy = ThrottlingProxy::start(
        &broker_tests::support::moto_url(),
        "DynamoDB_20120810.PutItem",
        1_000,
    )
    .await;
    let (base, _server) = instance_through(&h, &proxy).await;
    proxy.lose_next("DynamoDB_20120810.PutItem", 1);
    let (status, headers, body) =
        answer(h.signed(&base, "crm-new-lead", "msg_lost", &lead())).await;
    assert_eq!(status, 200, "not a 409 against ourselves: {body}");
    assert!(headers.get("idempotent-replayed").is_none());
    assert_eq!(h.loads(), 1);
    assert_eq!(
        proxy.forwarded("DynamoDB_20120810.PutItem"),
        3,
        "claim, its retry, the record"
    );
    let (status, headers, _) = answer(h.signed(&base, "crm-new-lead", "msg_lost", &lead())).await;
    assert_eq!(
        (status.as_u16(), headers.contains_key("idempotent-replayed")),
        (200, true)
    );
    // DynamoDB throttling every write (an on-demand table past its throughput): retried, then
    // 503 with nothing sent.
    let throttled = ThrottlingProxy::start_with_window(
        &broker_tests::support::moto_url(),
        "DynamoDB_20120810.PutItem",
        1,
        std::time::Duration::from_secs(600),
    )
    .await;
    let (base, _second) = instance_through(&h, &throttled).await;
    for i in 0..3 {
        let (status, headers, body) =
            answer(h.signed(&base, "crm-new-lead", &format!("msg_t{i}"), &lead())).await;
        if i == 0 {
            // The claim fits; its record is throttled (RingCX took the event: still 200).
            assert_eq!(status, 200, "{body}");
            continue;
        }
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (503, Some("idempotency_unavailable")),
            "{body}"
        );
        assert!(headers.contains_key("retry-after"));
    }
    assert!(throttled.throttled() >= 2);
    assert_eq!(h.loads(), 2, "the throttled events were never sent");
}
