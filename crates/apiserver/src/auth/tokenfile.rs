//! The static token file (kube's `--token-auth-file`), the first authenticator of the chain.
//!
//! The file is `tokens.csv` in the data dir, in kube's static-token format:
//! `token,user,uid,"group1,group2"`, one line per token. It is created on first start with
//! an admin token; node tokens are appended by [`TokenFile::ensure_node_token`], the tokens
//! of the nodes' Service proxies by [`TokenFile::ensure_proxy_token`].
//!
//! The file is the source of truth while the server runs: every authentication first checks
//! whether the file changed on disk (inode, size, modification time: one `stat`) and reloads
//! it if so, so a token removed from the file stops working at the next request, and one
//! added works at once. [`TokenFile::reload`] forces a reload (the binary calls it on
//! SIGHUP). A file that cannot be parsed leaves the tokens loaded before in force, with a
//! warning, until it changes again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use super::user::{
    MASTERS_GROUP, NODE_USER_PREFIX, NODES_GROUP, PROXY_UID_PREFIX, PROXY_USER, UserInfo,
};

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
            UserInfo::new(f[1].clone(), f[2].clone(), groups),
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
            .filter(|(_, u)| u.in_group(MASTERS_GROUP))
            .map(|(k, _)| k)
            .collect();
        admins.sort();
        admins.first().map(|s| s.to_string())
    }

    /// The token of node `node`, created and appended to the file if missing.
    pub fn ensure_node_token(&self, node: &str) -> Result<String, TokenError> {
        self.ensure_token(
            node,
            &format!("{NODE_USER_PREFIX}{node}"),
            None,
            &[NODES_GROUP],
        )
    }

    /// The token of node `node`'s Service proxy (user `system:kube-proxy`, whom upstream's
    /// `system:node-proxier` ClusterRoleBinding names; uid `kube-proxy/<node>`, telling the
    /// nodes' proxies apart), created and appended to the file if missing.
    pub fn ensure_proxy_token(&self, node: &str) -> Result<String, TokenError> {
        self.ensure_token(
            node,
            PROXY_USER,
            Some(&format!("{PROXY_UID_PREFIX}{node}")),
            &[],
        )
    }

    /// The token of `user` (and `uid`, when given) for node `node`, created with `groups`
    /// (and a fresh uid when none is given) and appended to the file if missing.
    fn ensure_token(
        &self,
        node: &str,
        user: &str,
        uid: Option<&str>,
        groups: &[&str],
    ) -> Result<String, TokenError> {
        if node.is_empty() || node.contains(',') || node.contains('"') || node.contains('\n') {
            return Err(TokenError::InvalidNode(node.to_string()));
        }
        let mut t = self
            .tokens
            .write()
            .map_err(|_| TokenError::InvalidNode(node.to_string()))?;
        if let Some((tok, _)) = t
            .iter()
            .find(|(_, u)| u.name == user && uid.is_none_or(|uid| u.uid == uid))
        {
            return Ok(tok.clone());
        }
        let token = new_token();
        let uid = uid.map_or_else(|| uuid::Uuid::new_v4().to_string(), String::from);
        let line = format!("{token},{user},{uid},\"{}\"\n", groups.join(","));
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
            UserInfo::new(user, uid, groups.iter().map(|g| g.to_string()).collect()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Each node's proxy has a token of its own, all of user system:kube-proxy.
        let p1 = tf.ensure_proxy_token("n1").unwrap();
        let p2 = tf.ensure_proxy_token("n2").unwrap();
        assert_ne!(p1, p2);
        assert_ne!(p1, n1);
        assert_eq!(tf.ensure_proxy_token("n1").unwrap(), p1);
        let again = TokenFile::load_or_create(dir.path()).unwrap();
        let proxy = again.authenticate(&p1).unwrap();
        assert_eq!(proxy.name, "system:kube-proxy");
        assert_eq!(proxy.uid, "kube-proxy/n1");
        assert!(proxy.groups.is_empty());
        assert_eq!(proxy.node_name(), None);
        assert_eq!(again.ensure_proxy_token("n2").unwrap(), p2);
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
}
