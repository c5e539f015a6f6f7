//! `operator`: the commands an administrator runs against a deployment (the configured AWS
//! account, or `make dev`), with the same configuration and AWS SDK settings as the functions.
//! Its own crate (`functions/operator`), so the HTTP function's crate and its Lambda `bootstrap`
//! carry none of it.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use api::App;
use api::auth::{Scope, caller_from, generate_key};
use broker::clock::{SharedClock, SystemClock};
use broker::config::Config;
use broker::store::aws::SecretsManagerStore;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use operator::connect::{Action, ConnectRequest, connect_ringcx};
use operator::{JwtSpec, NewCaller};
use secrecy::{ExposeSecret, SecretString};

/// Operator commands for the RingCX token broker. Settings come from the same environment as
/// the functions (SECRET_PREFIX, TENANTS, ...; AWS_REGION and the AWS SDK's own variables).
#[derive(Parser)]
#[command(name = "operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new caller key and its callers entry; stores nothing.
    Keygen(CallerArgs),
    /// Add a caller to {prefix}callers: a key (shown once), or with --jwt a caller that
    /// authenticates with JWTs signed as RingCX's JWT auth config does.
    AddCaller {
        #[command(flatten)]
        caller: CallerArgs,
        #[command(flatten)]
        jwt: JwtArgs,
    },
    /// Remove a caller; running instances refuse its key within CALLERS_CACHE_SECONDS.
    RemoveCaller {
        #[arg(long)]
        id: String,
    },
    /// Store a tenant's credentials document ({prefix}{tenant}/credentials).
    SeedCredentials {
        #[arg(long)]
        tenant: String,
        /// A JSON credentials document, or - for standard input.
        #[arg(long)]
        file: String,
    },
    /// One line per tenant: verdict, generation, time left, how obtained, slot writes in 24 h.
    /// Exits 1 when a tenant is failing.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Manage hooks ({prefix}hooks): webhooks from senders that do not speak RingCX, each turned
    /// into one RingCX call.
    Hook {
        #[command(subcommand)]
        action: HookCommand,
    },
    /// Create or rotate the OAuth auth config in the tenant's RingCX account that points RingCX
    /// at the broker's /v1/oauth/token.
    ConnectRingcx {
        #[arg(long)]
        tenant: String,
        /// The broker's public URL (the stack's ApiUrl output).
        #[arg(long)]
        api_url: String,
        /// The RingCX account (default: the session's main account).
        #[arg(long)]
        account: Option<String>,
        /// The auth config's name in RingCX (default: "RingCX broker (TENANT)").
        #[arg(long)]
        provider_name: Option<String>,
        /// Replace the client key even when the config is in place.
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Subcommand)]
enum HookCommand {
    /// Add a hook entry (a JSON file, README "Hooks"), checked exactly as the functions check it.
    Add {
        /// The entry as JSON, or - for standard input.
        #[arg(long)]
        file: String,
        /// Generate the signing secret (standard-webhooks, stripe, hmac-sha256) and print it once.
        #[arg(long)]
        generate_secret: bool,
        /// Replace an entry of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// One line per hook: name, tenant, scheme, request, and whether the functions serve it. No
    /// secrets.
    List {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Remove a hook; running instances stop serving it within CALLERS_CACHE_SECONDS.
    Remove {
        #[arg(long)]
        name: String,
    },
    /// The queued events in the dead-letter queue (HOOK_DLQ_URL): event id, hook, first seen,
    /// attempts, last error. Never a payload or a signature.
    Dlq {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Send dead-lettered events back to the hook queue, once each: one by event id, or all.
    /// RingCX still sees each event once (the worker checks its delivery record).
    Redrive {
        /// The event id (as hook dlq shows it); without it, every dead letter.
        #[arg(long)]
        id: Option<String>,
    },
    /// Print the RingCX request a payload would make through a hook, without verifying a
    /// signature or sending anything.
    Test {
        #[arg(long)]
        name: String,
        /// The payload as the sender posts it, or - for standard input.
        #[arg(long)]
        payload: String,
        #[arg(long, default_value = "application/json")]
        content_type: String,
        /// A header the templates read, as "name: value" (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
    },
}

#[derive(Args)]
struct CallerArgs {
    /// A name for the caller, e.g. ivr-main.
    #[arg(long)]
    id: String,
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Comma-separated: engage:proxy, token:read, api-tokens:admin, hooks:invoke.
    #[arg(long, value_delimiter = ',', default_value = "engage:proxy")]
    scopes: Vec<Scope>,
    /// Comma-separated path globs the caller may reach, e.g. "GET v1/admin/accounts/*".
    #[arg(long, value_delimiter = ',')]
    paths: Option<Vec<String>>,
}

#[derive(Args)]
struct JwtArgs {
    /// HS256 (a secret is generated) or RS256 (with --public-key-file).
    #[arg(long)]
    jwt: Option<String>,
    #[arg(long, requires = "jwt")]
    public_key_file: Option<PathBuf>,
    /// Oldest JWT accepted, by its iat.
    #[arg(long, requires = "jwt", default_value_t = 300)]
    max_age: u64,
    /// Also accept the JWT in this query parameter.
    #[arg(long, requires = "jwt")]
    query_param: Option<String>,
}

impl CallerArgs {
    fn new_caller(self) -> NewCaller {
        if self.scopes.contains(&Scope::TokenRead) {
            eprintln!(
                "note: token:read hands out the tenant's RingCX access token, which acts as the RingCX admin user (it can create permanent API tokens); give it only to callers you trust as admins"
            );
        }
        let paths = self.paths.map(|p| {
            p.into_iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        });
        NewCaller {
            id: self.id,
            tenant: self.tenant,
            scopes: self.scopes,
            paths,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A flag given twice takes its last value, as `make` targets that add to a default expect.
    let command = Cli::command()
        .args_override_self(true)
        .mut_subcommands(|c| c.args_override_self(true));
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Keygen(caller) => keygen(caller.new_caller()),
        Command::AddCaller { caller, jwt } => match jwt.jwt.clone() {
            Some(algorithm) => add_jwt_caller(caller.new_caller(), algorithm, jwt).await,
            None => add_caller(caller.new_caller()).await,
        },
        Command::RemoveCaller { id } => {
            let (config, store) = configured().await?;
            if operator::remove_caller(&store, &config.names(), &id).await? == 0 {
                bail!("no caller {id:?} in {}", config.names().callers());
            }
            println!(
                "removed caller {id:?}; running instances refuse its key within CALLERS_CACHE_SECONDS"
            );
            Ok(())
        }
        Command::SeedCredentials { tenant, file } => seed_credentials(&tenant, &file).await,
        Command::Hook { action } => hook(action).await,
        Command::Status { json } => status(json).await,
        Command::ConnectRingcx {
            tenant,
            api_url,
            account,
            provider_name,
            rotate,
        } => {
            let request = ConnectRequest {
                provider_name: provider_name.unwrap_or_else(|| format!("RingCX broker ({tenant})")),
                tenant,
                api_url,
                account,
                rotate,
            };
            connect(request).await
        }
    }
}

fn keygen(new: NewCaller) -> anyhow::Result<()> {
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

async fn add_caller(new: NewCaller) -> anyhow::Result<()> {
    let (config, store) = configured().await?;
    let (key, entry) = operator::add_caller(&store, &config.names(), new).await?;
    println!("key: {}", key.expose_secret());
    println!("entry: {}", serde_json::to_string(&entry)?);
    eprintln!(
        "Added to {}; the key is shown once.",
        config.names().callers()
    );
    Ok(())
}

async fn add_jwt_caller(new: NewCaller, algorithm: String, args: JwtArgs) -> anyhow::Result<()> {
    let public_key_pem = match &args.public_key_file {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let jwt = JwtSpec {
        algorithm,
        public_key_pem,
        // A JWT that leaked (a query string in some log) is worth little after this.
        max_age_seconds: Some(args.max_age),
        query_param: args.query_param,
    };
    let (config, store) = configured().await?;
    let (secret, entry) = operator::add_jwt_caller(&store, &config.names(), new, jwt).await?;
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

fn read_input(file: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    }
    Ok(text)
}

async fn hook(action: HookCommand) -> anyhow::Result<()> {
    let (config, store) = configured().await?;
    let names = config.names();
    match action {
        HookCommand::Dlq { json } => {
            let letters = operator::list_dead_letters(&hook_queue(&config).await?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else if letters.is_empty() {
                println!("the dead-letter queue is empty");
            } else {
                for l in letters {
                    println!(
                        "{}  {:<24} first seen {}  attempts {:<3}  {}",
                        l.id, l.hook, l.first_seen, l.attempts, l.last_error
                    );
                }
            }
        }
        HookCommand::Redrive { id } => {
            let deadline = chrono::Utc::now() + chrono::Duration::seconds(600);
            let queue = hook_queue(&config).await?;
            let sent = operator::redrive_dead_letters(&queue, id.as_deref(), deadline, |id| {
                println!("redriven {id}")
            })
            .await?;
            eprintln!("{sent} event(s) back on the hook queue; the worker delivers each once.");
        }
        HookCommand::Add {
            file,
            generate_secret,
            replace,
        } => {
            let entry: serde_json::Value = serde_json::from_str(&read_input(&file)?)
                .with_context(|| format!("{file} is not JSON"))?;
            let name = entry["name"].as_str().unwrap_or("?").to_owned();
            let secret = operator::add_hook(
                &store,
                &names,
                &config.tenants,
                entry,
                generate_secret,
                replace,
            )
            .await?;
            println!("hook {name}: POST <ApiUrl>/v1/hooks/{name}");
            if let Some(secret) = secret {
                println!("secret: {}", secret.expose_secret());
                eprintln!("The secret is shown once: give it to the sender; it signs with it.");
            }
            eprintln!(
                "Stored in {}; instances serve it at once (a name they do not know makes them read the hooks again).",
                names.hooks()
            );
        }
        HookCommand::List { json } => {
            let hooks = operator::list_hooks(&store, &names, &config.tenants).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hooks)?);
            } else if hooks.is_empty() {
                println!("no hooks in {}", names.hooks());
            } else {
                for h in hooks {
                    println!(
                        "{:<24} {:<10} {:<18} secrets {}  {}  [{}]",
                        h.name, h.tenant, h.scheme, h.secrets, h.request, h.status
                    );
                }
            }
        }
        HookCommand::Remove { name } => {
            if operator::remove_hook(&store, &names, &name).await? == 0 {
                bail!("no hook {name:?} in {}", names.hooks());
            }
            println!(
                "removed hook {name:?}; instances stop serving it within CALLERS_CACHE_SECONDS"
            );
        }
        HookCommand::Test {
            name,
            payload,
            content_type,
            headers,
        } => {
            let body = read_input(&payload)?;
            let mut map = broker::hooks::Headers::new();
            for h in headers {
                let (k, v) = h
                    .split_once(':')
                    .with_context(|| format!("--header {h:?}: write it as \"name: value\""))?;
                map.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
            let clock: SharedClock = Arc::new(SystemClock);
            let rendered = operator::test_hook(
                &store,
                &config,
                &name,
                body.as_bytes(),
                &content_type,
                &map,
                clock,
            )
            .await?;
            let r = &rendered.request;
            let query = r
                .query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            println!("{} /voice/api/{}{query}", r.method, r.path.as_str());
            if let Some(body) = &r.body {
                println!("{}", serde_json::to_string_pretty(body)?);
            }
            eprintln!(
                "idempotency key: {} (nothing was verified or sent)",
                rendered.idempotency_key
            );
        }
    }
    Ok(())
}

async fn seed_credentials(tenant: &str, file: &str) -> anyhow::Result<()> {
    let text = read_input(file)?;
    let (config, store) = configured().await?;
    let flow =
        operator::seed_credentials(&store, &config.names(), tenant, &SecretString::from(text))
            .await?;
    println!("stored {} ({flow})", config.names().credentials(tenant));
    Ok(())
}

async fn status(json: bool) -> anyhow::Result<()> {
    let (config, store) = configured().await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let tenants = operator::status::status(&config, &store, clock)
        .await
        .context("reading the tenants' rings")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tenants)?);
    } else {
        for t in &tenants {
            println!("{}", operator::status::line(t));
        }
    }
    let failing = tenants
        .iter()
        .filter(|t| t.verdict == operator::status::Verdict::Failing)
        .count();
    if failing > 0 {
        bail!("{failing} of {} tenants are failing", tenants.len());
    }
    Ok(())
}

async fn connect(request: ConnectRequest) -> anyhow::Result<()> {
    let (config, store) = configured().await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let app = App::new(&config, store.clone(), clock).context("building the RingCX client")?;
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

/// The hook queue and its dead-letter queue, as the functions see them.
async fn hook_queue(config: &Config) -> anyhow::Result<broker::hooks::queue::HookQueue> {
    let url = config
        .hook_queue
        .url
        .clone()
        .context("HOOK_QUEUE_URL is not set (the stack's HookQueueUrl output)")?;
    anyhow::ensure!(
        config.hook_queue.dlq_url.is_some(),
        "HOOK_DLQ_URL is not set (the stack's HookDeadLetterQueueUrl output)"
    );
    let sdk = broker::store::aws::sdk_config().await;
    let clock: SharedClock = Arc::new(SystemClock);
    Ok(broker::hooks::queue::HookQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        url,
        config.hook_queue.dlq_url.clone(),
        clock,
    ))
}

async fn configured() -> anyhow::Result<(Config, SecretsManagerStore)> {
    let config = Config::from_env()?;
    let store = SecretsManagerStore::from_env(config.kms_key_id.clone()).await;
    Ok((config, store))
}
