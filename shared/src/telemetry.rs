//! Logs and metrics. Logs are JSON lines in Lambda (CloudWatch Logs Insights reads them) and
//! human-readable elsewhere; metrics are CloudWatch Embedded Metric Format lines on stdout, which
//! CloudWatch turns into metrics with no API call and no extra IAM.

use std::io::Write;

use serde_json::{Map, Value, json};

/// The CloudWatch namespace every metric goes to.
pub const NAMESPACE: &str = "RingCxBroker";

/// Installs the global subscriber; `RUST_LOG` overrides the level (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if in_lambda() {
        builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .without_time()
            .try_init()
    } else {
        builder.with_writer(std::io::stderr).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Running under a Lambda runtime (or an emulator of one).
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// A metric unit CloudWatch understands.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Count,
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

/// One EMF document: `metrics` under `dimensions` (name, value), at `timestamp_ms`. Each metric
/// is published twice: per dimension set, and with no dimension at all, so one alarm can watch
/// every tenant at once (e.g. the minimum of `SecondsLeft`).
pub fn emf(dimensions: &[(&str, &str)], metrics: &[(&str, Unit, f64)], timestamp_ms: i64) -> Value {
    let mut doc = Map::new();
    for (k, v) in dimensions {
        doc.insert((*k).to_owned(), json!(v));
    }
    for (name, _, value) in metrics {
        doc.insert((*name).to_owned(), json!(value));
    }
    doc.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>(), Vec::<&str>::new()],
                "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u.as_str()})).collect::<Vec<_>>(),
            }]
        }),
    );
    Value::Object(doc)
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

    #[test]
    fn emf_documents_declare_every_metric_and_dimension() {
        let doc = emf(
            &[("Tenant", "default")],
            &[
                ("Renewals", Unit::Count, 1.0),
                ("SecondsLeft", Unit::Seconds, 290.0),
            ],
            1,
        );
        assert_eq!(doc["Tenant"], "default");
        assert_eq!(doc["Renewals"], 1.0);
        let spec = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], NAMESPACE);
        assert_eq!(spec["Dimensions"][0][0], "Tenant");
        assert_eq!(
            spec["Dimensions"][1],
            serde_json::json!([]),
            "an aggregate across tenants too"
        );
        assert_eq!(spec["Metrics"][1]["Name"], "SecondsLeft");
        assert_eq!(spec["Metrics"][1]["Unit"], "Seconds");
    }
}
