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
