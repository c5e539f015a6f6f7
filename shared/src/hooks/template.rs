//! A hook's RingCX request as templates: every string of `path`, `query` and `body` is literal
//! text and MiniJinja expressions (`{{ payload.phone | trim }}`), evaluated strictly (an
//! undefined value is an error naming it, never an empty string). A string that is exactly one
//! expression keeps its value's JSON type. In `path`, each value is percent-encoded as one
//! segment, and the rendered path passes the same [`ApiPath`] checks and credential-area
//! refusals as the proxy, so no payload can change where the request goes.

use std::sync::LazyLock;

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, UndefinedBehavior};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value as Json;

use crate::ringcx::{ApiPath, Method};

/// Everything but RFC 3986's unreserved characters is encoded in a path value, `/` above all.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
});

/// Why a payload cannot fill a template: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct RenderError {
    /// The template's place in the hook entry, e.g. `body.uploadLeads[0].leadPhone`.
    pub at: String,
    /// What went wrong, naming the expression.
    pub reason: String,
}

/// One template string, split into literal text and expressions.
#[derive(Debug, Clone)]
pub struct Text {
    at: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Literal(String),
    Expr(String),
}

impl Text {
    /// Splits and compiles `source` (at `at`), or says why it does not parse.
    pub fn parse(at: &str, source: &str) -> Result<Self, RenderError> {
        let fail = |reason: String| RenderError {
            at: at.to_owned(),
            reason,
        };
        if source.contains("{%") || source.contains("{#") {
            return Err(fail(
                "only {{ expressions }} are supported (no {% statements %} or {# comments #}); use {{ a if b else c }} for a choice".into(),
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| fail("a {{ without its }}".into()))?;
            let expr = after[..end].trim_matches('-').trim();
            if expr.is_empty() {
                return Err(fail("an empty {{ }}".into()));
            }
            ENV.compile_expression_owned(expr.to_owned())
                .map_err(|e| fail(format!("{{{{ {expr} }}}} does not parse: {}", describe(&e))))?;
            pieces.push(Piece::Expr(expr.to_owned()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(fail("a }} without its {{".into()));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_owned()));
        }
        Ok(Self {
            at: at.to_owned(),
            pieces,
        })
    }

    /// The top-level names the expressions read (`payload`, `headers`, ...).
    pub fn variables(&self) -> std::collections::BTreeSet<String> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Expr(e) => ENV.compile_expression_owned(e.clone()).ok(),
                Piece::Literal(_) => None,
            })
            .flat_map(|e| e.undeclared_variables(false))
            .collect()
    }

    /// The source as written, for checks on its exact form.
    pub fn source(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(t) => t.clone(),
                Piece::Expr(e) => format!("{{{{ {e} }}}}"),
            })
            .collect()
    }

    /// Whether the string holds any expression.
    pub fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    fn eval(&self, expr: &str, ctx: &Value) -> Result<Value, RenderError> {
        let fail = |reason: String| RenderError {
            at: self.at.clone(),
            reason,
        };
        let compiled = ENV
            .compile_expression_owned(expr.to_owned())
            .map_err(|e| fail(format!("{{{{ {expr} }}}}: {}", describe(&e))))?;
        let value = compiled
            .eval(ctx)
            .map_err(|e| fail(format!("{{{{ {expr} }}}}: {}", describe(&e))))?;
        if value.is_undefined() {
            return Err(fail(format!(
                "{{{{ {expr} }}}} is undefined in this payload"
            )));
        }
        Ok(value)
    }

    /// The string with every expression's value in place; `encode` turns each value into text.
    fn render_with(
        &self,
        ctx: &Value,
        encode: impl Fn(&Value) -> String,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Expr(expr) => out.push_str(&encode(&self.eval(expr, ctx)?)),
            }
        }
        Ok(out)
    }

    /// As text (a `null` renders empty, lists and maps as JSON).
    pub fn render(&self, ctx: &Value) -> Result<String, RenderError> {
        self.render_with(ctx, as_text)
    }

    /// A string that is exactly one expression keeps its value's JSON type; any other is text.
    pub fn render_json(&self, ctx: &Value) -> Result<Json, RenderError> {
        match self.pieces.as_slice() {
            [Piece::Expr(expr)] => to_json(&self.eval(expr, ctx)?).map_err(|reason| RenderError {
                at: self.at.clone(),
                reason: format!("{{{{ {expr} }}}}: {reason}"),
            }),
            _ => self.render(ctx).map(Json::String),
        }
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn as_text(value: &Value) -> String {
    match value.kind() {
        ValueKind::None => String::new(),
        ValueKind::Seq | ValueKind::Map => {
            to_json(value).map(|j| j.to_string()).unwrap_or_default()
        }
        _ => value.to_string(),
    }
}

/// A JSON value as MiniJinja sees it.
pub fn from_json(json: &Json) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(from_json).collect::<Vec<_>>()),
        Json::Object(map) => Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), from_json(v)))),
    }
}

/// A MiniJinja value as JSON (what a type-keeping expression puts in the body).
pub fn to_json(value: &Value) -> Result<Json, String> {
    Ok(match value.kind() {
        ValueKind::Undefined => return Err("an undefined value".into()),
        ValueKind::None => Json::Null,
        ValueKind::Bool => Json::Bool(value.is_true()),
        ValueKind::Number => match value.as_i64() {
            Some(i) => Json::from(i),
            None => f64::try_from(value.clone())
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Json::Number)
                .ok_or("a number JSON cannot hold")?,
        },
        ValueKind::String => Json::String(value.as_str().unwrap_or_default().to_owned()),
        ValueKind::Seq | ValueKind::Iterable => Json::Array(
            value
                .try_iter()
                .map_err(|e| e.to_string())?
                .map(|v| to_json(&v))
                .collect::<Result<_, _>>()?,
        ),
        ValueKind::Map => {
            let mut map = serde_json::Map::new();
            for key in value.try_iter().map_err(|e| e.to_string())? {
                let item = value.get_item(&key).map_err(|e| e.to_string())?;
                map.insert(as_text(&key), to_json(&item)?);
            }
            Json::Object(map)
        }
        _ => Json::String(value.to_string()),
    })
}

/// A JSON tree of templates (`body`, `query`).
#[derive(Debug, Clone)]
enum Node {
    Literal(Json),
    Text(Text),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn parse(at: &str, json: &Json) -> Result<Self, RenderError> {
        Ok(match json {
            Json::String(s) => {
                let text = Text::parse(at, s)?;
                if text.is_literal() {
                    Node::Literal(json.clone())
                } else {
                    Node::Text(text)
                }
            }
            Json::Array(items) => Node::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Node::parse(&format!("{at}[{i}]"), v))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(map) => Node::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), Node::parse(&format!("{at}.{k}"), v)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
            other => Node::Literal(other.clone()),
        })
    }

    fn render(&self, ctx: &Value) -> Result<Json, RenderError> {
        Ok(match self {
            Node::Literal(j) => j.clone(),
            Node::Text(t) => t.render_json(ctx)?,
            Node::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|n| n.render(ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, n)| Ok((k.clone(), n.render(ctx)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }
}

/// The `request` object of a hook entry.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEntry {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Under `v1/`, relative to `/voice/api/`.
    pub path: String,
    /// Query parameters, by name.
    #[serde(default)]
    pub query: serde_json::Map<String, Json>,
    /// The JSON body, if any.
    #[serde(default)]
    pub body: Option<Json>,
}

/// A hook's RingCX request, checked and compiled.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    method: Method,
    path: Text,
    query: Vec<(String, Node)>,
    body: Option<Node>,
}

/// The RingCX request one payload makes.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedRequest {
    /// The HTTP method.
    pub method: Method,
    /// The checked path under `/voice/api/`.
    pub path: ApiPath,
    /// The query string (without `?`), if any.
    pub query: Option<String>,
    /// The JSON body, if any.
    pub body: Option<Json>,
}

impl RequestTemplate {
    /// Compiles a request entry; refuses what could never be sent (an unknown method, a path
    /// outside `v1/` or into a credential area, an expression that does not parse).
    pub fn parse(entry: &RequestEntry) -> Result<Self, RenderError> {
        let at = |a: &str| a.to_owned();
        let method = match entry.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            other => {
                return Err(RenderError {
                    at: at("request.method"),
                    reason: format!("{other:?} is not one of GET, POST, PUT, PATCH, DELETE"),
                });
            }
        };
        let path = Text::parse("request.path", &entry.path)?;
        // The path's shape with every value replaced by a plain segment: the checks a rendered
        // path must pass anyway, so an entry that could never work is refused at load.
        let shape: String = path
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(t) => t.as_str(),
                Piece::Expr(_) => "x",
            })
            .collect();
        check_path(&shape).map_err(|reason| RenderError {
            at: at("request.path"),
            reason,
        })?;
        let query = entry
            .query
            .iter()
            .map(|(k, v)| Ok((k.clone(), Node::parse(&format!("request.query.{k}"), v)?)))
            .collect::<Result<_, RenderError>>()?;
        let body = entry
            .body
            .as_ref()
            .map(|b| Node::parse("request.body", b))
            .transpose()?;
        if body.is_some() && method == Method::GET {
            return Err(RenderError {
                at: at("request.body"),
                reason: "a GET request has no body".into(),
            });
        }
        Ok(Self {
            method,
            path,
            query,
            body,
        })
    }

    /// The request `ctx` (payload, headers, query, account_id, tenant, hook) makes.
    pub fn render(&self, ctx: &Value) -> Result<RenderedRequest, RenderError> {
        let raw = self.path.render_with(ctx, |v| {
            utf8_percent_encode(&as_text(v), SEGMENT).to_string()
        })?;
        let path = check_path(&raw).map_err(|reason| RenderError {
            at: "request.path".into(),
            reason: format!("the rendered path is refused: {reason}"),
        })?;
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (name, node) in &self.query {
            let mut add = |v: &Json| {
                any = true;
                match v {
                    Json::String(s) => query.append_pair(name, s),
                    other => query.append_pair(name, &other.to_string()),
                };
            };
            match node.render(ctx)? {
                Json::Null => {}
                Json::Array(items) => items.iter().filter(|i| !i.is_null()).for_each(&mut add),
                other => add(&other),
            }
        }
        Ok(RenderedRequest {
            method: self.method.clone(),
            path,
            query: any.then(|| query.finish()),
            body: self.body.as_ref().map(|b| b.render(ctx)).transpose()?,
        })
    }

    /// The method, for listings.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// The proxy's own path rules, plus `v1/` and never a credential area.
fn check_path(path: &str) -> Result<ApiPath, String> {
    let checked = ApiPath::new(path).map_err(|e| match e {
        crate::ringcx::RingCxError::InvalidPath { reason, .. } => reason.to_owned(),
        other => other.to_string(),
    })?;
    if !checked.as_str().starts_with("v1/") {
        return Err("the path must start with v1/ (it is relative to /voice/api/)".into());
    }
    if let Some(area) = checked.credential_area() {
        return Err(area.describe().to_owned());
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(payload: Json) -> Value {
        Value::from_pairs([
            ("payload", from_json(&payload)),
            ("account_id", Value::from("333333")),
            ("tenant", Value::from("default")),
        ])
    }

    fn template(request: Json) -> Result<RequestTemplate, RenderError> {
        RequestTemplate::parse(&serde_json::from_value(request).unwrap())
    }

    #[test]
    fn one_expression_keeps_its_type_other_strings_are_text() {
        let t = template(json!({"method": "POST",
            "path": "v1/admin/accounts/{{ account_id }}/campaigns/{{ payload.campaign }}/leadLoader/direct",
            "body": {"n": "{{ payload.priority }}", "s": "p{{ payload.priority }}", "b": "{{ payload.ok }}",
                     "l": "{{ payload.tags }}", "nul": "{{ payload.none }}", "lit": 7,
                     "f": "{{ payload.phone | replace('-', '') }}"}}))
        .unwrap();
        let out = t
            .render(&ctx(
                json!({"campaign": 42, "priority": 3, "ok": true, "tags": ["a", 1],
                                "none": null, "phone": "555-0100"}),
            ))
            .unwrap();
        assert_eq!(
            out.path.as_str(),
            "v1/admin/accounts/333333/campaigns/42/leadLoader/direct"
        );
        assert_eq!(
            out.body.unwrap(),
            json!({"n": 3, "s": "p3", "b": true, "l": ["a", 1], "nul": null, "lit": 7, "f": "5550100"})
        );
    }

    #[test]
    fn undefined_values_are_errors_naming_the_place_and_expression() {
        let t = template(json!({"method": "POST", "path": "v1/x/{{ payload.id }}",
            "body": {"uploadLeads": [{"leadPhone": "{{ payload.phone }}"}]}}))
        .unwrap();
        let e = t.render(&ctx(json!({"id": 1}))).unwrap_err();
        assert_eq!(e.at, "request.body.uploadLeads[0].leadPhone");
        assert!(e.reason.contains("payload.phone"), "{e}");
        let e = t.render(&ctx(json!({"phone": "1"}))).unwrap_err();
        assert_eq!(e.at, "request.path");
        let nested = template(
            json!({"method": "POST", "path": "v1/x", "body": {"a": "x{{ payload.a.b }}"}}),
        )
        .unwrap();
        assert!(nested.render(&ctx(json!({}))).is_err());
    }

    #[test]
    fn a_path_value_is_one_segment_and_never_a_credential_area() {
        let t = template(
            json!({"method": "GET", "path": "v1/admin/accounts/{{ payload.a }}/campaigns"}),
        )
        .unwrap();
        let mut rendered = Vec::new();
        for value in [
            "../../auth",
            "1/../../token",
            "a/b",
            "..",
            ".",
            "",
            "%2e%2e",
            "x?y",
            "x#y",
            "é",
            "a b",
            "x:y",
            "~t",
            "42",
            "a.b",
            "A-Z_",
        ] {
            match t.render(&ctx(json!({"a": value}))) {
                Ok(out) => {
                    rendered.push(value);
                    assert_eq!(
                        out.path.as_str().split('/').count(),
                        5,
                        "{value:?} -> {}",
                        out.path.as_str()
                    );
                    assert!(out.path.credential_area().is_none());
                }
                Err(e) => assert_eq!(e.at, "request.path", "{value:?}"),
            }
        }
        // The plain values render, each as one segment (an encoded space is refused, as the
        // proxy refuses it: older Spring trims it).
        assert_eq!(rendered, ["x:y", "~t", "42", "a.b", "A-Z_"]);
        let area = template(json!({"method": "GET", "path": "v1/{{ payload.a }}/login"})).unwrap();
        let e = area.render(&ctx(json!({"a": "auth"}))).unwrap_err();
        assert!(e.reason.contains("refused"), "{e}");
        assert!(area.render(&ctx(json!({"a": "admin"}))).is_ok());
    }

    #[test]
    fn entries_that_could_never_work_are_refused_at_load() {
        for (request, expect) in [
            (json!({"method": "FETCH", "path": "v1/x"}), "request.method"),
            (
                json!({"method": "GET", "path": "voice/api/v1/x"}),
                "request.path",
            ),
            (
                json!({"method": "GET", "path": "v1/admin/token"}),
                "request.path",
            ),
            (
                json!({"method": "GET", "path": "v1/auth/{{ payload.x }}"}),
                "request.path",
            ),
            (
                json!({"method": "GET", "path": "v1/admin/accounts/{{ a }}/external/authConfigs"}),
                "request.path",
            ),
            (
                json!({"method": "GET", "path": "v1/x/{{ payload. }}"}),
                "request.path",
            ),
            (
                json!({"method": "GET", "path": "v1/x/{% if a %}"}),
                "request.path",
            ),
            (
                json!({"method": "POST", "path": "v1/x", "body": {"a": "{{ a"}}),
                "request.body.a",
            ),
            (
                json!({"method": "GET", "path": "v1/x", "body": {}}),
                "request.body",
            ),
        ] {
            let e = template(request.clone()).unwrap_err();
            assert_eq!(e.at, expect, "{request}: {e}");
        }
        assert!(
            serde_json::from_value::<RequestEntry>(
                json!({"method": "GET", "path": "v1/x", "bdy": {}})
            )
            .is_err()
        );
    }

    #[test]
    fn query_values() {
        let t = template(json!({"method": "GET", "path": "v1/x",
            "query": {"a": "{{ payload.a }}", "b": "{{ payload.list }}", "c": "{{ payload.none }}", "d": "x y&z"}}))
        .unwrap();
        let out = t
            .render(&ctx(json!({"a": 1, "list": ["p", "q"], "none": null})))
            .unwrap();
        assert_eq!(out.query.as_deref(), Some("a=1&b=p&b=q&d=x+y%26z"));
    }
}
