//! A container's `securityContext` for the runtime, as the kubelet resolves it
//! (`DetermineEffectiveSecurityContext`: the container's fields win over the pod's), and
//! the kubelet's `runAsNonRoot` check.
//!
//! - `runAsUser`/`runAsGroup` become the config's uid/gid ([`crate::pod::spec`]);
//!   `supplementalGroups` and `fsGroup` the supplementary groups.
//! - `privileged`, `capabilities`, `allowPrivilegeEscalation: false` (no_new_privs),
//!   `readOnlyRootFilesystem`, `seccompProfile` (RuntimeDefault, Localhost under the node's
//!   seccomp directory, Unconfined when unset as the kubelet's default) and `procMount`
//!   go to [`SecurityConfig`]; the runtime applies them like containerd.
//! - Pods of the `host` RuntimeClass run host executables on the host's filesystem: they
//!   keep the runtime's own privileges (as before) unless their securityContext asks for
//!   confinement (any of the fields above); then all of it applies, and
//!   `readOnlyRootFilesystem` makes the host's `/` read-only in the container's own mount
//!   namespace (other mounts, such as `/tmp` or `/dev`, stay as they are).

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile as ApiSeccomp};
use podvisor_runtime::{SeccompProfile, SecurityConfig};

/// The RuntimeClass whose pods run on the host's filesystem.
const HOST_RUNTIME_CLASS: &str = "host";

/// The runtime's security settings of container `c` of `pod`; `seccomp_root` is where
/// Localhost profiles live (the kubelet's `<root-dir>/seccomp`).
pub fn security_config(pod: &Pod, c: &Container, seccomp_root: &Path) -> SecurityConfig {
    let spec = pod.spec.as_ref();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let mut groups: Vec<u32> = psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| u32::try_from(g).ok())
        .collect();
    if let Some(fs) = psc
        .and_then(|p| p.fs_group)
        .and_then(|g| u32::try_from(g).ok())
        && !groups.contains(&fs)
    {
        groups.push(fs);
    }
    let seccomp = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or(psc.and_then(|p| p.seccomp_profile.as_ref()));
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let out = SecurityConfig {
        confined: true,
        supplemental_groups: groups,
        privileged: sc.and_then(|s| s.privileged) == Some(true),
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        read_only_root_filesystem: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
        seccomp: seccomp.map_or(SeccompProfile::Unconfined, |p| seccomp_of(p, seccomp_root)),
        unmasked_proc: sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked"),
    };
    let host = spec.and_then(|s| s.runtime_class_name.as_deref()) == Some(HOST_RUNTIME_CLASS);
    let asks = out.privileged
        || !out.capabilities_add.is_empty()
        || !out.capabilities_drop.is_empty()
        || out.no_new_privileges
        || out.read_only_root_filesystem
        || out.seccomp != SeccompProfile::Unconfined;
    SecurityConfig {
        confined: !host || asks,
        ..out
    }
}

fn seccomp_of(p: &ApiSeccomp, root: &Path) -> SeccompProfile {
    match p.type_.as_str() {
        "RuntimeDefault" => SeccompProfile::RuntimeDefault,
        "Localhost" => {
            SeccompProfile::Localhost(root.join(p.localhost_profile.as_deref().unwrap_or_default()))
        }
        _ => SeccompProfile::Unconfined,
    }
}

/// The kubelet's check of `--allowed-unsafe-sysctls` (`NewAllowlist`): each entry, a name
/// or a prefix ending in `*`, must name namespaced sysctls.
pub fn check_unsafe_sysctl_patterns(patterns: &[String]) -> Result<(), String> {
    use podvisor_api::validation::sysctl_namespace;
    for p in patterns {
        match p.strip_suffix('*') {
            Some(prefix) if sysctl_namespace(prefix).is_none() => {
                return Err(format!("the sysctls {p:?} are not known to be namespaced"));
            }
            None if sysctl_namespace(p).is_none() => {
                return Err(format!("the sysctl {p:?} are not known to be namespaced"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The kubelet's sysctl admission (`patternAllowlist`): every sysctl of the pod must be in
/// the safe set or `allowed_unsafe` (names, or prefixes ending in `*`), and not of a
/// namespace the pod shares with the host. Returns the refusal (`forbidden sysctl:
/// "kernel.msgmax" not allowlisted`).
pub fn sysctl_admission(pod: &Pod, allowed_unsafe: &[String]) -> Option<String> {
    use podvisor_api::validation::{SAFE_SYSCTLS, normalize_sysctl_name, sysctl_namespace};
    let spec = pod.spec.as_ref()?;
    let sysctls = spec.security_context.as_ref()?.sysctls.as_ref()?;
    let allowed = |name: &str| {
        SAFE_SYSCTLS.contains(&name)
            || allowed_unsafe.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            })
    };
    sysctls.iter().find_map(|s| {
        let name = normalize_sysctl_name(&s.name);
        let why = if !allowed(&name) {
            format!("{name:?} not allowlisted")
        } else {
            match sysctl_namespace(&name) {
                Some("ipc") if spec.host_ipc == Some(true) => {
                    format!("{name:?} not allowed with host ipc enabled")
                }
                Some("net") if spec.host_network == Some(true) => {
                    format!("{name:?} not allowed with host net enabled")
                }
                _ => return None,
            }
        };
        Some(format!("forbidden sysctl: {why}"))
    })
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`.
fn format_pod(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// The kubelet's `verifyRunAsNonRoot`: with `runAsNonRoot: true`, the container may not run
/// as uid 0. `uid` is the uid it will run as (its `runAsUser`, else the image's user; None
/// when the image names none: root).
pub fn verify_run_as_non_root(pod: &Pod, c: &Container, uid: Option<u32>) -> Result<(), String> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|p| p.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|p| p.run_as_user));
    match run_as_user {
        Some(0) => Err(format!(
            "container's runAsUser breaks non-root policy (pod: {:?}, container: {})",
            format_pod(pod),
            c.name
        )),
        Some(_) => Ok(()),
        None if uid.unwrap_or(0) == 0 => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {:?}, container: {})",
            format_pod(pod),
            c.name
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn container_fields_win_and_groups_collect() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"securityContext": {"supplementalGroups": [3000], "fsGroup": 2000,
                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "c", "securityContext": {
                    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}}}]}}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let s = security_config(&p, c, Path::new("/var/lib/podvisor/seccomp"));
        assert!(s.confined && s.no_new_privileges && s.read_only_root_filesystem);
        assert_eq!(s.supplemental_groups, vec![3000, 2000]);
        assert_eq!(s.capabilities_drop, vec!["ALL".to_string()]);
        assert_eq!(
            s.seccomp,
            SeccompProfile::Localhost("/var/lib/podvisor/seccomp/x.json".into())
        );
    }

    #[test]
    fn host_pods_are_confined_only_when_they_ask() {
        let plain = pod(serde_json::json!({"spec": {"runtimeClassName": "host",
            "containers": [{"name": "c"}]}}));
        let c = &plain.spec.as_ref().unwrap().containers[0];
        assert!(!security_config(&plain, c, Path::new("/")).confined);
        let asks = pod(serde_json::json!({"spec": {"runtimeClassName": "host",
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false}}]}}));
        let c = &asks.spec.as_ref().unwrap().containers[0];
        assert!(security_config(&asks, c, Path::new("/")).confined);
        let image = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}));
        let c = &image.spec.as_ref().unwrap().containers[0];
        assert!(security_config(&image, c, Path::new("/")).confined);
    }

    #[test]
    fn run_as_non_root_messages_are_the_kubelets() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            verify_run_as_non_root(&p, c, None).unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)"
        );
        assert!(verify_run_as_non_root(&p, c, Some(1000)).is_ok());
        let mut zero = c.clone();
        zero.security_context =
            Some(serde_json::from_value(serde_json::json!({"runAsUser": 0})).unwrap());
        assert_eq!(
            verify_run_as_non_root(&p, &zero, Some(0)).unwrap_err(),
            "container's runAsUser breaks non-root policy (pod: \"p_ns(u1)\", container: c)"
        );
    }

    #[test]
    fn unsafe_sysctls_are_rejected_unless_allowlisted() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"hostIPC": true, "securityContext": {"sysctls": [
                {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                {"name": "kernel.msgmax", "value": "1"}]},
                "containers": [{"name": "c"}]}}),
        );
        assert_eq!(
            sysctl_admission(&p, &[]).as_deref(),
            Some(r#"forbidden sysctl: "kernel.msgmax" not allowlisted"#)
        );
        assert_eq!(
            sysctl_admission(&p, &["kernel.msg*".into()]).as_deref(),
            Some(r#"forbidden sysctl: "kernel.msgmax" not allowed with host ipc enabled"#)
        );
        assert_eq!(
            sysctl_admission(&pod(serde_json::json!({"spec": {"containers": []}})), &[]),
            None
        );
        assert!(
            check_unsafe_sysctl_patterns(&["kernel.msg*".into(), "net.core.somaxconn".into()])
                .is_ok()
        );
        assert_eq!(
            check_unsafe_sysctl_patterns(&["vm.swappiness".into()]),
            Err(r#"the sysctl "vm.swappiness" are not known to be namespaced"#.into())
        );
        assert_eq!(
            check_unsafe_sysctl_patterns(&["vm.*".into()]),
            Err(r#"the sysctls "vm.*" are not known to be namespaced"#.into())
        );
    }
}
