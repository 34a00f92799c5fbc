//! Encryption at rest: upstream's `EncryptionConfiguration` (apiVersion
//! `apiserver.config.k8s.io/v1`) applied to stored values, as the kube-apiserver's
//! `--encryption-provider-config` does.
//!
//! # Rules
//!
//! - The configuration lists, per group of resources (`secrets`, `configmaps`,
//!   `deployments.apps`, `*.apps`, `*.*`), an ordered list of providers. The **first** provider
//!   encrypts every new write; **all** of them are tried on read, so a key can be rotated by
//!   adding the new one first and keeping the old one second until every object was rewritten.
//! - Providers: `aescbc` (AES-256/192/128-CBC, PKCS#7 padding, a random 16-byte IV per write),
//!   `secretbox` (XSalsa20-Poly1305 with a 32-byte key and a random 24-byte nonce per write)
//!   and `identity` (plain). A value written by `aescbc` is stored as
//!   `k8s:enc:aescbc:v1:<key name>:<IV><ciphertext>`, one written by `secretbox` as
//!   `k8s:enc:secretbox:v1:<key name>:<nonce><tag><ciphertext>` (NaCl's box: the Poly1305 tag
//!   first), byte for byte upstream's formats, so a store encrypted by one can be read by the
//!   other with the same configuration file.
//! - A stored value without the `k8s:enc:` prefix is plain (written before encryption was
//!   turned on, or by `identity`) and is read as is when `identity` is among the providers; one
//!   with a prefix no provider knows is an error that names the provider and key
//!   (upstream: "no matching prefix found").
//! - `podvisor up` and `podvisor server` create `encryption-config.yaml` (mode 0600) in the
//!   data dir with one fresh `aescbc` key for `secrets` when it is missing, and use it.
//!
//! # Where it sits
//!
//! [`EncryptedStore`] wraps the [`Store`]: it encrypts values on create/update and decrypts
//! them in everything it returns (get, list, watch events, the current value of a conflict,
//! the last value of a delete). Everything above it — storage, watch, the REST layer — sees
//! plain JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use futures::StreamExt;
use podvisor_store::{KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchEvent};
use serde::{Deserialize, Serialize};

/// The file name of the configuration in the data dir.
pub const CONFIG_FILE: &str = "encryption-config.yaml";

/// Errors of loading or using an encryption configuration.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The file could not be read or written.
    #[error("encryption config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid `EncryptionConfiguration`.
    #[error("encryption config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The file format (upstream `apiserver.config.k8s.io/v1` `EncryptionConfiguration`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    api_version: String,
    kind: String,
    resources: Vec<ResourceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<ProviderConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProviderConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aescbc: Option<KeysConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secretbox: Option<KeysConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aesgcm: Option<KeysConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeysConfig {
    keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyConfig {
    name: String,
    secret: String,
}

/// A provider that encrypts with keys, each value under the first key, read with any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cipher {
    /// AES-CBC with PKCS#7 padding: `<16-byte IV><ciphertext>`.
    AesCbc,
    /// XSalsa20-Poly1305 (NaCl's secretbox): `<24-byte nonce><16-byte tag><ciphertext>`.
    SecretBox,
}

impl Cipher {
    const ALL: [Cipher; 2] = [Cipher::AesCbc, Cipher::SecretBox];

    fn name(self) -> &'static str {
        match self {
            Cipher::AesCbc => "aescbc",
            Cipher::SecretBox => "secretbox",
        }
    }

    /// Upstream's prefix of a stored value: `k8s:enc:<provider>:v1:`.
    fn prefix(self) -> &'static str {
        match self {
            Cipher::AesCbc => "k8s:enc:aescbc:v1:",
            Cipher::SecretBox => "k8s:enc:secretbox:v1:",
        }
    }

    fn key_sizes(self) -> &'static [usize] {
        match self {
            Cipher::AesCbc => &[16, 24, 32],
            Cipher::SecretBox => &[32],
        }
    }

    fn key_sizes_text(self) -> &'static str {
        match self {
            Cipher::AesCbc => "16, 24 or 32",
            Cipher::SecretBox => "32",
        }
    }

    fn seal(self, key: &[u8], plain: &[u8]) -> Vec<u8> {
        match self {
            Cipher::AesCbc => {
                let mut iv = [0u8; 16];
                random_bytes(&mut iv);
                let mut out = iv.to_vec();
                out.extend_from_slice(&aes_cbc_encrypt(key, &iv, plain));
                out
            }
            Cipher::SecretBox => {
                use crypto_secretbox::aead::{Aead as _, KeyInit as _};
                let mut nonce = [0u8; 24];
                random_bytes(&mut nonce);
                // fails only for a value past 256 GiB; request bodies are capped far below
                let sealed = crypto_secretbox::XSalsa20Poly1305::new(key.into())
                    .encrypt(&nonce.into(), plain)
                    .unwrap_or_default();
                let mut out = nonce.to_vec();
                out.extend_from_slice(&sealed);
                out
            }
        }
    }

    fn open(self, key: &[u8], body: &[u8]) -> Option<Vec<u8>> {
        match self {
            Cipher::AesCbc => {
                let (iv, sealed) = body.split_at_checked(16)?;
                aes_cbc_decrypt(key, iv, sealed)
            }
            Cipher::SecretBox => {
                use crypto_secretbox::aead::{Aead as _, KeyInit as _};
                let (nonce, sealed) = body.split_at_checked(24)?;
                crypto_secretbox::XSalsa20Poly1305::new(key.into())
                    .decrypt(nonce.into(), sealed)
                    .ok()
            }
        }
    }
}

/// One provider, ready to use.
#[derive(Clone)]
enum Provider {
    Identity,
    Keyed(Cipher, Vec<(String, Vec<u8>)>),
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Identity => f.write_str("identity"),
            Provider::Keyed(cipher, keys) => {
                let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
                write!(f, "{}{names:?}", cipher.name())
            }
        }
    }
}

/// Which resources a rule covers: `secrets` (core), `deployments.apps`, `*.apps`, `*.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceMatch {
    group: String,
    resource: String,
}

impl ResourceMatch {
    fn parse(text: &str) -> ResourceMatch {
        match text.split_once('.') {
            Some((resource, group)) => ResourceMatch {
                group: group.to_string(),
                resource: resource.to_string(),
            },
            None => ResourceMatch {
                group: String::new(),
                resource: text.to_string(),
            },
        }
    }

    fn matches(&self, group: &str, resource: &str) -> bool {
        let group_ok = self.group == "*" || self.group == group;
        let resource_ok = self.resource == "*" || self.resource == resource;
        group_ok && resource_ok
    }
}

/// A loaded encryption configuration: per resource, the providers in order.
#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    rules: Vec<(Vec<ResourceMatch>, Vec<Provider>)>,
}

const PREFIX: &[u8] = b"k8s:enc:";

fn random_bytes(out: &mut [u8]) {
    use rand::RngCore as _;
    rand::rng().fill_bytes(out);
}

impl EncryptionConfig {
    /// Reads `dir/encryption-config.yaml`, creating it (mode 0600) with one fresh 32-byte
    /// `aescbc` key for `secrets` (then `identity`, to read values written before) if missing.
    pub fn load_or_create(dir: &Path) -> Result<EncryptionConfig, EncryptionError> {
        let path = dir.join(CONFIG_FILE);
        if !path.exists() {
            let mut key = [0u8; 32];
            random_bytes(&mut key);
            let file = ConfigFile {
                api_version: "apiserver.config.k8s.io/v1".into(),
                kind: "EncryptionConfiguration".into(),
                resources: vec![ResourceConfig {
                    resources: vec!["secrets".into()],
                    providers: vec![
                        ProviderConfig {
                            aescbc: Some(KeysConfig {
                                keys: vec![KeyConfig {
                                    name: "key1".into(),
                                    secret: base64::engine::general_purpose::STANDARD.encode(key),
                                }],
                            }),
                            ..ProviderConfig::default()
                        },
                        ProviderConfig {
                            identity: Some(serde_yaml::Value::Mapping(Default::default())),
                            ..ProviderConfig::default()
                        },
                    ],
                }],
            };
            let text = serde_yaml::to_string(&file).map_err(|e| EncryptionError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
            match crate::auth::write_private_file(&path, text.as_bytes()) {
                Ok(()) => {}
                // Another process created it meanwhile: read theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(EncryptionError::Io { path, source }),
            }
        }
        EncryptionConfig::load(&path)
    }

    /// Reads an `EncryptionConfiguration` file.
    pub fn load(path: &Path) -> Result<EncryptionConfig, EncryptionError> {
        let text = std::fs::read_to_string(path).map_err(|source| EncryptionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        EncryptionConfig::parse(&text).map_err(|message| EncryptionError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the text of an `EncryptionConfiguration`.
    pub fn parse(text: &str) -> Result<EncryptionConfig, String> {
        let file: ConfigFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if file.kind != "EncryptionConfiguration" {
            return Err(format!(
                "kind is {:?}, expected EncryptionConfiguration",
                file.kind
            ));
        }
        if !matches!(
            file.api_version.as_str(),
            "apiserver.config.k8s.io/v1" | "apiserver.k8s.io/v1"
        ) {
            return Err(format!("unknown apiVersion {:?}", file.api_version));
        }
        let mut rules = Vec::new();
        for (i, r) in file.resources.iter().enumerate() {
            if r.resources.is_empty() || r.providers.is_empty() {
                return Err(format!(
                    "resources[{i}]: resources and providers must not be empty"
                ));
            }
            let mut providers = Vec::new();
            for (j, p) in r.providers.iter().enumerate() {
                let at = format!("resources[{i}].providers[{j}]");
                let set = [
                    p.aescbc.is_some(),
                    p.identity.is_some(),
                    p.secretbox.is_some(),
                    p.aesgcm.is_some(),
                    p.kms.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if set != 1 {
                    return Err(format!("{at}: exactly one provider type must be set"));
                }
                if p.identity.is_some() {
                    providers.push(Provider::Identity);
                } else if let Some((cipher, k)) = p
                    .aescbc
                    .as_ref()
                    .map(|k| (Cipher::AesCbc, k))
                    .or(p.secretbox.as_ref().map(|k| (Cipher::SecretBox, k)))
                {
                    let at = format!("{at}.{}", cipher.name());
                    if k.keys.is_empty() {
                        return Err(format!("{at}: at least one key is required"));
                    }
                    let mut keys = Vec::new();
                    for key in &k.keys {
                        let secret = base64::engine::general_purpose::STANDARD
                            .decode(key.secret.trim())
                            .map_err(|e| {
                                format!("{at} key {:?}: secret is not base64: {e}", key.name)
                            })?;
                        if !cipher.key_sizes().contains(&secret.len()) {
                            return Err(format!(
                                "{at} key {:?}: the secret must be {} bytes, got {}",
                                key.name,
                                cipher.key_sizes_text(),
                                secret.len()
                            ));
                        }
                        if key.name.is_empty() || key.name.contains(':') {
                            return Err(format!("{at}: invalid key name {:?}", key.name));
                        }
                        keys.push((key.name.clone(), secret));
                    }
                    providers.push(Provider::Keyed(cipher, keys));
                } else {
                    return Err(format!(
                        "{at}: only the aescbc, secretbox and identity providers are supported"
                    ));
                }
            }
            let matches = r
                .resources
                .iter()
                .map(|s| ResourceMatch::parse(s))
                .collect();
            rules.push((matches, providers));
        }
        Ok(EncryptionConfig { rules })
    }

    /// The providers for a storage key (`/registry/<group or core>/<plural>/…`), or `None`
    /// when no rule covers it (values are stored plain).
    fn providers_for(&self, key: &str) -> Option<&[Provider]> {
        let mut parts = key.strip_prefix("/registry/")?.splitn(3, '/');
        let group = parts.next()?;
        let group = if group == "core" { "" } else { group };
        let resource = parts.next()?;
        self.rules
            .iter()
            .find(|(m, _)| m.iter().any(|m| m.matches(group, resource)))
            .map(|(_, p)| p.as_slice())
    }

    /// Whether any rule covers `key`.
    pub fn covers(&self, key: &str) -> bool {
        self.providers_for(key).is_some()
    }

    /// The value to store for `key`: encrypted by the first provider of its rule.
    pub fn encrypt(&self, key: &str, plain: Vec<u8>) -> Vec<u8> {
        match self.providers_for(key).and_then(|p| p.first()) {
            Some(Provider::Keyed(cipher, keys)) => {
                let (name, secret) = &keys[0];
                let sealed = cipher.seal(secret, &plain);
                let prefix = cipher.prefix();
                let mut out = Vec::with_capacity(prefix.len() + name.len() + 1 + sealed.len());
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                out.extend_from_slice(&sealed);
                out
            }
            Some(Provider::Identity) | None => plain,
        }
    }

    /// The plain value of a stored value of `key`.
    pub fn decrypt(&self, key: &str, stored: Vec<u8>) -> Result<Vec<u8>, String> {
        let Some(providers) = self.providers_for(key) else {
            if stored.starts_with(PREFIX) {
                return Err(format!(
                    "{key} is encrypted but no encryption provider covers it"
                ));
            }
            return Ok(stored);
        };
        if !stored.starts_with(PREFIX) {
            if providers.iter().any(|p| matches!(p, Provider::Identity)) {
                return Ok(stored);
            }
            return Err(format!(
                "{key}: no matching prefix found (the value is not encrypted and identity is not a provider)"
            ));
        }
        for cipher in Cipher::ALL {
            let Some(rest) = stored.strip_prefix(cipher.prefix().as_bytes()) else {
                continue;
            };
            let Some(colon) = rest.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = String::from_utf8_lossy(&rest[..colon]);
            let body = &rest[colon + 1..];
            let secret = providers.iter().find_map(|p| match p {
                Provider::Keyed(c, keys) if *c == cipher => {
                    keys.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
                }
                _ => None,
            });
            let Some(secret) = secret else {
                return Err(format!(
                    "{key}: no matching prefix found ({} key {name:?} is not configured)",
                    cipher.name()
                ));
            };
            return cipher.open(secret, body).ok_or_else(|| {
                format!(
                    "{key}: cannot decrypt with {} key {name:?} (wrong key or damaged value)",
                    cipher.name()
                )
            });
        }
        let shown: String = String::from_utf8_lossy(&stored[..stored.len().min(40)])
            .chars()
            .take_while(|c| !c.is_control())
            .collect();
        Err(format!("{key}: no matching prefix found for {shown:?}"))
    }
}

fn aes_cbc_encrypt(key: &[u8], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
        24 => cbc::Encryptor::<aes::Aes192>::new(key.into(), iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
        _ => cbc::Encryptor::<aes::Aes256>::new(key.into(), iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
    }
}

fn aes_cbc_decrypt(key: &[u8], iv: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new(key.into(), iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(sealed)
            .ok(),
        24 => cbc::Decryptor::<aes::Aes192>::new(key.into(), iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(sealed)
            .ok(),
        _ => cbc::Decryptor::<aes::Aes256>::new(key.into(), iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(sealed)
            .ok(),
    }
}

/// A [`Store`] that encrypts the values of the keys its configuration covers.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    config: Arc<EncryptionConfig>,
}

impl EncryptedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, config: EncryptionConfig) -> EncryptedStore {
        EncryptedStore {
            inner,
            config: Arc::new(config),
        }
    }
}

fn open_kv(config: &EncryptionConfig, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
    if config.covers(&kv.key) || kv.value.starts_with(PREFIX) {
        kv.value = config
            .decrypt(&kv.key, std::mem::take(&mut kv.value))
            .map_err(|message| StoreError::Unavailable {
                message: format!("cannot decrypt a stored value: {message}"),
            })?;
    }
    Ok(kv)
}

fn open_err(config: &EncryptionConfig, e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict {
            key,
            expected,
            current,
        } => {
            let current = match current {
                Some(kv) => match open_kv(config, *kv) {
                    Ok(kv) => Some(Box::new(kv)),
                    Err(e) => return e,
                },
                None => None,
            };
            StoreError::Conflict {
                key,
                expected,
                current,
            }
        }
        other => other,
    }
}

#[async_trait::async_trait]
impl Store for EncryptedStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        match self.inner.get(key).await? {
            Some(kv) => open_kv(&self.config, kv).map(Some),
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let mut result = self.inner.list(prefix, opts).await?;
        result.items = std::mem::take(&mut result.items)
            .into_iter()
            .map(|kv| open_kv(&self.config, kv))
            .collect::<Result<_, _>>()?;
        Ok(result)
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let sealed = self.config.encrypt(key, value.clone());
        let mut kv = self.inner.create(key, sealed).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let sealed = self.config.encrypt(key, value.clone());
        match self.inner.update(key, sealed, expected).await {
            Ok(mut kv) => {
                kv.value = value;
                Ok(kv)
            }
            Err(e) => Err(open_err(&self.config, e)),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        match self.inner.delete(key, expected).await {
            Ok((kv, rev)) => Ok((open_kv(&self.config, kv)?, rev)),
            Err(e) => Err(open_err(&self.config, e)),
        }
    }

    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<podvisor_store::WatchStream, StoreError> {
        let stream = self.inner.watch(prefix, from).await?;
        let config = self.config.clone();
        Ok(stream
            .map(move |item| {
                let open = |kv| open_kv(&config, kv);
                match item? {
                    WatchEvent::Put { kv, prev } => Ok(WatchEvent::Put {
                        kv: open(kv)?,
                        prev: prev.map(open).transpose()?,
                    }),
                    WatchEvent::Delete { prev, revision } => Ok(WatchEvent::Delete {
                        prev: open(prev)?,
                        revision,
                    }),
                    p @ WatchEvent::Progress(_) => Ok(p),
                }
            })
            .boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.compacted_revision().await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_KEY: &str = "/registry/core/secrets/default/s";

    fn config() -> EncryptionConfig {
        EncryptionConfig::parse(
            "apiVersion: apiserver.config.k8s.io/v1\n\
             kind: EncryptionConfiguration\n\
             resources:\n\
             - resources: [secrets]\n  \
               providers:\n  \
               - aescbc:\n      keys:\n      - name: key1\n        secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n  \
               - identity: {}\n",
        )
        .expect("config")
    }

    /// The stored value has upstream's layout and decrypts back; other kinds stay plain.
    #[test]
    fn aescbc_values_have_upstreams_prefix_and_round_trip() {
        let c = config();
        let plain = br#"{"apiVersion":"v1","kind":"Secret","data":{"k":"dmFsdWU="}}"#.to_vec();
        let sealed = c.encrypt(SECRET_KEY, plain.clone());
        assert!(sealed.starts_with(b"k8s:enc:aescbc:v1:key1:"));
        let body = &sealed[b"k8s:enc:aescbc:v1:key1:".len()..];
        assert_eq!((body.len() - 16) % 16, 0, "IV + whole blocks");
        assert!(
            !sealed.windows(5).any(|w| w == b"dmFsd"),
            "no plaintext left"
        );
        assert_eq!(
            c.decrypt(SECRET_KEY, sealed.clone()).expect("decrypt"),
            plain
        );
        // A fresh IV per write.
        assert_ne!(c.encrypt(SECRET_KEY, plain.clone()), sealed);
        let pod = "/registry/core/pods/default/p";
        assert_eq!(c.encrypt(pod, plain.clone()), plain);
        // Values stored before encryption was turned on stay readable (identity).
        assert_eq!(c.decrypt(SECRET_KEY, plain.clone()).expect("plain"), plain);
    }

    /// A value in upstream's aescbc layout (AES-256-CBC, PKCS#7, the IV before the
    /// ciphertext), sealed by `openssl enc -aes-256-cbc` (not by this module), decrypts here.
    #[test]
    fn reads_a_value_in_upstreams_aescbc_layout() {
        let c = config();
        let iv = [7u8; 16];
        // printf '{}' | openssl enc -aes-256-cbc -K <hex of 0123456789abcdef0123456789abcdef>
        //   -iv 07070707070707070707070707070707 | xxd -p
        let sealed: [u8; 16] = [
            0x82, 0xde, 0x3f, 0xe0, 0x61, 0x02, 0xfb, 0x7b, 0xdb, 0xda, 0x27, 0x14, 0xd1, 0xbb,
            0xb8, 0x61,
        ];
        let mut stored = b"k8s:enc:aescbc:v1:key1:".to_vec();
        stored.extend_from_slice(&iv);
        stored.extend_from_slice(&sealed);
        assert_eq!(c.decrypt(SECRET_KEY, stored).expect("decrypt"), b"{}");
    }

    /// Unknown key names and damaged values are errors, never garbage or a panic.
    #[test]
    fn unknown_keys_and_damaged_values_are_errors() {
        let c = config();
        let mut other = b"k8s:enc:aescbc:v1:key9:".to_vec();
        other.extend_from_slice(&[0u8; 32]);
        let e = c.decrypt(SECRET_KEY, other).unwrap_err();
        assert!(e.contains("key9"), "{e}");
        let mut sealed = c.encrypt(SECRET_KEY, b"{\"a\":1}".to_vec());
        let n = sealed.len();
        sealed.truncate(n - 3);
        assert!(c.decrypt(SECRET_KEY, sealed).is_err());
        assert!(
            c.decrypt(SECRET_KEY, b"k8s:enc:aescbc:v1:key1:".to_vec())
                .is_err()
        );
        assert!(
            c.decrypt(SECRET_KEY, b"k8s:enc:kms:v2:x:zzz".to_vec())
                .is_err()
        );
    }

    /// An `EncryptionConfiguration` for secrets with `providers` (YAML list items).
    fn config_with(providers: &[&str]) -> Result<EncryptionConfig, String> {
        let mut text = String::from(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
             resources:\n- resources: [secrets]\n  providers:\n",
        );
        for p in providers {
            text.push_str(&format!("  - {p}\n"));
        }
        EncryptionConfig::parse(&text)
    }

    fn secretbox(name: &str, secret: &[u8]) -> String {
        let secret = base64::engine::general_purpose::STANDARD.encode(secret);
        format!("secretbox: {{keys: [{{name: {name}, secret: {secret}}}]}}")
    }

    fn aescbc(name: &str, secret: &[u8]) -> String {
        let secret = base64::engine::general_purpose::STANDARD.encode(secret);
        format!("aescbc: {{keys: [{{name: {name}, secret: {secret}}}]}}")
    }

    /// secretbox: upstream's prefix, then a 24-byte nonce and NaCl's box (16-byte Poly1305
    /// tag, then as many bytes as the plain value), a fresh nonce per write.
    #[test]
    fn secretbox_values_have_upstreams_layout_and_round_trip() {
        let c = config_with(&[&secretbox("box1", &[7u8; 32])]).unwrap();
        let plain = br#"{"apiVersion":"v1","kind":"Secret","data":{"k":"dmFsdWU="}}"#.to_vec();
        let a = c.encrypt(SECRET_KEY, plain.clone());
        let b = c.encrypt(SECRET_KEY, plain.clone());
        let prefix = b"k8s:enc:secretbox:v1:box1:";
        assert!(a.starts_with(prefix));
        assert_eq!(a.len(), prefix.len() + 24 + 16 + plain.len());
        assert_ne!(
            a[prefix.len()..][..24],
            b[prefix.len()..][..24],
            "fresh nonce"
        );
        assert_eq!(c.decrypt(SECRET_KEY, a.clone()).unwrap(), plain);
        assert_eq!(c.decrypt(SECRET_KEY, b).unwrap(), plain);
        // The box is NaCl's: the tag authenticates every byte.
        let mut damaged = a;
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let e = c.decrypt(SECRET_KEY, damaged).unwrap_err();
        assert!(
            e.contains("cannot decrypt with secretbox key \"box1\""),
            "{e}"
        );
    }

    /// Rotation between providers as upstream documents it: the new provider first and the
    /// old one second reads both and writes the new; once the old one is dropped its values
    /// are refused with an error naming it.
    #[test]
    fn keys_rotate_between_aescbc_and_secretbox() {
        let old = config_with(&[&aescbc("key1", &[1u8; 32])]).unwrap();
        let both =
            config_with(&[&secretbox("key2", &[2u8; 32]), &aescbc("key1", &[1u8; 32])]).unwrap();
        let new = config_with(&[&secretbox("key2", &[2u8; 32])]).unwrap();
        let v1 = old.encrypt(SECRET_KEY, b"{\"v\":1}".to_vec());
        assert_eq!(both.decrypt(SECRET_KEY, v1.clone()).unwrap(), b"{\"v\":1}");
        let v2 = both.encrypt(SECRET_KEY, b"{\"v\":2}".to_vec());
        assert!(v2.starts_with(b"k8s:enc:secretbox:v1:key2:"));
        assert_eq!(new.decrypt(SECRET_KEY, v2.clone()).unwrap(), b"{\"v\":2}");
        let e = new.decrypt(SECRET_KEY, v1).unwrap_err();
        assert!(e.contains("aescbc key \"key1\" is not configured"), "{e}");
        let e = old.decrypt(SECRET_KEY, v2).unwrap_err();
        assert!(
            e.contains("secretbox key \"key2\" is not configured"),
            "{e}"
        );
        // and back: aescbc first again reads what secretbox wrote
        let back =
            config_with(&[&aescbc("key3", &[3u8; 16]), &secretbox("key2", &[2u8; 32])]).unwrap();
        let v3 = new.encrypt(SECRET_KEY, b"{\"v\":3}".to_vec());
        assert_eq!(back.decrypt(SECRET_KEY, v3).unwrap(), b"{\"v\":3}");
        assert!(
            back.encrypt(SECRET_KEY, b"{}".to_vec())
                .starts_with(b"k8s:enc:aescbc:v1:key3:")
        );
    }

    /// A key of the right name with the wrong secret is a clear error, never garbage.
    #[test]
    fn a_wrong_secretbox_key_is_a_clear_error() {
        let right = config_with(&[&secretbox("key1", &[5u8; 32])]).unwrap();
        let wrong = config_with(&[&secretbox("key1", &[6u8; 32])]).unwrap();
        let sealed = right.encrypt(SECRET_KEY, b"{\"a\":1}".to_vec());
        let e = wrong.decrypt(SECRET_KEY, sealed).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{SECRET_KEY}: cannot decrypt with secretbox key \"key1\" (wrong key or damaged value)"
            )
        );
        let short = b"k8s:enc:secretbox:v1:key1:0123".to_vec();
        assert!(wrong.decrypt(SECRET_KEY, short).is_err());
        let e = config_with(&[&secretbox("key1", &[5u8; 16])]).unwrap_err();
        assert!(
            e.contains("secretbox key \"key1\": the secret must be 32 bytes, got 16"),
            "{e}"
        );
    }

    #[test]
    fn resource_matching_follows_upstream_names() {
        let m = ResourceMatch::parse("secrets");
        assert!(m.matches("", "secrets") && !m.matches("apps", "secrets"));
        let m = ResourceMatch::parse("deployments.apps");
        assert!(m.matches("apps", "deployments") && !m.matches("", "deployments"));
        let m = ResourceMatch::parse("*.apps");
        assert!(m.matches("apps", "replicasets") && !m.matches("", "pods"));
        let m = ResourceMatch::parse("*.*");
        assert!(m.matches("", "pods") && m.matches("apps", "deployments"));
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let e = EncryptionConfig::parse(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
             resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      \
             - name: k\n        secret: c2hvcnQ=\n",
        )
        .unwrap_err();
        assert!(e.contains("16, 24 or 32 bytes"), "{e}");
        let e = EncryptionConfig::parse("apiVersion: v1\nkind: Pod\nresources: []\n").unwrap_err();
        assert!(e.contains("EncryptionConfiguration"), "{e}");
    }

    /// Through the store wrapper: the backend holds ciphertext, every read path sees JSON.
    #[tokio::test]
    async fn the_store_holds_ciphertext_and_every_read_sees_plain_values() {
        let backend: Arc<dyn Store> = Arc::new(podvisor_store::MemoryStore::new());
        let store = EncryptedStore::new(backend.clone(), config());
        let mut watch = store
            .watch("/registry/core/secrets/", 0)
            .await
            .expect("watch");
        let kv = store
            .create(SECRET_KEY, b"{\"v\":1}".to_vec())
            .await
            .expect("create");
        assert_eq!(kv.value, b"{\"v\":1}");
        let raw = backend.get(SECRET_KEY).await.unwrap().unwrap();
        assert!(raw.value.starts_with(b"k8s:enc:aescbc:v1:key1:"));
        assert_eq!(
            store.get(SECRET_KEY).await.unwrap().unwrap().value,
            b"{\"v\":1}"
        );
        let list = store
            .list("/registry/core/secrets/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(list.items[0].value, b"{\"v\":1}");
        let e = store
            .update(SECRET_KEY, b"{\"v\":3}".to_vec(), kv.mod_revision + 100)
            .await
            .unwrap_err();
        let StoreError::Conflict {
            current: Some(cur), ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(cur.value, b"{\"v\":1}");
        store
            .update(SECRET_KEY, b"{\"v\":2}".to_vec(), kv.mod_revision)
            .await
            .expect("update");
        let (prev, _) = store.delete(SECRET_KEY, None).await.expect("delete");
        assert_eq!(prev.value, b"{\"v\":2}");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match watch.next().await.expect("event").expect("ok") {
                WatchEvent::Put { kv, prev } => {
                    seen.push(kv.value);
                    if let Some(p) = prev {
                        assert_eq!(p.value, b"{\"v\":1}");
                    }
                }
                WatchEvent::Delete { prev, .. } => seen.push(prev.value),
                WatchEvent::Progress(_) => {}
            }
        }
        assert_eq!(
            seen,
            vec![
                b"{\"v\":1}".to_vec(),
                b"{\"v\":2}".to_vec(),
                b"{\"v\":2}".to_vec()
            ]
        );
    }

    #[test]
    fn a_created_config_is_private_and_encrypts_secrets() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let c = EncryptionConfig::load_or_create(dir.path()).expect("create");
        let mode = std::fs::metadata(dir.path().join(CONFIG_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            c.encrypt(SECRET_KEY, b"{}".to_vec())
                .starts_with(b"k8s:enc:aescbc:v1:key1:")
        );
        // Loading again keeps the same key.
        let again = EncryptionConfig::load_or_create(dir.path()).expect("load");
        let sealed = c.encrypt(SECRET_KEY, b"{}".to_vec());
        assert_eq!(again.decrypt(SECRET_KEY, sealed).unwrap(), b"{}");
    }
}
