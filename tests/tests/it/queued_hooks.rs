//! Queued hooks end to end: the HTTP function accepts into moto's SQS, the hook worker delivers
//! from it (in process under a played event source mapping on the simulated clock, and as the
//! real binary under the Runtime API harness), DynamoDB is moto's, RingCX is the simulator.

use std::collections::BTreeSet;
use std::time::Duration;

use broker::clock::Clock as _;
use broker::store::{SecretNames, upsert};
use broker_tests::hooks::{
    EventSource, Hooks, Queues, SECRET, answer, lead, queued_lead_hook, queued_stack, worker,
};
use broker_tests::lambda::{Invocation, LambdaProcess, RuntimeApi};
use broker_tests::sim::{FaultScope, Faults};
use broker_tests::support::function_env;
use hook_worker::Fate;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

async fn set_hooks(h: &Hooks, hooks: Value) {
    let name = SecretNames::new(h.s.prefix.clone()).hooks();
    upsert(&h.s.store, &name, &SecretString::from(hooks.to_string()))
        .await
        .unwrap();
}

fn lead_n(n: usize) -> Value {
    json!({"id": format!("crm-{n}"), "campaign": 42, "phone": format!("555{n:04}"),
           "first_name": "Ada", "priority": 3})
}

/// One invocation of the worker with a batch of up to 10 and a 120 s timeout (the template's).
async fn one_round(
    source: &mut EventSource,
    w: &hook_worker::Worker<broker::store::aws::SecretsManagerStore>,
    h: &Hooks,
) -> hook_worker::Report {
    source
        .round(w, &h.s.clock, 10, Duration::from_secs(120))
        .await
        .expect("a message was waiting")
}

fn fates(reports: &[hook_worker::Report]) -> Vec<Fate> {
    reports
        .iter()
        .flat_map(|r| r.fates.iter().map(|(_, f)| f.clone()))
        .collect()
}

#[tokio::test]
async fn a_queued_event_is_accepted_once_and_delivered_once() {
    let (h, q) = queued_stack("queued-once", &[], json!([queued_lead_hook("crm")]), 10).await;
    let base = h.s.base.clone();
    // RingCX is down: the event is still accepted, without a token or a RingCX call.
    h.s.sim.set_faults(Faults {
        error_ratio: 1.0,
        scope: FaultScope::All,
        ..Faults::default()
    });
    let (status, headers, body) = answer(h.signed(&base, "crm", "msg_1", &lead())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], true);
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(headers.get("idempotent-replayed").is_none());
    assert!(h.s.sim.requests().is_empty(), "no RingCX call to accept");
    // A repeat gets the same 202 and enqueues nothing.
    let (status, headers, again) = answer(h.signed(&base, "crm", "msg_1", &lead())).await;
    assert_eq!((status, &again), (StatusCode::ACCEPTED, &body));
    assert_eq!(headers["idempotent-replayed"], "true");
    // What could never be delivered is refused at once, and not queued.
    let (status, _, bad) = answer(h.signed(&base, "crm", "msg_bad", &json!({"id": "x"}))).await;
    assert_eq!(status, 422, "{bad}");
    let queued = q.peek(&q.url).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let message = queued[0].to_string();
    assert_eq!(queued[0]["eventId"], id.as_str());
    for secret in ["webhook-signature", "v1,", SECRET] {
        assert!(!message.contains(secret), "{secret} in {message}");
    }
    assert_eq!(queued[0]["payload"]["phone"], "5550100");

    // RingCX recovers: the worker delivers it, with the tenant's real account.
    h.s.sim.clear_faults();
    let w = worker(&h).await;
    let mut source = EventSource::new(&q);
    let report = one_round(&mut source, &w, &h).await;
    assert_eq!(fates(&[report]), [Fate::Delivered(200)]);
    let loads = h.s.sim.lead_loads();
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].account_id, "333333");
    assert_eq!(loads[0].request["uploadLeads"][0]["leadPriority"], 3);
    assert!(
        q.peek(&q.url).await.is_empty(),
        "the delivered message is deleted"
    );

    // The same event enqueued again (a racing pair of instances, a redrive, SQS's at-least-once):
    // the delivery record answers, RingCX is not called again.
    for _ in 0..2 {
        q.sqs
            .send_message()
            .queue_url(&q.url)
            .message_body(message.clone())
            .send()
            .await
            .unwrap();
    }
    let report = one_round(&mut source, &w, &h).await;
    assert_eq!(
        fates(&[report]),
        [Fate::AlreadyDelivered, Fate::AlreadyDelivered]
    );
    assert_eq!(h.loads(), 1);
    assert!(q.peek(&q.url).await.is_empty());
    assert!(q.peek(&q.dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_racing_into_two_instances_are_queued_once() {
    let (h, q) = queued_stack("queued-race", &[], json!([queued_lead_hook("crm")]), 10).await;
    let (second, _server) = h.s.another_instance().await;
    let mut sends = Vec::new();
    for i in 0..12 {
        let base = if i % 2 == 0 {
            h.s.base.clone()
        } else {
            second.clone()
        };
        sends.push(answer(h.signed(&base, "crm", "msg_race", &lead())));
    }
    let answers = futures_util::future::join_all(sends).await;
    let accepted = answers.iter().filter(|(s, _, _)| *s == 202).count();
    let busy = answers.iter().filter(|(s, _, _)| *s == 409).count();
    assert_eq!(accepted + busy, 12, "{answers:?}");
    assert!(accepted >= 1);
    assert_eq!(q.peek(&q.url).await.len(), 1, "one message for one event");
}

#[tokio::test]
async fn an_hour_of_503_loses_nothing_and_the_backlog_drains_within_its_share() {
    // Two worker instances with the default share: 25% of RingCX's 120 a minute, 15 each.
    let (h, q) = queued_stack("queued-outage", &[], json!([queued_lead_hook("crm")]), 100).await;
    let share = h.s.config.hook_queue.clone();
    assert_eq!(share.calls_per_minute_per_worker(), 15);
    let base = h.s.base.clone();
    h.s.sim.set_faults(Faults {
        error_ratio: 1.0,
        scope: FaultScope::Voice,
        ..Faults::default()
    });
    let start = h.s.clock.now();
    for n in 0..200 {
        let (status, _, body) =
            answer(h.signed(&base, "crm", &format!("evt_{n}"), &lead_n(n))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // Two worker instances (MaximumConcurrency 2), taking turns so that every RingCX call is
    // recorded at the simulated time it was paced (the bench runs them at once for the rate).
    let (w1, w2) = (worker(&h).await, worker(&h).await);
    let mut a = EventSource::new(&q);
    let recovered = std::sync::Mutex::new(None);
    let lift = |now: chrono::DateTime<chrono::Utc>| {
        let mut r = recovered.lock().unwrap();
        if r.is_none() && now - start >= chrono::Duration::hours(1) {
            h.s.sim.clear_faults();
            *r = Some(now);
        }
        h.s.sim.lead_loads().len() < 200
    };
    let reports = a.drain(&[&w1, &w2], &h.s.clock, &lift).await;
    let recovered = recovered.lock().unwrap().expect("the outage ended");
    let backoffs = a.backoffs.clone();
    let all = fates(&reports);
    let retries = all
        .iter()
        .filter(|f| matches!(f, Fate::Retry { .. }))
        .count();
    assert!(
        all.iter().all(|f| !matches!(f, Fate::DeadLettered { .. })),
        "nothing dead-lettered"
    );
    assert_eq!(
        all.iter()
            .filter(|f| matches!(f, Fate::Delivered(_)))
            .count(),
        200
    );
    // Every event once, none twice.
    let loads = h.s.sim.lead_loads();
    let ids: BTreeSet<String> = loads
        .iter()
        .map(|l| {
            l.request["uploadLeads"][0]["externId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!((loads.len(), ids.len()), (200, 200));
    assert!(q.peek(&q.dlq).await.is_empty());
    // Backoff, not a hot loop: each wait at least 15 s, growing to the 15-minute cap.
    assert!(backoffs.iter().all(|b| *b >= Duration::from_secs(15)));
    assert!(backoffs.iter().any(|b| *b >= Duration::from_secs(7 * 60)));
    // RingCX calls, outage attempts included, never more than the share in any minute.
    let calls: Vec<_> =
        h.s.sim
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/leadLoader/"))
            .map(|r| r.at)
            .collect();
    let busiest = calls
        .iter()
        .map(|t| {
            calls
                .iter()
                .filter(|u| **u >= *t && **u < *t + chrono::Duration::seconds(60))
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest <= 30, "{busiest} RingCX calls in one minute");
    let drained = loads.iter().map(|l| l.at).max().unwrap() - recovered;
    let per_minute = 200.0 / (drained.num_milliseconds() as f64 / 60_000.0);
    // After an hour the backoffs are at their 15-minute cap: the backlog comes back over that
    // quarter of an hour, never faster than the share.
    println!(
        "outage: {} RingCX attempts during the hour ({retries} retries in all), backlog of 200 drained {} s after recovery ({per_minute:.1} a minute; busiest minute {busiest}; share 30)",
        calls.len() - 200,
        drained.num_seconds()
    );
    assert!(per_minute <= 30.5, "{per_minute}");
    assert!(
        drained <= chrono::Duration::minutes(20),
        "the backlog drains: {drained}"
    );
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_after_one_attempt_and_a_redrive_after_the_fix_delivers_it_once()
 {
    // The hook reads the campaign from a field this sender fills with a name: RingCX answers 400.
    let (h, q) = queued_stack("queued-poison", &[], json!([queued_lead_hook("crm")]), 10).await;
    let base = h.s.base.clone();
    let event = json!({"id": "crm-9", "campaign": "spring", "campaign_id": 42, "phone": "5550199",
                       "first_name": "Ada", "priority": 3});
    let (status, _, body) = answer(h.signed(&base, "crm", "msg_poison", &event)).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let w = worker(&h).await;
    let mut source = EventSource::new(&q);
    let report = one_round(&mut source, &w, &h).await;
    match &fates(&[report])[..] {
        [Fate::DeadLettered { kind, reason }] => {
            assert_eq!(*kind, "ringcx_refused");
            assert!(
                reason.contains("RingCX answered 400 (request.invalid)"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.s.sim.count(
            "POST",
            "/voice/api/v1/admin/accounts/333333/campaigns/spring/leadLoader/direct"
        ),
        1
    );
    assert!(q.peek(&q.url).await.is_empty());

    // The operator reads the dead-letter queue: the event, its attempts and reason, no payload.
    let out =
        h.s.operator_command_with(&queue_env(&q), &["hook", "dlq", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["hook"], "crm");
    assert_eq!(listed[0]["attempts"], 1);
    assert!(listed[0]["lastError"].as_str().unwrap().contains("400"));
    let text = String::from_utf8_lossy(&out.stdout);
    for private in ["5550199", "spring", "Ada", "webhook-signature"] {
        assert!(!text.contains(private), "{private} in {text}");
    }
    // Listing changed nothing.
    assert_eq!(q.peek(&q.dlq).await.len(), 1);

    // The hook is fixed; the redrive sends it back once, and the worker delivers it once.
    let mut fixed = queued_lead_hook("crm");
    fixed["request"]["path"] = json!(
        "v1/admin/accounts/{{ account_id }}/campaigns/{{ payload.campaign_id }}/leadLoader/direct"
    );
    set_hooks(&h, json!([fixed])).await;
    h.s.clock.advance(chrono::Duration::seconds(120));
    let out =
        h.s.operator_command_with(&queue_env(&q), &["hook", "redrive", "--id", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    assert!(q.peek(&q.dlq).await.is_empty());
    let again =
        h.s.operator_command_with(&queue_env(&q), &["hook", "redrive", "--id", &id]);
    assert!(!again.status.success(), "a second redrive finds nothing");
    let report = one_round(&mut source, &w, &h).await;
    assert_eq!(fates(&[report]), [Fate::Delivered(200)]);
    assert_eq!(h.loads(), 1);
    assert_eq!(h.s.sim.lead_loads()[0].campaign_id, 42);
}

#[tokio::test]
async fn what_the_worker_can_never_deliver_goes_to_the_dead_letter_queue_with_its_reason() {
    let (h, q) = queued_stack("queued-never", &[], json!([queued_lead_hook("crm")]), 3).await;
    let base = h.s.base.clone();
    let w = worker(&h).await;
    let mut source = EventSource::new(&q);
    // Too old: accepted, then not delivered within HOOK_MAX_AGE_HOURS (24).
    let accepted = answer(h.signed(&base, "crm", "old", &lead())).await;
    assert_eq!(accepted.0, 202);
    h.s.clock.advance(chrono::Duration::hours(25));
    h.s.refresh_now("default").await.unwrap();
    let report = one_round(&mut source, &w, &h).await;
    assert!(
        matches!(
            &fates(&[report])[0],
            Fate::DeadLettered {
                kind: "too_old",
                ..
            }
        ),
        "too old"
    );
    // A message that is not a hook event at all.
    q.sqs
        .send_message()
        .queue_url(&q.url)
        .message_body("{not json")
        .send()
        .await
        .unwrap();
    let report = one_round(&mut source, &w, &h).await;
    assert!(matches!(
        &fates(&[report])[0],
        Fate::DeadLettered {
            kind: "unreadable",
            ..
        }
    ));
    // RingCX rate-limits it every time: retried after RingCX's Retry-After, then dead-lettered
    // at HOOK_MAX_RECEIVES (3 here).
    h.s.sim.fail_next(
        "/voice/api/v1/admin",
        broker_tests::sim::Fault::RateLimited { retry_after: 90 },
        3,
    );
    let (status, _, body) = answer(h.signed(&base, "crm", "limited", &lead())).await;
    assert_eq!(status, 202, "{body}");
    let report = one_round(&mut source, &w, &h).await;
    match fates(&[report]).remove(0) {
        Fate::Retry { after, reason } => {
            assert!(after >= Duration::from_secs(90), "{after:?}");
            assert!(reason.contains("429"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The worker set that backoff on the message itself (one ChangeMessageVisibility; the
    // dead letters before it were one SendMessage each).
    assert_eq!(w.queue_calls(), 3);
    let mut last = None;
    for _ in 0..2 {
        h.s.clock.advance_to(source.next_due().unwrap());
        source.release_due(&h.s.clock).await;
        let report = one_round(&mut source, &w, &h).await;
        last = Some(fates(&[report]).remove(0));
    }
    match last.unwrap() {
        Fate::DeadLettered { kind, reason } => {
            assert_eq!(kind, "max_receives");
            assert!(reason.contains("after 3 attempts"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The hook was removed after its events were accepted.
    let accepted = answer(h.signed(&base, "crm", "orphan", &lead())).await;
    assert_eq!(accepted.0, 202);
    set_hooks(&h, json!([])).await;
    h.s.clock.advance(chrono::Duration::seconds(120));
    let report = one_round(&mut source, &w, &h).await;
    assert!(matches!(
        &fates(&[report])[0],
        Fate::DeadLettered {
            kind: "hook_not_found",
            ..
        }
    ));
    assert_eq!(h.loads(), 0);
    // Each dead letter says why; none carries a signature.
    let letters = q.peek(&q.dlq).await;
    assert_eq!(letters.len(), 4);
    let reasons: Vec<String> = letters
        .iter()
        .map(|l| l["reason"].as_str().unwrap_or("(not an event)").to_owned())
        .collect();
    for expected in [
        "HOOK_MAX_AGE_HOURS",
        "(not an event)",
        "after 3 attempts",
        "no hook named",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected}: {reasons:?}"
        );
    }
    assert!(
        letters
            .iter()
            .all(|l| !l.to_string().contains("webhook-signature"))
    );

    // A batch handed over with too little of its invocation left: nothing starts, the message
    // comes back soon, RingCX is not called.
    set_hooks(&h, json!([queued_lead_hook("crm")])).await;
    let (status, _, _) = answer(h.signed(&base, "crm", "late", &lead())).await;
    assert_eq!(status, 202);
    let before = h.s.sim.requests().len();
    let report = source
        .round(&w, &h.s.clock, 10, Duration::from_secs(5))
        .await
        .unwrap();
    match fates(&[report]).remove(0) {
        Fate::Retry { after, reason } => {
            assert!(reason.contains("too little"), "{reason}");
            assert!(after <= Duration::from_secs(20), "{after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.s.sim.requests().len(), before);
}

#[tokio::test]
async fn without_a_queue_or_when_sqs_refuses_nothing_is_accepted() {
    // No HOOK_QUEUE_URL: 503, nothing claimed.
    let h = broker_tests::hooks::hooks_stack("queued-none", &[], json!([queued_lead_hook("crm")]))
        .await;
    let (status, headers, body) = answer(h.signed(&h.s.base, "crm", "m1", &lead())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "hook_queue_unavailable");
    assert!(headers.get("retry-after").is_some());
    // A queue that does not exist: 503, and the claim given back, so the retry is accepted once
    // the queue is there.
    let gone = format!(
        "{}/123456789012/no-such-queue",
        broker_tests::support::moto_url()
    );
    let (h, _q) = queued_stack(
        "queued-refused",
        &[("HOOK_QUEUE_URL", gone.as_str())],
        json!([queued_lead_hook("crm")]),
        5,
    )
    .await;
    let (status, _, body) = answer(h.signed(&h.s.base, "crm", "m1", &lead())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "hook_queue_unavailable");
    let (status, _, body) = answer(h.signed(&h.s.base, "crm", "m1", &lead())).await;
    assert_eq!(
        status, 503,
        "still refused, not replayed as accepted: {body}"
    );
}

fn queue_env(q: &Queues) -> Vec<(&'static str, String)> {
    vec![
        ("HOOK_QUEUE_URL", q.url.clone()),
        ("HOOK_DLQ_URL", q.dlq.clone()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_worker_killed_before_its_message_was_deleted_delivers_no_second_time() {
    let (h, q) = queued_stack("queued-kill", &[], json!([queued_lead_hook("crm")]), 10).await;
    let (status, _, body) = answer(h.signed(&h.s.base, "crm", "msg_k", &lead())).await;
    assert_eq!(status, 202, "{body}");
    let mut env = function_env(&h.s.sim, &h.s.prefix, "default,second,empty");
    env.extend(queue_env(&q));
    env.push(("IDEMPOTENCY_TABLE", h.table.clone()));
    env.push(("ENGAGE_TIMEOUT_MS", "2000".into()));
    let runtime = RuntimeApi::start().await.unwrap();
    let mut first = LambdaProcess::start("hook-worker", &runtime, &env);
    assert!(
        runtime.first_poll(Duration::from_secs(20)).await,
        "{}",
        first.output()
    );
    let batch = hook_worker::local::receive(&q.sqs, &q.url, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(batch.records.len(), 1);
    let payload = serde_json::to_value(&batch).unwrap();
    let answered = runtime.invoke(payload, Duration::from_secs(60)).await;
    assert_eq!(
        answered,
        Invocation::Response(json!({"batchItemFailures": []})),
        "{}",
        first.output()
    );
    assert_eq!(h.loads(), 1);
    // Killed before the event source mapping deleted the message: SQS hands it out again. Its
    // logs, read once the process is gone and its pipes drained, are whole.
    first.stop();
    let logs = first.output();
    assert!(logs.contains("delivered"), "{logs}");
    for private in ["5550100", "Ada", SECRET] {
        assert!(!logs.contains(private), "{private} in the worker's logs");
    }
    drop(first);
    let receipt = batch.records[0].receipt_handle.clone().unwrap();
    q.sqs
        .change_message_visibility()
        .queue_url(&q.url)
        .receipt_handle(receipt)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let runtime = RuntimeApi::start().await.unwrap();
    let second = LambdaProcess::start("hook-worker", &runtime, &env);
    assert!(runtime.first_poll(Duration::from_secs(20)).await);
    let batch = hook_worker::local::receive(&q.sqs, &q.url, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(batch.records.len(), 1, "the copy SQS keeps");
    assert_eq!(
        batch.records[0].attributes["ApproximateReceiveCount"], "2",
        "the second receive"
    );
    let answered = runtime
        .invoke(
            serde_json::to_value(&batch).unwrap(),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        answered,
        Invocation::Response(json!({"batchItemFailures": []})),
        "{}",
        second.output()
    );
    assert_eq!(h.loads(), 1, "RingCX saw the event once");
    let logs = second
        .output_with("already_delivered", Duration::from_secs(10))
        .await;
    assert!(logs.contains("already_delivered"), "{logs}");
}

#[tokio::test]
async fn an_event_too_big_for_sqs_or_from_a_caller_without_the_scope_is_refused_before_the_queue() {
    let mut caller_hook = queued_lead_hook("ringcx-events");
    caller_hook["verify"] = json!({"scheme": "caller"});
    let (h, q) = queued_stack(
        "queued-refused-early",
        &[],
        json!([queued_lead_hook("crm"), caller_hook]),
        10,
    )
    .await;
    // Within the request limit (256 KiB), beyond what an SQS message can hold with its copy in
    // the dead-letter queue: 413, nothing claimed (the same id is accepted once it is smaller).
    let mut big = lead();
    big["notes"] = json!("x".repeat(250 * 1024));
    let (status, _, body) = answer(h.signed(&h.s.base, "crm", "big", &big)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("SQS"),
        "{body}"
    );
    let (status, _, body) = answer(h.signed(&h.s.base, "crm", "big", &lead())).await;
    assert_eq!(
        status, 202,
        "nothing was claimed for the refused one: {body}"
    );
    // A caller key without hooks:invoke (the least-privileged caller of this deployment).
    use api::auth::Scope;
    h.s.clock.advance(chrono::Duration::seconds(6));
    let proxy_only = h.s.key("proxy").to_owned();
    let (status, _, body) = answer(
        h.http
            .post(format!("{}/v1/hooks/ringcx-events", h.s.base))
            .header("x-api-key", &proxy_only)
            .json(&lead()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_scope");
    let invoker =
        h.s.add_key("ringcx-events", "default", &[Scope::HooksInvoke], None)
            .await;
    h.s.clock.advance(chrono::Duration::seconds(6));
    let (status, _, body) = answer(
        h.http
            .post(format!("{}/v1/hooks/ringcx-events", h.s.base))
            .header("x-api-key", &invoker)
            .json(&lead()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    // Two accepted events, and only those, are queued; neither holds the caller's key.
    let queued = q.peek(&q.url).await;
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert!(queued.iter().all(|m| !m.to_string().contains(&invoker)));
}
