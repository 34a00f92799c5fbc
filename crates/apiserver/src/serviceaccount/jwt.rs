//! Service-account JWTs: the signing key in the data dir and ES256 (ECDSA P-256, SHA-256)
//! signing and verification with `ring` (already the TLS stack's crypto provider).
//!
//! The key is `sa.key` in the data dir (PKCS#8, PEM `PRIVATE KEY`), made on first start and
//! kept with mode 0600; every server of a cluster must share it (as upstream's
//! `--service-account-signing-key-file`). A token's header names the key with `kid`, upstream's
//! key id: the base64url SHA-256 of the DER `SubjectPublicKeyInfo`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

/// The file name of the signing key in the data dir.
pub const KEY_FILE: &str = "sa.key";

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` (the 65-byte point follows).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Most bytes of a token the verifier looks at (upstream tokens are about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Errors of the signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("service-account key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no usable P-256 key.
    #[error("service-account key {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The service-account signing key.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: Vec<u8>,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The `kubernetes.io` claim's references: `{"name": .., "uid": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// The private `kubernetes.io` claim of a bound token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    /// The service account's namespace.
    pub namespace: String,
    /// The node the bound pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
    /// The pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    /// A Secret the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    /// The service account.
    pub serviceaccount: Ref,
    /// For tokens whose expiry was extended: when the requested lifetime ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The claims of a service-account token (upstream's `privateClaims` + registered claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Issuer.
    pub iss: String,
    /// The token's id (`authentication.kubernetes.io/credential-id` is `JTI=<jti>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// The bound objects.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
    /// Not before.
    pub nbf: i64,
    /// `system:serviceaccount:<ns>:<name>`.
    pub sub: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    kid: String,
}

/// Why a token does not verify (the authenticator logs it and answers 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a JWT, or one this key did not sign.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

impl SigningKey {
    /// Loads `dir/sa.key`, generating a new key there if it does not exist.
    pub fn load_or_generate(dir: &Path) -> Result<SigningKey, KeyError> {
        let path = dir.join(KEY_FILE);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let rng = SystemRandom::new();
        if !path.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Invalid {
                    path: path.clone(),
                    message: "cannot generate a P-256 key".into(),
                })?;
            let pem = to_pem("PRIVATE KEY", doc.as_ref());
            crate::auth::write_private_file(&path, pem.as_bytes()).map_err(io)?;
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let der = from_pem("PRIVATE KEY", &text).ok_or_else(|| KeyError::Invalid {
            path: path.clone(),
            message: "no PEM PRIVATE KEY block".into(),
        })?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng).map_err(
            |e| KeyError::Invalid {
                path: path.clone(),
                message: format!("not a PKCS#8 P-256 key: {e}"),
            },
        )?;
        let public = pair.public_key().as_ref().to_vec();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&public);
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(SigningKey {
            pair,
            public,
            kid,
            rng,
        })
    }

    /// The key id (`kid`) of tokens this key signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` into a compact JWS (`header.payload.signature`).
    pub fn sign(&self, claims: &Claims) -> Result<String, VerifyError> {
        let header = Header {
            alg: "ES256".into(),
            kid: self.kid.clone(),
        };
        let enc = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let h = serde_json::to_vec(&header).map_err(|_| VerifyError::Invalid("header"))?;
        let c = serde_json::to_vec(claims).map_err(|_| VerifyError::Invalid("claims"))?;
        let input = format!("{}.{}", enc(&h), enc(&c));
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| VerifyError::Invalid("signing failed"))?;
        Ok(format!("{input}.{}", enc(sig.as_ref())))
    }

    /// Verifies the signature of `token` and returns its claims (times and audiences are
    /// checked by the caller).
    pub fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Invalid("too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Invalid("not a JWT"));
        };
        let dec = |v: &str| {
            URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|_| VerifyError::Invalid("bad base64url"))
        };
        let header: Header =
            serde_json::from_slice(&dec(h)?).map_err(|_| VerifyError::Invalid("bad header"))?;
        if header.alg != "ES256" || header.kid != self.kid {
            return Err(VerifyError::Invalid("not signed by this issuer's key"));
        }
        let sig = dec(s)?;
        let input_len = h.len() + 1 + c.len();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(&token.as_bytes()[..input_len], &sig)
            .map_err(|_| VerifyError::Invalid("bad signature"))?;
        serde_json::from_slice(&dec(c)?).map_err(|_| VerifyError::Invalid("bad claims"))
    }
}

/// Whether `token` has the shape of a JWT (three base64url parts), so that other
/// authenticators' tokens are not handed to this one.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn from_pem(label: &str, text: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
            exp: 2000,
            iat: 1000,
            iss: "https://kubernetes.default.svc.cluster.local".into(),
            jti: "j".into(),
            kubernetes: KubernetesClaim {
                namespace: "default".into(),
                node: None,
                pod: Some(Ref {
                    name: "p".into(),
                    uid: "pu".into(),
                }),
                secret: None,
                serviceaccount: Ref {
                    name: "default".into(),
                    uid: "su".into(),
                },
                warnafter: None,
            },
            nbf: 1000,
            sub: "system:serviceaccount:default:default".into(),
        }
    }

    #[test]
    fn tokens_round_trip_and_the_key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_generate(dir.path()).unwrap();
        let token = key.sign(&claims()).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(key.verify(&token).unwrap(), claims());
        let again = SigningKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(again.verify(&token).unwrap(), claims());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn tampered_or_foreign_tokens_fail() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_generate(dir.path()).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = SigningKey::load_or_generate(other_dir.path()).unwrap();
        let token = key.sign(&claims()).unwrap();
        assert!(other.verify(&token).is_err());
        // A changed payload with the old signature.
        let mut c = claims();
        c.sub = "system:serviceaccount:kube-system:admin".into();
        let forged = key.sign(&c).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let fparts: Vec<&str> = forged.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], fparts[1], parts[2]);
        assert!(key.verify(&spliced).is_err());
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "eyJ.eyJ.x",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(key.verify(bad).is_err(), "{bad:.20}");
        }
        // `alg: none` is refused.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"none\",\"kid\":\"{}\"}}", key.kid())),
            parts[1]
        );
        assert!(key.verify(&none).is_err());
    }
}
