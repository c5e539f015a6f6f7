//! A RingCX and RingCentral platform simulator, faithful to `../shared/engage-docs/`, with an
//! adjustable clock, fault injection and a request log. Usable in-process from tests
//! ([`Simulator::start`]) and as the `ringcx-sim` binary for `make dev`; the same controls are
//! served over HTTP under `/__sim/`.

mod auth_configs;
mod control;
pub mod faults;
pub mod leads;
pub mod outbound;
mod ringcx;
pub mod state;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration as StdDuration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use broker::clock::SharedClock;
use chrono::{DateTime, Duration, Utc};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;

pub use faults::{
    Behaviour, CreatedTokenFormat, DeleteAnswer, Fault, FaultScope, Faults, ScriptedFault,
    TokenListFormat, TokenRefusal,
};
use state::World;
pub use state::{CLIENT_ID, CLIENT_SECRET, RecordedRequest, SimUser, TokenStats};

/// Largest request body the simulator reads.
const MAX_BODY: usize = 4 << 20;

pub(crate) struct Shared {
    pub clock: SharedClock,
    world: Mutex<World>,
}

impl Shared {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lets a handler close its own connection without answering (the `Drop` fault).
#[derive(Clone)]
struct ConnectionKill(Arc<Notify>);

/// A running simulator; dropping it stops the server and closes its connections.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Starts on a free loopback port. `clock` is the simulator's idea of now (plus any
    /// [`Simulator::advance`]); share a `ManualClock` with the code under test to move both.
    pub async fn start(clock: SharedClock) -> std::io::Result<Self> {
        Self::bind(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            clock,
            7,
        )
        .await
    }

    /// Starts on `addr`; `seed` fixes every random choice (tokens, fault draws).
    pub async fn bind(addr: SocketAddr, clock: SharedClock, seed: u64) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            clock,
            world: Mutex::new(World::new(seed)),
        });
        let app = router(shared.clone());
        let task = tokio::spawn(serve(listener, app));
        Ok(Self { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for both `ENGAGE_BASE_URL` and `RINGCENTRAL_SERVER_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.shared.world().now(&self.shared.clock)
    }

    /// Moves the simulator's clock (only) forward.
    pub fn advance(&self, by: Duration) {
        self.shared.world().offset += by;
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.world().faults = faults;
    }

    /// Queues `count` copies of `fault` for the next requests under `path_prefix`.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, count: u32) {
        self.shared.world().scripted.push(ScriptedFault {
            path_prefix: path_prefix.to_owned(),
            fault,
            count,
        });
    }

    pub fn clear_faults(&self) {
        let mut w = self.shared.world();
        w.faults = Faults::default();
        w.scripted.clear();
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.world().behaviour = behaviour;
    }

    pub fn behaviour(&self) -> Behaviour {
        self.shared.world().behaviour.clone()
    }

    /// Invalidates every refresh token issued so far; returns how many were valid.
    pub fn revoke_refresh_tokens(&self) -> usize {
        let mut w = self.shared.world();
        let n = w.refresh_tokens.len();
        w.refresh_tokens.clear();
        n
    }

    /// What the simulator counted about refresh tokens (refreshes, reuses, revoked families,
    /// answers lost on purpose).
    pub fn token_stats(&self) -> state::TokenStats {
        self.shared.world().token_stats
    }

    /// The permanent API tokens a user holds.
    pub fn api_tokens_of(&self, username: &str) -> Vec<String> {
        let w = self.shared.world();
        let Some(user) = w.users.iter().position(|u| u.username == username) else {
            return Vec::new();
        };
        w.api_tokens
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// An access and a refresh token for `username`, as an earlier login would have left them
    /// (a fixture for seeding many tenants without the exchange's rate limit).
    pub fn mint_session(&self, username: &str) -> Option<(String, String)> {
        let mut w = self.shared.world();
        let user = w.users.iter().position(|u| u.username == username)?;
        let now = w.now(&self.shared.clock);
        let family = w.new_family();
        let access = w.issue_access_token(user, now, family);
        let refresh = w.issue_refresh_token(user, family);
        Some((access, refresh))
    }

    /// A permanent API token made for `username` outside the broker (in RingCX's own UI).
    pub fn issue_api_token(&self, username: &str) -> Option<String> {
        let mut w = self.shared.world();
        let user = w.users.iter().position(|u| u.username == username)?;
        Some(w.issue_api_token(user))
    }

    /// Every request received so far, in arrival order.
    /// Every load the direct lead loader accepted, oldest first.
    pub fn lead_loads(&self) -> Vec<leads::LeadLoad> {
        self.shared.world().lead_loads.clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.world().log.clone()
    }

    /// How many requests hit `method path` (path without query).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.shared
            .world()
            .log
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.world().log.clear();
    }

    pub fn users(&self) -> Vec<SimUser> {
        self.shared.world().users.clone()
    }

    /// The typed RingEX JWT credentials of a fixture user (test support: panics for an unknown one).
    pub fn ringex_jwt(&self, username: &str) -> broker::credentials::RingExJwtCredentials {
        let doc = self.ringex_credentials(username).expect("a fixture user");
        match serde_json::from_value(doc).expect("a credentials document") {
            broker::credentials::Credentials::RingExJwt(c) => c,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The typed RingCX login credentials of a fixture user (test support).
    pub fn engage_login(&self, username: &str) -> broker::credentials::EngageLoginCredentials {
        let doc = self
            .engage_login_credentials(username)
            .expect("a fixture user");
        match serde_json::from_value(doc).expect("a credentials document") {
            broker::credentials::Credentials::EngageLogin(c) => c,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A `ringex-jwt` credentials document for the fixture user `username`.
    pub fn ringex_credentials(&self, username: &str) -> Option<Value> {
        let w = self.shared.world();
        let u = w.users.iter().find(|u| u.username == username)?;
        Some(
            json!({"type": "ringex-jwt", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
                    "jwt": u.jwt_credential, "platformUrl": self.base_url()}),
        )
    }

    /// An `engage-login` credentials document for the fixture user `username`.
    pub fn engage_login_credentials(&self, username: &str) -> Option<Value> {
        let w = self.shared.world();
        let u = w.users.iter().find(|u| u.username == username)?;
        Some(
            json!({"type": "engage-login", "username": u.username, "password": u.password,
                    "platformId": u.platform_id}),
        )
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    ringcx::routes()
        .nest("/__sim", control::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"errorCode": "not.found", "generalMessage": "No handler found"}).to_string(),
    )
        .into_response()
}

/// Records every simulated request and applies injected faults before the real handler runs.
async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if parts.uri.path().starts_with("/__sim/") {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let path = parts.uri.path().to_owned();
    let (index, fault, latency) = {
        let mut w = shared.world();
        let now = w.now(&shared.clock);
        let fault = w
            .scripted
            .take(&path)
            .or_else(|| random_fault(&mut w, &path));
        let latency = if w.faults.scope.covers(&path) {
            w.faults.latency_ms
        } else {
            0
        };
        let mut headers: Vec<String> = parts
            .headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        headers.sort();
        headers.dedup();
        w.log.push(RecordedRequest {
            at: now,
            method: parts.method.as_str().to_owned(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: String::from_utf8_lossy(&bytes).into_owned(),
            status: 0,
        });
        (w.log.len() - 1, fault, latency)
    };
    if latency > 0 {
        tokio::time::sleep(StdDuration::from_millis(latency)).await;
    }
    let kill = |parts: &axum::http::request::Parts| {
        if let Some(kill) = parts.extensions.get::<ConnectionKill>() {
            kill.0.notify_one();
        }
    };
    let response = match fault {
        Some(Fault::Drop) => {
            kill(&parts);
            std::future::pending::<()>().await;
            unreachable!("a dropped connection never answers")
        }
        Some(Fault::DropAfter) => {
            let conn = parts.extensions.get::<ConnectionKill>().cloned();
            let answered = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            {
                let mut w = shared.world();
                w.token_stats.lost_answers += 1;
                if answered.status().is_success() && path == "/api/auth/token/refresh" {
                    w.token_stats.lost_refreshes += 1;
                }
            }
            tracing::debug!(status = %answered.status(), "processed, answer dropped");
            if let Some(conn) = conn {
                conn.0.notify_one();
            }
            std::future::pending::<()>().await;
            unreachable!("a dropped connection never answers")
        }
        Some(Fault::ServerError { status }) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            [(header::CONTENT_TYPE, "text/html")],
            format!("<html><body><h1>{status} Server Error</h1></body></html>"),
        )
            .into_response(),
        Some(Fault::RateLimited { retry_after }) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::RETRY_AFTER, retry_after.to_string()),
            ],
            json!({"generalMessage": "Too many requests"}).to_string(),
        )
            .into_response(),
        Some(Fault::Garbage) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Scheduled maintenance</body></html>",
        )
            .into_response(),
        Some(Fault::Delay { ms }) => {
            tokio::time::sleep(StdDuration::from_millis(ms)).await;
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Some(Fault::DelayAfter { ms }) => {
            let answered = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            tokio::time::sleep(StdDuration::from_millis(ms)).await;
            answered
        }
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    if let Some(entry) = shared.world().log.get_mut(index) {
        entry.status = response.status().as_u16();
    }
    response
}

fn random_fault(w: &mut World, path: &str) -> Option<Fault> {
    let f = w.faults.clone();
    if !f.scope.covers(path) {
        return None;
    }
    if f.drop_ratio > 0.0 && w.rng.f64() < f.drop_ratio {
        return Some(Fault::Drop);
    }
    if f.lost_answer_ratio > 0.0 && w.rng.f64() < f.lost_answer_ratio {
        return Some(Fault::DropAfter);
    }
    if f.error_ratio > 0.0 && w.rng.f64() < f.error_ratio {
        let status = [500, 502, 503, 504][w.rng.usize(..4)];
        return Some(Fault::ServerError { status });
    }
    if f.rate_limit_ratio > 0.0 && w.rng.f64() < f.rate_limit_ratio {
        return Some(Fault::RateLimited { retry_after: 1 });
    }
    None
}

/// The accept loop: plain hyper connections, each able to be closed by its own handler.
async fn serve(listener: TcpListener, app: Router) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let kill = Arc::new(Notify::new());
        let app = app.clone();
        let handle = ConnectionKill(kill.clone());
        let service = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(handle.clone());
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.oneshot(req.map(Body::new)).await.into_response()) }
        });
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
            }
        });
    }
}
