//! Authorization: the [`Authorizer`] trait, its three-way [`Decision`], and the chain that
//! asks each authorizer in turn (upstream's union authorizer, as with
//! `--authorization-mode=Node,RBAC`, after the privileged-group authorizer that lets
//! `system:masters` do everything).
//!
//! Every authorizer answers `Allow`, `Deny` or `NoOpinion`; the first `Allow` or `Deny`
//! ends the walk; when all have no opinion the request is forbidden, and the reasons they
//! gave are joined (one per line) into the message, after upstream's
//! `User "x" cannot list resource "pods" in API group "" in the namespace "y"`.

use std::sync::Arc;

use super::user::{MASTERS_GROUP, UserInfo};

/// What a request wants to do, as upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestAttributes {
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection, or a
    /// special verb (bind, escalate, impersonate); for non-resource requests the lower-case
    /// HTTP method (get, post, put, delete).
    pub verb: String,
    /// Whether this is a request for a resource (else for a non-resource path).
    pub resource_request: bool,
    /// The URL path of a non-resource request ("/healthz").
    pub path: String,
    /// API group ("" for core).
    pub group: String,
    /// API version ("v1").
    pub version: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource ("status") or "".
    pub subresource: String,
    /// Namespace, or "" for cluster scope.
    pub namespace: String,
    /// Object name, or "" (for list and watch: the `metadata.name` of the field selector).
    pub name: String,
    /// The raw field selector of a list or watch.
    pub field_selector: Option<String>,
    /// For pod requests by nodes: the `spec.nodeName` of the existing pod, if known.
    pub pod_node: Option<String>,
}

impl RequestAttributes {
    /// A resource request.
    pub fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> RequestAttributes {
        RequestAttributes {
            verb: verb.to_string(),
            resource_request: true,
            group: group.to_string(),
            version: if group.is_empty() {
                "v1".into()
            } else {
                String::new()
            },
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            ..RequestAttributes::default()
        }
    }

    /// A non-resource request (`verb` is the lower-case HTTP method).
    pub fn non_resource(verb: &str, path: &str) -> RequestAttributes {
        RequestAttributes {
            verb: verb.to_string(),
            path: path.to_string(),
            ..RequestAttributes::default()
        }
    }

    /// Whether the verb only reads.
    pub fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }

    /// `resource/subresource`, or the resource alone.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Upstream's message for a request nobody allowed (without the reason):
    /// `User "x" cannot list resource "pods" in API group "" in the namespace "y"`.
    pub fn forbidden_message(&self, user: &str) -> String {
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        format!(
            "User {user:?} cannot {} resource {:?} in API group {:?} {scope}",
            self.verb,
            self.combined_resource(),
            self.group
        )
    }
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: no further authorizer is asked.
    Allow,
    /// Denied, with a reason: no further authorizer is asked.
    Deny(String),
    /// This authorizer neither allows nor denies; the reason (may be empty) joins the
    /// message if nobody allows.
    NoOpinion(String),
}

impl Decision {
    /// Whether the request is allowed.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The reason given (empty for `Allow`).
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow => "",
            Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }

    /// No opinion and no reason.
    pub fn no_opinion() -> Decision {
        Decision::NoOpinion(String::new())
    }
}

/// Decides whether a user may do something. Called on every request: answers come from
/// memory, never from I/O.
pub trait Authorizer: Send + Sync + 'static {
    /// The decision on `attrs` by `user`.
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes) -> Decision;
}

/// Lets the members of `system:masters` do everything (upstream's privileged groups).
#[derive(Debug, Default, Clone, Copy)]
pub struct PrivilegedGroups;

impl Authorizer for PrivilegedGroups {
    fn authorize(&self, user: &UserInfo, _: &RequestAttributes) -> Decision {
        if user.in_group(MASTERS_GROUP) {
            Decision::Allow
        } else {
            Decision::no_opinion()
        }
    }
}

/// The authorizers of a server, asked in order (upstream's union authorizer).
#[derive(Clone, Default)]
pub struct AuthorizerChain {
    authorizers: Vec<Arc<dyn Authorizer>>,
}

impl std::fmt::Debug for AuthorizerChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizerChain")
            .field("authorizers", &self.authorizers.len())
            .finish()
    }
}

impl AuthorizerChain {
    /// A chain of `authorizers`, asked in this order.
    pub fn new(authorizers: Vec<Arc<dyn Authorizer>>) -> AuthorizerChain {
        AuthorizerChain { authorizers }
    }
}

impl Authorizer for AuthorizerChain {
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes) -> Decision {
        let mut reasons: Vec<String> = Vec::new();
        for a in &self.authorizers {
            match a.authorize(user, attrs) {
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reasons.push(r);
                    }
                }
                d => return d,
            }
        }
        Decision::NoOpinion(reasons.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Says(Decision);
    impl Authorizer for Says {
        fn authorize(&self, _: &UserInfo, _: &RequestAttributes) -> Decision {
            self.0.clone()
        }
    }

    #[test]
    fn the_first_allow_or_deny_ends_the_walk_and_reasons_are_joined() {
        let user = UserInfo::new("alice", "u", vec![]);
        let a = RequestAttributes::resource("list", "", "pods", "", "y", "");
        let no = |r: &str| Arc::new(Says(Decision::NoOpinion(r.into()))) as Arc<dyn Authorizer>;
        let chain = AuthorizerChain::new(vec![no("one"), no(""), no("two")]);
        assert_eq!(
            chain.authorize(&user, &a),
            Decision::NoOpinion("one\ntwo".into())
        );
        let chain = AuthorizerChain::new(vec![
            no("one"),
            Arc::new(Says(Decision::Deny("no".into()))),
            Arc::new(Says(Decision::Allow)),
        ]);
        assert_eq!(chain.authorize(&user, &a), Decision::Deny("no".into()));
        let admin = UserInfo::new("admin", "u", vec![MASTERS_GROUP.into()]);
        assert!(PrivilegedGroups.authorize(&admin, &a).allowed());
        assert!(!PrivilegedGroups.authorize(&user, &a).allowed());
    }

    #[test]
    fn forbidden_messages_are_upstreams() {
        let a = RequestAttributes::resource("list", "", "pods", "", "y", "");
        assert_eq!(
            a.forbidden_message("x"),
            r#"User "x" cannot list resource "pods" in API group "" in the namespace "y""#
        );
        let a = RequestAttributes::resource("get", "apps", "deployments", "scale", "", "d");
        assert_eq!(
            a.forbidden_message("x"),
            r#"User "x" cannot get resource "deployments/scale" in API group "apps" at the cluster scope"#
        );
        let a = RequestAttributes::non_resource("get", "/metrics");
        assert_eq!(
            a.forbidden_message("x"),
            r#"User "x" cannot get path "/metrics""#
        );
    }
}
