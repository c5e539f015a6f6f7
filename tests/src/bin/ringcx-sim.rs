//! `ringcx-sim`: the RingCX simulator as a process, for `make dev`.
//!
//! Usage: `ringcx-sim [--bind 127.0.0.1:8900] [--seed N]`. Prints one JSON line with its URL and
//! the fixture credentials to seed, then serves until Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use broker::clock::SystemClock;
use broker_tests::sim::Simulator;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut bind: SocketAddr = "127.0.0.1:8900".parse()?;
    let mut seed = 7;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => bind = args.next().ok_or("--bind needs an address")?.parse()?,
            "--seed" => seed = args.next().ok_or("--seed needs a number")?.parse()?,
            "-h" | "--help" => {
                println!("usage: ringcx-sim [--bind 127.0.0.1:8900] [--seed N]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; try --help").into()),
        }
    }
    let sim = Simulator::bind(bind, Arc::new(SystemClock), seed)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e} (is another simulator running?)"))?;
    let ready = serde_json::json!({
        "ready": sim.base_url(),
        "ringexCredentials": sim.ringex_credentials("admin@example.com"),
        "engageLoginCredentials": sim.engage_login_credentials("admin@example.com"),
    });
    println!("{ready}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
