//! The `operator` binary's command line: documented by `--help`, bad input refused before any
//! AWS call with a sentence that says what is accepted, and kept out of the `api` binary.

use broker_tests::lambda::binary;
use std::process::Command;

fn run(package: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(binary(package))
        .env_clear()
        .args(args)
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_lists_every_command() {
    let (code, help) = run("operator", &["--help"]);
    assert_eq!(code, 0, "{help}");
    for command in [
        "keygen",
        "add-caller",
        "remove-caller",
        "seed-credentials",
        "status",
        "connect-ringcx",
        "hook",
    ] {
        assert!(help.contains(command), "{command} missing from\n{help}");
    }
    let (code, help) = run("operator", &["hook", "--help"]);
    assert_eq!(code, 0, "{help}");
    for command in ["add", "list", "remove", "test", "dlq", "redrive"] {
        assert!(
            help.contains(command),
            "hook {command} missing from\n{help}"
        );
    }
    let (code, help) = run("operator", &["add-caller", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--id",
        "--tenant",
        "--scopes",
        "--paths",
        "--jwt",
        "--max-age",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}

#[test]
fn bad_input_is_refused_with_what_is_accepted() {
    let (code, text) = run(
        "operator",
        &[
            "keygen",
            "--id",
            "x",
            "--scopes",
            "engage:proxy,tokens:everything",
        ],
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("engage:proxy, token:read, api-tokens:admin and hooks:invoke"),
        "{text}"
    );
    let (code, text) = run("operator", &["add-caller", "--id", "x", "--max-age", "60"]);
    assert_eq!(code, 2, "--max-age needs --jwt: {text}");
    let (code, text) = run("operator", &["seed-credentials", "--tenant", "t"]);
    assert_eq!(code, 2);
    assert!(text.contains("--file"), "{text}");
    let (code, text) = run("operator", &["frobnicate"]);
    assert_eq!(code, 2, "{text}");
}

#[test]
fn keygen_prints_a_key_and_an_entry_that_hold_together() {
    let (code, text) = run(
        "operator",
        &[
            "keygen",
            "--id",
            "ivr",
            "--tenant",
            "t1",
            "--scopes",
            "engage:proxy",
            "--paths",
            "GET v1/admin/accounts/*, POST v1/x",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("a key line");
    let entry: serde_json::Value = serde_json::from_str(
        text.lines()
            .find_map(|l| l.strip_prefix("entry: "))
            .expect("an entry line"),
    )
    .unwrap();
    assert_eq!(entry["tenant"], "t1");
    assert_eq!(
        entry["paths"],
        serde_json::json!(["GET v1/admin/accounts/*", "POST v1/x"])
    );
    assert!(
        !entry.to_string().contains(key),
        "the entry holds only the key's hash"
    );
}

#[test]
fn the_function_binary_takes_no_operator_commands() {
    let (code, text) = run("api", &["status"]);
    assert_ne!(code, 0);
    assert!(text.contains("operator --help"), "{text}");
}

#[test]
fn make_help_is_readable_and_the_operator_targets_print_only_their_output() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("make")
        .arg("help")
        .current_dir(&root)
        .output()
        .expect("make runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for line in help.lines() {
        assert!(line.len() <= 100, "too long: {line}");
        assert!(!line.contains("$("), "a make variable shown as is: {line}");
        if let Some(rest) = line.strip_prefix("  make ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(
                rest[name.len()..].starts_with("  "),
                "{name} runs into its text: {line}"
            );
        }
    }
    // `make status JSON=1 | jq` needs the recipe itself unechoed, and the same binaries as the
    // rest (no rebuild for a -p operator feature set).
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let recipes: Vec<&str> = makefile
        .lines()
        .filter(|l| l.contains("$(OPERATOR)"))
        .collect();
    assert!(recipes.len() >= 11, "{recipes:?}");
    for r in recipes {
        assert!(r.starts_with("\t@$(OPERATOR)"), "echoed: {r}");
    }
    assert!(!makefile.contains("--bin operator"));
}

#[test]
fn missing_aws_credentials_or_region_are_one_line_with_the_fix() {
    let operator = broker_tests::lambda::binary("operator");
    let moto = broker_tests::support::moto_url();
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(&operator)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto)
            .envs(env.iter().copied())
            .args(["status", "--json"])
            .output()
            .expect("the operator runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases: [(&[(&str, &str)], &str); 2] = [
        // No credentials anywhere (no IMDS either, as on a laptop).
        (
            &[
                ("AWS_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
            "no AWS credentials were found: set AWS_ACCESS_KEY_ID",
        ),
        // Credentials but no region.
        (
            &[("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y")],
            "no AWS region is set: set AWS_REGION",
        ),
    ];
    for (env, sentence) in cases {
        let (code, err) = run(env);
        assert_ne!(code, Some(0), "{err}");
        assert!(err.contains(sentence), "{err}");
        // The command's context and the one sentence: no SDK chain, no retry, no repeat.
        assert!(
            !err.contains("dispatch failure") && !err.contains("retry"),
            "{err}"
        );
        assert!(
            err.lines().filter(|l| !l.trim().is_empty()).count() <= 3,
            "{err}"
        );
        assert_eq!(err.matches("no AWS").count(), 1, "{err}");
    }
}
