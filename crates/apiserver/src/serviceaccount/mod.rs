//! Service accounts: bound tokens, their authenticator and the pod admission.
//!
//! # A token's life
//!
//! ```text
//!  TokenRequest (POST serviceaccounts/<sa>/token)          [token]
//!      │  checks: the ServiceAccount exists; a bound Pod or Secret exists, has the given
//!      │  UID (and a Pod runs as <sa>); a node may only ask for a pod bound to it
//!      ▼
//!  signed JWT  ── iss, aud, iat/nbf/exp, jti, kubernetes.io {namespace, serviceaccount,
//!      │          pod|secret, node, warnafter}
//!      ▼
//!  each request: signature (kid = this key) → issuer → audience → time (±60 s leeway)
//!      │  → the ServiceAccount still exists with the claimed UID
//!      │  → the bound Pod/Secret still exists with the claimed UID (a pod deleted more
//!      │    than 60 s ago no longer counts)
//!      ▼
//!  user system:serviceaccount:<ns>:<sa>, groups system:serviceaccounts,
//!  system:serviceaccounts:<ns>, system:authenticated; extra pod-name/pod-uid/node-name/
//!  node-uid/credential-id as upstream
//! ```
//!
//! Nothing is stored per token: a token is valid while its signature, times and bound
//! objects are; deleting the pod (or the ServiceAccount) revokes every token bound to it.
//! A token asked for with exactly 3607 s and bound to a pod (what the kubelet asks for) is
//! signed to live a year with `warnafter` at the requested expiry, as upstream does with
//! `--service-account-extend-token-expiration` (its default); the answer still reports the
//! requested expiry, and the agent rotates by that.
//!
//! The signing key is [`jwt::SigningKey`] (ES256, `sa.key` in the data dir). The pod
//! admission (upstream's `ServiceAccount` plugin) is [`admission`]; the TokenRequest
//! endpoint is [`token`].

pub mod admission;
pub mod jwt;
pub mod token;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::auth::UserInfo;
use crate::objects;
use crate::ops::Core;
use crate::registry::{PODS, SECRETS, SERVICEACCOUNTS};

pub use jwt::{Claims, KeyError, SigningKey};

/// The issuer of this cluster's tokens (upstream's `--service-account-issuer` as kubeadm
/// sets it), which is also the API server's audience.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// What a TokenRequest lives when it does not say (`expirationSeconds` default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a TokenRequest may ask for.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The lifetime the kubelet (and the admission's projected volume) asks for; such tokens
/// bound to a pod are extended (upstream's `WarnOnlyBoundTokenExpirationSeconds`).
pub const WARN_ONLY_EXPIRATION_SECONDS: i64 = 3607;
/// How long an extended token lives (upstream's `ExpirationExtensionSeconds`: a year).
pub const EXTENDED_EXPIRATION_SECONDS: i64 = 24 * 365 * 60 * 60;
/// Clock skew allowed when checking `nbf` and `exp`.
pub const LEEWAY_SECONDS: i64 = 60;
/// A token bound to a pod with a deletion timestamp stays valid this long after it.
pub const DELETED_POD_GRACE_SECONDS: i64 = 60;
/// The prefix of service-account user names.
pub const USER_PREFIX: &str = "system:serviceaccount:";

/// The token issuer and authenticator of one API server.
#[derive(Debug)]
pub struct ServiceAccounts {
    key: SigningKey,
    /// The audiences the API server accepts (and gives tokens that name none).
    audiences: Vec<String>,
}

impl ServiceAccounts {
    /// Loads (or creates) the signing key in `data_dir`.
    pub fn load_or_generate(data_dir: &Path) -> Result<ServiceAccounts, KeyError> {
        Ok(ServiceAccounts {
            key: SigningKey::load_or_generate(data_dir)?,
            audiences: vec![ISSUER.to_string()],
        })
    }

    /// The audiences the API server accepts.
    pub fn api_audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The user a service-account token stands for, or None (401) when it is not one of
    /// this issuer's tokens, is expired, is not for the API server, or its service account
    /// or bound object is gone.
    pub async fn authenticate(&self, core: &Core, token: &str) -> Option<UserInfo> {
        match self.review(core, token, &self.audiences).await {
            Ok(found) => found.map(|(u, _)| u),
            Err(why) => {
                tracing::debug!(reason = %why, "service-account token rejected");
                None
            }
        }
    }

    /// For a TokenReview: the user of `token` and the `audiences` it is valid for; `None`
    /// when it is not one of this issuer's tokens; `Err` with upstream's text when it is but
    /// is not valid (expired, for other audiences, its service account or bound object gone).
    pub async fn review(
        &self,
        core: &Core,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<(UserInfo, Vec<String>)>, String> {
        if !jwt::looks_like_jwt(token) {
            return Ok(None);
        }
        let Ok(c) = self.key.verify(token) else {
            return Ok(None);
        };
        if c.iss != ISSUER {
            return Ok(None);
        }
        let valid: Vec<String> = c
            .aud
            .iter()
            .filter(|a| audiences.contains(a))
            .cloned()
            .collect();
        if valid.is_empty() {
            let quoted = |l: &[String]| {
                let items: Vec<String> = l.iter().map(|a| format!("{a:?}")).collect();
                format!("[{}]", items.join(" "))
            };
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                quoted(&c.aud),
                quoted(audiences)
            ));
        }
        let now = core.now().as_second();
        if now > c.exp + LEEWAY_SECONDS {
            return Err("service account token has expired".into());
        }
        if now + LEEWAY_SECONDS < c.nbf {
            return Err("service account token is not valid yet".into());
        }
        match self.validate(core, &c).await {
            Ok(u) => Ok(Some((u, valid))),
            Err(why) => {
                tracing::debug!(reason = %why, "service-account token invalidated");
                Err("service account token has been invalidated".into())
            }
        }
    }

    /// The user of the verified, current claims `c`, while its service account and bound
    /// object exist with the claimed UIDs.
    async fn validate(&self, core: &Core, c: &Claims) -> Result<UserInfo, String> {
        let now = core.now().as_second();
        let k = &c.kubernetes;
        let ns = k.namespace.as_str();
        let sa_name = &k.serviceaccount.name;
        if c.sub != format!("{USER_PREFIX}{ns}:{sa_name}") {
            return Err("subject does not match the kubernetes.io claim".into());
        }
        let sa = core
            .storage
            .get(&SERVICEACCOUNTS, Some(ns), sa_name)
            .await
            .map_err(|e| e.message)?
            .map(|(o, _)| o)
            .ok_or_else(|| format!("service account {ns}/{sa_name} has been deleted"))?;
        let sa_uid = uid_of(&sa);
        if sa_uid != k.serviceaccount.uid {
            return Err(format!(
                "service account UID ({sa_uid}) does not match claim ({})",
                k.serviceaccount.uid
            ));
        }
        let mut extra = BTreeMap::new();
        if let Some(p) = &k.pod {
            let pod = core
                .storage
                .get(&PODS, Some(ns), &p.name)
                .await
                .map_err(|e| e.message)?
                .map(|(o, _)| o)
                .ok_or_else(|| format!("pod {ns}/{} has been deleted", p.name))?;
            let uid = uid_of(&pod);
            if uid != p.uid {
                return Err(format!("pod UID ({uid}) does not match claim ({})", p.uid));
            }
            if let Some(ts) = pod
                .pointer("/metadata/deletionTimestamp")
                .and_then(Value::as_str)
                .and_then(objects::parse_time)
                && ts.as_second() + DELETED_POD_GRACE_SECONDS < now
            {
                return Err(format!("pod {ns}/{} is being deleted", p.name));
            }
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_string(),
                vec![p.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_string(),
                vec![p.uid.clone()],
            );
        }
        if let Some(s) = &k.secret {
            let secret = core
                .storage
                .get(&SECRETS, Some(ns), &s.name)
                .await
                .map_err(|e| e.message)?
                .map(|(o, _)| o)
                .ok_or_else(|| format!("secret {ns}/{} has been deleted", s.name))?;
            let uid = uid_of(&secret);
            if uid != s.uid {
                return Err(format!(
                    "secret UID ({uid}) does not match claim ({})",
                    s.uid
                ));
            }
        }
        if let Some(n) = &k.node {
            extra.insert(
                "authentication.kubernetes.io/node-name".to_string(),
                vec![n.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/node-uid".to_string(),
                vec![n.uid.clone()],
            );
        }
        if !c.jti.is_empty() {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_string(),
                vec![format!("JTI={}", c.jti)],
            );
        }
        Ok(UserInfo {
            name: c.sub.clone(),
            uid: sa_uid.to_string(),
            groups: vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".to_string(),
            ],
            extra,
        })
    }
}

/// The service-account token authenticator of the server's chain.
pub struct TokenAuthenticator {
    issuer: std::sync::Arc<ServiceAccounts>,
    core: Core,
}

impl TokenAuthenticator {
    /// Authenticates `issuer`'s tokens against the objects in `core`.
    pub fn new(issuer: std::sync::Arc<ServiceAccounts>, core: Core) -> TokenAuthenticator {
        TokenAuthenticator { issuer, core }
    }
}

#[async_trait::async_trait]
impl crate::auth::Authenticator for TokenAuthenticator {
    async fn authenticate_token(&self, token: &str) -> Option<UserInfo> {
        self.issuer.authenticate(&self.core, token).await
    }

    async fn review_token(
        &self,
        token: &str,
        audiences: &[String],
        _api_audiences: &[String],
    ) -> Result<Option<(UserInfo, Vec<String>)>, String> {
        self.issuer.review(&self.core, token, audiences).await
    }
}

/// `(namespace, name)` of a service-account user name.
pub fn parse_user_name(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(USER_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

fn uid_of(obj: &Value) -> &str {
    objects::meta_str(obj, "uid").unwrap_or("")
}
