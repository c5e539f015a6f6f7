//! The HTTP surface under schemathesis (PyPI, installed in `.venv` by `make`): generated requests
//! from `functions/api/openapi.json` against the router with the simulator behind it, with
//! every check: no answer may be a 5xx, every answer must match the document (status, content
//! type, headers, body), a request the document allows must not be refused and one it forbids
//! must not be accepted.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use broker::clock::ManualClock;
use broker::store::memory::MemoryStore;
use broker_tests::support::ApiStack;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schemathesis() -> PathBuf {
    let venv = std::env::var("VENV").unwrap_or_else(|_| ".venv".into());
    let venv = PathBuf::from(venv);
    let venv = if venv.is_absolute() {
        venv
    } else {
        workspace().join(venv)
    };
    let bin = venv.join("bin/schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: run `make test`, which installs tests/requirements.txt into .venv",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_generated_request_gets_a_5xx_or_an_answer_outside_the_document() {
    let store = MemoryStore::new(Arc::new(ManualClock::starting_now()));
    // Every served tenant has a session: `/v1/health` answers 503 by design while one has none.
    let s = ApiStack::start(store, "ringcx/", &[("TENANTS", "default,second")]).await;
    let key = s.key("all").to_owned();
    let base = s.base.clone();
    let report = std::env::temp_dir().join(format!("schemathesis-{}.json", std::process::id()));
    let report_arg = report.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
            .current_dir(workspace())
            // Only what a Python tool needs: none of the machine's credentials reach it.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .args([
                "run",
                "functions/api/openapi.json",
                "--url",
                &base,
                "--header",
                &format!("Authorization: Bearer {key}"),
                // Every check, the schema-valid-request-rejected and schema-violating-request-accepted
                // ones included: the document states what the server refuses (patterns, lengths,
                // one place for OAuth credentials), so a client generated from it agrees with it.
                "--checks",
                "all",
                "--max-examples",
                "40",
                // One worker: hypothesis parses lambdas' source with `ast` for its descriptions, and
                // CPython 3.11's `ast` is not safe across threads ("AST constructor recursion depth
                // mismatch", an internal error seen here about one run in four with two).
                "--workers",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--generation-deterministic",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                &report_arg,
                "--no-color",
            ])
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let summary: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0].trim() == "Test cases:" || w[0].trim() == "Operations:")
        .map(|w| w[1].trim())
        .chain(
            lines
                .iter()
                .copied()
                .filter(|l| l.trim_start().starts_with("Operations:")),
        )
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    let _ = std::fs::remove_file(&report);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.sim.requests().len() > 10,
        "the proxy operations reached the simulator"
    );
}
