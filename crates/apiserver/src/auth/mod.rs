//! Authentication and authorization of API requests.
//!
//! A request passes two chains, in [`crate::rest`]:
//!
//! ```text
//! bearer token ──▶ AuthenticatorChain ──▶ UserInfo (+ system:authenticated)
//!                   1. static token file (tokenfile.rs)
//!                   2. service-account tokens (one more Authenticator, pushed after it)
//!                          │ none knows the token: 401 Unauthorized
//!                          ▼
//! RequestAttributes ──▶ AuthorizerChain (first Allow/Deny wins; all NoOpinion: 403)
//!                   1. PrivilegedGroups: system:masters may do everything
//!                   2. NodeAuthorizer: what a node may do (node.rs)
//!                   3. the policy for everyone else
//! ```
//!
//! Rules: authentication happens before anything of the request is read but its headers;
//! authorization happens before the body is decoded (a create is authorized once more with
//! the name from its body); authorizers answer from memory. A request nobody allows is
//! refused with upstream's 403 Forbidden Status: `<resource> "<name>" is forbidden: User
//! "<user>" cannot <verb> resource "<resource>" in API group "<group>" in the namespace
//! "<ns>"`, followed by `: <reasons>` when the authorizers gave any.

mod authn;
mod authz;
mod node;
mod tokenfile;
mod user;

pub use authn::{Authenticator, AuthenticatorChain};
pub use authz::{Authorizer, AuthorizerChain, Decision, PrivilegedGroups, RequestAttributes};
pub use node::{
    AuthenticatedReaders, NODE_POD_ANNOTATION_PREFIX, NodeAuthorizer, node_pod_patch_allowed,
};
pub(crate) use tokenfile::write_private_file;
pub use tokenfile::{ADMIN_USER, TokenError, TokenFile};
pub use user::{
    AUTHENTICATED_GROUP, MASTERS_GROUP, NODE_USER_PREFIX, NODES_GROUP, SERVICE_ACCOUNT_USER_PREFIX,
    UNAUTHENTICATED_GROUP, UserInfo,
};

use std::sync::Arc;

/// The default authorizer chain: `system:masters`, then the node authorizer, then the
/// policy for everyone else.
pub fn default_authorizer() -> AuthorizerChain {
    AuthorizerChain::new(vec![
        Arc::new(PrivilegedGroups),
        Arc::new(NodeAuthorizer),
        Arc::new(AuthenticatedReaders),
    ])
}
