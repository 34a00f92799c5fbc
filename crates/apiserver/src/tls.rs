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

/// One DER TLV at the start of `input`: (tag, content, bytes taken by the whole TLV).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], usize)> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let content = input.get(header..header.checked_add(len)?)?;
    Some((tag, content, header + len))
}

/// The DER SubjectPublicKeyInfo of an X.509 certificate (DER).
fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = der_tlv(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der_tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, validity, subject.
    if rest.first() == Some(&0xa0) {
        rest = &rest[der_tlv(rest)?.2..];
    }
    for _ in 0..5 {
        rest = &rest[der_tlv(rest)?.2..];
    }
    let (tag, _, n) = der_tlv(rest)?;
    (tag == 0x30).then(|| &rest[..n])
}

/// kubeadm's CA pin of a certificate (DER): `sha256:` and the hex SHA-256 of its
/// SubjectPublicKeyInfo, as `--discovery-token-ca-cert-hash` takes it. `None` if the bytes
/// are not a certificate.
pub fn ca_cert_hash(cert_der: &[u8]) -> Option<String> {
    let spki = subject_public_key_info(cert_der)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("sha256:{hex}"))
}

/// [`ca_cert_hash`] of the first certificate of a PEM text.
pub fn ca_cert_hash_pem(pem: &str) -> Option<String> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    ca_cert_hash(&der)
}

/// `sha256:<hex>` of a certificate's DER: how a node agent pins its serving certificate
/// (`podvisor_api::ANNOTATION_SERVING_CERT_HASH`).
pub fn cert_hash(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A TLS client configuration (HTTP/1.1) that trusts one certificate: the server must
/// present the certificate whose [`cert_hash`] is `pin`, valid for the name dialed, and
/// prove it holds its key. With `pin` None any certificate is accepted for that one
/// handshake, to be checked by the caller afterwards before anything is sent (fetching a
/// chain to compare with a CA pin).
pub fn pinned_client_config(pin: Option<&str>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        pin: pin.map(str::to_string),
        provider: provider.clone(),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[derive(Debug)]
struct Pinned {
    pin: Option<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Some(pin) = &self.pin {
            if cert_hash(end_entity) != *pin {
                return Err(rustls::Error::General(format!(
                    "the certificate presented is not the one the node published ({pin})"
                )));
            }
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A serving certificate (PEM) and its key for `extra_sans` (plus the loopback names),
/// signed by the CA whose key is `ca_key_pem` (read from `ca_key`).
fn sign_serving(
    ca_key_pem: &str,
    ca_key: &Path,
    extra_sans: &[String],
) -> Result<(String, String), TlsError> {
    let ca_key_pair = KeyPair::from_pem(ca_key_pem).map_err(|e| TlsError::Pem {
        path: ca_key.to_path_buf(),
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
    Ok((cert.pem(), k.serialize_pem()))
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
            let (c, kp) = sign_serving(&ca_key_pem, &ca_key, extra_sans)?;
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

    /// The same CA with a serving certificate for `extra_sans` as well, made now and kept in
    /// memory (for a listener on an address known only after start).
    pub fn with_more_sans(
        &self,
        dir: &Path,
        extra_sans: &[String],
    ) -> Result<TlsMaterial, TlsError> {
        let ca_key = dir.join("ca.key");
        let (cert_pem, key_pem) = sign_serving(&read(&ca_key)?, &ca_key, extra_sans)?;
        Ok(TlsMaterial {
            ca_pem: self.ca_pem.clone(),
            cert_pem,
            key_pem,
        })
    }

    /// A rustls server configuration (HTTP/1.1 and HTTP/2 via ALPN).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        // The chain ends with the CA, so a client can pin it (`--ca-cert-hash`) before it
        // trusts the server with a token.
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .chain(CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()))
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

    /// The pin is kubeadm's: SHA-256 of the CA's SubjectPublicKeyInfo, checked against
    /// `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`.
    #[test]
    fn ca_cert_hash_is_the_sha256_of_the_subject_public_key_info() {
        let dir = tempfile::tempdir().unwrap();
        let m = TlsMaterial::load_or_generate(dir.path(), &[]).unwrap();
        let pin = ca_cert_hash_pem(&m.ca_pem).expect("pin");
        let openssl = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
                dir.path().join("ca.crt").display()
            ))
            .output()
            .expect("openssl");
        let want = String::from_utf8_lossy(&openssl.stdout);
        let want = want.split_whitespace().next().unwrap_or_default();
        assert_eq!(want.len(), 64, "openssl gave {want:?}");
        assert_eq!(pin, format!("sha256:{want}"));
        assert_ne!(ca_cert_hash_pem(&m.cert_pem), Some(pin));
        assert_eq!(ca_cert_hash(b"\x30\x03\x02\x01"), None);
        assert_eq!(ca_cert_hash(&[]), None);
    }
}
