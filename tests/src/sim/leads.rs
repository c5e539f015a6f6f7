//! RingCX's direct lead loader (`POST /voice/api/v1/admin/accounts/{accountId}/campaigns/
//! {campaignId}/leadLoader/direct`, operation `loadDirectLeads`), as strict as its OpenAPI schema
//! (`LeadListProcessingRequest`, `CampaignLead`): `uploadLeads` required, every enum value and
//! field type checked, a body that is not JSON refused. Loads are kept, so tests count them.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::Shared;
use super::ringcx::{check, json_answer, voice_error};

/// One accepted load, as the lead loader received it.
#[derive(Debug, Clone)]
pub struct LeadLoad {
    pub account_id: String,
    pub campaign_id: i64,
    pub request: Value,
    /// When it was loaded, on the simulator's clock.
    pub at: chrono::DateTime<chrono::Utc>,
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route(
        "/voice/api/v1/admin/accounts/{account}/campaigns/{campaign}/leadLoader/direct",
        post(load_direct),
    )
}

const REQUEST_ENUMS: [(&str, &[&str]); 5] = [
    ("dialPriority", &["IMMEDIATE", "NORMAL"]),
    (
        "duplicateHandling",
        &["RETAIN_ALL", "REMOVE_ALL_EXISTING", "REMOVE_FROM_LIST"],
    ),
    ("fileType", &["EXCEL", "PIPE", "COMMA", "TAB"]),
    (
        "listState",
        &[
            "ACTIVE",
            "PAUSED",
            "PENDING_DNC",
            "LOADING",
            "DELETED",
            "READY",
            "CALLBACKS",
            "CALLBACKS_AGENT",
            "DUPLICATES_NOT_MERGED",
            "DUPLICATES_NOT_MOVED",
            "ARCHIVED",
        ],
    ),
    (
        "timeZoneOption",
        &[
            "NPA_NXX",
            "ZIPCODE",
            "EXPLICIT",
            "COUNTRY",
            "NOT_APPLICABLE",
        ],
    ),
];
const REQUEST_STRINGS: [&str; 4] = [
    "description",
    "quoteChar",
    "transactionId",
    "numberOriginCountry",
];
const REQUEST_BOOLS: [&str; 4] = [
    "fileContainsHeaders",
    "phoneNumbersI18nEnabled",
    "internationalNumberFormat",
    "suppressed",
];
const LEAD_STRINGS: [&str; 32] = [
    "address1",
    "address2",
    "auxData1",
    "auxData2",
    "auxData3",
    "auxData4",
    "auxData5",
    "auxExternalUrl",
    "auxGreeting",
    "auxPhone",
    "callerId",
    "city",
    "email",
    "externId",
    "firstName",
    "gateKeeper",
    "lastName",
    "leadPhone",
    "leadPhoneE164",
    "leadTimezone",
    "liveAnswerMessage",
    "machAnswerMessage",
    "midName",
    "name",
    "reserveAgent",
    "sortCol",
    "state",
    "suffix",
    "title",
    "zip",
    "personaMapping",
    "leadState",
];
const LEAD_INTS: [&str; 6] = [
    "dupeKeyOverride",
    "id",
    "leadId",
    "leadPasses",
    "leadPriority",
    "maxPasses",
];
const LEAD_STATES: [&str; 18] = [
    "ACTIVE",
    "AGENT-CALLBACK",
    "CALLBACK-CANCELLED",
    "CALLBACK",
    "CANCELLED",
    "COMPLETE",
    "DISCONNECTED",
    "DO-NOT-CALL",
    "INTERCEPT",
    "MAX-DIAL-LIMIT",
    "PAUSED",
    "PENDING-CALLBACK",
    "PENDING-ERR",
    "PENDING-HCI",
    "PENDING",
    "READY",
    "TRANSITIONED",
    "WHITELIST",
];

/// Why the request does not match the schema, in Jackson's words where it would say them.
fn validate(body: &Value) -> Result<usize, String> {
    let Some(request) = body.as_object() else {
        return Err(
            "JSON parse error: the request must be a LeadListProcessingRequest object".into(),
        );
    };
    for (field, allowed) in REQUEST_ENUMS {
        if let Some(v) = request.get(field) {
            let ok = v.as_str().is_some_and(|s| allowed.contains(&s));
            if !ok {
                return Err(format!(
                    "JSON parse error: {field}: value not one of declared Enum instance names: [{}]",
                    allowed.join(", ")
                ));
            }
        }
    }
    for field in REQUEST_STRINGS {
        if request
            .get(field)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(format!("JSON parse error: {field} must be a string"));
        }
    }
    for field in REQUEST_BOOLS {
        if request
            .get(field)
            .is_some_and(|v| !v.is_boolean() && !v.is_null())
        {
            return Err(format!("JSON parse error: {field} must be a boolean"));
        }
    }
    let leads = match request.get("uploadLeads") {
        Some(Value::Array(leads)) if !leads.is_empty() => leads,
        _ => return Err("uploadLeads is required: a list of at least one CampaignLead".into()),
    };
    for (i, lead) in leads.iter().enumerate() {
        let Some(lead) = lead.as_object() else {
            return Err(format!("uploadLeads[{i}] must be a CampaignLead object"));
        };
        for field in LEAD_STRINGS {
            if lead
                .get(field)
                .is_some_and(|v| !v.is_string() && !v.is_null())
            {
                return Err(format!(
                    "JSON parse error: uploadLeads[{i}].{field} must be a string"
                ));
            }
        }
        for field in LEAD_INTS {
            let Some(v) = lead.get(field).filter(|v| !v.is_null()) else {
                continue;
            };
            // int32 fields, and the one int64 (dupeKeyOverride).
            if v.as_i64()
                .is_none_or(|n| i32::try_from(n).is_err() && field != "dupeKeyOverride")
            {
                return Err(format!(
                    "JSON parse error: uploadLeads[{i}].{field} must be an integer"
                ));
            }
        }
        if let Some(state) = lead.get("leadState").and_then(Value::as_str)
            && !LEAD_STATES.contains(&state)
        {
            return Err(format!(
                "JSON parse error: uploadLeads[{i}].leadState: not a declared value"
            ));
        }
        let phone = lead
            .get("leadPhone")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if phone.is_empty()
            || !phone
                .chars()
                .all(|c| c.is_ascii_digit() || "+-() .".contains(c))
        {
            return Err(format!("uploadLeads[{i}].leadPhone must be a phone number"));
        }
    }
    Ok(leads.len())
}

async fn load_direct(
    State(s): State<Arc<Shared>>,
    Path((account, campaign)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut w = s.world();
    let now = w.now(&s.clock);
    let user = match check(&mut w, now, &headers) {
        Ok(u) => u,
        Err(r) => return r.respond(now),
    };
    let u = &w.users[user];
    if u.account_id != account && !(u.super_user && account == "333334") {
        return voice_error(StatusCode::NOT_FOUND, "not.found", "Account not found", now);
    }
    let Ok(campaign_id) = campaign.parse::<i32>() else {
        return voice_error(
            StatusCode::BAD_REQUEST,
            "request.invalid",
            "Failed to convert value of type 'java.lang.String' to required type 'java.lang.Integer'",
            now,
        );
    };
    if campaign_id <= 0 {
        return voice_error(
            StatusCode::NOT_FOUND,
            "not.found",
            "Campaign not found",
            now,
        );
    }
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return voice_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.invalid",
            "Content type not supported: send application/json",
            now,
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return voice_error(
                StatusCode::BAD_REQUEST,
                "request.invalid",
                "JSON parse error",
                now,
            );
        }
    };
    let count = match validate(&parsed) {
        Ok(n) => n,
        Err(message) => {
            return voice_error(StatusCode::BAD_REQUEST, "request.invalid", &message, now);
        }
    };
    let list_state = parsed["listState"].as_str().unwrap_or("ACTIVE").to_owned();
    w.lead_loads.push(LeadLoad {
        account_id: account,
        campaign_id: i64::from(campaign_id),
        request: parsed,
        at: now,
    });
    json_answer(
        StatusCode::OK,
        json!({"leadsSupplied": count, "leadsAccepted": count, "leadsInserted": count,
               "leadsConverted": 0, "deletedCount": 0, "hasDeletedLeads": false,
               "listState": list_state, "processingStatus": "DEFAULT_NOT_A_FAILURE",
               "processingResult": "Success", "message": format!("{count} leads loaded")}),
    )
}
