//! Helpers shared by the integration tests and benchmark harnesses.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use broker::clock::SharedClock;
use broker::engage::{EngageClient, EngageConfig};
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
