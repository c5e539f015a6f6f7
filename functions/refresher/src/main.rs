//! `refresher`: in Lambda, one renewal pass per EventBridge Scheduler invocation; elsewhere, a
//! pass every `REFRESH_INTERVAL_SECONDS`, or a single one with `--once` (exit status 1 when a
//! tenant has no usable token).

use std::sync::Arc;

use anyhow::Context as _;
use broker::clock::{SharedClock, SystemClock};
use broker::config::Config;
use broker::store::aws::SecretsManagerStore;
use broker::telemetry;
use lambda_runtime::service_fn;
use refresher::{Refresher, handler};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let once = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--once") => true,
        Some(other) => anyhow::bail!("unknown argument {other:?}: the only option is --once"),
    };
    let config = Config::from_env()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let store = SecretsManagerStore::from_env(config.kms_key_id.clone()).await;
    let refresher = Refresher::new(&config, store, clock).context("building the RingCX client")?;

    if telemetry::in_lambda() {
        return lambda_runtime::run(service_fn(|event| handler(&refresher, event)))
            .await
            .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"));
    }
    loop {
        let summary = refresher.run_pass(refresher.deadline(None)).await;
        if once {
            println!("{}", serde_json::to_string(&summary)?);
            std::process::exit(if summary.ok { 0 } else { 1 });
        }
        tokio::time::sleep(config.refresh_interval).await;
    }
}
