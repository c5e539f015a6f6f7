//! The README and the OpenAPI document against the types they describe: error codes, metric
//! names, pass outcomes and how sessions are obtained. A renamed variant, or one added to its
//! type's `ALL`, fails here until the documents say the same.

use std::collections::BTreeSet;

use api::error::ErrorCode;
use broker::session::ObtainedBy;
use broker::telemetry::Metric;
use refresher::TenantOutcome;
use serde_json::Value;

const README: &str = include_str!("../../../README.md");
const OPENAPI: &str = include_str!("../../../functions/api/openapi.json");

/// The backticked words in a README table that starts with `header`.
fn table_words(header: &str) -> BTreeSet<String> {
    let start = README
        .find(header)
        .unwrap_or_else(|| panic!("the README has no table headed {header:?}"));
    let table = README[start..].split("\n\n").next().unwrap_or_default();
    table
        .lines()
        .skip(2)
        .flat_map(|row| {
            let cell = row.split('|').nth(2).unwrap_or_default();
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn codes() -> BTreeSet<String> {
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect()
}

#[test]
fn the_readme_error_table_lists_exactly_the_error_codes() {
    let listed = table_words("| status | code | when |");
    let known = codes();
    assert_eq!(
        listed.difference(&known).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "codes in the README that the code never answers"
    );
    assert_eq!(
        known.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "codes the code answers that the README does not list"
    );
}

#[test]
fn the_openapi_error_schema_enumerates_exactly_the_error_codes() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    let listed: BTreeSet<String> =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("Error.code has an enum")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
    assert_eq!(listed, codes());
}

#[test]
fn error_codes_are_unique_snake_case() {
    let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "a code listed twice");
    for name in names {
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{name}"
        );
    }
}

#[test]
fn the_readme_names_every_metric_outcome_and_login_flow() {
    for metric in Metric::ALL {
        assert!(
            README.contains(&format!("`{}`", metric.name())),
            "the README never names the metric {}",
            metric.name()
        );
    }
    // Outcomes and login flows where the refresher section defines them, not anywhere at all.
    let start = README
        .find("Each tenant's `outcome` is one")
        .expect("the README defines the outcomes");
    let defined = README[start..].split("\n\n").next().unwrap_or_default();
    for outcome in TenantOutcome::ALL {
        assert!(
            defined.contains(&format!("`{}`", outcome.as_str())),
            "the README never names the outcome {}",
            outcome.as_str()
        );
    }
    for flow in ObtainedBy::ALL {
        assert!(
            defined.contains(&format!("`{}`", flow.as_str())),
            "the README never names the login flow {}",
            flow.as_str()
        );
    }
}
