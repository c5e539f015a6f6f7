//! `make dev`'s script, end to end: it starts, the broker becomes healthy, the printed key works
//! on the proxy and the token endpoint, and Ctrl-C (SIGINT to the process group, as a terminal
//! sends it) stops everything it started.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `signal` with the shell's own `kill` and an explicit `--`, so a negative id can only
/// mean that one process group (procps' `kill` is not that careful with `-N` arguments).
fn signal(signal: &str, target: &str) -> bool {
    Command::new("bash")
        .args(["-c", &format!("kill -s {signal} -- {target}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn alive(pid: &str) -> bool {
    pid.parse::<u32>().is_ok_and(|p| p > 1) && signal("0", pid)
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn make_dev_starts_serves_and_stops_everything_on_ctrl_c() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var("VENV")
        .map(|v| root.join(v))
        .unwrap_or_else(|_| root.join(".venv"));
    let (api, sim, moto) = (free_port(), free_port(), free_port());
    let mut child = Command::new("bash")
        .arg("tests/dev.sh")
        .current_dir(&root)
        .env("DEV_API_PORT", api.to_string())
        .env("DEV_SIM_PORT", sim.to_string())
        .env("DEV_MOTO_PORT", moto.to_string())
        .env("VENV", &venv)
        .env_remove("AWS_ENDPOINT_URL_SECRETS_MANAGER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let pgid = child.id();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });

    assert!(pgid > 1);
    let group = format!("-{pgid}");
    let (mut key, mut pids, mut printed) = (None, Vec::new(), Vec::new());
    let mut send_hook: Vec<String> = Vec::new();
    let mut operator_env = None;
    let until = Instant::now() + Duration::from_secs(240);
    loop {
        let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) else {
            signal("TERM", &group);
            let _ = child.wait();
            panic!(
                "make dev never said ready:\n{}\n{}",
                printed.join("\n"),
                errors.join().unwrap_or_default()
            );
        };
        if let Some(k) = line.strip_prefix("Dev caller key (all scopes, shown once): ") {
            key = Some(k.to_owned());
        }
        if let Some(cmd) = line.trim().strip_prefix("python3 tests/send-hook.py ") {
            send_hook.push(cmd.to_owned());
        }
        if let Some(e) = line.trim().strip_prefix("export ") {
            operator_env = Some(e.to_owned());
        }
        if let Some(p) = line.trim().strip_prefix("pids: ") {
            pids = p.split_whitespace().map(str::to_owned).collect();
        }
        let ready = line == "ready";
        printed.push(line);
        if ready {
            break;
        }
    }
    let key = key.expect("the key was printed");
    assert_eq!(
        pids.len(),
        5,
        "moto, simulator, refresher, api, hook worker: {printed:?}"
    );
    assert!(
        printed
            .iter()
            .any(|l| l.contains("curl -s -H 'Authorization: Bearer"))
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{api}");
        let r = http
            .get(format!("{base}/v1/engage/v1/admin/accounts"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let accounts: serde_json::Value = r.json().await.unwrap();
        assert_eq!(accounts[0]["accountId"], "333333");
        let r = http
            .get(format!("{base}/v1/token"))
            .header("X-Api-Key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let token: serde_json::Value = r.json().await.unwrap();
        assert!(token["expires_in"].as_i64().unwrap() > 200);
        // OAuth client credentials with the printed caller id, as RingCX's auth config sends them.
        let r = http
            .post(format!("{base}/v1/oauth/token"))
            .basic_auth("dev", Some(&key))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    // The printed export line is all an operator command needs against the dev stack.
    let operator_env = operator_env.expect("the export line for operator commands was printed");
    let status = Command::new(broker_tests::lambda::binary("operator"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(
            operator_env
                .split_whitespace()
                .filter_map(|kv| kv.split_once('=')),
        )
        .args(["status", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let tenants: serde_json::Value = serde_json::from_str(&text).expect("pure JSON");
    assert!(tenants.to_string().contains("default"), "{tenants}");
    // The printed hook command, as a user pastes it: delivered, then replayed under the same id.
    assert_eq!(
        send_hook.len(),
        2,
        "the sync and the queued hook: {printed:?}"
    );
    let send = |command: &str, extra: &[&str]| {
        let out = Command::new(venv.join("bin/python"))
            .current_dir(&root)
            .arg("tests/send-hook.py")
            .args(command.split_whitespace())
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = send(&send_hook[0], &["--id", "dev-1"]);
    assert!(
        first.starts_with("200 (event dev-1)") && first.contains("\"leadsAccepted\":1"),
        "{first}"
    );
    let again = send(&send_hook[0], &["--id", "dev-1"]);
    assert!(again.starts_with("200 (event dev-1, replayed)"), "{again}");
    // The queued hook: 202 at once, then the worker's delivery reaches the lead loader.
    let queued = send(&send_hook[1], &["--id", "dev-2"]);
    assert!(
        queued.starts_with("202 (event dev-2)") && queued.contains("\"accepted\":true"),
        "{queued}"
    );
    let loads = || {
        let requests: serde_json::Value = runtime.block_on(async {
            reqwest::get(format!("http://127.0.0.1:{sim}/__sim/requests"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        requests
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/leadLoader/direct"))
            })
            .count()
    };
    // The worker long-polls the queue: its delivery arrives within a poll or two.
    let until = Instant::now() + Duration::from_secs(60);
    while loads() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(loads(), 2, "the sync and the queued event, once each");

    // Ctrl-C.
    assert!(signal("INT", &group));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "make dev did not stop within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = errors.join().unwrap();
    assert_eq!(status.code(), Some(130), "stopped by Ctrl-C: {stderr}");
    for pid in &pids {
        assert!(!alive(pid), "pid {pid} was left running");
    }
    for port in [api, sim, moto] {
        assert!(!listening(port), "port {port} is still listening");
    }
}

#[test]
fn a_failed_make_dev_keeps_its_logs_and_says_where() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var("VENV")
        .map(|v| root.join(v))
        .unwrap_or_else(|_| root.join(".venv"));
    // The api's port is taken: make dev stops at once, and says so.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = Command::new("bash")
        .arg("tests/dev.sh")
        .current_dir(&root)
        .env("DEV_API_PORT", port.to_string())
        .env("DEV_SIM_PORT", free_port().to_string())
        .env("DEV_MOTO_PORT", free_port().to_string())
        .env("VENV", &venv)
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("port {port}")), "{stderr}");
    let kept = stderr
        .lines()
        .find_map(|l| l.split("its logs are kept in ").nth(1))
        .unwrap_or_else(|| panic!("where the logs are: {stderr}"))
        .trim()
        .to_owned();
    let kept = PathBuf::from(kept);
    assert!(kept.is_dir(), "{}", kept.display());
    assert!(
        kept.to_string_lossy().contains("/target/dev/"),
        "under the ignored target dir"
    );
    std::fs::remove_dir_all(&kept).unwrap();
}
