//! Helpers shared by the integration tests and benchmark harnesses.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use broker::clock::SharedClock;
use broker::ringcx::{RingCxClient, RingCxConfig};
use broker::store::aws::SecretsManagerStore;
use tracing_subscriber::fmt::MakeWriter;

use crate::sim::Simulator;

/// A client aimed at the simulator for both RingCX and the platform.
pub fn client_for(sim: &Simulator, clock: SharedClock, request_timeout: Duration) -> RingCxClient {
    let base = url::Url::parse(&sim.base_url()).expect("the simulator's URL parses");
    let mut config = RingCxConfig::new(base.clone(), base);
    config.request_timeout = request_timeout;
    config.connect_timeout = Duration::from_secs(2);
    RingCxClient::new(&config, clock).expect("client builds")
}

/// The moto server `make test` started (`MOTO_URL`), or a clear instruction.
pub fn moto_url() -> String {
    std::env::var("MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "MOTO_URL is not set: run the tests with `make test` (tests/with-moto.sh starts moto \
             and sets MOTO_URL plus the AWS SDK's variables)"
        )
    })
}

/// The real Secrets Manager store, configured from the environment exactly as the functions
/// configure it (`tests/with-moto.sh` points `AWS_ENDPOINT_URL_SECRETS_MANAGER` at moto).
pub async fn moto_store() -> SecretsManagerStore {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER").unwrap_or_default();
    assert_eq!(
        endpoint,
        moto_url(),
        "the AWS SDK must be pointed at moto, never at AWS"
    );
    SecretsManagerStore::from_env(None).await
}

/// A table or queue name no other test run uses (moto is shared by every test).
fn unique_name(kind: &str, test: &str) -> String {
    format!(
        "{kind}{}-{}-{test}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Refuses to go on unless the SDK's endpoint variable `var` names moto.
fn assert_points_at_moto(var: &str) {
    assert_eq!(
        std::env::var(var).unwrap_or_default(),
        moto_url(),
        "{var}: the AWS SDK must be pointed at moto, never at AWS"
    );
}

/// A new idempotency table in moto's DynamoDB (partition key `id`, on demand, as the template
/// makes it), under a name no other test uses.
pub async fn idempotency_table(test: &str) -> (aws_sdk_dynamodb::Client, String) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    assert_points_at_moto("AWS_ENDPOINT_URL_DYNAMODB");
    let client = aws_sdk_dynamodb::Client::new(&broker::store::aws::sdk_config().await);
    let table = unique_name("t", test);
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("moto creates the table");
    (client, table)
}

/// A hook queue and its dead-letter queue in moto's SQS, as the template makes them (SSE on, a
/// redrive policy after `max_receives`), under names no other test uses: (client, queue, DLQ).
pub async fn hook_queues(test: &str, max_receives: u32) -> (aws_sdk_sqs::Client, String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    assert_points_at_moto("AWS_ENDPOINT_URL_SQS");
    let client = aws_sdk_sqs::Client::new(&broker::store::aws::sdk_config().await);
    let name = unique_name("q", test);
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .send()
        .await
        .expect("moto creates the dead-letter queue");
    let dlq_url = dlq.queue_url().unwrap().to_owned();
    let arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue = client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "720")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives})
                .to_string(),
        )
        .send()
        .await
        .expect("moto creates the hook queue");
    (client, queue.queue_url().unwrap().to_owned(), dlq_url)
}

/// A prefix no other test run uses, so tests share one moto without interfering.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "t{}-{}-{test}/",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Everything written to a `tracing` subscriber, for scanning logs for secrets.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// A subscriber at TRACE for every crate (ours, reqwest, hyper, ...) writing here.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(self.clone())
            .with_ansi(false)
            .finish()
    }

    /// Runs `work` on a current-thread runtime with this capture as the thread's subscriber, so
    /// every log line the work causes (and only those) lands here.
    pub fn run<F: std::future::Future>(&self, work: F) -> F::Output {
        let _guard = tracing::subscriber::set_default(self.subscriber());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(work)
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A whole broker world on one simulated clock: the RingCX simulator, the Secrets Manager model
/// and a renewer, so hours of token life run in milliseconds.
pub struct Stack {
    pub clock: broker::clock::ManualClock,
    pub sim: Simulator,
    pub store: broker::store::memory::MemoryStore,
    pub renewer: broker::renew::Renewer<broker::store::memory::MemoryStore>,
}

/// The deployment's secret prefix in stacks.
pub const PREFIX: &str = "ringcx/";

impl Stack {
    pub async fn new(slots: u32, settings: broker::renew::RenewSettings) -> Self {
        let clock = broker::clock::ManualClock::starting_now();
        let shared: SharedClock = Arc::new(clock.clone());
        let sim = Simulator::start(shared.clone())
            .await
            .expect("simulator starts");
        let store = broker::store::memory::MemoryStore::new(shared.clone());
        let renewer = Self::renewer_over(&store, &sim, shared, slots, settings);
        Self {
            clock,
            sim,
            store,
            renewer,
        }
    }

    fn renewer_over(
        store: &broker::store::memory::MemoryStore,
        sim: &Simulator,
        clock: SharedClock,
        slots: u32,
        settings: broker::renew::RenewSettings,
    ) -> broker::renew::Renewer<broker::store::memory::MemoryStore> {
        let ring = broker::store::SessionRing::new(
            store.clone(),
            broker::store::SecretNames::new(PREFIX),
            slots,
            clock.clone(),
        );
        let ringcx = client_for(sim, clock.clone(), Duration::from_secs(5));
        broker::renew::Renewer::new(ring, ringcx, clock, settings)
    }

    /// Another renewer over the same store, simulator and clock that shares nothing in memory
    /// with [`Stack::renewer`]: what a second Lambda instance is.
    pub fn instance(&self) -> broker::renew::Renewer<broker::store::memory::MemoryStore> {
        Self::renewer_over(
            &self.store,
            &self.sim,
            Arc::new(self.clock.clone()),
            self.renewer.ring().slots(),
            self.renewer.settings().clone(),
        )
    }

    /// Writes `doc` as the tenant's credentials secret.
    pub async fn put_credentials(&self, tenant: &str, doc: &serde_json::Value) {
        let name = broker::store::SecretNames::new(PREFIX).credentials(tenant);
        broker::store::upsert(
            &self.store,
            &name,
            &secrecy::SecretString::from(doc.to_string()),
        )
        .await
        .expect("credentials written");
    }

    /// The newest session in the tenant's ring (read as the functions read it: throttling is
    /// retried on the stack's clock).
    pub async fn newest(&self, tenant: &str) -> Option<broker::session::SessionState> {
        use broker::clock::Clock as _;
        let deadline = self.clock.now() + chrono::Duration::seconds(30);
        self.renewer
            .read_view(tenant, deadline)
            .await
            .expect("ring readable")
            .newest
    }

    /// A renewal with a 50-second deadline (the refresher's Lambda timeout is 60 s).
    pub async fn renew(
        &self,
        tenant: &str,
    ) -> Result<broker::renew::Report, broker::renew::RenewError> {
        use broker::clock::Clock as _;
        let deadline = self.clock.now() + chrono::Duration::seconds(50);
        self.renewer.renew(tenant, deadline).await
    }
}

/// Callers every API stack is seeded with: (id, tenant, scopes).
pub const API_CALLERS: &[(&str, &str, &[api::auth::Scope])] = {
    use api::auth::Scope::*;
    &[
        ("proxy", "default", &[EngageProxy]),
        ("reader", "default", &[TokenRead]),
        ("admin", "default", &[ApiTokensAdmin]),
        ("all", "default", &[EngageProxy, TokenRead, ApiTokensAdmin]),
        ("other", "second", &[EngageProxy, TokenRead, ApiTokensAdmin]),
    ]
};

/// The HTTP function in process, on a loopback port, over any store, with the simulator behind it
/// and a shared simulated clock. Tenants: `default` (RingEX credentials) and `second` (RingCX
/// login), plus `empty`, served but without credentials.
pub struct ApiStack<S> {
    pub clock: broker::clock::ManualClock,
    pub sim: Simulator,
    pub store: S,
    pub app: api::AppState<S>,
    pub base: String,
    pub prefix: String,
    /// Caller id -> key.
    pub keys: std::collections::HashMap<&'static str, String>,
    server: tokio::task::JoinHandle<()>,
    /// The configuration every instance of this stack runs with.
    pub config: broker::config::Config,
}

/// One HTTP function instance as `main` builds it (with the idempotency table when the
/// configuration names one), on `store` and `clock`.
pub async fn instance<S: broker::store::SecretStore + Clone + 'static>(
    config: &broker::config::Config,
    store: S,
    clock: SharedClock,
) -> api::AppState<S> {
    let sdk = broker::store::aws::sdk_config().await;
    Arc::new(
        api::App::new(config, store, clock)
            .expect("app builds")
            .with_idempotency(config, aws_sdk_dynamodb::Client::new(&sdk))
            .with_hook_queue(config, aws_sdk_sqs::Client::new(&sdk)),
    )
}

/// Serves an instance on a loopback port; its base URL and server task.
pub async fn serve<S: broker::store::SecretStore + Clone + 'static>(
    app: api::AppState<S>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = api::router(app);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (base, server)
}

impl<S: broker::store::SecretStore + Clone + 'static> ApiStack<S> {
    /// `extra` are more configuration variables (e.g. `ALLOW_QUERY_KEY`).
    pub async fn start(store: S, prefix: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_on(
            broker::clock::ManualClock::starting_now(),
            store,
            prefix,
            extra,
        )
        .await
    }

    /// [`ApiStack::start`] on `clock`, the one `store` runs on (a model whose request quotas
    /// must move with the stack's simulated time).
    pub async fn start_on(
        clock: broker::clock::ManualClock,
        store: S,
        prefix: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        use secrecy::ExposeSecret as _;
        let shared: SharedClock = Arc::new(clock.clone());
        let sim = Simulator::start(shared.clone())
            .await
            .expect("simulator starts");
        let config = config(&sim, prefix, "default,second,empty", extra);
        let names = config.names();
        let put = |name: String, doc: String| {
            let store = store.clone();
            async move { seed(&store, &name, &doc).await }
        };
        put(
            names.credentials("default"),
            sim.ringex_credentials("admin@example.com")
                .unwrap()
                .to_string(),
        )
        .await;
        put(
            names.credentials("second"),
            sim.engage_login_credentials("agent@example.com")
                .unwrap()
                .to_string(),
        )
        .await;
        let mut keys = std::collections::HashMap::new();
        let mut entries = Vec::new();
        for (id, tenant, scopes) in API_CALLERS {
            let (key, entry) =
                api::auth::generate_key(id, tenant, scopes.to_vec()).expect("random key");
            keys.insert(*id, key.expose_secret().to_owned());
            entries.push(entry);
        }
        put(names.callers(), serde_json::to_string(&entries).unwrap()).await;
        let app = instance(&config, store.clone(), shared).await;
        let (base, server) = serve(app.clone()).await;
        let stack = Self {
            clock,
            sim,
            store,
            app,
            base,
            prefix: prefix.to_owned(),
            keys,
            server,
            config,
        };
        // As in production, the refresher makes the first session; the HTTP function never
        // logs in.
        for tenant in ["default", "second"] {
            stack.refresh_now(tenant).await.expect("the first login");
        }
        stack.sim.clear_requests();
        stack
    }

    /// One refresher renewal of `tenant` now, on the stack's clock.
    pub async fn refresh_now(
        &self,
        tenant: &str,
    ) -> Result<broker::renew::Report, broker::renew::RenewError> {
        use broker::clock::Clock as _;
        let deadline = self.clock.now() + chrono::Duration::seconds(50);
        self.refresher().renew(tenant, deadline).await
    }

    /// Another instance of the HTTP function over the same store, clock and configuration (its
    /// own caches and clients), served on its own port: its base URL and server task.
    pub async fn another_instance(&self) -> (String, tokio::task::JoinHandle<()>) {
        let shared: SharedClock = Arc::new(self.clock.clone());
        serve(instance(&self.config, self.store.clone(), shared).await).await
    }

    pub fn key(&self, caller: &str) -> &str {
        &self.keys[caller]
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl<S> Drop for ApiStack<S> {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Sends `request_line` and headers as raw bytes (no client-side normalisation of `..` or
/// escapes) and returns the status code and body.
pub async fn raw_http(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

impl<S: broker::store::SecretStore + Clone + 'static> ApiStack<S> {
    /// A refresher of this stack's world for `tenants` (its own warm memory), on the stack's
    /// clock and store.
    pub fn refresher_for(&self, tenants: &str) -> refresher::Refresher<S> {
        refresher::Refresher::new(
            &config_for(self, tenants),
            self.store.clone(),
            Arc::new(self.clock.clone()),
        )
        .expect("the refresher builds")
    }

    /// A renewer over the same store, simulator and clock: what the refresher Lambda runs.
    pub fn refresher(&self) -> broker::renew::Renewer<S> {
        let shared: SharedClock = Arc::new(self.clock.clone());
        let ring = broker::store::SessionRing::new(
            self.store.clone(),
            broker::store::SecretNames::new(self.prefix.clone()),
            6,
            shared.clone(),
        );
        let ringcx = client_for(&self.sim, shared.clone(), Duration::from_secs(5));
        broker::renew::Renewer::new(
            ring,
            ringcx,
            shared,
            broker::renew::RenewSettings::default(),
        )
    }
}

/// One refresher renewal of `tenant` against `store` and the simulator on the real clock, the way
/// the refresher Lambda would make a tenant's first session (the HTTP function never logs in).
pub async fn refresh_with<S: broker::store::SecretStore>(
    store: S,
    prefix: &str,
    sim: &Simulator,
    slots: u32,
    tenant: &str,
) -> Result<broker::renew::Report, broker::renew::RenewError> {
    let clock: SharedClock = Arc::new(broker::clock::SystemClock);
    let ring = broker::store::SessionRing::new(
        store,
        broker::store::SecretNames::new(prefix),
        slots,
        clock.clone(),
    );
    let renewer = broker::renew::Renewer::new(
        ring,
        client_for(sim, clock.clone(), Duration::from_secs(5)),
        clock,
        broker::renew::RenewSettings::default(),
    );
    renewer
        .renew(tenant, chrono::Utc::now() + chrono::Duration::seconds(50))
        .await
}

/// A deployment of one tenant, `default`, as the refresher leaves it after its first login, with
/// one proxy caller (`ivr`); its key.
pub async fn one_tenant_with_a_caller<S: broker::store::SecretStore + Clone>(
    store: &S,
    prefix: &str,
    sim: &Simulator,
) -> String {
    use secrecy::ExposeSecret as _;
    let names = broker::store::SecretNames::new(prefix);
    let credentials = sim
        .ringex_credentials("admin@example.com")
        .expect("fixture user");
    seed(
        store,
        &names.credentials("default"),
        &credentials.to_string(),
    )
    .await;
    let (key, entry) =
        api::auth::generate_key("ivr", "default", vec![api::auth::Scope::EngageProxy])
            .expect("random key");
    seed(
        store,
        &names.callers(),
        &serde_json::json!([entry]).to_string(),
    )
    .await;
    refresh_with(store.clone(), prefix, sim, 6, "default")
        .await
        .expect("the first login");
    key.expose_secret().to_owned()
}

/// The environment a function binary needs to run against moto and the simulator.
pub fn function_env(sim: &Simulator, prefix: &str, tenants: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_url()),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto_url()),
        ("AWS_ENDPOINT_URL_SQS", moto_url()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("ENGAGE_BASE_URL", sim.base_url()),
        ("RINGCENTRAL_SERVER_URL", sim.base_url()),
        ("SECRET_PREFIX", prefix.to_owned()),
        ("TENANTS", tenants.to_owned()),
    ]
}

impl<S: broker::store::SecretStore + Clone + 'static> ApiStack<S> {
    /// The real `operator` binary run with `args` against this stack's world
    /// (moto and the simulator; tenants `default`, `second`, `empty`), environment cleared.
    pub fn operator_command(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(crate::lambda::binary("operator"))
            .env_clear()
            .envs(function_env(
                &self.sim,
                &self.prefix,
                "default,second,empty",
            ))
            .args(args)
            .output()
            .expect("the operator binary runs")
    }

    /// [`ApiStack::operator_command`] with more variables (the hook queues, say).
    pub fn operator_command_with(
        &self,
        env: &[(&'static str, String)],
        args: &[&str],
    ) -> std::process::Output {
        std::process::Command::new(crate::lambda::binary("operator"))
            .env_clear()
            .envs(function_env(
                &self.sim,
                &self.prefix,
                "default,second,empty",
            ))
            .envs(env.iter().cloned())
            .args(args)
            .output()
            .expect("the operator binary runs")
    }

    /// A new caller key for `tenant` with `scopes` (and `paths`), added to the callers secret.
    pub async fn add_key(
        &self,
        id: &str,
        tenant: &str,
        scopes: &[api::auth::Scope],
        paths: Option<&[&str]>,
    ) -> String {
        use secrecy::ExposeSecret as _;
        let (key, mut entry) =
            api::auth::generate_key(id, tenant, scopes.to_vec()).expect("random key");
        entry.paths = paths.map(|p| p.iter().map(|s| (*s).to_owned()).collect());
        self.add_callers(&[serde_json::to_value(&entry).expect("an entry serialises")])
            .await;
        key.expose_secret().to_owned()
    }

    /// Appends entries to the callers secret (instances see them within `CALLERS_CACHE_SECONDS`,
    /// or at once after an unknown credential, see `MISS_RELOAD`).
    pub async fn add_callers(&self, entries: &[serde_json::Value]) {
        use secrecy::ExposeSecret as _;
        let name = broker::store::SecretNames::new(self.prefix.clone()).callers();
        let raw = self
            .store
            .get(&name)
            .await
            .expect("callers readable")
            .expect("callers exist");
        let mut list: Vec<serde_json::Value> =
            serde_json::from_str(raw.expose_secret()).expect("callers JSON");
        list.extend_from_slice(entries);
        broker::store::upsert(
            &self.store,
            &name,
            &secrecy::SecretString::from(serde_json::Value::Array(list).to_string()),
        )
        .await
        .expect("callers written");
    }
}

/// A fresh RSA-2048 key pair as PEM (PKCS#8 private key, SubjectPublicKeyInfo public key), the
/// shapes RingCX's JWT auth config and a `jwt` callers entry take.
pub fn rsa_pems() -> (String, String) {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::KeyPair as _;
    use base64::Engine as _;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .expect("RSA key generation");
    let private = pair.as_der().expect("PKCS#8 DER");
    let public = pair.public_key().as_der().expect("SPKI DER");
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    (
        pem("PRIVATE KEY", private.as_ref()),
        pem("PUBLIC KEY", public.as_ref()),
    )
}

/// The configuration a function runs with against `sim`: `prefix`, `tenants`, a 2 s RingCX
/// timeout, and `extra` variables on top (later ones win).
pub fn config(
    sim: &Simulator,
    prefix: &str,
    tenants: &str,
    extra: &[(&str, &str)],
) -> broker::config::Config {
    let mut vars: std::collections::HashMap<String, String> = [
        ("ENGAGE_BASE_URL", sim.base_url()),
        ("RINGCENTRAL_SERVER_URL", sim.base_url()),
        ("SECRET_PREFIX", prefix.to_owned()),
        ("TENANTS", tenants.to_owned()),
        ("ENGAGE_TIMEOUT_MS", "2000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    broker::config::Config::from_lookup(|k| vars.get(k).cloned()).expect("valid test configuration")
}

/// The configuration an HTTP function or refresher of `stack`'s world runs with, for `tenants`.
pub fn config_for<S>(stack: &ApiStack<S>, tenants: &str) -> broker::config::Config {
    config(&stack.sim, &stack.prefix, tenants, &[])
}

/// Whether RingCX accepts `token` as `X-Auth-Token` on a Voice API.
pub async fn token_works(sim: &Simulator, token: &str) -> bool {
    reqwest::Client::new()
        .get(format!("{}/voice/api/v1/admin/accounts", sim.base_url()))
        .header("X-Auth-Token", token)
        .send()
        .await
        .expect("the simulator answers")
        .status()
        == 200
}

/// Seeds `count` tenants (`t0000`...) whose sessions are all due: generation 1 in slot 1, an access
/// token with 60 s left and a live refresh token, as if the refresher had run three minutes ago.
/// Returns their names.
pub async fn seed_due_tenants<S: broker::store::SecretStore + Clone>(
    store: &S,
    prefix: &str,
    sim: &Simulator,
    count: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let names = broker::store::SecretNames::new(prefix);
    let mut tenants = Vec::with_capacity(count);
    for i in 0..count {
        let tenant = format!("t{i:04}");
        let (access, refresh) = sim
            .mint_session("admin@example.com")
            .expect("the fixture user exists");
        let doc = serde_json::json!({
            "generation": 1, "accessToken": access, "refreshToken": refresh,
            "accessTokenExpiresAt": now + chrono::Duration::seconds(60),
            "obtainedAt": now - chrono::Duration::seconds(240), "obtainedBy": "refresh",
            "accountId": "333333"
        });
        store
            .create(
                &names.slot(&tenant, 1),
                &secrecy::SecretString::from(doc.to_string()),
                &broker::store::SessionRing::<S>::fencing_token(&tenant, 1),
            )
            .await
            .expect("seed a slot");
        tenants.push(tenant);
    }
    tenants
}

/// Sends `request` and reads its JSON answer (test support: panics on a transport error or a
/// body that is not JSON).
pub async fn json_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON answer")
}

/// Writes an administrator's document (credentials, callers) as `operator` would.
pub async fn seed(store: &impl broker::store::SecretStore, name: &str, doc: &str) {
    broker::store::upsert(store, name, &secrecy::SecretString::from(doc.to_owned()))
        .await
        .expect("seed a secret");
}
