//! The SAM template agrees with the code: every environment variable it sets is one the code
//! reads, both functions get the settings that must agree between them, and the properties the
//! design depends on (no retries, one refresher at a time, the built binaries) are there.

use std::collections::BTreeSet;

use broker::config::{DEPLOYMENT_REQUIRED, VARIABLES};
use broker::telemetry::Metric;
use serde_norway::Value;

fn template() -> Value {
    serde_norway::from_str(include_str!("../../../template.yaml")).expect("template.yaml parses")
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
    assert_eq!(fns.len(), 3);
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
    assert_eq!(binaries, ["api", "hook-worker", "refresher"]);
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
        t["Parameters"]["ScheduleMinutes"]["Default"].as_str(),
        Some("1")
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
            assert!(
                Metric::from_name(metric).is_some(),
                "the refresher never emits {metric}"
            );
        }
    }
    // The broker's own alarms watch the across-tenant metrics, which are always published.
    for r in t["Resources"].as_mapping().unwrap().values() {
        let p = &r["Properties"];
        if p["Namespace"].as_str() == Some(broker::telemetry::NAMESPACE) {
            assert!(p["Dimensions"].is_null(), "{:?}", p["MetricName"]);
        }
    }
    let names: BTreeSet<&str> = alarms.iter().map(|(_, m)| m.as_str()).collect();
    for expected in [
        "Errors",
        "SecondsLeft",
        "QuotaPressure",
        "Url5xxCount",
        "HooksFailed",
    ] {
        assert!(names.contains(expected), "no alarm on {expected}");
    }
}

#[test]
fn the_schedule_and_the_interval_the_functions_are_told_agree() {
    let t = template();
    let schedule = t["Mappings"]["Schedule"].as_mapping().unwrap();
    let allowed = t["Parameters"]["ScheduleMinutes"]["AllowedValues"]
        .as_sequence()
        .unwrap();
    assert_eq!(schedule.len(), allowed.len());
    for (minutes, entry) in schedule {
        let n: u64 = minutes.as_str().unwrap().parse().unwrap();
        let unit = if n == 1 { "minute" } else { "minutes" };
        assert_eq!(
            entry["Expression"].as_str(),
            Some(format!("rate({n} {unit})").as_str())
        );
        assert_eq!(
            entry["Seconds"].as_str(),
            Some((n * 60).to_string().as_str())
        );
        // Every offered schedule works with a margin of a run plus MIN_TOKEN_TTL_SECONDS.
        let config = broker::config::Config::from_lookup(|k| match k {
            "REFRESH_INTERVAL_SECONDS" => Some((n * 60).to_string()),
            "REFRESH_MARGIN_SECONDS" => Some((n * 60 + 30).max(150).to_string()),
            _ => None,
        });
        assert!(config.is_ok(), "{n} min: {:?}", config.err());
    }
    let globals = variables(&t["Globals"]["Function"]);
    assert!(globals.contains("REFRESH_INTERVAL_SECONDS"));
}

/// The text of a YAML node, tags (`!Sub`) included.
fn text(node: &Value) -> String {
    serde_norway::to_string(node).unwrap_or_default()
}

#[test]
fn the_internet_facing_function_can_never_read_credentials() {
    let t = template();
    let statements = t["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"]
        .as_sequence()
        .unwrap();
    let mut denied = false;
    for s in statements {
        let resource = text(&s["Resource"]);
        let action = text(&s["Action"]);
        match s["Effect"].as_str() {
            Some("Allow") if action.contains("secretsmanager:GetSecretValue") => {
                assert!(!resource.contains("credentials"), "{resource}");
                let allowed: Vec<&str> = resource.split("${SecretPrefix}").skip(1).collect();
                assert!(!allowed.is_empty(), "{resource}");
                for a in allowed {
                    assert!(
                        a.starts_with("*/session-*")
                            || a.starts_with("callers-*")
                            || a.starts_with("hooks-*")
                            || a.starts_with("*/api-tokens-*"),
                        "the api may read more than the ring, the callers, the hooks and the registry: {resource}"
                    );
                }
            }
            Some("Allow") => assert!(!resource.contains("credentials"), "{resource}"),
            Some("Deny") => {
                denied |= action.contains("secretsmanager:*")
                    && resource.contains("${SecretPrefix}*/credentials*");
            }
            _ => {}
        }
    }
    assert!(denied, "an explicit Deny on every credentials secret");
    // The refresher still reads them: it is the one that logs in.
    let refresher = text(&t["Resources"]["RefresherFunction"]["Properties"]["Policies"]);
    assert!(refresher.contains("GetSecretValue"));
}

#[test]
fn the_api_can_be_given_reserved_concurrency_but_is_not_by_default() {
    let t = template();
    let p = &t["Parameters"]["ApiReservedConcurrency"];
    assert_eq!(p["Default"].as_str(), Some(""), "unset by default");
    let api = &t["Resources"]["ApiFunction"]["Properties"]["ReservedConcurrentExecutions"];
    let shown = text(api);
    for part in [
        "HasApiReservedConcurrency",
        "ApiReservedConcurrency",
        "AWS::NoValue",
    ] {
        assert!(shown.contains(part), "{part} missing in {shown}");
    }
    assert!(text(&t["Conditions"]["HasApiReservedConcurrency"]).contains("ApiReservedConcurrency"));
}

#[test]
fn both_functions_may_keep_the_api_token_registry_and_create_it_only_tagged() {
    let t = template();
    for (name, resource) in functions(&t) {
        let policies = text(&resource["Properties"]["Policies"]);
        if name == "HookWorkerFunction" {
            // Least privilege: the worker delivers hooks and never manages API tokens.
            assert!(!policies.contains("api-tokens"), "{policies}");
            continue;
        }
        assert!(policies.contains("ApiTokenRegistry"), "{name}");
        assert!(policies.contains("*/api-tokens-*"), "{name}");
        assert!(
            policies.contains("aws:RequestTag/ringcx-broker: api-tokens"),
            "{name} creates the registry only with its tag"
        );
    }
}

/// The dashboard body as JSON, with `${...}` placeholders filled.
fn dashboard(t: &Value) -> serde_json::Value {
    let body = text(&t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]);
    let body = body.trim_start_matches("!Sub").trim();
    let body: String = serde_norway::from_str::<String>(body).unwrap_or_else(|_| body.to_owned());
    let mut filled = String::new();
    let mut rest = body.as_str();
    while let Some(at) = rest.find("${") {
        filled.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("a closed placeholder");
        filled.push_str("placeholder");
        rest = &rest[at + end + 1..];
    }
    filled.push_str(rest);
    serde_json::from_str(&filled)
        .unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}\n{filled}"))
}

#[test]
fn the_dashboard_shows_metrics_the_code_emits() {
    let t = template();
    let board = dashboard(&t);
    let url_metrics = [
        "UrlRequestCount",
        "Url4xxCount",
        "Url5xxCount",
        "UrlRequestLatency",
        "Errors",
    ];
    let mut shown = BTreeSet::new();
    assert_eq!(board["widgets"].as_array().map(Vec::len), Some(8));
    for widget in board["widgets"].as_array().expect("widgets") {
        for line in widget["properties"]["metrics"].as_array().expect("metrics") {
            let line = line.as_array().unwrap();
            if let Some(expr) = line[0]["expression"].as_str() {
                // Per-tenant lines: a metric the refresher publishes under its Tenant dimension.
                let dims = format!(
                    "{{{},{}}}",
                    broker::telemetry::NAMESPACE,
                    broker::telemetry::TENANT_DIMENSION
                );
                assert!(expr.contains(&dims), "{expr}");
                let name = expr
                    .split("MetricName=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("no MetricName in {expr}"));
                let metric = Metric::from_name(name).expect("a metric the refresher emits");
                assert!(metric.per_tenant(), "{name} is not published per tenant");
                shown.insert(name.to_owned());
                continue;
            }
            let (ns, name) = (line[0].as_str().unwrap(), line[1].as_str().unwrap());
            match ns {
                broker::telemetry::NAMESPACE => {
                    assert!(
                        Metric::from_name(name).is_some(),
                        "the refresher never emits {name}"
                    );
                    // No dimension: at most a trailing options object after the name.
                    assert!(
                        line.len() == 2 || (line.len() == 3 && line[2].is_object()),
                        "{name}: the across-tenant metric has no dimension"
                    );
                }
                "AWS/Lambda" => {
                    assert!(url_metrics.contains(&name), "{name}");
                    assert_eq!(line[2].as_str(), Some("FunctionName"));
                }
                "AWS/SQS" => {
                    assert!(
                        [
                            "ApproximateAgeOfOldestMessage",
                            "ApproximateNumberOfMessagesVisible"
                        ]
                        .contains(&name),
                        "{name}"
                    );
                    assert_eq!(line[2].as_str(), Some("QueueName"));
                }
                other => panic!("unexpected namespace {other}"),
            }
            shown.insert(name.to_owned());
        }
    }
    for needed in [
        "SecondsLeft",
        "Renewals",
        "FallbackLogins",
        "RenewalFailures",
        "QuotaPressure",
        "Url5xxCount",
        "UrlRequestLatency",
        "HooksDelivered",
        "HooksReplayed",
        "HooksFailed",
        "HooksRejected",
        "HooksQueued",
        "HooksRetried",
        "HooksDeadLettered",
        "ApproximateAgeOfOldestMessage",
    ] {
        assert!(shown.contains(needed), "the dashboard lacks {needed}");
    }
    assert!(text(&t["Outputs"]["DashboardName"]).contains("Dashboard"));
}

#[test]
fn an_alarm_email_creates_a_topic_and_subscription_only_when_set() {
    let t = template();
    assert_eq!(t["Parameters"]["AlarmEmail"]["Default"].as_str(), Some(""));
    let topic = &t["Resources"]["AlarmEmailTopic"];
    assert_eq!(topic["Type"].as_str(), Some("AWS::SNS::Topic"));
    assert_eq!(topic["Condition"].as_str(), Some("HasAlarmEmail"));
    let sub = &topic["Properties"]["Subscription"][0];
    assert_eq!(sub["Protocol"].as_str(), Some("email"));
    assert!(text(&sub["Endpoint"]).contains("AlarmEmail"));
    assert!(text(&t["Conditions"]["HasAlarmEmail"]).contains("AlarmEmail"));
    for (name, alarm) in t["Resources"].as_mapping().unwrap() {
        if alarm["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let actions = text(&alarm["Properties"]["AlarmActions"]);
        for target in [
            "AlarmTopicArn",
            "AlarmEmailTopic",
            "HasAlarmEmail",
            "HasAlarmTopic",
        ] {
            assert!(
                actions.contains(target),
                "{name:?} does not notify {target}"
            );
        }
    }
}

#[test]
fn per_tenant_metrics_are_a_parameter_of_the_refresher() {
    let t = template();
    let p = &t["Parameters"]["PerTenantMetrics"];
    assert_eq!(p["Default"].as_str(), Some("true"));
    let refresher = &t["Resources"]["RefresherFunction"]["Properties"];
    let set = &refresher["Environment"]["Variables"]["PER_TENANT_METRICS"];
    assert!(text(set).contains("PerTenantMetrics"), "{}", text(set));
}

#[test]
fn the_idempotency_table_is_on_demand_with_ttl_and_the_api_may_only_use_its_items() {
    let t = template();
    let table = &t["Resources"]["IdempotencyTable"];
    assert_eq!(table["Type"].as_str(), Some("AWS::DynamoDB::Table"));
    let p = &table["Properties"];
    assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(p["KeySchema"][0]["AttributeName"].as_str(), Some("id"));
    assert_eq!(p["KeySchema"][0]["KeyType"].as_str(), Some("HASH"));
    assert_eq!(
        p["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("expiresAt")
    );
    assert_eq!(
        p["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    let api = &t["Resources"]["ApiFunction"]["Properties"];
    assert!(
        text(&api["Environment"]["Variables"]["IDEMPOTENCY_TABLE"]).contains("IdempotencyTable")
    );
    let statements = api["Policies"][0]["Statement"].as_sequence().unwrap();
    let dynamo: Vec<&Value> = statements
        .iter()
        .filter(|s| text(&s["Action"]).contains("dynamodb:"))
        .collect();
    assert_eq!(dynamo.len(), 1, "one statement for the table");
    let actions = text(&dynamo[0]["Action"]);
    for action in ["dynamodb:PutItem", "dynamodb:DeleteItem"] {
        assert!(actions.contains(action), "{actions}");
    }
    for never in [
        "dynamodb:*",
        "Scan",
        "Query",
        "DeleteTable",
        "CreateTable",
        "UpdateTable",
    ] {
        assert!(!actions.contains(never), "{actions}");
    }
    assert!(text(&dynamo[0]["Resource"]).contains("IdempotencyTable"));
    // The refresher has nothing to do with hooks.
    let refresher = text(&t["Resources"]["RefresherFunction"]["Properties"]["Policies"]);
    assert!(!refresher.contains("dynamodb"));
    assert!(
        text(&api["Policies"]).contains("hooks-*"),
        "the api reads {{prefix}}hooks"
    );
}

#[test]
fn queued_hooks_have_encrypted_queues_a_paced_worker_and_alarms() {
    let t = template();
    let r = &t["Resources"];
    for queue in ["HookQueue", "HookDeadLetterQueue"] {
        let p = &r[queue]["Properties"];
        assert_eq!(r[queue]["Type"].as_str(), Some("AWS::SQS::Queue"));
        let sse = text(&p["SqsManagedSseEnabled"]) + &text(&p["KmsMasterKeyId"]);
        assert!(
            sse.contains("true") && sse.contains("KmsKeyArn"),
            "{queue}: SSE either way: {sse}"
        );
        assert_eq!(
            p["MessageRetentionPeriod"].as_u64(),
            Some(1_209_600),
            "{queue}"
        );
    }
    let queue = &r["HookQueue"]["Properties"];
    let redrive = text(&queue["RedrivePolicy"]);
    assert!(
        redrive.contains("HookDeadLetterQueue") && redrive.contains("HookMaxReceives"),
        "{redrive}"
    );
    let worker = &r["HookWorkerFunction"]["Properties"];
    // AWS's advice for Lambda consumers: the visibility timeout at least 6 times the timeout.
    assert!(
        queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * worker["Timeout"].as_u64().unwrap()
    );
    let source = &worker["Events"]["HookQueueEvents"];
    assert_eq!(source["Type"].as_str(), Some("SQS"));
    let sp = &source["Properties"];
    assert!(text(&sp["Queue"]).contains("HookQueue.Arn"));
    assert_eq!(
        text(&sp["FunctionResponseTypes"]).trim(),
        "- ReportBatchItemFailures"
    );
    // The share the worker paces itself to assumes this many instances at most.
    let concurrency = text(&sp["ScalingConfig"]["MaximumConcurrency"]);
    assert!(
        concurrency.contains("HookWorkerConcurrency"),
        "{concurrency}"
    );
    let env = &worker["Environment"]["Variables"];
    assert!(text(&env["HOOK_WORKER_CONCURRENCY"]).contains("HookWorkerConcurrency"));
    assert!(text(&worker["ReservedConcurrentExecutions"]).contains("HookWorkerConcurrency"));
    for (var, param) in [
        ("HOOK_QUEUE_URL", "HookQueue"),
        ("HOOK_DLQ_URL", "HookDeadLetterQueue"),
        ("HOOK_MAX_RECEIVES", "HookMaxReceives"),
        ("HOOK_MAX_AGE_HOURS", "HookMaxAgeHours"),
        ("HOOK_RINGCX_SHARE_PERCENT", "HookRingCxSharePercent"),
        ("IDEMPOTENCY_TABLE", "IdempotencyTable"),
    ] {
        assert!(text(&env[var]).contains(param), "{var}");
    }
    // The HTTP function may only enqueue; the worker consumes, dead-letters, never reads logins.
    let api = text(&r["ApiFunction"]["Properties"]["Policies"]);
    assert!(api.contains("sqs:SendMessage") && api.contains("HookQueue.Arn"));
    assert!(!api.contains("sqs:ReceiveMessage") && !api.contains("HookDeadLetterQueue"));
    let policies = text(&worker["Policies"]);
    for needed in [
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "HookDeadLetterQueue.Arn",
        "NeverTheCredentials",
    ] {
        assert!(policies.contains(needed), "{needed}");
    }
    let dlq_alarm = &r["HookDeadLettersAlarm"]["Properties"];
    assert_eq!(
        dlq_alarm["MetricName"].as_str(),
        Some("ApproximateNumberOfMessagesVisible")
    );
    assert_eq!(dlq_alarm["Threshold"].as_u64(), Some(1));
    assert!(text(&dlq_alarm["Dimensions"]).contains("HookDeadLetterQueue.QueueName"));
    let age = &r["HookQueueAgeAlarm"]["Properties"];
    assert_eq!(
        age["MetricName"].as_str(),
        Some("ApproximateAgeOfOldestMessage")
    );
    assert_eq!(age["Threshold"].as_u64(), Some(900));
    assert!(text(&age["Dimensions"]).contains("HookQueue.QueueName"));
    // SQS's age skips messages received three times: retried events are watched by the worker's.
    let event_age = &r["HookEventAgeAlarm"]["Properties"];
    assert_eq!(event_age["MetricName"].as_str(), Some("HookEventAge"));
    assert_eq!(event_age["Threshold"].as_u64(), Some(900));
    assert!(Metric::from_name("HookEventAge").is_some());
    // The HTTP function and the worker read the same age (the consistency check compares it
    // with HOOK_IDEMPOTENCY_HOURS at start).
    let api_env = &r["ApiFunction"]["Properties"]["Environment"]["Variables"];
    assert!(text(&api_env["HOOK_MAX_AGE_HOURS"]).contains("HookMaxAgeHours"));
    for output in ["HookQueueUrl", "HookDeadLetterQueueUrl"] {
        assert!(!t["Outputs"][output].is_null(), "{output}");
    }
}
