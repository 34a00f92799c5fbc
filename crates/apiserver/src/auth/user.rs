//! Who is making a request: [`UserInfo`], as an authenticator returns it, and the
//! well-known user and group names upstream gives a meaning to.

use std::collections::BTreeMap;

/// The group every authenticated user is in (added by the authenticator chain).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of unauthenticated requests (none reach the API here but the open endpoints).
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group whose members may do everything (upstream's privileged group).
pub const MASTERS_GROUP: &str = "system:masters";
/// The group of node identities (`system:node:<name>`).
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of node user names.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The user of the nodes' Service proxies (kube-proxy's identity upstream, bound to the
/// `system:node-proxier` ClusterRole by the default binding of that name).
pub const PROXY_USER: &str = "system:kube-proxy";
/// The prefix of a Service proxy token's uid: `kube-proxy/<node>`.
pub const PROXY_UID_PREFIX: &str = "kube-proxy/";
/// The prefix of service-account user names (`system:serviceaccount:<ns>:<name>`).
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// Who is making a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name ("admin", "system:node:n1", "system:serviceaccount:ns:sa").
    pub name: String,
    /// UID.
    pub uid: String,
    /// Groups ("system:masters", "system:authenticated").
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name` for a bound
    /// service-account token).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name, uid and groups and no extra attributes.
    pub fn new(name: impl Into<String>, uid: impl Into<String>, groups: Vec<String>) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: uid.into(),
            groups,
            extra: BTreeMap::new(),
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node name if this is a node identity (`system:node:NAME` in `system:nodes`), as
    /// upstream's node identifier decides it.
    pub fn node_name(&self) -> Option<&str> {
        if self.in_group(NODES_GROUP) {
            self.name.strip_prefix(NODE_USER_PREFIX)
        } else {
            None
        }
    }

    /// `(namespace, name)` if this is a service account's user name.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        self.name
            .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?
            .split_once(':')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains(':'))
    }
}
