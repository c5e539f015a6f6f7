//! The configuration's parsing, defaults and refusals.

use std::collections::HashMap;

use super::*;

fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn variables_lists_exactly_what_is_read() {
    let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
    Config::from_lookup(|k| {
        asked.lock().unwrap().insert(k.to_owned());
        None
    })
    .unwrap();
    let mut listed: std::collections::BTreeSet<String> =
        VARIABLES.iter().map(|v| v.to_string()).collect();
    listed.remove("RUST_LOG");
    assert_eq!(asked.into_inner().unwrap(), listed);
    assert!(DEPLOYMENT_REQUIRED.iter().all(|v| VARIABLES.contains(v)));
}

#[test]
fn defaults_match_the_design() {
    let c = from(&[]).unwrap();
    assert_eq!(
        c.ringcx.engage_base_url.as_str(),
        "https://engage.ringcentral.com/"
    );
    assert_eq!(
        c.ringcx.platform_base_url.as_str(),
        "https://platform.ringcentral.com/"
    );
    assert_eq!(c.secret_prefix, "ringcx/");
    assert_eq!(c.tenants, ["default"]);
    assert_eq!(c.session_slots, 6);
    assert_eq!(c.refresh_margin, Duration::from_secs(150));
    assert_eq!(c.min_token_ttl, Duration::from_secs(30));
    assert_eq!(c.bind_addr.to_string(), "127.0.0.1:3000");
}

#[test]
fn lists_and_numbers_are_parsed() {
    let c = from(&[
        ("TENANTS", " a, b ,c"),
        ("SESSION_SLOTS", "20"),
        ("ENGAGE_BASE_URL", "http://127.0.0.1:9"),
    ])
    .unwrap();
    assert_eq!(c.tenants, ["a", "b", "c"]);
    assert_eq!(c.session_slots, 20);
}

#[test]
fn contradictions_are_refused_with_the_fix() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("MIN_TOKEN_TTL_SECONDS", "150")],
            "MIN_TOKEN_TTL_SECONDS",
            "must be below REFRESH_MARGIN_SECONDS (150)",
        ),
        (
            &[("REFRESH_MARGIN_SECONDS", "80")],
            "REFRESH_MARGIN_SECONDS",
            "at least 90",
        ),
        (
            &[("SESSION_SLOTS", "5")],
            "SESSION_SLOTS",
            "renews 480 times a day; set SESSION_SLOTS to at least 6",
        ),
        (
            &[("REFRESH_MARGIN_SECONDS", "290"), ("SESSION_SLOTS", "15")],
            "SESSION_SLOTS",
            "at least 16",
        ),
    ];
    for (pairs, name, fix) in cases {
        let err = from(pairs).unwrap_err();
        assert_eq!(err.name(), *name, "{err}");
        assert!(err.to_string().contains(fix), "{err}");
    }
}

#[test]
fn forced_renewals_get_the_headroom_the_schedule_leaves() {
    assert_eq!(
        scheduled_writes_per_day(Duration::from_secs(150), Duration::from_secs(60)),
        480
    );
    assert_eq!(from(&[]).unwrap().forced_renewals_per_day(), 6 * 90 - 480);
    let wide = from(&[("SESSION_SLOTS", "10")]).unwrap();
    assert_eq!(wide.forced_renewals_per_day(), 900 - 480);
    assert!(!wide.api_renew_settings().may_login);
    assert!(wide.renew_settings().may_login);
}

#[test]
fn bad_values_name_the_variable_and_the_fix() {
    for (name, value) in [
        ("SESSION_SLOTS", "21"),
        ("SESSION_SLOTS", "six"),
        ("REFRESH_MARGIN_SECONDS", "400"),
        ("ENGAGE_BASE_URL", "engage.ringcentral.com"),
        ("TENANTS", "a b"),
        ("TENANTS", ","),
        ("SECRET_PREFIX", "bad prefix"),
        ("BIND_ADDR", "localhost"),
        ("ALLOW_QUERY_KEY", "yes"),
        ("CALLERS_CACHE_SECONDS", "-1"),
        ("PER_TENANT_METRICS", "no"),
    ] {
        let err = from(&[(name, value)]).unwrap_err();
        assert_eq!(err.name(), name);
        assert!(err.to_string().contains("expected"), "{err}");
    }
}

#[test]
fn tenants_that_cannot_fit_the_request_quotas_are_refused_with_the_arithmetic() {
    let tenants = |n: usize| {
        (0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // 480 renewals a tenant a day at the defaults; renewals start in the first 43 s of each
    // 60 s period (58 s pass less a 10 s RingCX timeout and the 5 s write reserve): 25 writes a
    // second hold 25 x 43/60 x 180 = 3,225 tenants.
    assert!(from(&[("TENANTS", &tenants(3_200))]).is_ok());
    let err = from(&[("TENANTS", &tenants(3_300))]).unwrap_err();
    assert_eq!(err.name(), "WRITE_RATE_PER_SECOND");
    let text = err.to_string();
    for part in [
        "3300 tenants",
        "480 times a day",
        "18.3 renewals a second",
        "holds 322",
        "other regions or accounts",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(
        from(&[
            ("TENANTS", &tenants(3_300)),
            ("WRITE_RATE_PER_SECOND", "50")
        ])
        .is_ok()
    );
    let err = from(&[("TENANTS", &tenants(2_000)), ("READ_RATE_PER_SECOND", "10")]).unwrap_err();
    assert_eq!(err.name(), "READ_RATE_PER_SECOND");
    assert!(
        err.to_string().contains("BatchGetSecretValue quota is 100"),
        "{err}"
    );
    assert_eq!(
        from(&[("WRITE_RATE_PER_SECOND", "51")]).unwrap_err().name(),
        "WRITE_RATE_PER_SECOND"
    );
    assert_eq!(
        from(&[("READ_RATE_PER_SECOND", "0")]).unwrap_err().name(),
        "READ_RATE_PER_SECOND"
    );
    let c = from(&[]).unwrap();
    assert_eq!((c.read_rate_per_second, c.write_rate_per_second), (50, 25));
}

#[test]
fn queued_hooks_pace_each_worker_to_its_part_of_the_share() {
    let c = from(&[]).unwrap();
    let q = &c.hook_queue;
    assert_eq!((q.url.as_deref(), q.dlq_url.as_deref()), (None, None));
    assert_eq!(q.max_age, Duration::from_secs(24 * 3600));
    assert_eq!((q.max_receives, q.ringcx_share_percent), (100, 25));
    // 25% of 120 a minute over 2 instances.
    assert_eq!(q.calls_per_minute_per_worker(), 15);
    let c = from(&[
        (
            "HOOK_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/hooks",
        ),
        ("HOOK_RINGCX_SHARE_PERCENT", "10"),
        ("HOOK_WORKER_CONCURRENCY", "5"),
    ])
    .unwrap();
    // 12 a minute over 5 instances: 2 each (never more than the share, rounded down).
    assert_eq!(c.hook_queue.calls_per_minute_per_worker(), 2);
    let c = from(&[
        ("HOOK_RINGCX_SHARE_PERCENT", "1"),
        ("HOOK_WORKER_CONCURRENCY", "1000"),
    ])
    .unwrap();
    assert_eq!(
        c.hook_queue.calls_per_minute_per_worker(),
        1,
        "at least one"
    );
    for (name, value) in [
        ("HOOK_QUEUE_URL", "hooks"),
        ("HOOK_DLQ_URL", "ftp://x/y"),
        ("HOOK_MAX_AGE_HOURS", "241"),
        ("HOOK_MAX_RECEIVES", "0"),
        ("HOOK_RINGCX_SHARE_PERCENT", "101"),
        ("HOOK_WORKER_CONCURRENCY", "0"),
        ("RINGCX_RATE_LIMIT_PER_MINUTE", "lots"),
    ] {
        let e = from(&[(name, value)]).unwrap_err();
        assert_eq!(e.name(), name, "{e}");
    }
    // A delivery record must outlive the copies of its event.
    let url = (
        "HOOK_QUEUE_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/hooks",
    );
    let e = from(&[url, ("HOOK_IDEMPOTENCY_HOURS", "12")]).unwrap_err();
    assert_eq!(e.name(), "HOOK_IDEMPOTENCY_HOURS");
    assert!(e.to_string().contains("HOOK_MAX_AGE_HOURS (24)"), "{e}");
    assert!(
        from(&[
            url,
            ("HOOK_IDEMPOTENCY_HOURS", "12"),
            ("HOOK_MAX_AGE_HOURS", "12")
        ])
        .is_ok()
    );
}
