//! Hooks: webhooks from senders that do not speak RingCX (a CRM, a form tool, a payment system,
//! RingCX's own call events), each turned into one RingCX call, exactly once per idempotency key.
//!
//! - this module: the `{prefix}hooks` document and its loading (a wrong entry is refused with a
//!   log line naming it and why; the other hooks keep working);
//! - [`verify`]: the signature schemes;
//! - [`template`]: the RingCX request as MiniJinja expressions over the payload;
//! - [`idempotency`]: the DynamoDB claim, lease, completion and release of a key;
//! - [`queue`]: queued delivery's SQS messages, backoff and dead-letter queue.

pub mod idempotency;
pub mod queue;
pub mod template;
pub mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use minijinja::value::Value;
use serde::Deserialize;
use serde_json::Value as Json;

use self::template::{
    RenderError, RenderedRequest, RequestEntry, RequestTemplate, Text, from_json,
};
use self::verify::{Scheme, VerifyEntry};

/// A request's headers: lower-case names, repeated headers joined with `", "`.
pub type Headers = BTreeMap<String, String>;

/// Headers a template never sees, nor a queued event keeps: credentials meant for the broker
/// and signatures, not for RingCX (an `hmac-sha256` hook's own signature header is hidden too,
/// and so is any header whose name says it is a signature, an HMAC or an authorization:
/// `x-hub-signature`, `svix-signature`, `x-slack-signature`, `proxy-authorization`, ...).
pub const HIDDEN_HEADERS: [&str; 6] = [
    "authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
    "webhook-signature",
    "stripe-signature",
];

/// Whether a (lower-case) header name is out of the templates' reach.
fn hidden(name: &str) -> bool {
    HIDDEN_HEADERS.contains(&name)
        || ["signature", "hmac", "authorization", "secret", "token"]
            .iter()
            .any(|part| name.contains(part))
}

/// One entry of `{prefix}hooks`, as an administrator writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookEntry {
    /// `[a-z0-9-]{1,64}`: the last segment of `/v1/hooks/{name}`.
    pub name: String,
    /// The tenant whose RingCX session makes the call.
    pub tenant: String,
    /// How requests prove where they come from.
    pub verify: VerifyEntry,
    /// The RingCX call, as templates.
    pub request: RequestEntry,
    /// The idempotency key's template (default: by scheme, see [`Hook::idempotency_key`]).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// `sync` (the default): the sender waits for RingCX's answer; `queued`: the event is put on
    /// the hook queue and answered `202`, and the hook worker delivers it.
    #[serde(default)]
    pub delivery: Option<String>,
}

/// When RingCX hears of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In the sender's request: the sender gets RingCX's answer, and retries on a `503`.
    Sync,
    /// From the hook queue: the sender gets `202` once the event is stored; the worker retries.
    Queued,
}

/// A hook ready to serve.
pub struct Hook {
    /// Its name.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its verification.
    pub scheme: Scheme,
    /// Its RingCX request.
    pub request: RequestTemplate,
    /// In the request, or from the queue.
    pub delivery: Delivery,
    idempotency_key: Option<Text>,
}

impl std::fmt::Debug for Hook {
    /// Without the signing secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .field("scheme", &self.scheme.name())
            .finish_non_exhaustive()
    }
}

/// What a payload brings to the templates.
pub struct Inbound<'a> {
    /// The parsed body (JSON, or a form's fields).
    pub payload: &'a Json,
    /// The request's headers, lower-case.
    pub headers: &'a Headers,
    /// The query parameters.
    pub query: &'a BTreeMap<String, String>,
    /// The raw body, for the default idempotency key.
    pub raw_body: &'a [u8],
    /// The tenant session's RingCX account.
    pub account_id: Option<&'a str>,
}

/// What one inbound request makes: the RingCX call and the key that makes it happen once.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The RingCX call.
    pub request: RenderedRequest,
    /// The idempotency key (the sender's event id, or a hash of the body).
    pub idempotency_key: String,
}

impl Hook {
    /// Checks an entry against the served tenants; the error says what to fix.
    pub fn from_entry(entry: &HookEntry, tenants: &[String]) -> Result<Self, String> {
        if !valid_name(&entry.name) {
            return Err("name must be 1-64 of a-z, 0-9 and '-'".into());
        }
        if !tenants.contains(&entry.tenant) {
            return Err(format!(
                "tenant {:?} is not served by this deployment (TENANTS)",
                entry.tenant
            ));
        }
        let delivery = match entry.delivery.as_deref() {
            None | Some("sync") => Delivery::Sync,
            Some("queued") => Delivery::Queued,
            Some(other) => {
                return Err(format!(
                    "delivery {other:?} is unknown: \"sync\" (the default) or \"queued\""
                ));
            }
        };
        let scheme = Scheme::from_entry(&entry.verify)?;
        let request = RequestTemplate::parse(&entry.request).map_err(|e| e.to_string())?;
        let idempotency_key = entry
            .idempotency_key
            .as_deref()
            .map(|k| Text::parse("idempotencyKey", k))
            .transpose()
            .map_err(|e| e.to_string())?;
        if let Some(key) = &idempotency_key {
            unsigned_key(key, &scheme)?;
        }
        Ok(Self {
            name: entry.name.clone(),
            tenant: entry.tenant.clone(),
            scheme,
            request,
            delivery,
            idempotency_key,
        })
    }

    /// The headers the templates may read (credentials and signatures taken out): also what a
    /// queued event keeps of its request.
    pub fn visible_headers(&self, headers: &Headers) -> Headers {
        let signature_header = match &self.scheme {
            Scheme::HmacSha256 { header, .. } => Some(header.as_str()),
            _ => None,
        };
        headers
            .iter()
            .filter(|(k, _)| !hidden(k) && signature_header != Some(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The templates' context: `payload`, `headers`, `query`, `account_id`, `tenant`, `hook`.
    pub fn context(&self, inbound: &Inbound<'_>) -> Value {
        let visible = self.visible_headers(inbound.headers);
        let headers = visible
            .iter()
            .map(|(k, v)| (k.as_str(), Value::from(v.as_str())));
        let query = inbound
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), Value::from(v.as_str())));
        let mut pairs = vec![
            ("payload", from_json(inbound.payload)),
            ("headers", Value::from_pairs(headers)),
            ("query", Value::from_pairs(query)),
            ("tenant", Value::from(self.tenant.as_str())),
            ("hook", Value::from(self.name.as_str())),
        ];
        if let Some(account) = inbound.account_id {
            pairs.push(("account_id", Value::from(account)));
        }
        Value::from_pairs(pairs)
    }

    /// The RingCX call alone: what the hook worker renders again for an event accepted earlier
    /// (the event keeps the idempotency key it was accepted with).
    pub fn render_request(&self, inbound: &Inbound<'_>) -> Result<RenderedRequest, RenderError> {
        self.request.render(&self.context(inbound))
    }

    /// The RingCX call and the idempotency key one inbound request makes. The key is the
    /// entry's `idempotencyKey`, or by default the `webhook-id` header (Standard Webhooks), the
    /// event's `id` (Stripe), else the SHA-256 of the raw body.
    pub fn render(&self, inbound: &Inbound<'_>) -> Result<Rendered, RenderError> {
        let ctx = self.context(inbound);
        let request = self.request.render(&ctx)?;
        let key = match (&self.idempotency_key, &self.scheme) {
            (Some(t), _) => t.render(&ctx)?,
            (None, Scheme::StandardWebhooks { .. }) => inbound
                .headers
                .get("webhook-id")
                .cloned()
                .unwrap_or_default(),
            (None, Scheme::Stripe { .. }) => inbound
                .payload
                .get("id")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
            (None, _) => crate::secret::hex(&crate::secret::sha256(inbound.raw_body)),
        };
        if key.trim().is_empty() {
            return Err(RenderError {
                at: "idempotencyKey".into(),
                reason: "the idempotency key is empty for this payload".into(),
            });
        }
        if key.len() > 1024 {
            return Err(RenderError {
                at: "idempotencyKey".into(),
                reason: "the idempotency key is longer than 1024 bytes".into(),
            });
        }
        Ok(Rendered {
            request,
            idempotency_key: key,
        })
    }
}

/// Refuses an idempotency key built from what the scheme's signature does not cover: anyone
/// holding one signed request could send it again under a new key, and each copy would be a new
/// RingCX call. Standard Webhooks signs `webhook-id`; the other schemes sign the body only; the
/// query string is never signed.
fn unsigned_key(key: &Text, scheme: &Scheme) -> Result<(), String> {
    let vars = key.variables();
    let compact: String = key
        .source()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let signed_id = matches!(scheme, Scheme::StandardWebhooks { .. })
        && (compact == "{{headers['webhook-id']}}" || compact == "{{headers[\"webhook-id\"]}}");
    let unsigned: &[&str] = match scheme {
        Scheme::Caller => &[],
        _ if signed_id => &["query"],
        _ => &["headers", "query"],
    };
    match unsigned.iter().find(|v| vars.contains(**v)) {
        Some(v) => Err(format!(
            "idempotencyKey reads {v}, which the {} signature does not cover: a captured request could be replayed under new keys; build the key from payload fields, or leave it out (the default is signed)",
            scheme.name()
        )),
        None => Ok(()),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Every usable hook, by name.
#[derive(Debug, Default)]
pub struct HookSet {
    hooks: HashMap<String, Arc<Hook>>,
}

impl HookSet {
    /// The hook called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Hook>> {
        self.hooks.get(name).cloned()
    }

    /// The hooks, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Hook>> {
        let mut hooks: Vec<&Arc<Hook>> = self.hooks.values().collect();
        hooks.sort_by(|a, b| a.name.cmp(&b.name));
        hooks.into_iter()
    }

    /// How many hooks serve.
    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    /// Whether no hook serves.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }
}

/// Why an entry of the hooks document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its place in the array.
    pub index: usize,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// What to fix.
    pub reason: String,
}

/// Reads the hooks document: every usable hook, and every refused entry with its reason. A
/// name given twice is refused in every entry that has it (which one was meant is unknowable).
pub fn parse_hooks(raw: &str, tenants: &[String]) -> (HookSet, Vec<Refused>) {
    let items: Vec<Json> = match serde_json::from_str(raw) {
        Ok(Json::Array(items)) => items,
        _ => {
            return (
                HookSet::default(),
                vec![Refused {
                    index: 0,
                    name: None,
                    reason: "the hooks secret is not a JSON array of hook entries".into(),
                }],
            );
        }
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    for item in &items {
        if let Some(name) = item.get("name").and_then(Json::as_str) {
            *counts.entry(name.to_owned()).or_default() += 1;
        }
    }
    let mut set = HookSet::default();
    let mut refused = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let name = item.get("name").and_then(Json::as_str).map(str::to_owned);
        let result = match &name {
            Some(n) if counts.get(n).copied().unwrap_or(0) > 1 => {
                Err(format!("the name {n:?} is used by more than one entry"))
            }
            _ => serde_json::from_value::<HookEntry>(item)
                .map_err(|e| format!("the entry does not read as a hook: {}", serde_error(&e)))
                .and_then(|entry| Hook::from_entry(&entry, tenants)),
        };
        match result {
            Ok(hook) => {
                set.hooks.insert(hook.name.clone(), Arc::new(hook));
            }
            Err(reason) => refused.push(Refused {
                index,
                name,
                reason,
            }),
        }
    }
    (set, refused)
}

/// A serde error without the value it choked on (which may be a secret): serde_json quotes the
/// value in its "invalid type" and "invalid value" messages, so those keep only what was expected.
pub fn serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text
        .strip_prefix("invalid type: ")
        .or_else(|| text.strip_prefix("invalid value: "))
    {
        Some(rest) => match rest.find(", expected") {
            Some(i) => format!("a field has the wrong type or value ({})", &rest[i + 2..]),
            None => "a field has the wrong type or value".into(),
        },
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenants() -> Vec<String> {
        vec!["default".into()]
    }

    fn sample(name: &str) -> Json {
        json!({"name": name, "tenant": "default",
               "verify": {"scheme": "standard-webhooks", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
               "request": {"method": "POST", "path": "v1/admin/accounts/{{ account_id }}/campaigns/{{ payload.campaign }}/leadLoader/direct",
                           "body": {"uploadLeads": [{"leadPhone": "{{ payload.phone }}"}]}}})
    }

    #[test]
    fn wrong_entries_are_refused_one_by_one() {
        let mut bad_tenant = sample("bad-tenant");
        bad_tenant["tenant"] = json!("nobody");
        let mut bad_scheme = sample("bad-scheme");
        bad_scheme["verify"]["scheme"] = json!("md5");
        let mut bad_template = sample("bad-template");
        bad_template["request"]["body"] = json!({"a": "{{ payload. }}"});
        let mut bad_path = sample("bad-path");
        bad_path["request"]["path"] = json!("v1/admin/token");
        let mut typo = sample("typo");
        typo["idempotencyKy"] = json!("x");
        let doc = json!([sample("good"), sample("dup"), sample("dup"), bad_tenant, bad_scheme,
                         bad_template, bad_path, typo, sample("Bad_Name"), {"name": 3}]);
        let (set, refused) = parse_hooks(&doc.to_string(), &tenants());
        assert_eq!(
            set.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ["good"]
        );
        let reasons: Vec<(Option<&str>, &str)> = refused
            .iter()
            .map(|r| (r.name.as_deref(), r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 9, "{reasons:?}");
        assert!(reasons[0].1.contains("more than one") && reasons[1].1.contains("more than one"));
        assert!(reasons[2].1.contains("not served"));
        assert!(reasons[3].1.contains("unknown verify.scheme"));
        assert!(reasons[4].1.contains("request.body.a"));
        assert!(reasons[5].1.contains("permanent API tokens"));
        assert!(reasons[6].1.contains("idempotencyKy"));
        assert!(reasons[7].1.contains("name must be"));
        let (none, why) = parse_hooks("{}", &tenants());
        assert!(none.is_empty() && why.len() == 1);
    }

    #[test]
    fn default_idempotency_keys() {
        let (set, _) = parse_hooks(&json!([sample("h")]).to_string(), &tenants());
        let hook = set.get("h").unwrap();
        let payload = json!({"campaign": 1, "phone": "5550100"});
        let mut headers = Headers::new();
        headers.insert("webhook-id".into(), "msg_1".into());
        headers.insert("authorization".into(), "Bearer secret-key".into());
        let query = BTreeMap::new();
        let inbound = Inbound {
            payload: &payload,
            headers: &headers,
            query: &query,
            raw_body: b"{}",
            account_id: Some("333333"),
        };
        let rendered = hook.render(&inbound).unwrap();
        assert_eq!(rendered.idempotency_key, "msg_1");
        // Credentials meant for the broker are not in the templates' reach.
        let ctx = hook.context(&inbound);
        assert!(
            ctx.get_attr("headers")
                .unwrap()
                .get_attr("authorization")
                .unwrap()
                .is_undefined()
        );
        headers.remove("webhook-id");
        let inbound = Inbound {
            payload: &payload,
            headers: &headers,
            query: &query,
            raw_body: b"{}",
            account_id: Some("333333"),
        };
        assert_eq!(hook.render(&inbound).unwrap_err().at, "idempotencyKey");
    }

    #[test]
    fn an_idempotency_key_from_unsigned_input_is_refused() {
        let with = |scheme: Json, key: &str| {
            let mut e = sample("k");
            e["verify"] = scheme;
            e["idempotencyKey"] = json!(key);
            let (set, refused) = parse_hooks(&json!([e]).to_string(), &tenants());
            (
                set.len(),
                refused
                    .first()
                    .map(|r| r.reason.clone())
                    .unwrap_or_default(),
            )
        };
        let sw = json!({"scheme": "standard-webhooks", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]});
        let gh =
            json!({"scheme": "hmac-sha256", "secrets": ["0123456789abcdef"], "header": "X-Sig"});
        let st = json!({"scheme": "stripe", "secrets": ["0123456789abcdef"]});
        assert_eq!(with(sw.clone(), "{{ headers['webhook-id'] }}").0, 1);
        assert_eq!(with(sw.clone(), "{{ payload.id }}").0, 1);
        let (n, why) = with(sw.clone(), "{{ headers['x-other'] }}");
        assert!(n == 0 && why.contains("reads headers"), "{why}");
        assert_eq!(with(sw, "{{ query.id }}").0, 0);
        assert_eq!(with(gh.clone(), "{{ headers['x-github-delivery'] }}").0, 0);
        assert_eq!(with(gh.clone(), "{{ payload.id }}-{{ tenant }}").0, 1);
        assert_eq!(with(st.clone(), "{{ headers['webhook-id'] }}").0, 0);
        assert_eq!(with(st, "{{ payload.id }}").0, 1);
        assert_eq!(
            with(
                json!({"scheme": "caller"}),
                "{{ headers['x-id'] }}{{ query.uii }}"
            )
            .0,
            1
        );
    }

    #[test]
    fn signatures_are_not_in_the_templates_reach() {
        let mut e = sample("s");
        e["verify"] =
            json!({"scheme": "hmac-sha256", "secrets": ["0123456789abcdef"], "header": "X-Sig"});
        let (set, _) = parse_hooks(&json!([e]).to_string(), &tenants());
        let hook = set.get("s").unwrap();
        let mut headers = Headers::new();
        for h in [
            "x-sig",
            "webhook-signature",
            "stripe-signature",
            "x-api-key",
            "x-hub-signature",
            "svix-signature",
            "proxy-authorization",
            "x-shopify-hmac-sha256",
            "x-gitlab-token",
        ] {
            headers.insert(h.into(), "secret-ish".into());
        }
        headers.insert("x-kept".into(), "v".into());
        let payload = json!({});
        let query = BTreeMap::new();
        let inbound = Inbound {
            payload: &payload,
            headers: &headers,
            query: &query,
            raw_body: b"",
            account_id: None,
        };
        let seen = hook.context(&inbound).get_attr("headers").unwrap();
        for h in [
            "x-sig",
            "webhook-signature",
            "stripe-signature",
            "x-api-key",
            "x-hub-signature",
            "svix-signature",
            "proxy-authorization",
            "x-shopify-hmac-sha256",
            "x-gitlab-token",
        ] {
            assert!(seen.get_attr(h).unwrap().is_undefined(), "{h}");
        }
        assert!(
            !hook
                .visible_headers(&headers)
                .values()
                .any(|v| v == "secret-ish")
        );
        assert_eq!(seen.get_attr("x-kept").unwrap().as_str(), Some("v"));
    }

    #[test]
    fn delivery_is_sync_queued_or_refused() {
        let mut queued = sample("q");
        queued["delivery"] = json!("queued");
        let mut sync = sample("s");
        sync["delivery"] = json!("sync");
        let mut odd = sample("o");
        odd["delivery"] = json!("later");
        let (set, refused) = parse_hooks(
            &json!([queued, sync, odd, sample("d")]).to_string(),
            &tenants(),
        );
        let modes: Vec<_> = set.iter().map(|h| (h.name.as_str(), h.delivery)).collect();
        assert_eq!(
            modes,
            [
                ("d", Delivery::Sync),
                ("q", Delivery::Queued),
                ("s", Delivery::Sync)
            ]
        );
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].reason.contains("\"later\" is unknown"),
            "{:?}",
            refused[0]
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let (set, _) = parse_hooks(&json!([sample("h")]).to_string(), &tenants());
        let shown = format!("{:?}", set.get("h").unwrap());
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
    }
}
