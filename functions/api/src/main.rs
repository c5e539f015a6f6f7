//! `api`: in Lambda, the router under `lambda_http` (Function URL / HTTP API payload 2.0);
//! elsewhere, the same router on `BIND_ADDR`. Operator commands (they use the same configuration
//! and AWS SDK settings as the function):
//!
//! - `api keygen --id ID [--tenant T] [--scopes a,b] [--paths P,Q]`: a key and its callers entry,
//!   printed only;
//! - `api add-caller --id ID [--tenant T] [--scopes a,b] [--paths P,Q]`: the same, added to
//!   `{prefix}callers` (scopes default to `engage:proxy`); with `--jwt ALG [--public-key-file F]
//!   [--max-age S] [--query-param N]` a caller that authenticates with RingCX-signed JWTs instead;
//! - `api remove-caller --id ID`;
//! - `api seed-credentials --tenant T --file F` (`-` for standard input);
//! - `api status [--json]`: one line per tenant (generation, time left, verdict); exits 1 when
//!   a tenant is failing;
//! - `api connect-ringcx --tenant T --api-url URL [--account ID] [--provider-name N] [--rotate]`:
//!   the OAuth auth config in the tenant's RingCX account that points RingCX at the broker.

use std::io::Read as _;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use api::auth::{Scope, caller_from, generate_key};
use api::connect::{Action, ConnectRequest, connect_ringcx};
use api::{App, admin, router};
use broker::clock::{SharedClock, SystemClock};
use broker::config::Config;
use broker::store::aws::SecretsManagerStore;
use broker::telemetry;
use secrecy::{ExposeSecret, SecretString};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(command) = args.first() {
        return operator(command, &args[1..]).await;
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

/// Flags that take no value.
const SWITCHES: [&str; 2] = ["--rotate", "--json"];

/// `--flag value` pairs (and switches).
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String], allowed: &[&str]) -> anyhow::Result<Self> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if SWITCHES.contains(&flag.as_str()) && allowed.contains(&flag.as_str()) {
                out.push((flag.clone(), "true".to_owned()));
                continue;
            }
            if !allowed.contains(&flag.as_str()) {
                bail!(
                    "unknown flag {flag:?}: this command takes {}",
                    allowed.join(", ")
                );
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            out.push((flag.clone(), value.clone()));
        }
        Ok(Self(out))
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    fn scopes(&self) -> anyhow::Result<Vec<Scope>> {
        match self.get("--scopes") {
            None => Ok(vec![Scope::EngageProxy]),
            Some(list) => list
                .split(',')
                .map(|s| {
                    serde_json::from_value::<Scope>(serde_json::Value::String(s.trim().to_owned()))
                })
                .collect::<Result<_, _>>()
                .context(
                    "scopes are engage:proxy, token:read and api-tokens:admin, comma-separated",
                ),
        }
    }

    /// `--paths "GET v1/admin/accounts/*/campaigns/*,POST v1/..."`.
    fn paths(&self) -> Option<Vec<String>> {
        self.get("--paths").map(|list| {
            list.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
    }

    fn new_caller(&self) -> anyhow::Result<admin::NewCaller> {
        let id = self
            .get("--id")
            .context("--id is required (a name for the caller, e.g. ivr-main)")?;
        let scopes = self.scopes()?;
        if scopes.contains(&Scope::TokenRead) {
            eprintln!(
                "note: token:read hands out the tenant's RingCX access token, which acts as the RingCX admin user (it can create permanent API tokens); give it only to callers you trust as admins"
            );
        }
        Ok(admin::NewCaller {
            id: id.to_owned(),
            tenant: self.get("--tenant").unwrap_or("default").to_owned(),
            scopes,
            paths: self.paths(),
        })
    }
}

async fn operator(command: &str, args: &[String]) -> anyhow::Result<()> {
    let caller_flags = ["--id", "--tenant", "--scopes", "--paths"];
    match command {
        "keygen" => {
            let new = Flags::parse(args, &caller_flags)?.new_caller()?;
            let (key, mut entry) = generate_key(&new.id, &new.tenant, new.scopes)
                .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
            entry.paths = new.paths;
            caller_from(&entry).map_err(|e| anyhow::anyhow!(e))?;
            println!("key: {}", key.expose_secret());
            println!("entry: {}", serde_json::to_string(&entry)?);
            eprintln!(
                "The key is shown once: give it to the caller. Add the entry to the {{prefix}}callers array."
            );
            Ok(())
        }
        "add-caller" if args.iter().any(|a| a == "--jwt") => {
            let f = Flags::parse(
                args,
                &[
                    "--id",
                    "--tenant",
                    "--scopes",
                    "--paths",
                    "--jwt",
                    "--public-key-file",
                    "--max-age",
                    "--query-param",
                ],
            )?;
            let new = f.new_caller()?;
            let public_key_pem = match f.get("--public-key-file") {
                Some(path) => {
                    Some(std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?)
                }
                None => None,
            };
            let jwt = admin::JwtSpec {
                algorithm: f.get("--jwt").unwrap_or_default().to_owned(),
                public_key_pem,
                // A JWT that leaked (a query string in some log) is worth little after this.
                max_age_seconds: Some(
                    f.get("--max-age")
                        .map(|v| v.parse().context("--max-age is whole seconds"))
                        .transpose()?
                        .unwrap_or(300),
                ),
                query_param: f.get("--query-param").map(str::to_owned),
            };
            let (config, store) = configured().await?;
            let (secret, entry) = admin::add_jwt_caller(&store, &config.names(), new, jwt).await?;
            println!("caller: {} (JWT, {})", entry.id, entry.tenant);
            if let Some(secret) = secret {
                println!("secret: {}", secret.expose_secret());
                eprintln!(
                    "Shown once. In RingCX's JWT auth config: this secret with isSecretEncoded on, payload {{\"iss\":\"{}\"}}, expirationTime 60, isIncludeIssueAt on.",
                    entry.id
                );
            } else {
                eprintln!(
                    "In RingCX's JWT auth config: the matching private key, payload {{\"iss\":\"{}\"}}, expirationTime 60, isIncludeIssueAt on.",
                    entry.id
                );
            }
            Ok(())
        }
        "add-caller" => {
            let new = Flags::parse(args, &caller_flags)?.new_caller()?;
            let (config, store) = configured().await?;
            let (key, entry) = admin::add_caller(&store, &config.names(), new).await?;
            println!("key: {}", key.expose_secret());
            println!("entry: {}", serde_json::to_string(&entry)?);
            eprintln!(
                "Added to {}; the key is shown once.",
                config.names().callers()
            );
            Ok(())
        }
        "remove-caller" => {
            let f = Flags::parse(args, &["--id"])?;
            let id = f.get("--id").context("--id is required")?;
            let (config, store) = configured().await?;
            let removed = admin::remove_caller(&store, &config.names(), id).await?;
            if removed == 0 {
                bail!("no caller {id:?} in {}", config.names().callers());
            }
            println!(
                "removed caller {id:?}; running instances refuse its key within CALLERS_CACHE_SECONDS"
            );
            Ok(())
        }
        "seed-credentials" => {
            let f = Flags::parse(args, &["--tenant", "--file"])?;
            let tenant = f.get("--tenant").context("--tenant is required")?;
            let file = f
                .get("--file")
                .context("--file is required (a JSON credentials document, or - for stdin)")?;
            let mut text = String::new();
            if file == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading standard input")?;
            } else {
                text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
            }
            let (config, store) = configured().await?;
            let flow =
                admin::seed_credentials(&store, &config.names(), tenant, &SecretString::from(text))
                    .await?;
            println!("stored {} ({flow})", config.names().credentials(tenant));
            Ok(())
        }
        "status" => {
            let f = Flags::parse(args, &["--json"])?;
            let (config, store) = configured().await?;
            let clock: SharedClock = Arc::new(SystemClock);
            let tenants = broker::status::status(&config, &store, clock)
                .await
                .context("reading the tenants' rings")?;
            if f.get("--json").is_some() {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                for t in &tenants {
                    println!("{}", broker::status::line(t));
                }
            }
            let failing = tenants
                .iter()
                .filter(|t| t.verdict == broker::status::Verdict::Failing)
                .count();
            if failing > 0 {
                bail!("{failing} of {} tenants are failing", tenants.len());
            }
            Ok(())
        }
        "connect-ringcx" => {
            let f = Flags::parse(
                args,
                &[
                    "--tenant",
                    "--api-url",
                    "--account",
                    "--provider-name",
                    "--rotate",
                ],
            )?;
            let tenant = f.get("--tenant").context("--tenant is required")?;
            let api_url = f.get("--api-url").context(
                "--api-url is required: the broker's public URL (the stack's ApiUrl output)",
            )?;
            let request = ConnectRequest {
                tenant: tenant.to_owned(),
                api_url: api_url.to_owned(),
                account: f.get("--account").map(str::to_owned),
                provider_name: f
                    .get("--provider-name")
                    .map_or_else(|| format!("RingCX broker ({tenant})"), str::to_owned),
                rotate: f.get("--rotate").is_some(),
            };
            let (config, store) = configured().await?;
            let clock: SharedClock = Arc::new(SystemClock);
            let app =
                App::new(&config, store.clone(), clock).context("building the RingCX client")?;
            let done = connect_ringcx(&app, &store, &config.names(), &request).await?;
            let what = match done.action {
                Action::Created => "created",
                Action::Unchanged => "already in place; nothing changed",
                Action::TokenUrlUpdated => "token URL updated",
                Action::Rotated => "rotated: new client key in RingCX, old key removed",
            };
            println!(
                "auth config {} in account {}: {what}",
                done.auth_config_id, done.account
            );
            println!("  providerName: {}", done.provider_name);
            println!("  type: OAUTH, grant CLIENT_CREDENTIALS, credentials in BODY");
            println!("  tokenUrl: {}", done.token_url);
            println!("  clientId: {}", done.client_id);
            println!(
                "In RingCX admin, select the auth config \"{}\" on a Remote HTTP Service or IVR WWW node that calls RingCX's own Voice API (https://<RingCX host>/voice/api/...): RingCX fetches the token from the broker and sends it there.",
                done.provider_name
            );
            Ok(())
        }
        other => bail!(
            "unknown command {other:?}: run without arguments to serve, or use keygen, add-caller, remove-caller, seed-credentials, connect-ringcx, status"
        ),
    }
}

async fn configured() -> anyhow::Result<(Config, SecretsManagerStore)> {
    let config = Config::from_env()?;
    let store = SecretsManagerStore::from_env(config.kms_key_id.clone()).await;
    Ok((config, store))
}
