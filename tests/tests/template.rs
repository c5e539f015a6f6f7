//! The SAM template agrees with the code: every environment variable it sets is one the code
//! reads, both functions get the settings that must agree between them, and the properties the
//! design depends on (no retries, one refresher at a time, the built binaries) are there.

use std::collections::BTreeSet;

use broker::config::{DEPLOYMENT_REQUIRED, VARIABLES};
use serde_norway::Value;

fn template() -> Value {
    serde_norway::from_str(include_str!("../../template.yaml")).expect("template.yaml parses")
}

fn variables(node: &Value) -> BTreeSet<String> {
    node.get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn functions(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

#[test]
fn every_variable_the_template_sets_is_read_and_every_required_one_is_set() {
    let t = template();
    let globals = variables(&t["Globals"]["Function"]);
    let fns = functions(&t);
    assert_eq!(fns.len(), 2);
    for (name, resource) in &fns {
        let own = variables(&resource["Properties"]);
        let all: BTreeSet<String> = globals.union(&own).cloned().collect();
        for var in &all {
            assert!(
                VARIABLES.contains(&var.as_str()),
                "{name} sets {var}, which no code reads"
            );
        }
        for var in DEPLOYMENT_REQUIRED {
            assert!(all.contains(*var), "{name} does not set {var}");
        }
    }
}

#[test]
fn the_template_builds_the_workspace_binaries_with_cargo_lambda() {
    let t = template();
    let mut binaries: Vec<String> = functions(&t)
        .iter()
        .map(|(name, r)| {
            assert_eq!(
                r["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda"),
                "{name}"
            );
            r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    binaries.sort();
    assert_eq!(binaries, ["api", "refresher"]);
    assert_eq!(
        t["Globals"]["Function"]["Runtime"].as_str(),
        Some("provided.al2023")
    );
    assert_eq!(
        t["Parameters"]["Architecture"]["Default"].as_str(),
        Some("arm64")
    );
}

#[test]
fn the_refresher_never_retries_and_never_runs_twice_at_once() {
    let t = template();
    let r = &t["Resources"]["RefresherFunction"]["Properties"];
    assert_eq!(r["ReservedConcurrentExecutions"].as_u64(), Some(1));
    assert_eq!(
        r["EventInvokeConfig"]["MaximumRetryAttempts"].as_u64(),
        Some(0)
    );
    let schedule = &r["Events"]["Schedule"];
    assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"));
    assert_eq!(
        schedule["Properties"]["RetryPolicy"]["MaximumRetryAttempts"].as_u64(),
        Some(0)
    );
    assert_eq!(
        t["Parameters"]["ScheduleExpression"]["Default"].as_str(),
        Some("rate(1 minute)")
    );
    let slots = &t["Parameters"]["SessionSlots"];
    assert_eq!(
        (slots["Default"].as_u64(), slots["MaxValue"].as_u64()),
        (Some(6), Some(20))
    );
}

#[test]
fn alarms_watch_the_metrics_the_code_emits() {
    let t = template();
    let alarms: Vec<(String, String)> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|r| {
            let p = &r["Properties"];
            (
                p["Namespace"].as_str().unwrap().to_owned(),
                p["MetricName"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (ns, metric) in &alarms {
        if ns == broker::telemetry::NAMESPACE {
            let emitted = include_str!("../../functions/refresher/src/lib.rs");
            assert!(
                emitted.contains(&format!("\"{metric}\"")),
                "the refresher never emits {metric}"
            );
        }
    }
    let names: BTreeSet<&str> = alarms.iter().map(|(_, m)| m.as_str()).collect();
    for expected in ["Errors", "SecondsLeft", "QuotaPressure", "Url5xxCount"] {
        assert!(names.contains(expected), "no alarm on {expected}");
    }
}
