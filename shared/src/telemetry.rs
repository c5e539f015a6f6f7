//! Logs and metrics. Logs are JSON lines in Lambda (CloudWatch Logs Insights reads them) and
//! human-readable elsewhere; metrics are CloudWatch Embedded Metric Format lines on stdout, which
//! CloudWatch turns into metrics with no API call and no extra IAM.

use std::io::Write;

use serde_json::{Map, Value, json};
use tracing_subscriber::filter::Targets;

/// The CloudWatch namespace every metric goes to.
pub const NAMESPACE: &str = "RingCxBroker";

/// Installs the global subscriber; `RUST_LOG` sets the level, per target if wanted
/// (`info`, `warn,broker=debug`; default `info`). A plain target filter rather than `EnvFilter`,
/// whose regex engine would be most of a megabyte of every bootstrap.
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let registry = tracing_subscriber::registry().with(filter);
    let result = if in_lambda() {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_target(false)
                    .with_ansi(false)
                    .without_time(),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// The filter for a `RUST_LOG` value: empty pieces are dropped (`info,` is `info`), a value
/// without a bare level gets `info` for everything it does not name, and an unreadable one is
/// `info`, so a typo never silences the logs.
fn log_filter(value: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    let Some(value) = value else {
        return info();
    };
    let pieces: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    match pieces.join(",").parse::<Targets>() {
        Ok(t) if pieces.is_empty() => t.with_default(tracing::Level::INFO),
        Ok(t) if t.default_level().is_none() => t.with_default(tracing::Level::INFO),
        Ok(t) => t,
        Err(_) => info(),
    }
}

/// Running under a Lambda runtime (or an emulator of one).
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// A metric unit CloudWatch understands.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// A count.
    Count,
    /// Seconds.
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

crate::listed_enum! {
    /// Every metric the functions publish. The template's alarms and dashboard are checked against
    /// these names, so a renamed metric cannot silently leave an alarm watching nothing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Metric {
        /// Time left on the stored token after a run (Minimum is what the alarm watches).
        SecondsLeft,
        /// Tokens renewed (refresh or login).
        Renewals,
        /// Full logins: each means a refresh token was lost.
        FallbackLogins,
        /// Another writer won a generation (harmless).
        CasConflicts,
        /// Slots skipped at the version quota.
        QuotaPressure,
        /// Tenants that ended a run without renewing when due.
        RenewalFailures,
        /// Retries after transient RingCX failures.
        UpstreamRetries,
        /// Slot secrets that hold no session document.
        UnreadableSlots,
        /// RingCX refused a token before its time.
        ForcedRenewals,
        /// Permanent API tokens the sweep revoked.
        ApiTokensRevoked,
        /// Hook events RingCX took (any answer but 5xx and 429), across hooks.
        HooksDelivered,
        /// Repeats of delivered hook events, answered from the idempotency record.
        HooksReplayed,
        /// Hook events RingCX did not take (5xx, 429, timeout, no usable token): the sender retries.
        HooksFailed,
        /// Hook requests refused before RingCX, also per `Reason` (the error code).
        HooksRejected,
        /// Queued hook events accepted (`202`) and put on the hook queue.
        HooksQueued,
        /// Queued events RingCX did not take this time, back on the queue with a backoff.
        HooksRetried,
        /// Queued events moved to the dead-letter queue, also per `Reason`.
        HooksDeadLettered,
        /// How long a queued event has waited when the worker takes it (since acceptance or its
        /// redrive): SQS's own `ApproximateAgeOfOldestMessage` skips messages received three times.
        HookEventAge,
    }
}

impl Metric {
    /// What the refresher publishes for each tenant's run, in this order.
    pub const REFRESHER: [Metric; 10] = [
        Metric::SecondsLeft,
        Metric::Renewals,
        Metric::FallbackLogins,
        Metric::CasConflicts,
        Metric::QuotaPressure,
        Metric::RenewalFailures,
        Metric::UpstreamRetries,
        Metric::UnreadableSlots,
        Metric::ForcedRenewals,
        Metric::ApiTokensRevoked,
    ];

    /// What the HTTP function and the hook worker publish, one per request or message.
    pub const HOOKS: [Metric; 8] = [
        Metric::HooksDelivered,
        Metric::HooksReplayed,
        Metric::HooksFailed,
        Metric::HooksRejected,
        Metric::HooksQueued,
        Metric::HooksRetried,
        Metric::HooksDeadLettered,
        Metric::HookEventAge,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::SecondsLeft => "SecondsLeft",
            Metric::Renewals => "Renewals",
            Metric::FallbackLogins => "FallbackLogins",
            Metric::CasConflicts => "CasConflicts",
            Metric::QuotaPressure => "QuotaPressure",
            Metric::RenewalFailures => "RenewalFailures",
            Metric::UpstreamRetries => "UpstreamRetries",
            Metric::UnreadableSlots => "UnreadableSlots",
            Metric::ForcedRenewals => "ForcedRenewals",
            Metric::ApiTokensRevoked => "ApiTokensRevoked",
            Metric::HooksDelivered => "HooksDelivered",
            Metric::HooksReplayed => "HooksReplayed",
            Metric::HooksFailed => "HooksFailed",
            Metric::HooksRejected => "HooksRejected",
            Metric::HooksQueued => "HooksQueued",
            Metric::HooksRetried => "HooksRetried",
            Metric::HooksDeadLettered => "HooksDeadLettered",
            Metric::HookEventAge => "HookEventAge",
        }
    }

    /// The metric of that CloudWatch name, if the refresher publishes one.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The CloudWatch unit.
    pub fn unit(self) -> Unit {
        match self {
            Metric::SecondsLeft | Metric::HookEventAge => Unit::Seconds,
            _ => Unit::Count,
        }
    }

    /// Published per tenant as well as across tenants. Each metric per tenant is a custom metric
    /// billed monthly, so only what the dashboard draws per tenant is: the rest is summed across
    /// tenants, and the tenant is in the log line and in `make status`.
    pub fn per_tenant(self) -> bool {
        matches!(self, Metric::SecondsLeft)
    }
}

/// The dimension the per-tenant metrics carry.
pub const TENANT_DIMENSION: &str = "Tenant";

/// One EMF document for `tenant`'s run at `timestamp_ms`: every metric across tenants (no
/// dimension, so one alarm watches every tenant at once, e.g. the minimum of `SecondsLeft`), and
/// the [`Metric::per_tenant`] ones also under `Tenant` when `per_tenant` is on.
pub fn emf(tenant: &str, metrics: &[(Metric, f64)], per_tenant: bool, timestamp_ms: i64) -> Value {
    let mut doc = Map::new();
    doc.insert(TENANT_DIMENSION.to_owned(), json!(tenant));
    for (metric, value) in metrics {
        doc.insert(metric.name().to_owned(), json!(value));
    }
    let declare = |ms: &mut dyn Iterator<Item = &Metric>| -> Vec<Value> {
        ms.map(|m| json!({"Name": m.name(), "Unit": m.unit().as_str()}))
            .collect()
    };
    let mut directives = vec![json!({
        "Namespace": NAMESPACE,
        "Dimensions": [Vec::<&str>::new()],
        "Metrics": declare(&mut metrics.iter().map(|(m, _)| m)),
    })];
    let tenant_metrics = declare(
        &mut metrics
            .iter()
            .map(|(m, _)| m)
            .filter(|m| per_tenant && m.per_tenant()),
    );
    if !tenant_metrics.is_empty() {
        directives.push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [[TENANT_DIMENSION]],
            "Metrics": tenant_metrics,
        }));
    }
    doc.insert(
        "_aws".to_owned(),
        json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
    );
    Value::Object(doc)
}

/// The dimension rejected hook requests also carry: the error code.
pub const REASON_DIMENSION: &str = "Reason";

/// One EMF document for one hook request: `metric` across hooks (hook names stay in the log
/// line: a dimension per hook would be a custom metric per hook), and for a rejection also under
/// `Reason`, a handful of error codes.
pub fn hook_emf(metric: Metric, reason: Option<&str>, timestamp_ms: i64) -> Value {
    hook_metric(metric, json!(1), reason, timestamp_ms)
}

/// One hook metric's EMF document with `value`, also per `Reason` when given.
fn hook_metric(metric: Metric, value: Value, reason: Option<&str>, timestamp_ms: i64) -> Value {
    let spec = json!([{"Name": metric.name(), "Unit": metric.unit().as_str()}]);
    let mut directives =
        vec![json!({"Namespace": NAMESPACE, "Dimensions": [Vec::<&str>::new()], "Metrics": spec})];
    let mut doc = Map::new();
    doc.insert(metric.name().to_owned(), value);
    if let Some(reason) = reason {
        doc.insert(REASON_DIMENSION.to_owned(), json!(reason));
        directives.push(
            json!({"Namespace": NAMESPACE, "Dimensions": [[REASON_DIMENSION]], "Metrics": spec}),
        );
    }
    doc.insert(
        "_aws".to_owned(),
        json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
    );
    Value::Object(doc)
}

/// The worker's EMF document for one queued event's age, in seconds (across hooks).
pub fn hook_age_emf(seconds: u64, timestamp_ms: i64) -> Value {
    hook_metric(Metric::HookEventAge, json!(seconds), None, timestamp_ms)
}

/// Writes an EMF document as one stdout line in Lambda, where CloudWatch reads it; elsewhere the
/// log line carries the same figures and stdout stays clean for `--once`'s summary.
pub fn emit(doc: &Value) {
    if in_lambda() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{doc}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(doc: &Value, dims: Value) -> Vec<String> {
        doc["_aws"]["CloudWatchMetrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["Dimensions"] == json!([dims]))
            .flat_map(|d| d["Metrics"].as_array().cloned().unwrap_or_default())
            .map(|m| m["Name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn every_metric_goes_across_tenants_and_only_seconds_left_per_tenant() {
        let metrics: Vec<(Metric, f64)> = Metric::ALL.iter().map(|m| (*m, 1.0)).collect();
        let doc = emf("default", &metrics, true, 1);
        assert_eq!(doc["Tenant"], "default");
        assert_eq!(doc["Renewals"], 1.0);
        for d in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(d["Namespace"], NAMESPACE);
        }
        let all: Vec<String> = Metric::ALL.iter().map(|m| m.name().to_owned()).collect();
        assert_eq!(declared(&doc, json!([])), all);
        assert_eq!(declared(&doc, json!(["Tenant"])), ["SecondsLeft"]);
        let spec = &doc["_aws"]["CloudWatchMetrics"][1]["Metrics"][0];
        assert_eq!(spec["Unit"], "Seconds");
    }

    #[test]
    fn per_tenant_metrics_can_be_turned_off() {
        let doc = emf("default", &[(Metric::SecondsLeft, 290.0)], false, 1);
        assert_eq!(declared(&doc, json!([])), ["SecondsLeft"]);
        assert!(declared(&doc, json!(["Tenant"])).is_empty());
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn log_filters_never_silence_by_accident() {
        use tracing::Level;
        let enabled = |value: Option<&str>, target: &str, level: Level| {
            log_filter(value).would_enable(target, &level)
        };
        for value in [
            None,
            Some(""),
            Some("info"),
            Some("info,"),
            Some(" , info "),
        ] {
            assert!(enabled(value, "refresher", Level::INFO), "{value:?}");
            assert!(!enabled(value, "refresher", Level::DEBUG), "{value:?}");
        }
        assert!(enabled(Some("warn,broker=debug,"), "broker", Level::DEBUG));
        assert!(enabled(Some("warn,broker=debug,"), "api", Level::WARN));
        assert!(!enabled(Some("warn,broker=debug,"), "api", Level::INFO));
        assert!(enabled(Some("debug"), "api", Level::DEBUG));
        assert!(enabled(Some("error"), "api", Level::ERROR));
        assert!(!enabled(Some("error"), "api", Level::WARN));
        // A typo or a target-only value keeps info for everything else.
        assert!(enabled(Some("inf"), "api", Level::INFO));
        assert!(enabled(Some("broker=debug"), "api", Level::INFO));
        assert!(enabled(Some("broker=debug"), "broker", Level::DEBUG));
    }

    #[test]
    fn the_refresher_and_hooks_metrics_are_all_of_them() {
        let mut both: Vec<Metric> = Metric::REFRESHER.to_vec();
        both.extend(Metric::HOOKS);
        assert_eq!(both, Metric::ALL.to_vec());
    }

    #[test]
    fn a_hook_rejection_counts_across_hooks_and_by_reason() {
        let doc = hook_emf(Metric::HooksRejected, Some("invalid_signature"), 7);
        assert_eq!(doc["HooksRejected"], 1);
        assert_eq!(doc["Reason"], "invalid_signature");
        assert_eq!(declared(&doc, json!([])), ["HooksRejected"]);
        assert_eq!(declared(&doc, json!(["Reason"])), ["HooksRejected"]);
        let delivered = hook_emf(Metric::HooksDelivered, None, 7);
        assert_eq!(declared(&delivered, json!([])), ["HooksDelivered"]);
        assert!(delivered.get("Reason").is_none());
        assert_eq!(delivered["_aws"]["Timestamp"], 7);
    }

    #[test]
    fn names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        assert_eq!(Metric::from_name("secondsleft"), None);
    }
}
