//! A Lambda Runtime API of our own, so the real function binaries run exactly as in Lambda: they
//! long-poll `invocation/next`, and post to `invocation/{id}/response` or `/error`.
//! [`LambdaProcess`] starts a binary against it with the variables Lambda sets.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Response(Value),
    Error {
        error_type: String,
        error_message: String,
    },
}

struct Pending {
    id: String,
    payload: Value,
    deadline_ms: u64,
}

#[derive(Default)]
struct Waiters {
    results: HashMap<String, oneshot::Sender<Invocation>>,
    init_errors: Vec<String>,
}

struct Shared {
    queue: AsyncMutex<mpsc::Receiver<Pending>>,
    waiters: Mutex<Waiters>,
    /// How many `invocation/next` polls have arrived: the first one ends the function's init.
    polls: tokio::sync::watch::Sender<u64>,
}

/// The Runtime API server; dropping it stops it.
pub struct RuntimeApi {
    addr: SocketAddr,
    sender: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    next_id: Mutex<u64>,
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            queue: AsyncMutex::new(receiver),
            waiters: Mutex::default(),
            polls: tokio::sync::watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            sender,
            shared,
            task,
            next_id: Mutex::new(0),
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API` for the function process.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Invokes the function with `payload` and a deadline `timeout` from now; waits for its answer.
    pub async fn invoke(&self, payload: Value, timeout: Duration) -> Invocation {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
            *n += 1;
            format!("00000000-0000-4000-8000-{:012}", *n)
        };
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .results
            .insert(id.clone(), tx);
        let deadline_ms = (chrono::Utc::now() + timeout).timestamp_millis() as u64;
        self.sender
            .send(Pending {
                id,
                payload,
                deadline_ms,
            })
            .await
            .expect("the runtime API is running");
        match tokio::time::timeout(timeout + Duration::from_secs(5), rx).await {
            Ok(Ok(result)) => result,
            _ => panic!("the function did not answer within {timeout:?} (plus 5 s)"),
        }
    }

    /// Waits until the function has asked for its first invocation (its init is over); false
    /// when that did not happen within `timeout`.
    pub async fn first_poll(&self, timeout: Duration) -> bool {
        let mut polls = self.shared.polls.subscribe();
        tokio::time::timeout(timeout, polls.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Errors the function reported while starting.
    pub fn init_errors(&self) -> Vec<String> {
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .init_errors
            .clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    s.polls.send_modify(|n| *n += 1);
    let Some(p) = s.queue.lock().await.recv().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", p.id);
    set("lambda-runtime-deadline-ms", p.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:test".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, p.payload.to_string()).into_response()
}

fn finish(s: &Shared, id: &str, result: Invocation) -> StatusCode {
    match s
        .waiters
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .results
        .remove(id)
    {
        Some(tx) => {
            let _ = tx.send(result);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn response(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    finish(&s, &id, Invocation::Response(value))
}

async fn error(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    finish(
        &s,
        &id,
        Invocation::Error {
            error_type: text("errorType"),
            error_message: text("errorMessage"),
        },
    )
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let mut w = s.waiters.lock().unwrap_or_else(PoisonError::into_inner);
    w.init_errors
        .push(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// Builds (if needed) and returns the path of a workspace binary. Builds every workspace binary
/// the way `make test` does beforehand, so this is a no-op there (another feature set would
/// rebuild half the dependency tree).
pub fn binary(package: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--workspace", "--bins"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the workspace binaries failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug").join(package)
}

/// A function binary running against a [`RuntimeApi`], with its output captured.
pub struct LambdaProcess {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl LambdaProcess {
    /// Starts `package`'s binary with a clean environment: Lambda's variables plus `env`.
    pub fn start(package: &str, runtime: &RuntimeApi, env: &[(&str, String)]) -> Self {
        Self::start_binary(&binary(package), package, runtime, env)
    }

    /// Starts the binary at `path` (e.g. a deployment `bootstrap`) as function `name`.
    pub fn start_binary(
        path: &std::path::Path,
        name: &str,
        runtime: &RuntimeApi,
        env: &[(&str, String)],
    ) -> Self {
        let package = name;
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime.endpoint())
            .env("AWS_LAMBDA_FUNCTION_NAME", package)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{package}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the function binary starts");
        let (stdout, out_reader) = capture(child.stdout.take());
        let (stderr, err_reader) = capture(child.stderr.take());
        Self {
            child,
            stdout,
            stderr,
            readers: out_reader.into_iter().chain(err_reader).collect(),
        }
    }

    /// Ends the process and waits until its pipes are drained, so [`Self::output`] holds every
    /// line it wrote: assertions about what a function logged (or never logged) read it after
    /// this, not while the reader threads may still be behind.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Everything the process printed so far (stdout then stderr).
    pub fn output(&self) -> String {
        let read = |b: &Arc<Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&b.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
        };
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }

    /// The output once it contains `needle` (the pipes are read by threads of their own, so a
    /// line written before an answer may arrive after it), or as it is after `timeout`.
    pub async fn output_with(&self, needle: &str, timeout: Duration) -> String {
        let until = std::time::Instant::now() + timeout;
        loop {
            let out = self.output();
            if out.contains(needle) || std::time::Instant::now() >= until {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn capture(
    pipe: Option<impl Read + Send + 'static>,
) -> (Arc<Mutex<Vec<u8>>>, Option<std::thread::JoinHandle<()>>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let reader = pipe.map(|mut pipe| {
        let sink = buffer.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]);
            }
        })
    });
    (buffer, reader)
}
