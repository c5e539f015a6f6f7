//! The callers secret as each instance sees it (a [`DocumentCache`]): read at most once per
//! `ttl`, read again soon after a credential matched nothing (a key just added), and the previous
//! list kept serving while Secrets Manager fails.

use std::sync::Arc;
use std::time::Duration;

use broker::clock::SharedClock;
use broker::document::DocumentCache;
use broker::store::SecretStore;

use axum::http::HeaderMap;

use super::{
    Caller, CallerSet, Presented, QueryAuth, Verdict, forwarded_query, parse_callers, presented,
};
use crate::error::{ApiError, ErrorCode};

pub use broker::document::MISS_RELOAD;

/// The callers secret, read at most once per `ttl` per instance.
pub struct CallerCache<S> {
    document: DocumentCache<S, CallerSet>,
    clock: SharedClock,
}

fn unavailable() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::CallersUnavailable,
        "the callers list cannot be read right now",
    )
    .with_retry_after(5)
}

impl<S: SecretStore> CallerCache<S> {
    /// A cache of secret `name`, trusted for `ttl`.
    pub fn new(store: S, name: String, ttl: Duration, clock: SharedClock) -> Self {
        let secret = name.clone();
        let parse = Box::new(move |raw: Option<&str>| match raw {
            None => {
                tracing::error!(secret = %secret, "the callers secret does not exist: every key is refused");
                CallerSet::default()
            }
            Some(raw) => parse_callers(&secret, raw),
        });
        Self {
            document: DocumentCache::new(store, name, ttl, clock.clone(), parse),
            clock,
        }
    }

    /// The current callers (read from the store when the cached copy is older than `ttl`).
    pub async fn callers(&self) -> Result<Arc<CallerSet>, ApiError> {
        self.document.get().await.map_err(|_| unavailable())
    }

    /// Who a request's credential belongs to (or 401, judged at `now`), and its query with every
    /// credential taken out: the credential is looked for with one read of the callers, and the
    /// query is stripped of the JWT parameters of that list and, after a reload for a key just
    /// added, of the newer one too. The proxy and `caller` hooks forward only that query.
    pub async fn verdict(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        allow_query_key: bool,
        now: i64,
    ) -> Result<Verdict, ApiError> {
        let callers = self.callers().await?;
        let auth = QueryAuth {
            allow_key: allow_query_key,
            jwt_params: callers.jwt_params(),
        };
        let presented = presented(headers, query, auth)?;
        let (caller, newer) = self.authenticate(&callers, &presented, now).await?;
        let forwarded_query = match newer {
            None => forwarded_query(query, callers.jwt_params(), presented.secret()),
            Some(newer) => {
                let both = callers.jwt_params() | newer.jwt_params();
                forwarded_query(query, &both, presented.secret())
            }
        };
        Ok(Verdict {
            caller,
            forwarded_query,
        })
    }

    /// The caller an already extracted credential belongs to (OAuth's client credentials), or 401.
    pub async fn caller_of(&self, presented: &Presented) -> Result<Caller, ApiError> {
        let now = self.clock.now().timestamp();
        Ok(self
            .authenticate(&*self.callers().await?, presented, now)
            .await?
            .0)
    }

    /// The caller `presented` belongs to in `callers`, or in a newer list (returned too) when it
    /// matched none.
    async fn authenticate(
        &self,
        callers: &CallerSet,
        presented: &Presented,
        now: i64,
    ) -> Result<(Caller, Option<Arc<CallerSet>>), ApiError> {
        match callers.authenticate(presented, now) {
            Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => {
                match self
                    .document
                    .reload_after_miss()
                    .await
                    .map_err(|_| unavailable())?
                {
                    Some(newer) => Ok((newer.authenticate(presented, now)?, Some(newer))),
                    None => Err(e),
                }
            }
            found => found.map(|c| (c, None)),
        }
    }
}
