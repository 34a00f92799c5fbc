//! Service-account tokens of a pod's projected volumes, as the kubelet's token manager keeps
//! them.
//!
//! A `serviceAccountToken` projection is fetched with TokenRequest, bound to the pod (name
//! and UID), for the pod's `serviceAccountName`, the projection's audience (default: the API
//! server's) and `expirationSeconds` (default 3600). The answer is cached per request; a
//! cached token is used until it needs a refresh ([`needs_refresh`]: 80 % of its requested
//! life has passed, or 24 hours), then fetched again. The projected volume is rewritten
//! atomically by [`crate::pod::volumes`] whenever its content changes, and volumes are
//! refreshed at most every `REFRESH_INTERVAL` while the pod runs, so a token is replaced
//! between 80 % of its life and that plus the interval. The cache lives with the pod's
//! volumes (gone with the pod; an agent restart fetches fresh tokens).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::AgentError;
use crate::objects::{ObjectSource, PodTokenRequest};

/// The lifetime asked for when a projection does not say (upstream's default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// A token is refreshed after this long at the latest.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Whether a token fetched at `fetched` for `ttl` must be fetched again at `now`: past 80 %
/// of its life or older than a day (the kubelet's `requiresRefresh`).
pub fn needs_refresh(fetched: Instant, ttl: Duration, now: Instant) -> bool {
    let age = now.saturating_duration_since(fetched);
    age >= ttl.mul_f64(0.8) || age >= MAX_AGE
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    fetched: Instant,
    ttl: Duration,
}

/// The tokens of one pod.
#[derive(Debug, Default)]
pub struct PodTokens {
    cache: BTreeMap<PodTokenRequest, Cached>,
}

impl PodTokens {
    /// The token for `req`: the cached one while it is fresh, else a new one from `objects`.
    pub async fn get(
        &mut self,
        objects: &dyn ObjectSource,
        req: &PodTokenRequest,
    ) -> Result<String, AgentError> {
        let now = Instant::now();
        if let Some(c) = self.cache.get(req)
            && !needs_refresh(c.fetched, c.ttl, now)
        {
            return Ok(c.token.clone());
        }
        let token = objects.service_account_token(req).await?;
        let ttl = Duration::from_secs(u64::try_from(req.expiration_seconds).unwrap_or(0));
        self.cache.insert(
            req.clone(),
            Cached {
                token: token.clone(),
                fetched: now,
                ttl,
            },
        );
        Ok(token)
    }

    /// Forgets every token (the pod's volumes are gone).
    pub fn clear(&mut self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::MemoryObjects;

    #[test]
    fn refresh_at_80_percent_or_a_day() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        assert!(!needs_refresh(t0, hour, t0));
        assert!(!needs_refresh(t0, hour, t0 + Duration::from_secs(2879)));
        assert!(needs_refresh(t0, hour, t0 + Duration::from_secs(2880)));
        let year = Duration::from_secs(365 * 24 * 3600);
        assert!(!needs_refresh(
            t0,
            year,
            t0 + MAX_AGE - Duration::from_secs(1)
        ));
        assert!(needs_refresh(t0, year, t0 + MAX_AGE));
    }

    #[tokio::test(start_paused = true)]
    async fn cached_until_80_percent_then_fetched_again() {
        let objects = MemoryObjects::new();
        let mut tokens = PodTokens::default();
        let req = PodTokenRequest {
            namespace: "default".into(),
            service_account: "default".into(),
            pod_name: "p".into(),
            pod_uid: "u".into(),
            audience: None,
            expiration_seconds: 3607,
        };
        let first = tokens.get(&objects, &req).await.unwrap();
        tokio::time::advance(Duration::from_secs(2800)).await;
        assert_eq!(tokens.get(&objects, &req).await.unwrap(), first);
        tokio::time::advance(Duration::from_secs(100)).await;
        let second = tokens.get(&objects, &req).await.unwrap();
        assert_ne!(second, first);
        assert_eq!(objects.token_requests(), vec![req.clone(), req]);
    }
}
