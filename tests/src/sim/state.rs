//! The simulator's world: its clock, accounts, users, and every token it has issued.

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker::clock::SharedClock;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::faults::{Behaviour, FaultQueue, Faults};

/// The RingCentral app every simulated RingEX credential belongs to.
pub const CLIENT_ID: &str = "sim-client-id";
pub const CLIENT_SECRET: &str = "sim-client-secret-0f3b";
pub const PLATFORM_TOKEN_TTL_SECS: i64 = 3600;

/// A simulated RingCX user with both kinds of login material.
#[derive(Debug, Clone)]
pub struct SimUser {
    pub user_id: i64,
    pub rc_user_id: i64,
    pub agent_id: i64,
    pub username: String,
    pub password: String,
    pub platform_id: String,
    /// The RingEX JWT credential (`assertion`) that logs this user in on the platform.
    pub jwt_credential: String,
    pub account_id: String,
    pub main_account_id: String,
    /// Holds MANAGE_USERS / SUPER_USER, needed to list users.
    pub super_user: bool,
}

pub(crate) fn fixture_users() -> Vec<SimUser> {
    vec![
        SimUser {
            user_id: 1111,
            rc_user_id: 222222,
            agent_id: 111111,
            username: "admin@example.com".into(),
            password: "sim-admin-password-7d1".into(),
            platform_id: "c01".into(),
            jwt_credential: "sim-jwt-credential-admin-91ac".into(),
            account_id: "333333".into(),
            main_account_id: "333000".into(),
            super_user: true,
        },
        SimUser {
            user_id: 1112,
            rc_user_id: 222223,
            agent_id: 111112,
            username: "agent@example.com".into(),
            password: "sim-agent-password-5e2".into(),
            platform_id: "c01".into(),
            jwt_credential: "sim-jwt-credential-agent-44d0".into(),
            account_id: "333334".into(),
            main_account_id: "333000".into(),
            super_user: false,
        },
    ]
}

/// One request as the simulator received it (admin calls under `/__sim/` are not recorded).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names, lower-case; values are not kept (they are credentials).
    pub headers: Vec<String>,
    pub content_type: Option<String>,
    pub body: String,
    /// What the simulator answered (`0` when the connection was dropped).
    pub status: u16,
}

#[derive(Debug)]
pub(crate) struct AccessGrant {
    pub user: usize,
    pub expires_at: DateTime<Utc>,
    /// The login a RingCX token descends from (refreshes keep it); `None` for platform tokens.
    pub family: Option<u64>,
}

/// What the simulator counted about refresh tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenStats {
    /// Refreshes that succeeded (each spent one refresh token).
    pub refreshes: u64,
    /// Refresh attempts with a token already spent.
    pub reuses: u64,
    /// Token families revoked by reuse detection.
    pub families_revoked: u64,
    /// Answers processed and then lost on purpose (`DropAfter`, `lost_answer_ratio`).
    pub lost_answers: u64,
    /// Of those, successful refreshes: a refresh token spent and its successor never delivered.
    pub lost_refreshes: u64,
}

/// Everything mutable, behind one lock.
#[derive(Debug)]
pub(crate) struct World {
    pub offset: Duration,
    pub users: Vec<SimUser>,
    pub platform_tokens: HashMap<String, AccessGrant>,
    pub access_tokens: HashMap<String, AccessGrant>,
    /// Valid refresh tokens (user, family): single use, removed when spent or revoked.
    pub refresh_tokens: HashMap<String, (usize, u64)>,
    /// Spent refresh tokens and their family, for reuse detection.
    pub spent_refresh_tokens: HashMap<String, u64>,
    pub next_family: u64,
    pub token_stats: TokenStats,
    pub api_tokens: Vec<(usize, String)>,
    /// Exchange attempts per RingEX user in the last minute.
    pub exchanges: HashMap<usize, VecDeque<DateTime<Utc>>>,
    pub voice_calls: HashMap<usize, VecDeque<DateTime<Utc>>>,
    pub faults: Faults,
    pub scripted: FaultQueue,
    pub behaviour: Behaviour,
    pub rng: fastrand::Rng,
    pub log: Vec<RecordedRequest>,
    /// External auth configs by (account id, auth config id), as stored (secrets in clear).
    pub auth_configs: std::collections::BTreeMap<(String, String), Value>,
    /// Every load the direct lead loader accepted.
    pub lead_loads: Vec<super::leads::LeadLoad>,
}

impl World {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            offset: Duration::zero(),
            users: fixture_users(),
            platform_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            spent_refresh_tokens: HashMap::new(),
            next_family: 1,
            token_stats: TokenStats::default(),
            api_tokens: Vec::new(),
            exchanges: HashMap::new(),
            voice_calls: HashMap::new(),
            faults: Faults::default(),
            scripted: FaultQueue::default(),
            behaviour: Behaviour::default(),
            rng: fastrand::Rng::with_seed(seed),
            log: Vec::new(),
            auth_configs: std::collections::BTreeMap::new(),
            lead_loads: Vec::new(),
        }
    }

    pub(crate) fn now(&self, clock: &SharedClock) -> DateTime<Utc> {
        clock.now() + self.offset
    }

    fn random_token(&mut self, bytes: usize) -> String {
        let raw: Vec<u8> = (0..bytes).map(|_| self.rng.u8(..)).collect();
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// A RingCX access token: a JWT whose `exp` is `ttl` from now.
    pub(crate) fn issue_access_token(
        &mut self,
        user: usize,
        now: DateTime<Utc>,
        family: u64,
    ) -> String {
        let exp = now + Duration::seconds(self.behaviour.access_token_ttl_secs);
        let u = &self.users[user];
        let claims = json!({
            "sub": u.user_id.to_string(),
            "accountId": u.account_id,
            "rcUserId": u.rc_user_id,
            "iat": now.timestamp(),
            "exp": exp.timestamp(),
            "jti": uuid::Uuid::from_u64_pair(self.rng.u64(..), self.rng.u64(..)).to_string(),
        });
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let token = format!("{header}.{payload}.{}", self.random_token(32));
        self.access_tokens.insert(
            token.clone(),
            AccessGrant {
                user,
                expires_at: exp,
                family: Some(family),
            },
        );
        token
    }

    pub(crate) fn issue_refresh_token(&mut self, user: usize, family: u64) -> String {
        let token = format!("rt-{}", self.random_token(24));
        self.refresh_tokens.insert(token.clone(), (user, family));
        token
    }

    /// A new token family, for a login or an exchange.
    pub(crate) fn new_family(&mut self) -> u64 {
        self.next_family += 1;
        self.next_family
    }

    /// Spends `token` for a refresh: the user and family when it was valid. A spent token
    /// presented again revokes its family when reuse detection is on.
    pub(crate) fn spend_refresh_token(&mut self, token: &str) -> Option<(usize, u64)> {
        if let Some((user, family)) = self.refresh_tokens.remove(token) {
            self.spent_refresh_tokens.insert(token.to_owned(), family);
            self.token_stats.refreshes += 1;
            return Some((user, family));
        }
        if let Some(family) = self.spent_refresh_tokens.get(token).copied() {
            self.token_stats.reuses += 1;
            if self.behaviour.refresh_reuse_detection {
                self.refresh_tokens.retain(|_, (_, f)| *f != family);
                self.access_tokens.retain(|_, g| g.family != Some(family));
                self.token_stats.families_revoked += 1;
            }
        }
        None
    }

    pub(crate) fn issue_platform_token(&mut self, user: usize, now: DateTime<Utc>) -> String {
        let token = format!("U0lNMDFQMDF8{}", self.random_token(48));
        let expires_at = now + Duration::seconds(PLATFORM_TOKEN_TTL_SECS);
        self.platform_tokens.insert(
            token.clone(),
            AccessGrant {
                user,
                expires_at,
                family: None,
            },
        );
        token
    }

    pub(crate) fn issue_api_token(&mut self, user: usize) -> String {
        let id = uuid::Uuid::from_u64_pair(self.rng.u64(..), self.rng.u64(..));
        let token = format!("aws80:{id}");
        self.api_tokens.push((user, token.clone()));
        token
    }

    /// RingCX's `AccessTokenUserDetails` for a fresh session in `family`.
    pub(crate) fn session_body(
        &mut self,
        user: usize,
        now: DateTime<Utc>,
        with_refresh: bool,
        family: u64,
    ) -> Value {
        let access = self.issue_access_token(user, now, family);
        let refresh = with_refresh.then(|| self.issue_refresh_token(user, family));
        let u = &self.users[user];
        let (first, last) = u.username.split_once('@').unwrap_or((&u.username, ""));
        json!({
            "refreshToken": refresh,
            "accessToken": access,
            "tokenType": "Bearer",
            "mainAccountId": u.main_account_id,
            "platformId": u.platform_id,
            "agentDetails": [{
                "agentId": u.agent_id,
                "firstName": first,
                "lastName": last,
                "email": u.username,
                "username": u.username,
                "agentType": "AGENT",
                "rcUserId": u.rc_user_id,
                "accountId": u.account_id,
                "accountName": "RingForce",
                "agentGroupId": null,
                "allowLoginControl": true,
                "allowLoginUpdates": true
            }],
            "adminId": u.user_id,
            "adminUrl": "/voice/admin/",
            "agentUrl": "/voice/agent/",
            "ssoLogin": true
        })
    }

    /// Sliding one-minute window: `Ok` records the call, `Err` is the wait in seconds.
    pub(crate) fn take_rate(
        window: &mut VecDeque<DateTime<Utc>>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<(), i64> {
        let minute = Duration::seconds(60);
        while window.front().is_some_and(|t| now - *t >= minute) {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            let oldest = window.front().copied().unwrap_or(now);
            return Err((oldest + minute - now).num_seconds().max(1));
        }
        window.push_back(now);
        Ok(())
    }
}
