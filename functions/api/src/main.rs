//! `api`: in Lambda, the router under `lambda_http` (Function URL / HTTP API payload 2.0);
//! elsewhere, the same router on `BIND_ADDR`. The operator commands are the `operator` binary.

use std::sync::Arc;

use anyhow::Context as _;
use api::{App, router};
use broker::clock::{SharedClock, SystemClock};
use broker::config::Config;
use broker::store::aws::{SecretsManagerStore, sdk_config};
use broker::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(arg) = std::env::args().nth(1) {
        anyhow::bail!(
            "the api binary takes no arguments (got {arg:?}); operator commands are `operator --help`"
        );
    }
    telemetry::init();
    let config = Config::from_env()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let sdk = sdk_config().await;
    let store = SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        config.kms_key_id.clone(),
    );
    let app = App::new(&config, store, clock)
        .context("building the RingCX client")?
        .with_idempotency(&config, aws_sdk_dynamodb::Client::new(&sdk))
        .with_hook_queue(&config, aws_sdk_sqs::Client::new(&sdk));
    let app = Arc::new(app);
    let router = router(app);
    if telemetry::in_lambda() {
        return lambda_http::run(router)
            .await
            .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"));
    }
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (BIND_ADDR): is the port busy?",
                config.bind_addr
            )
        })?;
    tracing::info!(addr = %config.bind_addr, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the local server stopped")
}
