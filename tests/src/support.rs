//! Helpers shared by the integration tests and benchmark harnesses.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use broker::clock::SharedClock;
use broker::engage::{EngageClient, EngageConfig};
use broker::store::aws::SecretsManagerStore;
use tracing_subscriber::fmt::MakeWriter;

use crate::sim::Simulator;

/// A client aimed at the simulator for both RingCX and the platform.
pub fn client_for(sim: &Simulator, clock: SharedClock, request_timeout: Duration) -> EngageClient {
    let base = url::Url::parse(&sim.base_url()).expect("the simulator's URL parses");
    let mut config = EngageConfig::new(base.clone(), base);
    config.request_timeout = request_timeout;
    config.connect_timeout = Duration::from_secs(2);
    EngageClient::new(&config, clock).expect("client builds")
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
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(self.clone())
            .with_ansi(false)
            .finish()
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
        let ring = broker::store::SessionRing::new(
            store.clone(),
            broker::store::SecretNames::new(PREFIX),
            slots,
            shared.clone(),
        );
        let engage = client_for(&sim, shared.clone(), Duration::from_secs(5));
        let renewer = broker::renew::Renewer::new(ring, engage, shared, settings);
        Self {
            clock,
            sim,
            store,
            renewer,
        }
    }

    /// Writes `doc` as the tenant's credentials secret.
    pub async fn put_credentials(&self, tenant: &str, doc: &serde_json::Value) {
        use broker::store::SecretStore as _;
        let name = broker::store::SecretNames::new(PREFIX).credentials(tenant);
        let value = secrecy::SecretString::from(doc.to_string());
        let token = uuid::Uuid::new_v4().to_string();
        match self.store.put(&name, &value, &token).await {
            Err(broker::store::StoreError::NotFound { .. }) => self
                .store
                .create(&name, &value, &token)
                .await
                .expect("credentials created"),
            other => other.expect("credentials written"),
        }
    }

    /// The newest session in the tenant's ring.
    pub async fn newest(&self, tenant: &str) -> Option<broker::session::SessionState> {
        self.renewer
            .ring()
            .read(tenant)
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
