//! TLS material: a CA and a serving certificate, generated with rcgen into the data dir on
//! first start (`ca.crt`, `ca.key`, `apiserver.crt`, `apiserver.key`) and reused after.
//! The serving certificate is re-issued by the same CA when the configured SANs change
//! (they are recorded in `apiserver.sans`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Errors while preparing TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be used.
    #[error("bad PEM in {path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls rejected the material.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The CA and serving certificate, as PEM.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The CA certificate.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving key.
    pub key_pem: String,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "podvisor-ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, data: &str, private: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(path);
    if private {
        crate::auth::write_private_file(path, data.as_bytes()).map_err(io)
    } else {
        std::fs::write(path, data).map_err(io)
    }
}

/// The SANs of the serving certificate: 127.0.0.1, localhost, ::1 and `extra`.
pub fn sans(extra: &[String]) -> Vec<String> {
    let mut s: Vec<String> = vec!["127.0.0.1".into(), "localhost".into(), "::1".into()];
    for e in extra {
        if !s.contains(e) {
            s.push(e.clone());
        }
    }
    s
}

impl TlsMaterial {
    /// Loads the material from `dir`, generating whatever is missing.
    pub fn load_or_generate(dir: &Path, extra_sans: &[String]) -> Result<TlsMaterial, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let ca_crt = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        let crt = dir.join("apiserver.crt");
        let key = dir.join("apiserver.key");
        let sans_file = dir.join("apiserver.sans");
        let (ca_pem, ca_key_pem, regenerate_all) = if ca_crt.exists() && ca_key.exists() {
            (read(&ca_crt)?, read(&ca_key)?, false)
        } else {
            let k = KeyPair::generate()?;
            let cert = ca_params().self_signed(&k)?;
            let (c, kp) = (cert.pem(), k.serialize_pem());
            write(&ca_key, &kp, true)?;
            write(&ca_crt, &c, false)?;
            (c, kp, true)
        };
        let want = sans(extra_sans).join("\n");
        let have = std::fs::read_to_string(&sans_file).unwrap_or_default();
        let (cert_pem, key_pem) = if !regenerate_all && crt.exists() && key.exists() && have == want
        {
            (read(&crt)?, read(&key)?)
        } else {
            let ca_key_pair = KeyPair::from_pem(&ca_key_pem).map_err(|e| TlsError::Pem {
                path: ca_key.clone(),
                message: e.to_string(),
            })?;
            let issuer = Issuer::new(ca_params(), ca_key_pair);
            let mut p = CertificateParams::new(sans(extra_sans))?;
            p.distinguished_name
                .push(DnType::CommonName, "podvisor-apiserver");
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let k = KeyPair::generate()?;
            let cert = p.signed_by(&k, &issuer)?;
            let (c, kp) = (cert.pem(), k.serialize_pem());
            write(&key, &kp, true)?;
            write(&crt, &c, false)?;
            write(&sans_file, &want, false)?;
            (c, kp)
        };
        Ok(TlsMaterial {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// A rustls server configuration (HTTP/1.1 and HTTP/2 via ALPN).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::Pem {
                    path: "apiserver.crt".into(),
                    message: e.to_string(),
                })?;
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| TlsError::Pem {
                path: "apiserver.key".into(),
                message: e.to_string(),
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = TlsMaterial::load_or_generate(dir.path(), &[]).unwrap();
        let b = TlsMaterial::load_or_generate(dir.path(), &[]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.cert_pem, b.cert_pem);
        let c = TlsMaterial::load_or_generate(dir.path(), &["10.0.0.5".into()]).unwrap();
        assert_eq!(a.ca_pem, c.ca_pem);
        assert_ne!(a.cert_pem, c.cert_pem);
        c.server_config().unwrap();
    }
}
