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
//! Impersonate-* headers ──▶ each part authorized (verb impersonate), then the request
//!                           runs as that user (impersonation.rs); refused: 403
//!                          │
//!                          ▼
//! RequestAttributes ──▶ AuthorizerChain (first Allow/Deny wins; all NoOpinion: 403)
//!                   1. PrivilegedGroups: system:masters may do everything
//!                   2. NodeAuthorizer: what a node may do (node.rs)
//!                   3. RbacAuthorizer: Roles and bindings (rbac/)
//!                          │ a node's write: its lease epoch (epoch.rs), else 409
//! ```
//!
//! Rules: authentication happens before anything of the request is read but its headers;
//! authorization happens before the body is decoded (a create is authorized once more with
//! the name from its body); authorizers answer from memory. A request nobody allows is
//! refused with upstream's 403 Forbidden Status: `<resource> "<name>" is forbidden: User
//! "<user>" cannot <verb> resource "<resource>" in API group "<group>" in the namespace
//! "<ns>"`, followed by `: <reasons>` when the authorizers gave any.

mod admission;
mod authn;
mod authz;
mod epoch;
mod impersonation;
pub mod mirror;
mod node;
pub mod rbac;
pub mod reviews;
mod tokenfile;
mod user;

pub(crate) use admission::{admit_delete, admit_write};
pub use authn::{Authenticator, AuthenticatorChain, TokenReviewed};
pub use authz::{Authorizer, AuthorizerChain, Decision, PrivilegedGroups, RequestAttributes};
pub(crate) use epoch::check_node_epoch;
pub(crate) use impersonation::impersonate;
pub use node::{
    Graph, NODE_POD_ANNOTATION_PREFIX, NodeAuthorizer, NodeGraph, Vertex, node_pod_patch_allowed,
    pod_references,
};
pub(crate) use tokenfile::write_private_file;
pub use tokenfile::{ADMIN_USER, TokenError, TokenFile};
pub use user::{
    AUTHENTICATED_GROUP, MASTERS_GROUP, NODE_USER_PREFIX, NODES_GROUP, PROXY_USER,
    SERVICE_ACCOUNT_USER_PREFIX, UNAUTHENTICATED_GROUP, UserInfo,
};

use std::sync::Arc;

/// The default authorizer chain (`--authorization-mode=Node,RBAC` after the privileged
/// group): `system:masters`, then the node authorizer, then RBAC.
pub fn default_authorizer(
    graph: Arc<NodeGraph>,
    rbac: Arc<rbac::RbacAuthorizer>,
) -> AuthorizerChain {
    AuthorizerChain::new(vec![
        Arc::new(PrivilegedGroups),
        Arc::new(NodeAuthorizer::new(graph)),
        rbac,
    ])
}

/// Authorizes `attrs` for `user` through the server's chain; a request nobody allows gets
/// upstream's 403 Forbidden Status. A denial from caches that have not yet seen this
/// server's latest RBAC, pod or claim writes is decided again once they have (a binding
/// works as soon as its create returned; a node may read the Secret of a pod bound to it a
/// moment ago).
pub(crate) async fn check(
    srv: &crate::server::ApiServer,
    user: &UserInfo,
    attrs: &RequestAttributes,
) -> Result<(), crate::error::ApiError> {
    let mut decision = srv.authorize(user, attrs);
    if !decision.allowed()
        && srv
            .authorizers_caught_up(std::time::Duration::from_millis(1500))
            .await
    {
        decision = srv.authorize(user, attrs);
    }
    if decision.allowed() {
        return Ok(());
    }
    let mut message = attrs.forbidden_message(&user.name);
    if !decision.reason().is_empty() {
        message = format!("{message}: {}", decision.reason());
    }
    if !attrs.resource_request {
        return Err(
            crate::error::ApiError::new(403, "Forbidden", format!("forbidden: {message}"))
                .with_details(serde_json::json!({})),
        );
    }
    let qualified = if attrs.group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.group)
    };
    let what = if attrs.name.is_empty() {
        qualified
    } else {
        format!("{qualified} {:?}", attrs.name)
    };
    Err(crate::error::ApiError::forbidden(
        &attrs.resource,
        &attrs.group,
        &attrs.name,
        format!("{what} is forbidden: {message}"),
    ))
}
