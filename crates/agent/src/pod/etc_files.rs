//! A pod's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, with the content the kubelet
//! (and containerd, for resolv.conf and hostname) gives them, written once per sandbox into
//! the pod's directory (`<pods_dir>/<uid>/etc-hosts`, `resolv.conf`, `hostname`) and
//! bind-mounted into every container.
//!
//! The files are rewritten before each container is created (the pod's IP is known by then)
//! and mounted unless the container mounts something at that path itself. The agent does
//! this when it runs the pod network ([`crate::network`]), and for every container that runs
//! in its image's root filesystem (whose own files know nothing of the pod).
//!
//! * **hostname** (`GeneratePodHostNameAndDomain`): `spec.hostname` or the pod name (cut to
//!   63 characters, without a trailing `-` or `.`); with `spec.subdomain` the domain is
//!   `<subdomain>.<namespace>.svc.<cluster domain>`; `setHostnameAsFQDN` makes the hostname
//!   the full name. A `hostNetwork` pod has the node's.
//! * **hosts** (`managedHostsFileContent`): the header, localhost and the IPv6 names, one line
//!   per pod IP (`<ip>\t<hostname>.<domain>\t<hostname>` with a domain), then the
//!   `hostAliases` block. A `hostNetwork` pod gets the node's file under its own header, then
//!   the aliases.
//! * **resolv.conf** by `dnsPolicy`: `Default` is the node's nameservers, search domains and
//!   options; `ClusterFirst` (`Default` on the host network) and `ClusterFirstWithHostNet`
//!   use the cluster DNS with the search path
//!   `<namespace>.svc.<domain> svc.<domain> <domain>` + the node's and `ndots:5`, and falls
//!   back to `Default` while no cluster DNS is configured (the kubelet's `MissingClusterDNS`);
//!   `None` is `dnsConfig` alone. The cluster DNS is `10.96.0.10` ([`crate::dns`]) for pods on
//!   the pod network; without it (no CNI) there is none and ClusterFirst falls back. `dnsConfig` is merged in last (nameservers and searches
//!   appended without duplicates, options replaced by name). At most 3 nameservers and 32
//!   search domains.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH: usize = 32;

/// What the files are made from besides the pod.
#[derive(Clone, Debug, Default)]
pub struct EtcInputs {
    /// The pod's IPs (the node's for a host-network pod).
    pub pod_ips: Vec<String>,
    /// The node's hostname (for host-network pods).
    pub node_hostname: String,
    /// The node's `/etc/hosts` (for host-network pods).
    pub node_hosts: String,
    /// The node's `/etc/resolv.conf`.
    pub node_resolv: String,
    /// The cluster DNS servers (empty: none configured yet).
    pub cluster_dns: Vec<String>,
}

fn host_network(pod: &Pod) -> bool {
    crate::network::host_network(pod)
}

/// The pod's hostname and domain (`GeneratePodHostNameAndDomain`).
pub fn hostname_and_domain(pod: &Pod) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut host: String = name.chars().take(63).collect();
    while host.ends_with(['-', '.']) {
        host.pop();
    }
    let domain = spec
        .and_then(|s| s.subdomain.clone())
        .filter(|d| !d.is_empty())
        .map(|sub| {
            format!(
                "{sub}.{}.svc.{CLUSTER_DOMAIN}",
                pod.metadata.namespace.as_deref().unwrap_or("default")
            )
        });
    (host, domain)
}

/// `/etc/hostname`.
pub fn hostname_file(pod: &Pod, inputs: &EtcInputs) -> String {
    if host_network(pod) {
        return format!("{}\n", inputs.node_hostname);
    }
    let (host, domain) = hostname_and_domain(pod);
    let fqdn = pod
        .spec
        .as_ref()
        .and_then(|s| s.set_hostname_as_fqdn)
        .unwrap_or(false);
    match domain {
        Some(d) if fqdn => format!("{host}.{d}\n"),
        _ => format!("{host}\n"),
    }
}

/// `/etc/hosts`.
pub fn hosts_file(pod: &Pod, inputs: &EtcInputs) -> String {
    let mut out = String::new();
    if host_network(pod) {
        out.push_str("# Kubernetes-managed hosts file (host network).\n");
        out.push_str(&inputs.node_hosts);
    } else {
        out.push_str("# Kubernetes-managed hosts file.\n");
        out.push_str("127.0.0.1\tlocalhost\n");
        out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        out.push_str("fe00::0\tip6-localnet\n");
        out.push_str("fe00::0\tip6-mcastprefix\n");
        out.push_str("fe00::1\tip6-allnodes\n");
        out.push_str("fe00::2\tip6-allrouters\n");
        let (host, domain) = hostname_and_domain(pod);
        for ip in &inputs.pod_ips {
            match &domain {
                Some(d) => out.push_str(&format!("{ip}\t{host}.{d}\t{host}\n")),
                None => out.push_str(&format!("{ip}\t{host}\n")),
            }
        }
    }
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.as_deref().unwrap_or_default().join("\t")
            ));
        }
    }
    out
}

/// The nameservers, search domains and options of a resolv.conf text.
fn parse_resolv(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut ns, mut search, mut opts) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => ns.extend(f.next().map(str::to_string)),
            Some("search" | "domain") => search = f.map(str::to_string).collect(),
            Some("options") => opts.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    (ns, search, opts)
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

/// Options merged by name (`ndots:5` replaces `ndots:2`).
fn merge_options(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for o in items {
        let name = o.split(':').next().unwrap_or(&o).to_string();
        list.retain(|x| x.split(':').next() != Some(name.as_str()));
        list.push(o);
    }
}

/// `/etc/resolv.conf`, and a warning event's message when ClusterFirst had to fall back to
/// the node's configuration.
pub fn resolv_conf(pod: &Pod, inputs: &EtcInputs) -> (String, Option<String>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host = host_network(pod);
    let (node_ns, node_search, node_opts) = parse_resolv(&inputs.node_resolv);
    let mut warning = None;
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host,
        _ => false,
    };
    let (mut ns, mut search, mut opts) = match policy {
        "None" => (Vec::new(), Vec::new(), Vec::new()),
        _ if cluster && !inputs.cluster_dns.is_empty() => {
            let ns_name = pod.metadata.namespace.as_deref().unwrap_or("default");
            let mut search = vec![
                format!("{ns_name}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ];
            push_unique(&mut search, node_search);
            (
                inputs.cluster_dns.clone(),
                search,
                vec!["ndots:5".to_string()],
            )
        }
        _ => {
            if cluster {
                warning = Some(format!(
                    "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot create Pod using {:?} policy. Falling back to {:?} policy.",
                    format!(
                        "{}_{}({})",
                        pod.metadata.name.as_deref().unwrap_or(""),
                        pod.metadata.namespace.as_deref().unwrap_or(""),
                        pod.metadata.uid.as_deref().unwrap_or("")
                    ),
                    policy,
                    "Default"
                ));
            }
            (node_ns, node_search, node_opts)
        }
    };
    if let Some(cfg) = &spec.dns_config {
        push_unique(&mut ns, cfg.nameservers.clone().unwrap_or_default());
        push_unique(&mut search, cfg.searches.clone().unwrap_or_default());
        merge_options(
            &mut opts,
            cfg.options.iter().flatten().filter_map(|o| {
                let name = o.name.clone()?;
                Some(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name,
                })
            }),
        );
    }
    ns.truncate(MAX_NAMESERVERS);
    search.truncate(MAX_SEARCH);
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for n in &ns {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !opts.is_empty() {
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    (out, warning)
}

/// The files written, each with where it is mounted: (source, target).
pub type EtcMounts = Vec<(PathBuf, PathBuf)>;

/// The three files in `pod_dir` and where each is mounted, with resolv.conf's warning.
pub fn write(
    pod: &Pod,
    inputs: &EtcInputs,
    pod_dir: &Path,
) -> std::io::Result<(EtcMounts, Option<String>)> {
    std::fs::create_dir_all(pod_dir)?;
    let (resolv, warning) = resolv_conf(pod, inputs);
    let files = [
        ("etc-hosts", "/etc/hosts", hosts_file(pod, inputs)),
        ("resolv.conf", "/etc/resolv.conf", resolv),
        ("hostname", "/etc/hostname", hostname_file(pod, inputs)),
    ];
    let mut mounts = Vec::new();
    for (name, target, text) in files {
        let path = pod_dir.join(name);
        crate::network::cni::write_atomic(&path, text.as_bytes())?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
        mounts.push((path, PathBuf::from(target)));
    }
    Ok((mounts, warning))
}

impl super::PodWorker {
    /// Writes the pod's files and returns the mounts a container without its own gets
    /// (none without the pod network unless the container has its own root filesystem,
    /// none when the files cannot be written: logged).
    pub(super) fn etc_mounts(
        &mut self,
        own: &[podvisor_runtime::Mount],
        rootfs: bool,
    ) -> Vec<podvisor_runtime::Mount> {
        if self.ctx.network.is_none() && !rootfs {
            return Vec::new();
        }
        let ips = if self.pod_ips.is_empty() {
            vec![self.ctx.node_ip.clone()]
        } else {
            self.pod_ips.clone()
        };
        let own_network = self.ctx.network.is_some() && !self.pod_ips.is_empty();
        let mut inputs = node_inputs(ips);
        if own_network {
            // The cluster DNS serves pods on the pod network (crate::dns).
            inputs.cluster_dns = vec![crate::dns::SERVICE_IP.to_string()];
        }
        let dir = self.ctx.pods_dir.join(&self.uid);
        let (files, warning) = match write(&self.pod, &inputs, &dir) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot write the pod's /etc files");
                return Vec::new();
            }
        };
        if let Some(w) = warning
            && !self.dns_warned
        {
            self.dns_warned = true;
            self.event(None, crate::api::EventType::Warning, "MissingClusterDNS", w);
        }
        files
            .into_iter()
            .filter(|(_, target)| !own.iter().any(|m| &m.target == target))
            .map(|(source, target)| podvisor_runtime::Mount {
                source,
                target,
                read_only: false,
            })
            .collect()
    }
}

/// What the node contributes: its hostname, `/etc/hosts` and `/etc/resolv.conf`.
pub fn node_inputs(pod_ips: Vec<String>) -> EtcInputs {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    EtcInputs {
        pod_ips,
        node_hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        node_hosts: read("/etc/hosts"),
        node_resolv: read("/etc/resolv.conf"),
        cluster_dns: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn inputs() -> EtcInputs {
        EtcInputs {
            pod_ips: vec!["10.244.0.7".into()],
            node_hostname: "node1".into(),
            node_hosts: "127.0.0.1 localhost\n10.0.0.1 node1\n".into(),
            node_resolv: "# generated\nsearch example.com corp\nnameserver 10.0.0.53\nnameserver 10.0.0.54\noptions ndots:2 edns0\n".into(),
            cluster_dns: Vec::new(),
        }
    }

    #[test]
    fn hosts_file_as_the_kubelet_writes_it() {
        let p = pod(serde_json::json!({
            "containers": [],
            "hostname": "web",
            "subdomain": "front",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]
        }));
        assert_eq!(
            hosts_file(&p, &inputs()),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.244.0.7\tweb.front.shop.svc.cluster.local\tweb\n\n# Entries added by HostAliases.\n\
             10.1.2.3\tfoo.local\tbar.local\n"
        );
        let plain = pod(serde_json::json!({"containers": []}));
        assert!(
            hosts_file(&plain, &inputs()).ends_with("fe00::2\tip6-allrouters\n10.244.0.7\tweb-0\n")
        );
        let host = pod(serde_json::json!({"containers": [], "hostNetwork": true}));
        assert_eq!(
            hosts_file(&host, &inputs()),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n10.0.0.1 node1\n"
        );
        assert_eq!(hostname_file(&host, &inputs()), "node1\n");
        assert_eq!(hostname_file(&plain, &inputs()), "web-0\n");
        let fqdn =
            pod(serde_json::json!({"containers": [], "subdomain": "s", "setHostnameAsFQDN": true}));
        assert_eq!(
            hostname_file(&fqdn, &inputs()),
            "web-0.s.shop.svc.cluster.local\n"
        );
        let long =
            pod(serde_json::json!({"containers": [], "hostname": format!("{}-x", "a".repeat(62))}));
        assert_eq!(hostname_and_domain(&long).0, "a".repeat(62));
    }

    #[test]
    fn resolv_conf_by_dns_policy() {
        let default = pod(serde_json::json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(
            resolv_conf(&default, &inputs()),
            (
                "search example.com corp\nnameserver 10.0.0.53\nnameserver 10.0.0.54\noptions ndots:2 edns0\n".into(),
                None
            )
        );
        // ClusterFirst without a cluster DNS: the node's, with the kubelet's warning
        let cf = pod(serde_json::json!({"containers": []}));
        let (text, warning) = resolv_conf(&cf, &inputs());
        assert!(text.starts_with("search example.com corp\n"));
        assert!(
            warning
                .unwrap()
                .contains("Falling back to \"Default\" policy.")
        );
        let mut with_dns = inputs();
        with_dns.cluster_dns = vec!["10.96.0.10".into()];
        assert_eq!(
            resolv_conf(&cf, &with_dns).0,
            "search shop.svc.cluster.local svc.cluster.local cluster.local example.com corp\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let none = pod(
            serde_json::json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.1.1.1", "1.1.1.1", "8.8.8.8"],
                "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]
            }}),
        );
        assert_eq!(
            resolv_conf(&none, &inputs()),
            (
                "search a.example\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions ndots:1 edns0\n"
                    .into(),
                None
            )
        );
        let merged = pod(
            serde_json::json!({"containers": [], "dnsPolicy": "Default", "dnsConfig": {
                "options": [{"name": "ndots", "value": "3"}]
            }}),
        );
        assert!(
            resolv_conf(&merged, &inputs())
                .0
                .ends_with("options edns0 ndots:3\n")
        );
    }
}
