//! `paths` in a callers entry: the RingCX paths (after `/v1/engage/`) a proxy key may reach,
//! as glob patterns, each optionally preceded by a method: `GET v1/admin/accounts/*/campaigns/*`.
//! `*` matches within one segment, `**` any number of whole segments. Patterns are matched against
//! the path as RingCX routes it (escapes decoded), case-sensitively, so a spelling that differs
//! from the pattern is refused rather than let through.

use axum::http::Method;

/// One pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathRule {
    method: Option<Method>,
    segments: Vec<String>,
}

/// The patterns of one caller. Empty never happens: an entry with `"paths": []` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRules(Vec<PathRule>);

/// Methods the proxy forwards.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

impl PathRules {
    /// Parses every pattern; the first bad one is the error, said as a sentence.
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        if patterns.is_empty() {
            return Err("\"paths\" is empty: leave it out to allow every path".into());
        }
        patterns
            .iter()
            .map(|p| parse_rule(p))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `method` on `path` (decoded, relative to `/voice/api/`) matches a pattern.
    pub fn allows(&self, method: &Method, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        self.0.iter().any(|rule| {
            rule.method.as_ref().is_none_or(|m| m == method) && matches(&rule.segments, &segments)
        })
    }
}

fn parse_rule(pattern: &str) -> Result<PathRule, String> {
    let bad = |why: &str| Err(format!("path pattern {pattern:?}: {why}"));
    let (method, path) = match pattern.trim().split_once(' ') {
        Some((m, p)) => {
            let upper = m.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return bad("the method must be one of GET, POST, PUT, PATCH, DELETE");
            }
            (Method::from_bytes(upper.as_bytes()).ok(), p.trim())
        }
        None => (None, pattern.trim()),
    };
    if path.is_empty() || path.starts_with('/') || path.contains("//") {
        return bad("write the path after /v1/engage/, e.g. v1/admin/accounts/*/campaigns");
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "?#%\\".contains(c))
    {
        return bad("no spaces, '?', '#', '%' or backslashes");
    }
    let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
    if segments.iter().any(|s| s == "." || s == "..") {
        return bad("'.' and '..' segments are not allowed");
    }
    if segments.iter().any(|s| s.contains("**") && s != "**") {
        return bad("'**' must be a whole segment");
    }
    if segments.iter().filter(|s| *s == "**").count() > 1 {
        return bad("use '**' at most once per pattern");
    }
    Ok(PathRule { method, segments })
}

/// Segment-wise glob match; `**` takes zero or more whole segments.
fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(seg, tail)| segment_matches(first, seg) && matches(rest, tail)),
    }
}

/// `*` within a segment matches any run of characters; no pattern segment matches an empty
/// segment (a trailing slash, which Spring may route to the parent's list endpoint).
fn segment_matches(pattern: &str, segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == segment;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if segment.len() < first.len() + last.len()
        || !segment.starts_with(first)
        || !segment.ends_with(last)
    {
        return false;
    }
    let mut rest = &segment[first.len()..segment.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> PathRules {
        PathRules::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn methods_and_globs() {
        let r = rules(&[
            "GET v1/admin/accounts/*/campaigns/*",
            "post v1/admin/accounts/*/campaigns/*/leadLoader/direct",
            "v1/sim/echo/**",
        ]);
        assert!(r.allows(&Method::GET, "v1/admin/accounts/1/campaigns/2"));
        assert!(!r.allows(&Method::DELETE, "v1/admin/accounts/1/campaigns/2"));
        assert!(!r.allows(&Method::GET, "v1/admin/accounts/1/campaigns"));
        assert!(!r.allows(&Method::GET, "v1/admin/accounts/1/campaigns/2/x"));
        assert!(r.allows(
            &Method::POST,
            "v1/admin/accounts/1/campaigns/2/leadLoader/direct"
        ));
        assert!(!r.allows(
            &Method::GET,
            "v1/admin/accounts/1/campaigns/2/leadLoader/direct"
        ));
        assert!(r.allows(&Method::PUT, "v1/sim/echo"));
        assert!(r.allows(&Method::DELETE, "v1/sim/echo/a/b/c"));
        assert!(!r.allows(&Method::GET, "V1/admin/accounts/1/campaigns/2"));
        assert!(!r.allows(&Method::GET, "v1/admin/accounts/1/campaigns/"));
        assert!(!r.allows(&Method::GET, "v1/admin/accounts//campaigns/2"));
        let r = rules(&["GET v1/admin/accounts/*/campaign*"]);
        assert!(r.allows(&Method::GET, "v1/admin/accounts/9/campaigns"));
        assert!(!r.allows(&Method::GET, "v1/admin/accounts/9/users"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in [
            "FETCH v1/x",
            "/v1/x",
            "v1//x",
            "v1/../token",
            "v1/a**",
            "**/x/**",
            "v1/x?y=1",
            "v1/%2e",
            "",
        ] {
            assert!(PathRules::parse(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
        assert!(PathRules::parse(&[]).is_err());
    }

    #[test]
    fn segment_globs() {
        assert!(!segment_matches("*", ""));
        assert!(segment_matches("*", "x"));
        assert!(segment_matches("a*b*c", "aXbYc"));
        assert!(segment_matches("a*b*c", "abc"));
        assert!(!segment_matches("a*b*c", "acb"));
        assert!(!segment_matches("ab*ba", "aba"));
    }
}
