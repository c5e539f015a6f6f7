//! Fault injection and response-format switches: what lets tests make the simulator behave like
//! RingCX on a bad day, or like an older revision of its API.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Random faults, applied to every simulated RingCX / platform request in `scope` (never to
/// `/__sim/`). Ratios are 0.0..=1.0 and drawn from a seeded generator, so a run repeats exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Faults {
    /// Added before every answer, in real milliseconds (for timeout tests).
    pub latency_ms: u64,
    /// Share of requests answered with a 5xx.
    pub error_ratio: f64,
    /// Share of requests answered `429` with `Retry-After`.
    pub rate_limit_ratio: f64,
    /// Share of requests whose connection is closed with no answer, before RingCX acts on them.
    pub drop_ratio: f64,
    /// Share of requests that RingCX processes (a refresh token is spent, a token issued) and
    /// whose answer is then lost with the connection.
    pub lost_answer_ratio: f64,
    pub scope: FaultScope,
}

/// Which requests random faults apply to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultScope {
    #[default]
    All,
    /// `/api/auth/*` and the platform's `/restapi/oauth/token`.
    Auth,
    /// `/voice/api/*`.
    Voice,
}

impl FaultScope {
    pub(crate) fn covers(self, path: &str) -> bool {
        match self {
            FaultScope::All => true,
            FaultScope::Auth => path.starts_with("/api/auth/") || path.starts_with("/restapi/"),
            FaultScope::Voice => path.starts_with("/voice/api/"),
        }
    }
}

/// One injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fault {
    /// `status` (5xx) with an HTML error page, like a load balancer in trouble.
    ServerError { status: u16 },
    /// `429` with `Retry-After: seconds`.
    RateLimited { retry_after: u64 },
    /// The connection is closed after the request arrives, with no answer at all.
    Drop,
    /// The request is processed (a refresh token spent, tokens issued), then the connection is
    /// closed before the answer goes out.
    DropAfter,
    /// The answer is held back for this many real milliseconds, then served normally.
    Delay { ms: u64 },
    /// The request is processed at once, then its answer is held back this many real
    /// milliseconds (past a caller's timeout, the work is done and the answer lost).
    DelayAfter { ms: u64 },
    /// `200` with an HTML maintenance page instead of the documented body.
    Garbage,
}

/// Faults for the next requests whose path starts with `path_prefix`, used before random ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptedFault {
    pub path_prefix: String,
    pub fault: Fault,
    pub count: u32,
}

#[derive(Debug, Default)]
pub(crate) struct FaultQueue(VecDeque<ScriptedFault>);

impl FaultQueue {
    pub(crate) fn push(&mut self, f: ScriptedFault) {
        if f.count > 0 {
            self.0.push_back(f);
        }
    }

    pub(crate) fn take(&mut self, path: &str) -> Option<Fault> {
        let i = self
            .0
            .iter()
            .position(|f| path.starts_with(&f.path_prefix))?;
        let entry = &mut self.0[i];
        let fault = entry.fault;
        entry.count -= 1;
        if entry.count == 0 {
            self.0.remove(i);
        }
        Some(fault)
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Answer formats that differ between RingCX revisions and documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Behaviour {
    pub token_list: TokenListFormat,
    pub created_token: CreatedTokenFormat,
    pub delete_answer: DeleteAnswer,
    /// Voice API calls allowed per user per minute (RingCX documents 120); `None`: unlimited.
    pub voice_rate_limit_per_minute: Option<u32>,
    /// Exchanges allowed per RingEX user per minute (RingCX documents 5); every attempt that names
    /// a user counts, refused or not.
    pub exchange_limit_per_minute: u32,
    /// Lifetime of access tokens in seconds (RingCX: 300).
    pub access_token_ttl_secs: i64,
    /// How RingCX answers every access token on Voice APIs, whatever its age.
    pub token_refusal: TokenRefusal,
    /// RingCX's token validation runs this many seconds ahead of the clock that issues tokens
    /// (a node with a bad clock): tokens are refused as expired that much early.
    pub validation_skew_secs: i64,
    /// Reusing a spent refresh token revokes its whole family (every refresh and access token
    /// descended from the same login), as OAuth 2.1 recommends and RingCX may do.
    pub refresh_reuse_detection: bool,
}

/// A refusal of every access token, for storms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenRefusal {
    /// Tokens are judged by their expiry.
    #[default]
    None,
    /// `401 Jwt is expired` for every token (a validator whose clock is far ahead).
    Expired,
    /// A JSON `401` that is not about expiry, for every token.
    Unauthenticated,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            token_list: TokenListFormat::JsonArray,
            created_token: CreatedTokenFormat::Text,
            delete_answer: DeleteAnswer::True,
            voice_rate_limit_per_minute: Some(120),
            exchange_limit_per_minute: 5,
            access_token_ttl_secs: 300,
            token_refusal: TokenRefusal::None,
            validation_skew_secs: 0,
            refresh_reuse_detection: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenListFormat {
    /// `["a","b"]`, what the OpenAPI spec declares.
    #[default]
    JsonArray,
    /// `{ "a", "b" }`, what an old documentation revision printed.
    BraceSet,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreatedTokenFormat {
    /// `text/plain` token, as documented.
    #[default]
    Text,
    /// The token as a quoted JSON string.
    JsonString,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteAnswer {
    /// `200 text/plain true`.
    #[default]
    True,
    /// `204 No Content`.
    NoContent,
}
