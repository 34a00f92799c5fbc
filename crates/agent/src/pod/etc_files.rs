//! The pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, written by the agent into
//! `<pods_dir>/<uid>/etc/` as the kubelet writes them, and mounted into each container that
//! has its own root filesystem (an image). Host-mode containers see the host's files.
//!
//! The content is the kubelet's default for a pod on the node's network: the managed hosts
//! file with the pod's IP and hostname, the pod's hostname, and the node's resolver
//! configuration.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use podvisor_runtime::Mount;

/// The kubelet's managed hosts file for `ip` and `hostname`.
pub fn hosts_file(ip: &str, hostname: &str) -> String {
    format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{hostname}\n"
    )
}

/// The pod's hostname: `spec.hostname`, else its name.
pub fn hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

/// Writes the three files under `pod_dir/etc` (when missing or changed) and returns their
/// mounts.
pub fn mounts(pod_dir: &Path, pod: &Pod, pod_ip: &str) -> std::io::Result<Vec<Mount>> {
    let dir = pod_dir.join("etc");
    std::fs::create_dir_all(&dir)?;
    let host = hostname(pod);
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("hosts", hosts_file(pod_ip, &host)),
        ("hostname", format!("{host}\n")),
        ("resolv.conf", resolv),
    ];
    let mut out = Vec::new();
    for (name, content) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, &content)?;
            std::fs::rename(&tmp, &path)?;
        }
        out.push(Mount {
            source: path,
            target: Path::new("/etc").join(name),
            read_only: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_name_the_pod_and_are_mounted_over_etc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        let m = mounts(dir.path(), &pod, "10.1.2.3").expect("write");
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].target, Path::new("/etc/hosts"));
        let hosts = std::fs::read_to_string(&m[0].source).expect("hosts");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n"));
        assert!(hosts.ends_with("10.1.2.3\tweb\n"));
        assert_eq!(
            std::fs::read_to_string(&m[1].source).expect("hostname"),
            "web\n"
        );
    }
}
