//! `POST /v1/hooks/{name}`: a webhook from a sender that does not speak RingCX, verified its way,
//! turned into one RingCX call by the hook's templates, exactly once per idempotency key.
//!
//! The order is what makes "exactly once" and "nothing lost" hold together: verify, render (a
//! payload the templates cannot fill is `422` and nothing is claimed), claim the key, call RingCX,
//! then record RingCX's answer, or release the key when RingCX did not take the event (5xx, 429,
//! timeout, no usable token), so the sender's own retry delivers it.
//!
//! A queued hook (`"delivery": "queued"`) verifies and renders the same way, then puts the event
//! on the hook queue and answers `202`; the hook worker calls RingCX through [`attempt`], the same
//! code a synchronous hook uses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker::hooks::idempotency::{Claim, IdempotencyStore, Lease, MAX_STORED_BODY, StoredAnswer};
use broker::hooks::queue::{MAX_MESSAGE_BYTES, QueuedEvent};
use broker::hooks::template::RenderedRequest;
use broker::hooks::verify::Scheme;
use broker::hooks::{Delivery, Headers, Hook, Inbound};
use broker::ringcx::{VoiceRequest, VoiceResponse};
use broker::store::{CALL_TIMEOUT, SecretStore};
use broker::telemetry::{self, Metric};
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::auth::{Scope, forwarded_query};
use crate::error::{ApiError, ErrorCode};
use crate::proxy::relay;
use crate::{App, AppState, media_type, read_body};

const PREFIX: &str = "/v1/hooks/";

/// Time a hook may spend on DynamoDB beyond the RingCX call and a token: a claim and a record,
/// each with a retry.
const IDEMPOTENCY_BUDGET: Duration = Duration::from_secs(2 * CALL_TIMEOUT.as_secs() + 1);

/// How a request ended, for the metric and the audit line.
enum Outcome {
    Queued,
    Delivered(u16),
    Replayed(u16),
    Failed,
    Rejected(ErrorCode),
}

pub(crate) async fn hook<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let name = parts
        .uri
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_owned();
    // In Lambda the invocation's deadline ends the lease; elsewhere the request's own budget.
    let lambda_deadline = parts
        .extensions
        .get::<lambda_http::Context>()
        .and_then(|c| i64::try_from(c.deadline).ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    let mut audit = Audit::default();
    let result = deliver(&app, &name, &parts, body, lambda_deadline, &mut audit).await;
    let (response, outcome) = match result {
        Ok(done) => done,
        Err(e) => {
            let failed = [
                ErrorCode::HookDeliveryFailed,
                ErrorCode::HookQueueUnavailable,
            ];
            let outcome = if failed.contains(&e.code) {
                Outcome::Failed
            } else {
                Outcome::Rejected(e.code)
            };
            (e.into_response(), outcome)
        }
    };
    let (metric, reason, ringcx_status) = match &outcome {
        Outcome::Queued => (Metric::HooksQueued, None, None),
        Outcome::Delivered(s) => (Metric::HooksDelivered, None, Some(*s)),
        Outcome::Replayed(s) => (Metric::HooksReplayed, None, Some(*s)),
        Outcome::Failed => (Metric::HooksFailed, None, audit.ringcx_status),
        Outcome::Rejected(code) => (Metric::HooksRejected, Some(code.as_str()), None),
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // The audit line: never a payload, a header, a signature or the key in clear.
    tracing::info!(
        hook = %name.chars().take(64).collect::<String>(),
        tenant = audit.tenant.as_deref().unwrap_or("-"),
        key = audit.key_hash.as_deref().unwrap_or("-"),
        outcome = metric.name(),
        reason = reason.unwrap_or("-"),
        ringcx_status = ringcx_status.unwrap_or(0),
        status = response.status().as_u16(),
        ms,
        "hook"
    );
    telemetry::emit(&telemetry::hook_emf(
        metric,
        reason,
        app.clock.now().timestamp_millis(),
    ));
    response
}

/// What the audit line says about a request, filled in as it goes.
#[derive(Default)]
struct Audit {
    tenant: Option<String>,
    key_hash: Option<String>,
    ringcx_status: Option<u16>,
}

async fn deliver<S: SecretStore + Clone + 'static>(
    app: &App<S>,
    name: &str,
    parts: &axum::http::request::Parts,
    body: Body,
    lambda_deadline: Option<DateTime<Utc>>,
    audit: &mut Audit,
) -> Result<(Response, Outcome), ApiError> {
    let hook = find(app, name).await?;
    audit.tenant = Some(hook.tenant.clone());
    let raw = read_body(&parts.headers, body).await?;
    let now = app.clock.now();
    let headers = lower_case(&parts.headers);
    let query_text = authenticate(app, &hook, parts, &headers, &raw, now.timestamp()).await?;
    let payload = payload(&parts.headers, &raw)?;
    let query: BTreeMap<String, String> = query_text
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let invalid = |e: broker::hooks::template::RenderError| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::HookPayloadInvalid,
            format!("{e}; nothing was sent"),
        )
    };
    let inbound = |account_id| Inbound {
        payload: &payload,
        headers: &headers,
        query: &query,
        raw_body: &raw,
        account_id,
    };
    if hook.delivery == Delivery::Queued {
        // Rendered now only to refuse at once what could never be delivered (the worker renders
        // again with the tenant's account when it delivers): no token, so a RingCX outage does
        // not stop events from being accepted.
        let rendered = hook.render(&inbound(Some("0"))).map_err(invalid)?;
        return enqueue(
            app,
            &hook,
            &rendered.idempotency_key,
            &inbound(None),
            now,
            audit,
        )
        .await;
    }
    // The tenant's session says which account `account_id` is; no token, no delivery. A payload
    // that could never be delivered is still told so (422), token or not.
    let token = match app.tokens.get(&hook.tenant, app.deadline()).await {
        Ok(t) => t,
        Err(e) => {
            hook.render(&inbound(Some("0"))).map_err(invalid)?;
            return Err(failed(e));
        }
    };
    let rendered = hook
        .render(&inbound(token.account_id.as_deref()))
        .map_err(invalid)?;
    let store = idempotency(app)?;
    let id = IdempotencyStore::record_id(&hook.name, &hook.tenant, &rendered.idempotency_key);
    audit.key_hash = Some(QueuedEvent::event_id_of(&id));
    let own_budget = app.token_budget + app.request_timeout + IDEMPOTENCY_BUDGET;
    let lease_until = lambda_deadline.unwrap_or_else(|| broker::clock::later(now, own_budget));
    let deadline = lease_until.min(broker::clock::later(now, own_budget));
    let lease = match claim(store, &id, lease_until, deadline).await? {
        Ok(lease) => lease,
        Err(replayed) => return Ok(replayed),
    };
    let taken = |status: u16| status < 500 && status != 429 && status != 401;
    match attempt(
        app,
        &hook,
        &rendered.request,
        store,
        &lease,
        lease_until,
        deadline,
        taken,
    )
    .await
    {
        Ok(a) => {
            audit.ringcx_status = Some(a.status);
            let status = a.status;
            Ok((relay(a), Outcome::Delivered(status)))
        }
        Err(not_taken) => {
            audit.ringcx_status = not_taken.status;
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::HookDeliveryFailed,
                format!("{}; the event was not delivered, retry", not_taken.reason),
            )
            .with_retry_after(not_taken.retry_after.map_or(5, |d| d.as_secs().max(1))))
        }
    }
}

/// The idempotency table, or why hooks cannot run without it.
fn idempotency<S>(app: &App<S>) -> Result<&IdempotencyStore, ApiError> {
    app.idempotency.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::IdempotencyUnavailable,
            "hooks need IDEMPOTENCY_TABLE (a DynamoDB table) so that no event is delivered twice; nothing was sent",
        )
        .with_retry_after(60)
    })
}

/// Claims the key: ours (`Ok(Ok)`), or the answer a repeat gets (`Ok(Err)`: the first answer
/// replayed, or `409` while another request holds it).
async fn claim(
    store: &IdempotencyStore,
    id: &str,
    lease_until: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> Result<Result<Lease, (Response, Outcome)>, ApiError> {
    match store
        .claim(id, lease_until, deadline)
        .await
        .map_err(unavailable)?
    {
        Claim::Claimed(lease) => Ok(Ok(lease)),
        Claim::Replay(answer) => {
            let status = answer.status;
            Ok(Err((replay(answer), Outcome::Replayed(status))))
        }
        Claim::InProgress { retry_after } => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::HookInProgress,
            "this event is being delivered by another request; retry after it",
        )
        .with_retry_after(retry_after.as_secs().max(1))),
    }
}

/// A queued hook's event: claimed, put on the hook queue, answered `202` (and the `202` recorded,
/// so a repeat gets it again without a second message).
async fn enqueue<S: SecretStore + Clone + 'static>(
    app: &App<S>,
    hook: &Hook,
    key: &str,
    inbound: &Inbound<'_>,
    now: DateTime<Utc>,
    audit: &mut Audit,
) -> Result<(Response, Outcome), ApiError> {
    let store = idempotency(app)?;
    let queue = app.hook_queue.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::HookQueueUnavailable,
            "this hook is queued and HOOK_QUEUE_URL names no queue; nothing was accepted",
        )
        .with_retry_after(60)
    })?;
    let id = IdempotencyStore::record_id(&hook.name, &hook.tenant, key);
    let event_id = QueuedEvent::event_id_of(&id);
    audit.key_hash = Some(event_id.clone());
    let event = QueuedEvent {
        v: 1,
        hook: hook.name.clone(),
        tenant: hook.tenant.clone(),
        event_id: event_id.clone(),
        record: id.clone(),
        payload: inbound.payload.clone(),
        headers: hook.visible_headers(inbound.headers),
        query: inbound.query.clone(),
        first_seen: now.timestamp_millis(),
        redriven_at: None,
        attempts: 0,
        last_error: None,
        reason: None,
        dead_lettered_at: None,
    };
    if event.to_body().len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            format!(
                "this event is larger than the {} KiB an SQS message holds; nothing was accepted",
                MAX_MESSAGE_BYTES / 1024
            ),
        ));
    }
    let lease_until = broker::clock::later(now, IDEMPOTENCY_BUDGET + CALL_TIMEOUT * 2);
    let lease = match claim(store, &id, lease_until, lease_until).await? {
        Ok(lease) => lease,
        Err(replayed) => return Ok(replayed),
    };
    if let Err(e) = queue.enqueue(&event, lease_until).await {
        tracing::error!(hook = %hook.name, error = %e, "could not put a hook event on the queue");
        if let Err(e) = store.release(&lease, lease_until).await {
            tracing::warn!(hook = %hook.name, error = %e, "could not release the idempotency claim: the sender's retry waits for the lease to end");
        }
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::HookQueueUnavailable,
            "the hook queue cannot be reached right now; nothing was accepted, retry",
        )
        .with_retry_after(5));
    }
    let body = serde_json::json!({"accepted": true, "id": event_id}).to_string();
    let accepted = VoiceResponse {
        status: 202,
        content_type: Some("application/json".into()),
        body: bytes::Bytes::from(body),
        retry_after: None,
    };
    record(store, &lease, &accepted, lease_until, hook).await;
    Ok((relay(accepted), Outcome::Queued))
}

/// Why RingCX did not take an event this time; the claim was released, so a later attempt
/// (the sender's retry, or the worker's) delivers it.
#[derive(Debug)]
pub struct NotTaken {
    /// RingCX's status, if it answered.
    pub status: Option<u16>,
    /// RingCX's `Retry-After`, or the broker's own advice.
    pub retry_after: Option<Duration>,
    /// A sentence for the sender or the dead-letter queue (no payload value, no secret).
    pub reason: String,
}

/// One attempt to hand an event to RingCX under `lease`: RingCX's answer when `taken` says it
/// took the event (recorded, so no copy calls RingCX again), or why not (the claim released).
/// No RingCX call starts that could not be answered and recorded before `lease_until`.
#[allow(clippy::too_many_arguments)]
pub async fn attempt<S: SecretStore + Clone + 'static>(
    app: &App<S>,
    hook: &Hook,
    rendered: &RenderedRequest,
    store: &IdempotencyStore,
    lease: &Lease,
    lease_until: DateTime<Utc>,
    deadline: DateTime<Utc>,
    taken: impl Fn(u16) -> bool,
) -> Result<VoiceResponse, NotTaken> {
    let release = || async {
        if let Err(e) = store.release(lease, deadline).await {
            tracing::warn!(hook = %hook.name, error = %e, "could not release the idempotency claim: the next attempt waits for the lease to end");
        }
    };
    // A RingCX call that could not be answered and recorded before the lease ends would leave
    // an event RingCX may have taken looking unclaimed to the next copy: do not start it.
    let needed = app.request_timeout + CALL_TIMEOUT;
    if broker::clock::later(app.clock.now(), needed) > lease_until {
        release().await;
        return Err(NotTaken {
            status: None,
            retry_after: Some(Duration::from_secs(1)),
            reason: "too little of this invocation is left to call RingCX and record its answer"
                .into(),
        });
    }
    let mut request = VoiceRequest::new(rendered.method.clone(), rendered.path.clone());
    request.query = rendered.query.clone();
    if let Some(body) = &rendered.body {
        request = request.with_body("application/json", body.to_string());
    }
    // Every RingCX call must be answered with time left to record the answer in the lease.
    let until = lease_until - chrono::Duration::from_std(CALL_TIMEOUT).unwrap_or_default();
    match app.voice(&hook.tenant, &request, Some(until)).await {
        Ok(a) if taken(a.status) => {
            record(store, lease, &a, deadline, hook).await;
            Ok(a)
        }
        Ok(a) => {
            release().await;
            Err(NotTaken {
                status: Some(a.status),
                retry_after: a.retry_after,
                reason: format!("RingCX answered {}{}", a.status, ringcx_error_code(&a)),
            })
        }
        Err(e) => {
            release().await;
            Err(NotTaken {
                status: None,
                retry_after: Some(Duration::from_secs(e.retry_after.unwrap_or(5).max(1))),
                reason: format!("{} ({})", e.message, e.code),
            })
        }
    }
}

/// RingCX's `errorCode` (a code such as `invalid.parameter`, never a payload value), for the
/// dead-letter queue's reason.
fn ringcx_error_code(a: &VoiceResponse) -> String {
    serde_json::from_slice::<Json>(&a.body)
        .ok()
        .and_then(|b| b.get("errorCode").and_then(Json::as_str).map(str::to_owned))
        .filter(|c| {
            c.len() <= 80
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
        })
        .map_or(String::new(), |c| format!(" ({c})"))
}

/// The hook, reading the hooks secret again once if the name is new to this instance.
pub async fn find<S: SecretStore>(
    app: &App<S>,
    name: &str,
) -> Result<std::sync::Arc<Hook>, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::HookNotFound,
            "no hook by that name",
        )
    };
    let hooks_unavailable = |_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::HooksUnavailable,
            "the hooks list cannot be read right now; nothing was sent",
        )
        .with_retry_after(5)
    };
    if let Some(h) = app.hooks.get().await.map_err(hooks_unavailable)?.get(name) {
        return Ok(h);
    }
    match app
        .hooks
        .reload_after_miss()
        .await
        .map_err(hooks_unavailable)?
    {
        Some(newer) => newer.get(name).ok_or_else(not_found),
        None => Err(not_found()),
    }
}

/// Checks the request against the hook's scheme; returns the query string the templates may
/// see (credentials taken out).
async fn authenticate<S: SecretStore>(
    app: &App<S>,
    hook: &Hook,
    parts: &axum::http::request::Parts,
    headers: &Headers,
    raw: &[u8],
    now: i64,
) -> Result<Option<String>, ApiError> {
    let query = parts.uri.query();
    if let Scheme::Caller = hook.scheme {
        let verdict = app
            .callers
            .verdict(&parts.headers, query, app.allow_query_key, now)
            .await?;
        let caller = verdict.caller;
        caller.require(Scope::HooksInvoke)?;
        if caller.tenant != hook.tenant {
            return Err(ApiError::forbidden(
                ErrorCode::WrongTenant,
                "this key does not act for the hook's tenant",
            ));
        }
        return Ok(verdict.forwarded_query);
    }
    hook.scheme.verify(headers, raw, now).map_err(|refusal| {
        ApiError::unauthorized(
            ErrorCode::InvalidSignature,
            format!("{refusal}; nothing was sent"),
        )
    })?;
    // A signed hook needs no caller list: the standard credential parameters still go.
    Ok(forwarded_query(query, &Default::default(), ""))
}

/// The body as the templates' `payload`: JSON, or a form as an object of its fields (a field
/// given more than once becomes a list).
fn payload(headers: &HeaderMap, raw: &[u8]) -> Result<Json, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    payload_of(ct, raw)
}

/// [`payload`] for a body of content type `content_type` (also what `operator hook test` reads).
pub fn payload_of(content_type: &str, raw: &[u8]) -> Result<Json, ApiError> {
    let ct = media_type(content_type);
    if raw.is_empty() {
        return Ok(Json::Object(Default::default()));
    }
    if ct == "application/x-www-form-urlencoded" {
        let mut fields = serde_json::Map::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            match fields.get_mut(k.as_ref()) {
                Some(Json::Array(list)) => list.push(Json::String(v.into_owned())),
                Some(first) => {
                    *first = Json::Array(vec![first.take(), Json::String(v.into_owned())])
                }
                None => {
                    fields.insert(k.into_owned(), Json::String(v.into_owned()));
                }
            }
        }
        return Ok(Json::Object(fields));
    }
    let jsonish = ct.is_empty()
        || ct == "application/json"
        || ct == "text/plain"
        || (ct.starts_with("application/") && ct.ends_with("+json"));
    if !jsonish {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "a hook takes a JSON or form-encoded body",
        ));
    }
    serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!(
                "the body is not JSON (line {}, column {}); nothing was sent",
                e.line(),
                e.column()
            ),
        )
    })
}

fn lower_case(headers: &HeaderMap) -> Headers {
    let mut out = Headers::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// RingCX's answer recorded under the claim; a failure to record is logged (the answer still
/// goes to the sender, who must not be told to retry an event RingCX took).
async fn record(
    store: &IdempotencyStore,
    lease: &Lease,
    a: &VoiceResponse,
    deadline: DateTime<Utc>,
    hook: &Hook,
) {
    let answer = StoredAnswer {
        status: a.status,
        content_type: a.content_type.clone(),
        body: (a.body.len() <= MAX_STORED_BODY).then(|| a.body.clone()),
        body_len: a.body.len(),
    };
    if let Err(e) = store.complete(lease, &answer, deadline).await {
        tracing::error!(
            hook = %hook.name,
            error = %e,
            "RingCX took the event but its idempotency record was not written: repeats are answered 409 until the lease ends, and may be delivered again after it"
        );
    }
}

fn replay(answer: StoredAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = match answer.body {
        Some(body) => {
            let mut r = (status, body).into_response();
            if let Some(ct) = answer
                .content_type
                .and_then(|ct| HeaderValue::from_str(&ct).ok())
            {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            r
        }
        None => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"replayed": true, "note": format!(
                "RingCX's answer was {} bytes, more than the {} KiB kept for repeats",
                answer.body_len, MAX_STORED_BODY / 1024)})
            .to_string(),
        )
            .into_response(),
    };
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Any failure to reach RingCX with a usable token: nothing was delivered, the sender retries.
fn failed(e: ApiError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::HookDeliveryFailed,
        format!(
            "{} ({}); the event was not delivered, retry",
            e.message, e.code
        ),
    )
    .with_retry_after(e.retry_after.unwrap_or(5).max(1))
}

fn unavailable(e: broker::hooks::idempotency::IdempotencyError) -> ApiError {
    tracing::error!(error = %e, "the idempotency table cannot be used");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::IdempotencyUnavailable,
        "the idempotency table cannot be reached right now; nothing was sent",
    )
    .with_retry_after(5)
}
