//! The authenticator chain: a bearer token is offered to each authenticator in turn (static
//! token file first, then the service-account token authenticator), and the first that
//! knows it names the user, as upstream's union token authenticator does. The chain then
//! adds the `system:authenticated` group, as upstream's group adder does.

use std::sync::Arc;

use super::user::{AUTHENTICATED_GROUP, UserInfo};

/// Turns a bearer token into a user.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The user `token` stands for, or `None` when this authenticator does not accept it
    /// (unknown, expired, revoked): the next authenticator is asked then.
    async fn authenticate_token(&self, token: &str) -> Option<UserInfo>;

    /// For a TokenReview: the user of `token` when it is valid for one of `audiences`, and
    /// those of them it is valid for; `Err` with upstream's text when this authenticator
    /// knows the token but refuses it. The default is upstream's audience-agnostic
    /// wrapper: the token counts for the API server's own audiences (`api_audiences`) only.
    async fn review_token(
        &self,
        token: &str,
        audiences: &[String],
        api_audiences: &[String],
    ) -> Result<Option<(UserInfo, Vec<String>)>, String> {
        let valid: Vec<String> = api_audiences
            .iter()
            .filter(|a| audiences.contains(a))
            .cloned()
            .collect();
        if valid.is_empty() {
            return Ok(None);
        }
        Ok(self.authenticate_token(token).await.map(|u| (u, valid)))
    }
}

/// What a TokenReview learns of a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenReviewed {
    /// The user, when the token is valid.
    pub user: Option<UserInfo>,
    /// The requested audiences it is valid for.
    pub audiences: Vec<String>,
    /// Why not, as upstream words it (`invalid bearer token` when nobody knows it).
    pub error: String,
}

/// The authenticators of a server, asked in order.
#[derive(Clone, Default)]
pub struct AuthenticatorChain {
    authenticators: Vec<Arc<dyn Authenticator>>,
}

impl std::fmt::Debug for AuthenticatorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatorChain")
            .field("authenticators", &self.authenticators.len())
            .finish()
    }
}

impl AuthenticatorChain {
    /// A chain of `authenticators`, asked in this order.
    pub fn new(authenticators: Vec<Arc<dyn Authenticator>>) -> AuthenticatorChain {
        AuthenticatorChain { authenticators }
    }

    /// Adds an authenticator at the end of the chain.
    pub fn push(&mut self, authenticator: Arc<dyn Authenticator>) {
        self.authenticators.push(authenticator);
    }

    /// A TokenReview of `token` for `audiences` (upstream's union of token authenticators:
    /// the first that accepts it names the user; the refusals are aggregated).
    pub async fn review(
        &self,
        token: &str,
        audiences: &[String],
        api_audiences: &[String],
    ) -> TokenReviewed {
        let mut errors = Vec::new();
        for a in &self.authenticators {
            match a.review_token(token, audiences, api_audiences).await {
                Ok(Some((mut user, audiences))) => {
                    if !user.in_group(AUTHENTICATED_GROUP) {
                        user.groups.push(AUTHENTICATED_GROUP.to_string());
                    }
                    return TokenReviewed {
                        user: Some(user),
                        audiences,
                        error: String::new(),
                    };
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        let error = match errors.len() {
            0 => "invalid bearer token".to_string(),
            1 => errors.remove(0),
            _ => format!("[{}]", errors.join(", ")),
        };
        TokenReviewed {
            error,
            ..TokenReviewed::default()
        }
    }

    /// The user of `token`, with `system:authenticated` among its groups, or `None` (401).
    pub async fn authenticate(&self, token: &str) -> Option<UserInfo> {
        if token.is_empty() {
            return None;
        }
        for a in &self.authenticators {
            if let Some(mut user) = a.authenticate_token(token).await {
                if !user.in_group(AUTHENTICATED_GROUP) {
                    user.groups.push(AUTHENTICATED_GROUP.to_string());
                }
                return Some(user);
            }
        }
        None
    }
}

#[async_trait::async_trait]
impl Authenticator for super::TokenFile {
    async fn authenticate_token(&self, token: &str) -> Option<UserInfo> {
        self.authenticate(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, &'static str);

    #[async_trait::async_trait]
    impl Authenticator for Fixed {
        async fn authenticate_token(&self, token: &str) -> Option<UserInfo> {
            (token == self.0).then(|| UserInfo::new(self.1, "uid", vec![]))
        }
    }

    #[tokio::test]
    async fn the_first_authenticator_that_knows_the_token_names_the_user() {
        let chain = AuthenticatorChain::new(vec![
            Arc::new(Fixed("a", "alice")),
            Arc::new(Fixed("b", "bob")),
            Arc::new(Fixed("a", "mallory")),
        ]);
        let alice = chain.authenticate("a").await.unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, vec![AUTHENTICATED_GROUP.to_string()]);
        assert_eq!(chain.authenticate("b").await.unwrap().name, "bob");
        assert!(chain.authenticate("c").await.is_none());
        assert!(chain.authenticate("").await.is_none());
    }
}
