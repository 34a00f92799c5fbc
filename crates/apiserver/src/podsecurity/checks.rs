//! The Pod Security Standards checks, as upstream's `k8s.io/pod-security-admission/policy`
//! defines them for policy versions up to v1.32: one function per check and version, each
//! looking at a pod's (or pod template's) metadata and spec and answering allowed, or a
//! forbidden reason with a detail. The reasons and details are upstream's texts, since users
//! and tools match on them.
//!
//! Which checks run: `baseline` runs the baseline checks; `restricted` runs the baseline
//! checks that a restricted check does not supersede (those marked `overlap`: capabilities,
//! hostPath volumes, seccomp) followed by the restricted checks. Within a level the checks
//! run in upstream's order (its registration order, by file name), so an aggregated message
//! lists the reasons in the same order as a real API server. A version newer than the newest
//! known one (and `latest`) evaluates as the newest; a check whose first version is newer
//! than the requested one is skipped.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Level, LevelVersion};

/// The newest policy version whose checks are known (`latest` evaluates as this one).
pub const MAX_MINOR: u32 = 32;

/// One check's verdict on a pod: `None` when allowed.
pub type Verdict = Option<Forbidden>;

/// Why a check forbids a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The short reason, always shown ("host namespaces").
    pub reason: String,
    /// The detail, shown in parentheses when checking one object (may be empty).
    pub detail: String,
}

fn forbidden(reason: impl Into<String>, detail: impl Into<String>) -> Verdict {
    Some(Forbidden {
        reason: reason.into(),
        detail: detail.into(),
    })
}

type CheckFn = fn(&Value, &Value) -> Verdict;

/// A check: its level, whether a restricted check supersedes it, and its versions
/// (minimum minor version, newest last).
struct Check {
    level: Level,
    overlap: bool,
    versions: &'static [(u32, CheckFn)],
}

/// Upstream's checks in registration order.
static CHECKS: &[Check] = &[
    // check_allowPrivilegeEscalation.go
    Check {
        level: Level::Restricted,
        overlap: false,
        versions: &[(8, allow_privilege_escalation_1_8)],
    },
    // check_appArmorProfile.go
    Check {
        level: Level::Baseline,
        overlap: false,
        versions: &[(0, app_armor_profile_1_0)],
    },
    // check_capabilities_baseline.go
    Check {
        level: Level::Baseline,
        overlap: true,
        versions: &[(0, capabilities_baseline_1_0)],
    },
    // check_capabilities_restricted.go
    Check {
        level: Level::Restricted,
        overlap: false,
        versions: &[(22, capabilities_restricted_1_22)],
    },
    // check_hostNamespaces.go
    Check {
        level: Level::Baseline,
        overlap: false,
        versions: &[(0, host_namespaces_1_0)],
    },
    // check_hostPathVolumes.go
    Check {
        level: Level::Baseline,
        overlap: true,
        versions: &[(0, host_path_volumes_1_0)],
    },
    // check_hostPorts.go
    Check {
        level: Level::Baseline,
        overlap: false,
        versions: &[(0, host_ports_1_0)],
    },
    // check_privileged.go
    Check {
        level: Level::Baseline,
        overlap: false,
        versions: &[(0, privileged_1_0)],
    },
    // check_procMount.go
    Check {
        level: Level::Baseline,
        overlap: false,
        versions: &[(0, proc_mount_1_0)],
    },
    // check_restrictedVolumes.go
    Check {
        level: Level::Restricted,
        overlap: false,
        versions: &[(0, restricted_volumes_1_0)],
    },
    // check_runAsNonRoot.go
    Check {
        level: Level::Restricted,
        overlap: false,
        versions: &[(0, run_as_non_root_1_0)],
    },
    // check_runAsUser.go
    Check {
        level: Level::Restricted,
        overlap: false,
        versions: &[(23, run_as_user_1_23)],
    },
    // check_seLinuxOptions.go
    Check {
        level: Level::Baseline,
        overlap: false,
        versions: &[(0, se_linux_options_1_0), (31, se_linux_options_1_31)],
    },
    // check_seccompProfile_baseline.go
    Check {
        level: Level::Baseline,
        overlap: true,
        versions: &[
            (0, seccomp_profile_baseline_1_0),
            (19, seccomp_profile_baseline_1_19),
        ],
    },
    // check_seccompProfile_restricted.go
    Check {
        level: Level::Restricted,
        overlap: false,
        versions: &[(19, seccomp_profile_restricted_1_19)],
    },
    // check_sysctls.go
    Check {
        level: Level::Baseline,
        overlap: false,
        versions: &[
            (0, sysctls_1_0),
            (27, sysctls_1_27),
            (29, sysctls_1_29),
            (32, sysctls_1_32),
        ],
    },
    // check_windowsHostProcess.go
    Check {
        level: Level::Baseline,
        overlap: false,
        versions: &[(0, windows_host_process_1_0)],
    },
];

impl Check {
    /// The version of this check that applies to policy version `minor`, if any.
    fn at(&self, minor: u32) -> Option<CheckFn> {
        self.versions
            .iter()
            .rev()
            .find(|(min, _)| *min <= minor)
            .map(|(_, f)| *f)
    }
}

/// Runs the checks of `lv` on a pod's metadata and spec and returns the forbidding verdicts
/// in upstream's order (empty: allowed).
pub fn evaluate(lv: LevelVersion, meta: &Value, spec: &Value) -> Vec<Forbidden> {
    let minor = lv.version.minor().unwrap_or(MAX_MINOR).min(MAX_MINOR);
    let run = |pred: &dyn Fn(&Check) -> bool| -> Vec<Forbidden> {
        CHECKS
            .iter()
            .filter(|c| pred(c))
            .filter_map(|c| c.at(minor))
            .filter_map(|f| f(meta, spec))
            .collect()
    };
    match lv.level {
        Level::Privileged => Vec::new(),
        Level::Baseline => {
            let mut out = run(&|c| c.level == Level::Baseline && !c.overlap);
            out.extend(run(&|c| c.level == Level::Baseline && c.overlap));
            out
        }
        Level::Restricted => {
            let mut out = run(&|c| c.level == Level::Baseline && !c.overlap);
            out.extend(run(&|c| c.level == Level::Restricted));
            out
        }
    }
}

/// The reasons joined (`host namespaces, privileged`), as shown for existing pods.
pub fn forbidden_reason(results: &[Forbidden]) -> String {
    results
        .iter()
        .map(|r| r.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reasons with their details in parentheses, as shown for one object.
pub fn forbidden_detail(results: &[Forbidden]) -> String {
    results
        .iter()
        .map(|r| {
            if r.detail.is_empty() {
                r.reason.clone()
            } else {
                format!("{} ({})", r.reason, r.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// --- helpers (upstream's helpers.go and visitor.go) ---------------------------------------

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 { singular } else { plural }
}

/// Go's `%q` of a string.
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// Every container of the spec: init containers, containers, ephemeral containers.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| {
            spec.get(k)
                .and_then(Value::as_array)
                .map(|a| a.as_slice())
                .unwrap_or_default()
        })
}

fn name(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// A field of a container's `securityContext`, when set (not null).
fn csc<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext")
        .and_then(|s| s.get(field))
        .filter(|v| !v.is_null())
}

/// A field of the pod's `securityContext`, when set (not null).
fn psc<'a>(spec: &'a Value, field: &str) -> Option<&'a Value> {
    spec.get("securityContext")
        .and_then(|s| s.get(field))
        .filter(|v| !v.is_null())
}

fn str_of(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or("")
}

fn annotations(meta: &Value) -> impl Iterator<Item = (&String, &str)> {
    meta.get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
}

fn annotation<'a>(meta: &'a Value, key: &str) -> Option<&'a str> {
    meta.get("annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// `pod and containers "a", "b"` style subject lists.
fn setters(pod_bad: bool, containers: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if pod_bad {
        out.push("pod".to_string());
    }
    if !containers.is_empty() {
        out.push(format!(
            "{} {}",
            pluralize("container", "containers", containers.len()),
            join_quote(containers)
        ));
    }
    out
}

// --- baseline ------------------------------------------------------------------------------

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn app_armor_profile_1_0(meta: &Value, spec: &Value) -> Verdict {
    let allowed_type = |p: &Value| matches!(str_of(p.get("type")), "RuntimeDefault" | "Localhost");
    let mut bad_values = BTreeSet::new();
    let mut pod_bad = false;
    if let Some(p) = psc(spec, "appArmorProfile")
        && !allowed_type(p)
    {
        pod_bad = true;
        bad_values.insert(str_of(p.get("type")).to_string());
    }
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(p) = csc(c, "appArmorProfile")
            && !allowed_type(p)
        {
            bad.push(name(c));
            bad_values.insert(str_of(p.get("type")).to_string());
        }
    }
    let mut bad_setters = setters(pod_bad, &bad);
    let mut forbidden_annotations: Vec<String> = annotations(meta)
        .filter(|(k, v)| {
            k.starts_with(APPARMOR_ANNOTATION_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    let mut values: Vec<String> = bad_values.into_iter().collect();
    if !forbidden_annotations.is_empty() {
        forbidden_annotations.sort();
        bad_setters
            .push(pluralize("annotation", "annotations", forbidden_annotations.len()).to_string());
        values.extend(forbidden_annotations);
    }
    if bad_setters.is_empty() {
        return None;
    }
    forbidden(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            bad_setters.join(" and "),
            join_quote(&values)
        ),
    )
}

const CAPABILITIES_ALLOWED_1_0: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capability_list<'a>(caps: &'a Value, field: &str) -> impl Iterator<Item = &'a str> {
    caps.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or(""))
}

fn capabilities_baseline_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let mut bad = Vec::new();
    let mut non_default = BTreeSet::new();
    for c in containers(spec) {
        let Some(caps) = csc(c, "capabilities") else {
            continue;
        };
        let mut valid = true;
        for cap in capability_list(caps, "add") {
            if !CAPABILITIES_ALLOWED_1_0.contains(&cap) {
                valid = false;
                non_default.insert(cap.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let caps: Vec<String> = non_default.into_iter().collect();
    forbidden(
        "non-default capabilities",
        format!(
            "{} {} must not include {} in securityContext.capabilities.add",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            join_quote(&caps)
        ),
    )
}

fn host_namespaces_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let on = |k: &str| spec.get(k).and_then(Value::as_bool) == Some(true);
    // Sorted, as upstream's string set lists them.
    let shared: Vec<&str> = ["hostIPC", "hostNetwork", "hostPID"]
        .into_iter()
        .filter(|k| on(k))
        .collect();
    if shared.is_empty() {
        return None;
    }
    forbidden("host namespaces", shared.join(", "))
}

fn host_path_volumes_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let host: Vec<String> = volumes(spec)
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name)
        .collect();
    if host.is_empty() {
        return None;
    }
    forbidden(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", host.len()),
            join_quote(&host)
        ),
    )
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn host_ports_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let mut valid = true;
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let hp = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp != 0 {
                valid = false;
                ports.insert(hp.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    forbidden(
        "hostPort",
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let bad: Vec<String> = containers(spec)
        .filter(|c| csc(c, "privileged").and_then(Value::as_bool) == Some(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "privileged",
        format!(
            "{} {} must not set securityContext.privileged=true",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad)
        ),
    )
}

fn proc_mount_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(spec) {
        let Some(pm) = csc(c, "procMount") else {
            continue;
        };
        let pm = pm.as_str().unwrap_or("");
        if pm != "Default" {
            bad.push(name(c));
            types.insert(pm.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    forbidden(
        "procMount",
        format!(
            "{} {} must not set securityContext.procMount to {}",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            join_quote(&types)
        ),
    )
}

const SELINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const SELINUX_TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_options_1_0(_meta: &Value, spec: &Value) -> Verdict {
    se_linux_options(spec, SELINUX_TYPES_1_0)
}

fn se_linux_options_1_31(_meta: &Value, spec: &Value) -> Verdict {
    se_linux_options(spec, SELINUX_TYPES_1_31)
}

fn se_linux_options(spec: &Value, allowed: &[&str]) -> Verdict {
    let mut bad_types = BTreeSet::new();
    let mut set_user = false;
    let mut set_role = false;
    let mut valid = |o: &Value| {
        let mut ok = true;
        let t = str_of(o.get("type"));
        if !allowed.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if !str_of(o.get("user")).is_empty() {
            ok = false;
            set_user = true;
        }
        if !str_of(o.get("role")).is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let pod_bad = psc(spec, "seLinuxOptions").is_some_and(|o| !valid(o));
    let bad: Vec<String> = containers(spec)
        .filter(|c| csc(c, "seLinuxOptions").is_some_and(|o| !valid(o)))
        .map(name)
        .collect();
    let bad_setters = setters(pod_bad, &bad);
    if bad_setters.is_empty() {
        return None;
    }
    // Upstream only mentions user and role when a type is also wrong.
    let mut bad_data = Vec::new();
    if !bad_types.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        bad_data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
        if set_user {
            bad_data.push("user may not be set".to_string());
        }
        if set_role {
            bad_data.push("role may not be set".to_string());
        }
    }
    forbidden(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            bad_setters.join(" and "),
            bad_data.join("; ")
        ),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn seccomp_profile_baseline_1_0(meta: &Value, spec: &Value) -> Verdict {
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut bad = BTreeSet::new();
    if let Some(v) = annotation(meta, SECCOMP_POD_ANNOTATION)
        && !valid(v)
    {
        bad.insert(format!("{SECCOMP_POD_ANNOTATION}={}", go_quote(v)));
    }
    for c in containers(spec) {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", name(c));
        if let Some(v) = annotation(meta, &key)
            && !valid(v)
        {
            bad.insert(format!("{key}={}", go_quote(v)));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let bad: Vec<String> = bad.into_iter().collect();
    forbidden(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", bad.len()),
            bad.join(", ")
        ),
    )
}

fn valid_seccomp(profile: &Value) -> bool {
    matches!(str_of(profile.get("type")), "RuntimeDefault" | "Localhost")
}

/// The seccomp check of both levels; `required`: restricted's (a profile must be set).
fn seccomp_profile(spec: &Value, required: bool) -> Verdict {
    let mut bad_values = BTreeSet::new();
    let mut pod_bad = false;
    let mut pod_set = false;
    if let Some(p) = psc(spec, "seccompProfile") {
        if valid_seccomp(p) {
            pod_set = true;
        } else {
            pod_bad = true;
            bad_values.insert(str_of(p.get("type")).to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match csc(c, "seccompProfile") {
            Some(p) if !valid_seccomp(p) => {
                explicit.push(name(c));
                bad_values.insert(str_of(p.get("type")).to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c)),
            None => {}
        }
    }
    let bad_setters = setters(pod_bad, &explicit);
    if !bad_setters.is_empty() {
        let values: Vec<String> = bad_values.into_iter().collect();
        return forbidden(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                bad_setters.join(" and "),
                join_quote(&values)
            ),
        );
    }
    if required && !implicit.is_empty() {
        return forbidden(
            "seccompProfile",
            format!(
                "pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                pluralize("container", "containers", implicit.len()),
                join_quote(&implicit)
            ),
        );
    }
    None
}

fn seccomp_profile_baseline_1_19(_meta: &Value, spec: &Value) -> Verdict {
    seccomp_profile(spec, false)
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

/// The sysctls the baseline level allows at policy version `minor` (upstream's safe set of
/// that release).
pub fn safe_sysctls(minor: u32) -> impl Iterator<Item = &'static str> {
    let sets: [(u32, &[&str]); 4] = [
        (0, SYSCTLS_1_0),
        (27, SYSCTLS_1_27),
        (29, SYSCTLS_1_29),
        (32, SYSCTLS_1_32),
    ];
    sets.into_iter()
        .filter(move |(min, _)| *min <= minor)
        .flat_map(|(_, s)| s.iter().copied())
}

fn sysctls(spec: &Value, minor: u32) -> Verdict {
    let bad: Vec<&str> = psc(spec, "sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| str_of(s.get("name")))
        .filter(|n| !safe_sysctls(minor).any(|s| s == *n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbidden("forbidden sysctls", bad.join(", "))
}

fn sysctls_1_0(_meta: &Value, spec: &Value) -> Verdict {
    sysctls(spec, 0)
}
fn sysctls_1_27(_meta: &Value, spec: &Value) -> Verdict {
    sysctls(spec, 27)
}
fn sysctls_1_29(_meta: &Value, spec: &Value) -> Verdict {
    sysctls(spec, 29)
}
fn sysctls_1_32(_meta: &Value, spec: &Value) -> Verdict {
    sysctls(spec, 32)
}

fn windows_host_process_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let host_process = |w: Option<&Value>| {
        w.and_then(|w| w.get("hostProcess"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let bad: Vec<String> = containers(spec)
        .filter(|c| host_process(csc(c, "windowsOptions")))
        .map(name)
        .collect();
    let pod_bad = host_process(psc(spec, "windowsOptions"));
    let bad_setters = setters(pod_bad, &bad);
    if bad_setters.is_empty() {
        return None;
    }
    forbidden(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            bad_setters.join(" and ")
        ),
    )
}

// --- restricted ----------------------------------------------------------------------------

fn allow_privilege_escalation_1_8(_meta: &Value, spec: &Value) -> Verdict {
    let bad: Vec<String> = containers(spec)
        .filter(|c| csc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "allowPrivilegeEscalation != false",
        format!(
            "{} {} must set securityContext.allowPrivilegeEscalation=false",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad)
        ),
    )
}

fn capabilities_restricted_1_22(_meta: &Value, spec: &Value) -> Verdict {
    let mut missing_drop_all = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden_caps = BTreeSet::new();
    for c in containers(spec) {
        let Some(caps) = csc(c, "capabilities") else {
            missing_drop_all.push(name(c));
            continue;
        };
        if !capability_list(caps, "drop").any(|d| d == "ALL") {
            missing_drop_all.push(name(c));
        }
        let mut added = false;
        for cap in capability_list(caps, "add") {
            if cap != "NET_BIND_SERVICE" {
                added = true;
                forbidden_caps.insert(cap.to_string());
            }
        }
        if added {
            adding.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} {} must set securityContext.capabilities.drop=[\"ALL\"]",
            pluralize("container", "containers", missing_drop_all.len()),
            join_quote(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = forbidden_caps.into_iter().collect();
        details.push(format!(
            "{} {} must not include {} in securityContext.capabilities.add",
            pluralize("container", "containers", adding.len()),
            join_quote(&adding),
            join_quote(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    forbidden("unrestricted capabilities", details.join("; "))
}

/// The volume sources the restricted level allows.
const RESTRICTED_VOLUME_SOURCES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn restricted_volumes_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let bad: BTreeSet<String> = volumes(spec)
        .filter(|v| {
            !RESTRICTED_VOLUME_SOURCES
                .iter()
                .any(|s| v.get(*s).is_some_and(|x| !x.is_null()))
        })
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    // Go's `%q` of a string slice: `["a" "b"]`.
    let list: Vec<String> = bad.iter().map(|n| go_quote(n)).collect();
    forbidden(
        "restricted volume types",
        format!("volumes [{}] have restricted types", list.join(" ")),
    )
}

fn run_as_non_root_1_0(_meta: &Value, spec: &Value) -> Verdict {
    let pod = psc(spec, "runAsNonRoot").and_then(Value::as_bool);
    let pod_bad = pod == Some(false);
    let pod_ok = pod == Some(true);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match csc(c, "runAsNonRoot").map(|v| v.as_bool() == Some(true)) {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_ok => implicit.push(name(c)),
            None => {}
        }
    }
    let bad_setters = setters(pod_bad, &explicit);
    if !bad_setters.is_empty() {
        return forbidden(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                bad_setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return forbidden(
            "runAsNonRoot != true",
            format!(
                "pod or {} {} must set securityContext.runAsNonRoot=true",
                pluralize("container", "containers", implicit.len()),
                join_quote(&implicit)
            ),
        );
    }
    None
}

fn run_as_user_1_23(_meta: &Value, spec: &Value) -> Verdict {
    let root = |v: Option<&Value>| v.and_then(Value::as_i64) == Some(0);
    let pod_bad = root(psc(spec, "runAsUser"));
    let bad: Vec<String> = containers(spec)
        .filter(|c| root(csc(c, "runAsUser")))
        .map(name)
        .collect();
    let bad_setters = setters(pod_bad, &bad);
    if bad_setters.is_empty() {
        return None;
    }
    forbidden(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", bad_setters.join(" and ")),
    )
}

fn seccomp_profile_restricted_1_19(_meta: &Value, spec: &Value) -> Verdict {
    seccomp_profile(spec, true)
}

#[cfg(test)]
mod tests;
