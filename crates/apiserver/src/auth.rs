//! Authentication (static bearer-token file) and authorization (the [`Authorizer`] trait,
//! with the default [`DefaultAuthorizer`]: `system:masters` may do everything, a node may
//! write only its own Node, its own Lease, the status of the pods bound to it, their
//! `probes.podvisor.io/` annotations ([`node_pod_patch_allowed`]), and events).
//!
//! The token file is `tokens.csv` in the data dir, in kube's static-token format:
//! `token,user,uid,"group1,group2"`, one line per token. It is created on first start with
//! an admin token; node tokens are appended by [`TokenFile::ensure_node_token`].
//!
//! The file is the source of truth while the server runs: every authentication first checks
//! whether the file changed on disk (inode, size, modification time: one `stat`) and reloads
//! it if so, so a token removed from the file stops working at the next request, and one
//! added works at once. [`TokenFile::reload`] forces a reload (the binary calls it on
//! SIGHUP). A file that cannot be parsed leaves the tokens loaded before in force, with a
//! warning, until it changes again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name ("admin", "system:node:n1").
    pub name: String,
    /// UID.
    pub uid: String,
    /// Groups ("system:masters").
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, ...).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The node name if this is a node identity (`system:node:NAME` in `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        if self.groups.iter().any(|g| g == "system:nodes") {
            self.name.strip_prefix("system:node:")
        } else {
            None
        }
    }
}

/// Errors of the token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the file failed.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line could not be parsed.
    #[error("token file {path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A node name that cannot be a user name.
    #[error("invalid node name {0:?}")]
    InvalidNode(String),
}

/// The admin user name.
pub const ADMIN_USER: &str = "admin";

/// Bearer tokens loaded from a static token file.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    tokens: RwLock<HashMap<String, UserInfo>>,
    /// The file as last read (or last found unreadable), to notice changes.
    loaded: std::sync::Mutex<Option<FileStamp>>,
}

/// What identifies one version of the token file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Parses the lines of a token file.
fn parse_tokens(path: &Path, text: &str) -> Result<HashMap<String, UserInfo>, TokenError> {
    let mut tokens = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f = split_csv(line);
        if f.len() < 3 || f[0].is_empty() || f[1].is_empty() {
            return Err(TokenError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                message: "expected token,user,uid[,\"groups\"]".into(),
            });
        }
        let groups = f
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        tokens.insert(
            f[0].clone(),
            UserInfo {
                name: f[1].clone(),
                uid: f[2].clone(),
                groups,
                extra: BTreeMap::new(),
            },
        );
    }
    Ok(tokens)
}

impl TokenFile {
    /// Loads `dir/tokens.csv`, creating it with a fresh admin token if it does not exist.
    pub fn load_or_create(dir: &Path) -> Result<TokenFile, TokenError> {
        let path = dir.join("tokens.csv");
        let io = |source| TokenError::Io {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            let line = format!(
                "{},{ADMIN_USER},{},\"system:masters\"\n",
                new_token(),
                uuid::Uuid::new_v4()
            );
            write_private(&path, line.as_bytes()).map_err(io)?;
        }
        let stamp = FileStamp::of(&path);
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let tokens = parse_tokens(&path, &text)?;
        Ok(TokenFile {
            path,
            tokens: RwLock::new(tokens),
            loaded: std::sync::Mutex::new(stamp),
        })
    }

    /// The user a token belongs to, as the token file says now: a changed file is read
    /// again first, so revoked tokens fail at once.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.reload_if_changed();
        self.tokens.read().ok()?.get(token).cloned()
    }

    /// Reads the token file again now, whether or not it looks changed.
    pub fn reload(&self) -> Result<(), TokenError> {
        let Ok(mut seen) = self.loaded.lock() else {
            return Ok(());
        };
        *seen = None;
        drop(seen);
        match self.try_reload() {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    fn reload_if_changed(&self) {
        if let Some(Err(e)) = self.try_reload() {
            tracing::warn!(error = %e, "cannot reload the token file; the tokens loaded before stay in force");
        }
    }

    /// Reloads if the file's stamp differs from the one last seen; `None` if unchanged.
    fn try_reload(&self) -> Option<Result<(), TokenError>> {
        let stamp = FileStamp::of(&self.path);
        let mut seen = self.loaded.lock().ok()?;
        if *seen == stamp && stamp.is_some() {
            return None;
        }
        // Remember this version even if it cannot be parsed: no re-reading until it changes.
        *seen = stamp;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(source) => {
                return Some(Err(TokenError::Io {
                    path: self.path.clone(),
                    source,
                }));
            }
        };
        let fresh = match parse_tokens(&self.path, &text) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        if let Ok(mut mine) = self.tokens.write() {
            *mine = fresh;
        }
        Some(Ok(()))
    }

    /// A token of a user in `system:masters` (the first such line).
    pub fn admin_token(&self) -> Option<String> {
        let t = self.tokens.read().ok()?;
        let mut admins: Vec<&String> = t
            .iter()
            .filter(|(_, u)| u.groups.iter().any(|g| g == "system:masters"))
            .map(|(k, _)| k)
            .collect();
        admins.sort();
        admins.first().map(|s| s.to_string())
    }

    /// The token of node `node`, created and appended to the file if missing.
    pub fn ensure_node_token(&self, node: &str) -> Result<String, TokenError> {
        if node.is_empty() || node.contains(',') || node.contains('"') || node.contains('\n') {
            return Err(TokenError::InvalidNode(node.to_string()));
        }
        let user = format!("system:node:{node}");
        let mut t = self
            .tokens
            .write()
            .map_err(|_| TokenError::InvalidNode(node.to_string()))?;
        if let Some((tok, _)) = t.iter().find(|(_, u)| u.name == user) {
            return Ok(tok.clone());
        }
        let token = new_token();
        let uid = uuid::Uuid::new_v4().to_string();
        let line = format!("{token},{user},{uid},\"system:nodes\"\n");
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| TokenError::Io {
                path: self.path.clone(),
                source,
            })?;
        f.write_all(line.as_bytes())
            .map_err(|source| TokenError::Io {
                path: self.path.clone(),
                source,
            })?;
        t.insert(
            token.clone(),
            UserInfo {
                name: user,
                uid,
                groups: vec!["system:nodes".into()],
                extra: BTreeMap::new(),
            },
        );
        Ok(token)
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Writes a new private file (mode 0600).
pub(crate) fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_private(path, data)
}

/// What a request wants to do, for the authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes {
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource ("status") or "".
    pub subresource: String,
    /// Namespace, or "" for cluster scope.
    pub namespace: String,
    /// Object name, or "".
    pub name: String,
    /// For pod requests by nodes: the `spec.nodeName` of the existing pod, if known.
    pub pod_node: Option<String>,
}

impl RequestAttributes {
    fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
}

/// Decides whether a user may do something.
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok(())` to allow, `Err(reason)` to deny.
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes) -> Result<(), String>;

    /// Whether the user may create some object in the collection `attrs` names (its `name`
    /// is empty: the body that names the object is not read yet). Checked before the body
    /// is decoded; the create is then authorized with the name. By default the same as
    /// [`Authorizer::authorize`] with an empty name.
    fn authorize_collection_create(
        &self,
        user: &UserInfo,
        attrs: &RequestAttributes,
    ) -> Result<(), String> {
        self.authorize(user, attrs)
    }
}

/// The built-in policy: `system:masters` may do everything; nodes get the node rules; other
/// authenticated users may only read.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultAuthorizer;

impl Authorizer for DefaultAuthorizer {
    fn authorize_collection_create(
        &self,
        user: &UserInfo,
        a: &RequestAttributes,
    ) -> Result<(), String> {
        // A node creates objects named after itself (its Node, its Lease): the name is in
        // the body, so check with the one name it may use.
        if let Some(node) = user.node_name() {
            let mut named = a.clone();
            named.name = node.to_string();
            return self.authorize(user, &named);
        }
        self.authorize(user, a)
    }

    fn authorize(&self, user: &UserInfo, a: &RequestAttributes) -> Result<(), String> {
        if user.groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        if a.is_read() {
            return Ok(());
        }
        let Some(node) = user.node_name() else {
            return Err("only reads are allowed".into());
        };
        let own_pod = a.pod_node.as_deref() == Some(node);
        let allowed = match (
            a.group.as_str(),
            a.resource.as_str(),
            a.subresource.as_str(),
        ) {
            // A create is authorized with the name from its body (the REST layer fills
            // `name` after decoding), so a node may register itself and nothing else.
            ("", "nodes", "" | "status") => a.name == node && a.verb != "deletecollection",
            ("coordination.k8s.io", "leases", "") => {
                a.namespace == "kube-node-lease" && a.name == node
            }
            ("", "pods", "status") => own_pod && matches!(a.verb.as_str(), "update" | "patch"),
            // Tokens for its pods' service accounts: the TokenRequest handler checks that
            // the token is bound to a pod on this node (NodeRestriction).
            ("", "serviceaccounts", "token") => a.verb == "create",
            // A patch of the pod itself is checked once more on its result:
            // [`node_pod_patch_allowed`] lets only `probes.podvisor.io/` annotations change.
            ("", "pods", "") => own_pod && matches!(a.verb.as_str(), "delete" | "patch"),
            ("", "events", "") | ("events.k8s.io", "events", "") => {
                matches!(a.verb.as_str(), "create" | "update" | "patch")
            }
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(format!("node {node:?} may not {} this object", a.verb))
        }
    }
}

/// The prefix of the pod annotations a node may write on its own pods
/// (docs/design/0002-probe-results.md).
pub const NODE_POD_ANNOTATION_PREFIX: &str = "probes.podvisor.io/";

/// Whether the change of a pod from `old` to `new`, made by a node through a patch of the pod
/// itself, is allowed: only annotations under [`NODE_POD_ANNOTATION_PREFIX`] may be added,
/// changed or removed. Upstream's NodeRestriction forbids nodes any change of pod metadata;
/// this one exception carries the probe history.
pub fn node_pod_patch_allowed(
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Result<(), String> {
    fn strip(v: &serde_json::Value) -> serde_json::Value {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
            let empty = match meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                Some(a) => {
                    a.retain(|k, _| !k.starts_with(NODE_POD_ANNOTATION_PREFIX));
                    a.is_empty()
                }
                None => false,
            };
            if empty || meta.get("annotations").is_some_and(|a| a.is_null()) {
                meta.remove("annotations");
            }
        }
        v
    }
    if strip(old) == strip(new) {
        Ok(())
    } else {
        Err(format!(
            "a node may change only annotations with the prefix {NODE_POD_ANNOTATION_PREFIX:?} of its pods"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
        pod_node: Option<&str>,
    ) -> RequestAttributes {
        RequestAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            pod_node: pod_node.map(String::from),
        }
    }

    #[test]
    fn token_file_is_created_reloaded_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let tf = TokenFile::load_or_create(dir.path()).unwrap();
        let admin = tf.admin_token().unwrap();
        assert_eq!(tf.authenticate(&admin).unwrap().name, ADMIN_USER);
        let n1 = tf.ensure_node_token("n1").unwrap();
        assert_eq!(tf.ensure_node_token("n1").unwrap(), n1);
        let again = TokenFile::load_or_create(dir.path()).unwrap();
        assert_eq!(again.admin_token().unwrap(), admin);
        let u = again.authenticate(&n1).unwrap();
        assert_eq!(u.node_name(), Some("n1"));
        assert!(again.authenticate("nope").is_none());
        assert!(tf.ensure_node_token("a,b").is_err());
    }

    /// A token removed from the file stops working at the very next request, without any
    /// unknown token to trigger a reload; a file that cannot be parsed keeps the old tokens.
    #[test]
    fn revoked_tokens_fail_at_the_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let tf = TokenFile::load_or_create(dir.path()).unwrap();
        let admin = tf.admin_token().unwrap();
        let n1 = tf.ensure_node_token("n1").unwrap();
        assert!(tf.authenticate(&n1).is_some());
        let path = dir.path().join("tokens.csv");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with(&n1))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, kept).unwrap();
        assert!(tf.authenticate(&n1).is_none(), "revoked token still valid");
        assert!(tf.authenticate(&admin).is_some());
        // A broken file: the tokens in force stay (no lock-out), with a warning.
        std::fs::write(&path, "garbage-without-fields\n").unwrap();
        assert!(tf.authenticate(&admin).is_some());
        // An explicit reload (SIGHUP) reports the error.
        assert!(tf.reload().is_err());
        assert!(tf.authenticate(&admin).is_some());
    }

    #[test]
    fn node_rules() {
        let z = DefaultAuthorizer;
        let node = UserInfo {
            name: "system:node:n1".into(),
            uid: "u".into(),
            groups: vec!["system:nodes".into()],
            extra: BTreeMap::new(),
        };
        let ok = |a: RequestAttributes| z.authorize(&node, &a).is_ok();
        const COORD: &str = "coordination.k8s.io";
        let n1 = Some("n1");
        // (allowed, verb, group, resource, subresource, namespace, name, the pod's node)
        for (want, verb, group, resource, sub, ns, name, pod_node) in [
            (true, "list", "", "pods", "", "", "", None),
            (true, "update", "", "nodes", "status", "", "n1", None),
            (false, "update", "", "nodes", "status", "", "n2", None),
            (
                true,
                "update",
                COORD,
                "leases",
                "",
                "kube-node-lease",
                "n1",
                None,
            ),
            (false, "update", COORD, "leases", "", "default", "n1", None),
            (true, "patch", "", "pods", "status", "d", "p", n1),
            (false, "patch", "", "pods", "status", "d", "p", Some("n2")),
            (true, "patch", "", "pods", "", "d", "p", n1),
            (false, "patch", "", "pods", "", "d", "p", Some("n2")),
            (false, "update", "", "pods", "", "d", "p", n1),
            (true, "delete", "", "pods", "", "d", "p", n1),
            (true, "create", "", "events", "", "d", "", None),
            (false, "create", "", "pods", "", "d", "", None),
        ] {
            let a = attrs(verb, group, resource, sub, ns, name, pod_node);
            assert_eq!(ok(a), want, "{verb} {group}/{resource}/{sub} {ns}/{name}");
        }
        let admin = UserInfo {
            name: "admin".into(),
            uid: "u".into(),
            groups: vec!["system:masters".into()],
            extra: BTreeMap::new(),
        };
        assert!(
            z.authorize(&admin, &attrs("delete", "", "nodes", "", "", "x", None))
                .is_ok()
        );
    }

    #[test]
    fn node_pod_patches_may_touch_only_probe_annotations() {
        let old = serde_json::json!({
            "metadata": {"name": "p", "resourceVersion": "5",
                         "annotations": {"a": "1", "probes.podvisor.io/web": "{}"}},
            "spec": {"nodeName": "n1"}
        });
        let mut new = old.clone();
        new["metadata"]["resourceVersion"] = "6".into();
        new["metadata"]["annotations"]["probes.podvisor.io/web"] = "{\"x\":1}".into();
        new["metadata"]["annotations"]["probes.podvisor.io/db"] = "{}".into();
        assert!(node_pod_patch_allowed(&old, &new).is_ok());
        // removing every probe annotation, even the whole map
        let bare = serde_json::json!({"metadata": {"name": "p",
            "annotations": {"probes.podvisor.io/web": "{}"}}, "spec": {"nodeName": "n1"}});
        let none = serde_json::json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        assert!(node_pod_patch_allowed(&bare, &none).is_ok());
        assert!(node_pod_patch_allowed(&none, &bare).is_ok());
        // anything else is refused
        let mut other = old.clone();
        other["metadata"]["annotations"]["a"] = "2".into();
        assert!(node_pod_patch_allowed(&old, &other).is_err());
        let mut label = old.clone();
        label["metadata"]["labels"] = serde_json::json!({"x": "y"});
        assert!(node_pod_patch_allowed(&old, &label).is_err());
        let mut spec = old.clone();
        spec["spec"]["nodeName"] = "n2".into();
        assert!(node_pod_patch_allowed(&old, &spec).is_err());
        let mut lookalike = old.clone();
        lookalike["metadata"]["annotations"]["probes.podvisor.io.evil/x"] = "1".into();
        assert!(node_pod_patch_allowed(&old, &lookalike).is_err());
    }
}
