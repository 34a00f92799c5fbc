//! The admin kubeconfig a data dir hands to kubectl.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;

/// The kubeconfig's file name inside the data dir.
pub const FILE_NAME: &str = "kubeconfig";

/// Renders a kubeconfig for `server` (an https URL) trusting `ca_pem`, with `token`.
pub fn render(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: podvisor\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: admin\n  \
           user:\n    \
             token: {token}\n\
         contexts:\n\
         - name: podvisor\n  \
           context:\n    \
             cluster: podvisor\n    \
             user: admin\n    \
             namespace: default\n\
         current-context: podvisor\n"
    )
}

/// Writes the kubeconfig into `data_dir` (mode 0600) and returns its path.
pub fn write(data_dir: &Path, server: &str, ca_pem: &str, token: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(FILE_NAME);
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(render(server, ca_pem, token).as_bytes())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all().ok();
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The URL clients should use for a listen address (0.0.0.0 and :: become loopback).
pub fn server_url(listen: std::net::SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    match ip {
        std::net::IpAddr::V4(v4) => format!("https://{v4}:{}", listen.port()),
        std::net::IpAddr::V6(v6) => format!("https://[{v6}]:{}", listen.port()),
    }
}

/// The web view's address, logged in with `token`: the token rides in the fragment
/// (`#token=…`), which a browser never sends to a server, and the page moves it into the
/// tab's session storage and out of the address bar at once.
pub fn ui_url(listen: std::net::SocketAddr, token: &str) -> String {
    let mut fragment = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            fragment.push(char::from(b));
        } else {
            fragment.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/ui/#token={fragment}", server_url(listen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_parses_as_yaml_with_the_token() {
        let text = render(
            "https://127.0.0.1:6443",
            "-----BEGIN CERTIFICATE-----\n",
            "abc",
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        assert_eq!(v["users"][0]["user"]["token"].as_str(), Some("abc"));
        assert_eq!(
            v["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:6443")
        );
        assert_eq!(v["current-context"].as_str(), Some("podvisor"));
    }

    #[test]
    fn unspecified_listen_address_becomes_loopback() {
        assert_eq!(
            server_url("0.0.0.0:6443".parse().expect("addr")),
            "https://127.0.0.1:6443"
        );
    }

    #[test]
    fn the_ui_url_carries_the_token_in_its_fragment() {
        let listen: std::net::SocketAddr = "0.0.0.0:6443".parse().unwrap();
        assert_eq!(
            ui_url(listen, "abc-12_3"),
            "https://127.0.0.1:6443/ui/#token=abc-12_3"
        );
        assert_eq!(
            ui_url(listen, "a b&c/=é"),
            "https://127.0.0.1:6443/ui/#token=a%20b%26c%2F%3D%C3%A9"
        );
    }
}
