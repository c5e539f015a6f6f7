//! `make bench`: the size of each deployment `bootstrap` and its init time, measured from process
//! start to its first `invocation/next` poll against our Lambda Runtime API harness (what Lambda
//! bills as Init Duration, less the download and unzip that a smaller package also shortens).
//! Arguments: `NAME=PATH` pairs; by default the two functions of `make package`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker_tests::lambda::{LambdaProcess, RuntimeApi};

const RUNS: usize = 30;

fn env() -> Vec<(&'static str, String)> {
    // Nothing is called during init: the endpoints only have to be valid.
    [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:9"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("ENGAGE_BASE_URL", "http://127.0.0.1:9"),
        ("RINGCENTRAL_SERVER_URL", "http://127.0.0.1:9"),
        ("TENANTS", "default"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

#[tokio::main]
async fn main() {
    let mut targets: Vec<(String, PathBuf)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let (name, path) = a.split_once('=')?;
            Some((name.to_owned(), PathBuf::from(path)))
        })
        .collect();
    if targets.is_empty() {
        targets = [("api", "ApiFunction"), ("refresher", "RefresherFunction")]
            .into_iter()
            .map(|(name, dir)| {
                (
                    name.to_owned(),
                    PathBuf::from(format!(".aws-sam/build/{dir}/bootstrap")),
                )
            })
            .collect();
    }
    println!("bootstrap size and init time (process start to first poll, {RUNS} runs)");
    for (name, path) in &targets {
        let Ok(meta) = std::fs::metadata(path) else {
            println!(
                "  {name}: {} is missing: run `make package` first",
                path.display()
            );
            continue;
        };
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..=RUNS {
            let runtime = RuntimeApi::start().await.expect("runtime API");
            let started = Instant::now();
            let function = LambdaProcess::start_binary(path, name, &runtime, &env());
            assert!(
                runtime.first_poll(Duration::from_secs(10)).await,
                "{name} did not poll for an invocation: {}",
                function.output()
            );
            times.push(started.elapsed());
            drop(function);
        }
        // The first run pays for the page cache; Lambda's cold start does too, but not here.
        times.remove(0);
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {name:<9} bootstrap {:>6} KiB; init min {:.1} ms, median {:.1} ms, p90 {:.1} ms",
            meta.len() / 1024,
            ms(times[0]),
            ms(times[RUNS / 2]),
            ms(times[RUNS * 9 / 10]),
        );
    }
}
