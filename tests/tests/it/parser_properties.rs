//! Property tests (proptest) for the parsers every request goes through: the proxy path check,
//! the credential-area check, the `paths` globs, credential extraction and the query filter.

use std::collections::BTreeSet;

use api::auth::paths::PathRules;
use api::auth::{QueryAuth, forwarded_query, presented};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use broker::ringcx::{ApiPath, CredentialArea};
use proptest::prelude::*;

/// One character of `text`, in a random case and possibly percent-encoded.
fn spelled(text: &'static str) -> impl Strategy<Value = String> {
    let chars: Vec<char> = text.chars().collect();
    proptest::collection::vec((any::<bool>(), any::<bool>()), chars.len()).prop_map(move |flags| {
        chars
            .iter()
            .zip(flags)
            .map(|(c, (upper, encode))| {
                let c = if upper { c.to_ascii_uppercase() } else { *c };
                if encode && c.is_ascii_alphanumeric() {
                    format!("%{:02X}", c as u8)
                } else {
                    c.to_string()
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn an_accepted_path_decodes_to_the_same_plain_segments(
        raw in prop_oneof!["[ -~]{0,40}", "[a-f0-9%./25cCeEfF]{0,40}"],
    ) {
        if let Ok(path) = ApiPath::new(&raw) {
            let decoded = path.decoded();
            prop_assert_eq!(decoded.split('/').count(), raw.split('/').count());
            let segs: Vec<&str> = decoded.split('/').collect();
            for (i, seg) in segs.iter().enumerate() {
                // Only a trailing slash leaves an empty segment.
                prop_assert!(!seg.is_empty() || i + 1 == segs.len() && i > 0, "{:?}", decoded);
                prop_assert!(*seg != "." && *seg != "..", "{:?}", decoded);
            }
            prop_assert!(!decoded.contains('%') && !decoded.contains('\\'));
            prop_assert!(decoded.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
    }

    #[test]
    fn permanent_token_paths_are_found_in_any_case_and_encoding(
        admin in spelled("admin"),
        token in spelled("token"),
        version in spelled("v1"),
        tail in proptest::option::of("[a-zA-Z0-9:_-]{1,20}"),
    ) {
        let raw = match &tail {
            Some(t) => format!("{version}/{admin}/{token}/{t}"),
            None => format!("{version}/{admin}/{token}"),
        };
        let path = ApiPath::new(&raw).expect("a plain spelling is a valid path");
        prop_assert_eq!(path.credential_area(), Some(CredentialArea::ApiTokens));
    }

    #[test]
    fn a_literal_pattern_matches_exactly_its_own_path(
        segs in proptest::collection::vec("[a-zA-Z0-9_-]{1,8}", 1..6),
        other in proptest::collection::vec("[a-zA-Z0-9_-]{1,8}", 1..6),
    ) {
        let own = segs.join("/");
        let rules = PathRules::parse(&[format!("GET {own}")]).unwrap();
        prop_assert!(rules.allows(&Method::GET, &own));
        prop_assert!(!rules.allows(&Method::POST, &own));
        prop_assert_eq!(rules.allows(&Method::GET, &other.join("/")), other == segs);
        let deeper = PathRules::parse(&[format!("{own}/**")]).unwrap();
        let below = format!("{own}/{}", other.join("/"));
        let beside = format!("x{own}");
        prop_assert!(deeper.allows(&Method::DELETE, &below));
        prop_assert!(!deeper.allows(&Method::DELETE, &beside));
    }

    #[test]
    fn credential_extraction_never_panics_and_only_answers_401(
        auth in proptest::collection::vec(any::<u8>(), 0..80),
        api_key in proptest::collection::vec(any::<u8>(), 0..40),
        query in "[ -~]{0,60}",
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&auth) {
            headers.insert(header::AUTHORIZATION, v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&api_key) {
            headers.insert("x-api-key", v);
        }
        let params: BTreeSet<String> = ["jwt".to_owned()].into();
        let q = QueryAuth { allow_key: true, jwt_params: &params };
        if let Err(e) = presented(&headers, Some(&query), q) {
            prop_assert_eq!(e.status.as_u16(), 401);
        }
    }

    #[test]
    fn no_credential_parameter_is_forwarded_however_spelled(
        name in prop_oneof![spelled("api_key"), spelled("jwt"), spelled("access_token"), spelled("client_secret")],
        before in "[a-z]{1,6}=[a-z0-9]{0,6}",
        after in "[a-z]{1,6}=[a-z0-9]{0,6}",
    ) {
        let query = format!("{before}&{name}=secret-value&{after}");
        let kept = forwarded_query(Some(&query), &BTreeSet::new(), "unrelated-secret")
            .unwrap_or_default();
        for pair in kept.split('&') {
            let decoded: Vec<(String, String)> =
                url::form_urlencoded::parse(pair.as_bytes()).into_owned().collect();
            for (n, _) in decoded {
                let n = n.to_ascii_lowercase();
                prop_assert!(!["api_key", "jwt", "access_token", "client_secret"].contains(&n.as_str()), "{}", kept);
            }
        }
        let expected: Vec<&str> = [before.as_str(), after.as_str()]
            .into_iter()
            .filter(|p| {
                let n = p.split('=').next().unwrap_or("");
                !["jwt"].contains(&n)
            })
            .collect();
        prop_assert_eq!(kept, expected.join("&"));
    }
}

/// Any JSON a sender might post: strings of any characters (separators, dots, escapes,
/// controls, non-ASCII), numbers, booleans, nulls, lists and objects.
fn payload_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(serde_json::Value::from),
        "[./%a-z0-9?#;\\\\ -]{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just(".."),
            Just("."),
            Just(""),
            Just("%2e%2e"),
            Just("auth"),
            Just("token")
        ]
        .prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn property_hook() -> std::sync::Arc<broker::hooks::Hook> {
    let entry = serde_json::json!([{"name": "p", "tenant": "default",
        "verify": {"scheme": "stripe", "secrets": ["0123456789abcdef"]},
        "request": {"method": "POST", "path": "v1/{{ payload.c }}/accounts/{{ account_id }}/campaigns/{{ payload.a }}/leads/{{ payload.b }}x",
                    "query": {"q": "{{ payload.a }}"},
                    "body": {"a": "{{ payload.a }}", "t": "a-{{ payload.b }}", "l": [{"x": "{{ payload.c }}"}]}},
        "idempotencyKey": "{{ payload.b }}"}]);
    let (set, refused) = broker::hooks::parse_hooks(&entry.to_string(), &["default".to_owned()]);
    assert!(refused.is_empty(), "{refused:?}");
    set.get("p").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever a payload holds: rendering never panics, and what it renders stays under
    /// `/voice/api/v1/`, outside every credential area, with exactly the template's segments.
    #[test]
    fn no_payload_moves_a_hooks_request(a in payload_value(), b in payload_value(), c in payload_value()) {
        let hook = property_hook();
        let payload = serde_json::json!({"a": a, "b": b, "c": c});
        let headers = broker::hooks::Headers::new();
        let query = std::collections::BTreeMap::new();
        let inbound = broker::hooks::Inbound {
            payload: &payload, headers: &headers, query: &query, raw_body: b"", account_id: Some("333333"),
        };
        if let Ok(rendered) = hook.render(&inbound) {
            let path = rendered.request.path.as_str();
            let segments: Vec<&str> = path.split('/').collect();
            prop_assert_eq!(segments.len(), 8, "{}", path);
            prop_assert_eq!(segments[0], "v1");
            prop_assert_eq!(&segments[2..5], &["accounts", "333333", "campaigns"]);
            prop_assert_eq!(segments[6], "leads");
            prop_assert!(segments[7].ends_with('x'));
            prop_assert!(rendered.request.path.credential_area().is_none());
            prop_assert!(ApiPath::new(path).is_ok());
            prop_assert!(rendered.request.body.is_some());
        }
    }

    /// The same shape renders for ordinary values, and a credential area is refused wherever
    /// a value lands in it.
    #[test]
    fn ordinary_values_render_and_credential_areas_never_do(a in "[a-z0-9]{1,8}", b in 0u32..100_000) {
        let hook = property_hook();
        let headers = broker::hooks::Headers::new();
        let query = std::collections::BTreeMap::new();
        for (c, area) in [("admin", false), ("auth", true), ("AUTH", true), ("reports", false)] {
            let payload = serde_json::json!({"a": a, "b": b, "c": c});
            let inbound = broker::hooks::Inbound {
                payload: &payload, headers: &headers, query: &query, raw_body: b"", account_id: Some("333333"),
            };
            let result = hook.render(&inbound);
            prop_assert_eq!(result.is_err(), area, "{}: {:?}", c, result.as_ref().map(|r| r.request.path.as_str().to_owned()));
        }
    }
}
