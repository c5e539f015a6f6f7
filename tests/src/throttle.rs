//! A throttling layer of our own in front of moto: moto enforces no request quota, so this proxy
//! answers calls of one operation (Secrets Manager's, DynamoDB's: any AWS JSON protocol
//! `X-Amz-Target`) past a chosen rate exactly as AWS does (`400`, `ThrottlingException`, "Rate
//! exceeded"), and forwards the rest unchanged. It can also lose answers: forward a call, let moto
//! apply it, and answer `500` instead (a timeout after the fact). The functions' real binaries
//! reach it through `AWS_ENDPOINT_URL_SECRETS_MANAGER` (or `_DYNAMODB`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use broker::clock::{Clock as _, SystemClock};
use broker::rate::Window;

struct Shared {
    upstream: String,
    /// The throttled operation's target (`secretsmanager.BatchGetSecretValue`) and its rate.
    target: String,
    window: Window,
    http: reqwest::Client,
    throttled: AtomicU64,
    passed: AtomicU64,
    /// Every call forwarded, by operation.
    seen: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Answers still to lose, by target.
    lose: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
}

/// The proxy; dropping it stops it.
pub struct ThrottlingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ThrottlingProxy {
    /// Forwards to `upstream`, allowing `target` (an `X-Amz-Target`, e.g.
    /// `secretsmanager.BatchGetSecretValue` or `DynamoDB_20120810.PutItem`) `per_second`.
    pub async fn start(upstream: &str, target: &str, per_second: u32) -> Self {
        Self::start_with_window(upstream, target, per_second, Duration::from_secs(1)).await
    }

    /// As [`ThrottlingProxy::start`], allowing `limit` calls per `period` (a long period makes a
    /// test independent of how fast the machine runs it).
    pub async fn start_with_window(
        upstream: &str,
        target: &str,
        limit: u32,
        period: Duration,
    ) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            target: target.to_owned(),
            window: Window::new(limit, period),
            http: reqwest::Client::new(),
            throttled: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            seen: Default::default(),
            lose: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, shared, task }
    }

    /// The endpoint to give the AWS SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls of the operation answered `ThrottlingException`.
    pub fn throttled(&self) -> u64 {
        self.shared.throttled.load(Ordering::Relaxed)
    }

    /// Calls of `target` (e.g. `secretsmanager.GetSecretValue`) forwarded to moto.
    pub fn forwarded(&self, target: &str) -> u64 {
        let seen = self
            .shared
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(target).copied().unwrap_or(0)
    }

    /// The next `count` calls of `target` are applied by moto and answered `500` (lost).
    pub fn lose_next(&self, target: &str, count: u32) {
        self.shared
            .lose
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(target.to_owned(), count);
    }

    /// Calls of the operation let through.
    pub fn passed(&self) -> u64 {
        self.shared.passed.load(Ordering::Relaxed)
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(s): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target == s.target {
        if s.window.take(SystemClock.now()).is_err() {
            s.throttled.fetch_add(1, Ordering::Relaxed);
            let mut r = (
                StatusCode::BAD_REQUEST,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            )
                .into_response();
            let h = r.headers_mut();
            h.insert(
                "content-type",
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            h.insert(
                "x-amzn-errortype",
                HeaderValue::from_static("ThrottlingException"),
            );
            return r;
        }
        s.passed.fetch_add(1, Ordering::Relaxed);
    }
    *s.seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(target.to_owned())
        .or_default() += 1;
    let Ok(bytes) = to_bytes(body, 16 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let uri = format!(
        "{}{}",
        s.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut forwarded = s.http.request(parts.method.clone(), uri).body(bytes);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forwarded = forwarded.header(name, value);
        }
    }
    let lost = {
        let mut lose = s
            .lose
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match lose.get_mut(target) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    match forwarded.send().await {
        Ok(_) if lost => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/x-amz-json-1.0")],
            r#"{"__type":"InternalServerError","message":"the answer was lost"}"#,
        )
            .into_response(),
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = status;
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    r.headers_mut().insert(name, value.clone());
                }
            }
            r
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
