//! `ANY /v1/engage/{path}`: forwards to `{ENGAGE_BASE_URL}/voice/api/{path}` with the tenant's
//! token (on an upstream 401, retried with a newer token). Only the configured RingCX host and only paths under `/voice/api/` can be reached; the
//! raw (still percent-encoded) path is checked, so no decoding step can smuggle `..` past it.
//! Only `Content-Type` and `Accept` travel upstream: never the caller's `Authorization`,
//! `Cookie` or `X-Auth-Token`, nor any query parameter that carries a credential. Credential
//! areas (permanent tokens, logins, auth configs) are refused for every key, and a key with
//! `paths` reaches only those.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use broker::ringcx::{ApiPath, VoiceRequest, VoiceResponse};
use broker::store::SecretStore;

use crate::auth::Scope;
use crate::error::{ApiError, ErrorCode};
use crate::{AppState, media_type, read_body};

const PREFIX: &str = "/v1/engage/";

/// Body types an IVR, a webhook or a script sends.
fn acceptable_content_type(ct: &str) -> bool {
    let essence = media_type(ct);
    matches!(
        essence.as_str(),
        "application/json"
            | "application/x-www-form-urlencoded"
            | "text/plain"
            | "application/xml"
            | "text/xml"
    ) || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub(crate) async fn proxy<S: SecretStore + Clone + 'static>(
    State(app): State<AppState<S>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let verdict = app.caller(&headers, &uri, Scope::EngageProxy).await?;
    let caller = verdict.caller;
    let raw_path = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let path = ApiPath::new(raw_path).map_err(|e| ApiError::upstream(&e))?;
    caller.may_reach(&method, &path)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_body(&headers, body).await?;
    if !body.is_empty() && !content_type.as_deref().is_some_and(acceptable_content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send JSON, form-encoded, XML or plain-text bodies",
        ));
    }
    let is_form = content_type
        .as_deref()
        .is_some_and(|ct| media_type(ct) == "application/x-www-form-urlencoded");
    if is_form
        && url::form_urlencoded::parse(&body)
            .any(|(name, _)| name.trim().eq_ignore_ascii_case("_method"))
    {
        // Spring's hidden-method filter would read it as the HTTP method, past the key's paths.
        return Err(ApiError::bad_request(
            ErrorCode::MethodOverrideRefused,
            "a _method form field is not forwarded: send the HTTP method itself",
        ));
    }
    let mut request = VoiceRequest::new(method, path);
    request.query = verdict.forwarded_query;
    if !body.is_empty() {
        request = request.with_body(content_type.unwrap_or_default(), body);
    }
    let answer = app.voice(&caller.tenant, &request, None).await?;
    Ok(relay(answer))
}

/// RingCX's answer, status and body as they came, with its content type and `Retry-After`.
pub(crate) fn relay(answer: VoiceResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    if let Some(ct) = answer
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
    {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(wait) = answer.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/x-www-form-urlencoded",
            "application/vnd.api+json",
        ] {
            assert!(acceptable_content_type(ok), "{ok}");
        }
        for bad in [
            "multipart/form-data; boundary=x",
            "application/octet-stream",
            "image/png",
        ] {
            assert!(!acceptable_content_type(bad), "{bad}");
        }
    }
}
