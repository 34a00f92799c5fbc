//! Where and how images are fetched: the node's registry settings (`--insecure-registry`, a
//! k3s-style `registries.yaml`) and the credentials of a pod's `imagePullSecrets`.
//!
//! `registries.yaml` as k3s reads it:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//!     rewrite:
//!       "^library/(.*)": "mirror/$1"
//! configs:
//!   "127.0.0.1:5000":
//!     auth: {username: u, password: p}     # or auth: <base64 u:p>, identity_token
//!     tls: {insecure_skip_verify: true, ca_file: /path/ca.crt}
//! ```
//!
//! A registry's endpoints are its mirrors in order (`*` mirrors every registry), then the
//! registry itself. An `http://` endpoint is spoken to in plain HTTP, like a registry named
//! by `--insecure-registry`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// The node's registry settings.
#[derive(Clone, Debug, Default)]
pub struct RegistrySettings {
    /// Registries (`host[:port]`) spoken to in plain HTTP.
    pub insecure: Vec<String>,
    /// The `registries.yaml` content.
    pub config: RegistriesFile,
}

/// `registries.yaml`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegistriesFile {
    /// Mirrors by registry name (`docker.io`, or `*` for all).
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Settings by registry host (`host[:port]`).
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

/// One registry's mirrors.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Mirror {
    /// Endpoint URLs (`https://host[:port]`, `http://host[:port]`), tried in order.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Repository rewrites: regular expression → replacement (`$1`).
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// One registry host's settings.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegistryConfig {
    /// Credentials.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// Registry credentials (as in a docker config).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthConfig {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// An identity token (sent as the password of `<token>`).
    #[serde(default)]
    pub identity_token: Option<String>,
}

/// TLS settings of a registry host.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TlsConfig {
    /// Skip certificate verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// A CA bundle (PEM) to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A user name and password for a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl AuthConfig {
    /// The credential it holds, if any.
    pub fn credential(&self) -> Option<Credential> {
        if let (Some(u), Some(p)) = (&self.username, &self.password)
            && !u.is_empty()
        {
            return Some(Credential {
                username: u.clone(),
                password: p.clone(),
            });
        }
        if let Some(a) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (u, p) = text.split_once(':')?;
            return Some(Credential {
                username: u.into(),
                password: p.into(),
            });
        }
        self.identity_token.as_ref().map(|t| Credential {
            username: "<token>".into(),
            password: t.clone(),
        })
    }
}

/// One place to fetch an image from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP.
    pub http: bool,
    /// The repository to ask for there (after rewrites).
    pub repository: String,
    /// Whether this is a mirror (not the registry itself).
    pub mirror: bool,
}

impl RegistrySettings {
    /// Reads `registries.yaml` at `path` (if given) and adds the insecure registries.
    pub fn load(path: Option<&Path>, insecure: Vec<String>) -> Result<RegistrySettings, String> {
        let config = match path {
            None => RegistriesFile::default(),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?;
                if text.trim().is_empty() {
                    RegistriesFile::default()
                } else {
                    serde_yaml::from_str(&text)
                        .map_err(|e| format!("parse {}: {e}", p.display()))?
                }
            }
        };
        for m in config.mirrors.values() {
            for pattern in m.rewrite.keys() {
                Regex::new(pattern).map_err(|e| format!("rewrite {pattern:?}: {e}"))?;
            }
        }
        Ok(RegistrySettings { insecure, config })
    }

    /// The endpoints for `repository` of `registry`, in the order they are tried.
    pub fn endpoints(&self, registry: &str, repository: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirror = self
            .config
            .mirrors
            .get(registry)
            .or_else(|| self.config.mirrors.get("*"));
        if let Some(m) = mirror {
            let repository = rewrite(&m.rewrite, repository);
            for e in &m.endpoint {
                let (http, rest) = match e.split_once("://") {
                    Some(("http", rest)) => (true, rest),
                    Some((_, rest)) => (false, rest),
                    None => (false, e.as_str()),
                };
                let host = rest.split('/').next().unwrap_or_default().to_string();
                if host.is_empty() {
                    continue;
                }
                let http = http || self.insecure.contains(&host);
                let mirror = host != registry;
                out.push(Endpoint {
                    host,
                    http,
                    repository: repository.clone(),
                    mirror,
                });
            }
        }
        if !out.iter().any(|e| e.host == registry) {
            out.push(Endpoint {
                host: registry.to_string(),
                http: self.insecure.iter().any(|i| i == registry),
                repository: repository.to_string(),
                mirror: false,
            });
        }
        out
    }

    /// The configured settings of `host`.
    pub fn config_of(&self, host: &str) -> Option<&RegistryConfig> {
        self.config.configs.get(host)
    }
}

use regex::Regex;

fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (pattern, replacement) in rules {
        if let Ok(re) = Regex::new(pattern)
            && re.is_match(repository)
        {
            return re.replace(repository, replacement.as_str()).into_owned();
        }
    }
    repository.to_string()
}

/// The registry host a docker-config key names: `https://index.docker.io/v1/` → `docker.io`,
/// `127.0.0.1:5000` → itself.
fn normalize_key(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthConfig>,
}

/// The credentials for `registry` in the data of `kubernetes.io/dockerconfigjson`
/// (`.dockerconfigjson`) and `kubernetes.io/dockercfg` (`.dockercfg`) secrets, in order.
pub fn credentials_from_secrets<'a>(
    secrets: impl IntoIterator<Item = &'a BTreeMap<String, Vec<u8>>>,
    registry: &str,
) -> Vec<Credential> {
    let mut out = Vec::new();
    for data in secrets {
        let auths: BTreeMap<String, AuthConfig> = if let Some(raw) = data.get(".dockerconfigjson") {
            match serde_json::from_slice::<DockerConfigJson>(raw) {
                Ok(c) => c.auths,
                Err(_) => continue,
            }
        } else if let Some(raw) = data.get(".dockercfg") {
            serde_json::from_slice(raw).unwrap_or_default()
        } else {
            continue;
        };
        for (key, auth) in &auths {
            if normalize_key(key) == registry
                && let Some(c) = auth.credential()
                && !out.contains(&c)
            {
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_with_rewrites_then_the_registry() {
        let yaml = r#"
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000", "https://mirror.example:443/v2"]
    rewrite:
      "^library/(.*)": "mirror/$1"
configs:
  "127.0.0.1:5000":
    auth: {username: u, password: p}
"#;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("registries.yaml");
        std::fs::write(&p, yaml).expect("write");
        let s = RegistrySettings::load(Some(&p), vec!["10.0.0.1:5000".into()]).expect("load");
        let e = s.endpoints("docker.io", "library/busybox");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].host, "127.0.0.1:5000");
        assert!(e[0].http && e[0].mirror);
        assert_eq!(e[0].repository, "mirror/busybox");
        assert_eq!(e[1].host, "mirror.example:443");
        assert!(!e[1].http);
        assert_eq!(e[2].host, "docker.io");
        assert_eq!(e[2].repository, "library/busybox");
        let own = s.endpoints("10.0.0.1:5000", "x");
        assert_eq!(own.len(), 1);
        assert!(own[0].http);
        let c = s.config_of("127.0.0.1:5000").and_then(|c| c.auth.as_ref());
        assert_eq!(c.and_then(|a| a.credential()).expect("cred").username, "u");
    }

    #[test]
    fn pull_secrets_of_both_kinds_match_by_registry_host() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let json = BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            format!(r#"{{"auths":{{"https://127.0.0.1:5000/v1/":{{"auth":"{b64}"}}}}}}"#)
                .into_bytes(),
        )]);
        let cfg = BTreeMap::from([(
            ".dockercfg".to_string(),
            br#"{"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}"#.to_vec(),
        )]);
        let local = credentials_from_secrets([&json, &cfg], "127.0.0.1:5000");
        assert_eq!(
            local,
            vec![Credential {
                username: "alice".into(),
                password: "s3cret".into()
            }]
        );
        let hub = credentials_from_secrets([&json, &cfg], "docker.io");
        assert_eq!(hub[0].username, "bob");
        assert!(credentials_from_secrets([&json], "other:1").is_empty());
    }
}
