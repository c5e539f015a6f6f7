//! `api`: in Lambda, the router under `lambda_http` (Function URL / HTTP API payload 2.0);
//! elsewhere, the same router on `BIND_ADDR`. `api keygen --id ID --tenant T --scopes a,b` makes a
//! caller key: it prints the key once and the entry to add to the `{prefix}callers` secret.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use api::auth::{Scope, generate_key};
use api::{App, router};
use broker::clock::{SharedClock, SystemClock};
use broker::config::Config;
use broker::store::aws::SecretsManagerStore;
use broker::telemetry;
use secrecy::ExposeSecret;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("keygen") {
        return keygen(&args[1..]);
    }
    if let Some(other) = args.first() {
        bail!(
            "unknown argument {other:?}: run without arguments, or `api keygen --id ID --tenant T --scopes a,b`"
        );
    }
    telemetry::init();
    let config = Config::from_env()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let store = SecretsManagerStore::from_env(config.kms_key_id.clone()).await;
    let app = Arc::new(App::new(&config, store, clock).context("building the RingCX client")?);
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

fn keygen(args: &[String]) -> anyhow::Result<()> {
    let (mut id, mut tenant, mut scopes) = (
        None,
        "default".to_owned(),
        vec![Scope::EngageProxy, Scope::TokenRead],
    );
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--id" => id = Some(value.clone()),
            "--tenant" => tenant = value.clone(),
            "--scopes" => {
                scopes = value
                    .split(',')
                    .map(|s| {
                        serde_json::from_value::<Scope>(serde_json::Value::String(
                            s.trim().to_owned(),
                        ))
                    })
                    .collect::<Result<_, _>>()
                    .context(
                        "scopes are engage:proxy, token:read and api-tokens:admin, comma-separated",
                    )?;
            }
            other => bail!("unknown flag {other:?}: use --id, --tenant, --scopes"),
        }
    }
    let id = id.context("--id is required (a name for the caller, e.g. ivr-main)")?;
    let (key, entry) = generate_key(&id, &tenant, scopes)
        .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    println!(
        "key (shown once; give it to the caller): {}",
        key.expose_secret()
    );
    println!("entry (add it to the JSON array in the {{prefix}}callers secret):");
    println!("{}", serde_json::to_string(&entry)?);
    Ok(())
}
