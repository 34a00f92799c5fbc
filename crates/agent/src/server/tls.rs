//! The log and exec server's serving certificate, as the kubelet's self-signed one
//! (`<state dir>/pki/kubelet.crt`, `kubelet.key`, made on first start and again when the
//! names change): its SANs are the node's IP and hostname (and its name), the key never
//! leaves the node, and the agent publishes the certificate's SHA-256 on its own Node
//! ([`podvisor_api::ANNOTATION_SERVING_CERT_HASH`]). The API server dials the node's
//! address and accepts only that certificate, valid for that address, before it sends the
//! node token (upstream's `--kubelet-certificate-authority`, with the node's own
//! certificate as the authority).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::AgentError;

/// The agent's serving certificate and key (PEM).
#[derive(Clone, Debug)]
pub struct ServingCert {
    cert_pem: String,
    key_pem: String,
}

fn io(operation: &'static str, path: &Path, e: impl std::fmt::Display) -> AgentError {
    AgentError::Io {
        operation,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// `sha256:<hex>` of a certificate's DER: the pin the API server checks.
pub fn cert_hash(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl ServingCert {
    /// Loads `<dir>/kubelet.crt` and `kubelet.key`, or makes them (self-signed, SANs
    /// `names`, named `<first name>@<now in seconds>` as the kubelet names its own) when
    /// missing or made for other names. The key is written 0600.
    pub fn load_or_generate(
        dir: &Path,
        names: &[String],
        now: std::time::SystemTime,
    ) -> Result<ServingCert, AgentError> {
        let (crt, key, sans) = (
            dir.join("kubelet.crt"),
            dir.join("kubelet.key"),
            dir.join("kubelet.sans"),
        );
        let want = names.join("\n");
        if std::fs::read_to_string(&sans).ok().as_deref() == Some(want.as_str())
            && let (Ok(cert_pem), Ok(key_pem)) =
                (std::fs::read_to_string(&crt), std::fs::read_to_string(&key))
        {
            return Ok(ServingCert { cert_pem, key_pem });
        }
        std::fs::create_dir_all(dir).map_err(|e| io("create the pki directory", dir, e))?;
        let gen_err = |e: rcgen::Error| io("make the serving certificate", &crt, e);
        let mut p = CertificateParams::new(names.to_vec()).map_err(gen_err)?;
        let host = names.first().cloned().unwrap_or_default();
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        p.distinguished_name
            .push(DnType::CommonName, format!("{host}@{now}"));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let k = KeyPair::generate().map_err(gen_err)?;
        let cert = p.self_signed(&k).map_err(gen_err)?;
        let out = ServingCert {
            cert_pem: cert.pem(),
            key_pem: k.serialize_pem(),
        };
        write_private(&key, &out.key_pem)?;
        std::fs::write(&crt, &out.cert_pem).map_err(|e| io("write", &crt, e))?;
        std::fs::write(&sans, &want).map_err(|e| io("write", &sans, e))?;
        Ok(out)
    }

    fn der(&self) -> Result<CertificateDer<'static>, AgentError> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| io("read the serving certificate", Path::new("kubelet.crt"), e))
    }

    /// The certificate's pin ([`cert_hash`]).
    pub fn hash(&self) -> Result<String, AgentError> {
        Ok(cert_hash(&self.der()?))
    }

    /// The rustls configuration serving it (HTTP/1.1: exec upgrades to WebSocket).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, AgentError> {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| io("read the serving key", Path::new("kubelet.key"), e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |e: rustls::Error| io("configure TLS", Path::new("kubelet.crt"), e);
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_single_cert(vec![self.der()?], key)
            .map_err(tls)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

fn write_private(path: &PathBuf, data: &str) -> Result<(), AgentError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(data.as_bytes()))
        .map_err(|e| io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_for_its_names_and_again_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["node-1".to_string(), "10.250.0.1".to_string()];
        let a = ServingCert::load_or_generate(dir.path(), &names, std::time::UNIX_EPOCH).unwrap();
        let b = ServingCert::load_or_generate(dir.path(), &names, std::time::UNIX_EPOCH).unwrap();
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        assert!(a.hash().unwrap().starts_with("sha256:"));
        let c =
            ServingCert::load_or_generate(dir.path(), &names[..1], std::time::UNIX_EPOCH).unwrap();
        assert_ne!(a.hash().unwrap(), c.hash().unwrap());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("kubelet.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        c.server_config().unwrap();
    }
}
