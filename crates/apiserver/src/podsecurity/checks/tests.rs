//! One table per check, with upstream's expected reasons and details.

use serde_json::{Value, json};

use super::*;
use crate::podsecurity::{Level, LevelVersion, Version};

/// (spec, metadata, expected (reason, detail) or None when allowed)
type Case = (Value, Value, Option<(&'static str, &'static str)>);

fn table(check: CheckFn, cases: &[Case]) {
    for (i, (spec, meta, want)) in cases.iter().enumerate() {
        let got = check(meta, spec);
        let want = want.map(|(r, d)| Forbidden {
            reason: r.to_string(),
            detail: d.to_string(),
        });
        assert_eq!(got, want, "case {i}: {spec}");
    }
}

fn c(name: &str, sc: Value) -> Value {
    json!({"name": name, "image": "busybox", "securityContext": sc})
}

fn spec(containers: Vec<Value>) -> Value {
    json!({ "containers": containers })
}

fn none() -> Value {
    json!({})
}

#[test]
fn allow_privilege_escalation() {
    table(
        allow_privilege_escalation_1_8,
        &[
            (
                spec(vec![c("a", json!({"allowPrivilegeEscalation": false}))]),
                none(),
                None,
            ),
            (
                spec(vec![
                    json!({"name": "a"}),
                    c("b", json!({"allowPrivilegeEscalation": true})),
                    c("c", json!({"allowPrivilegeEscalation": false})),
                ]),
                none(),
                Some((
                    "allowPrivilegeEscalation != false",
                    r#"containers "a", "b" must set securityContext.allowPrivilegeEscalation=false"#,
                )),
            ),
            (
                json!({"initContainers": [{"name": "i"}], "containers": [c("a", json!({"allowPrivilegeEscalation": false}))]}),
                none(),
                Some((
                    "allowPrivilegeEscalation != false",
                    r#"container "i" must set securityContext.allowPrivilegeEscalation=false"#,
                )),
            ),
        ],
    );
}

#[test]
fn app_armor_profile() {
    table(
        app_armor_profile_1_0,
        &[
            (
                json!({"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}),
                json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "localhost/x"}}),
                None,
            ),
            (
                json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}),
                none(),
                Some((
                    "forbidden AppArmor profile",
                    r#"pod must not set AppArmor profile type to "Unconfined""#,
                )),
            ),
            (
                spec(vec![c(
                    "foo",
                    json!({"appArmorProfile": {"type": "Unconfined"}}),
                )]),
                json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/foo": "unconfined"}}),
                Some((
                    "forbidden AppArmor profiles",
                    r#"container "foo" and annotation must not set AppArmor profile type to "Unconfined", "container.apparmor.security.beta.kubernetes.io/foo="unconfined"""#,
                )),
            ),
        ],
    );
}

#[test]
fn capabilities_baseline() {
    table(
        capabilities_baseline_1_0,
        &[
            (
                spec(vec![c(
                    "a",
                    json!({"capabilities": {"add": ["CHOWN", "KILL"]}}),
                )]),
                none(),
                None,
            ),
            (
                spec(vec![
                    c("a", json!({"capabilities": {"add": ["NET_RAW", "CHOWN"]}})),
                    c(
                        "b",
                        json!({"capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]}}),
                    ),
                ]),
                none(),
                Some((
                    "non-default capabilities",
                    r#"containers "a", "b" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add"#,
                )),
            ),
        ],
    );
}

#[test]
fn capabilities_restricted() {
    table(
        capabilities_restricted_1_22,
        &[
            (
                spec(vec![c(
                    "a",
                    json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}),
                )]),
                none(),
                None,
            ),
            (
                spec(vec![
                    json!({"name": "a"}),
                    c(
                        "b",
                        json!({"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}),
                    ),
                ]),
                none(),
                Some((
                    "unrestricted capabilities",
                    r#"container "a" must set securityContext.capabilities.drop=["ALL"]; container "b" must not include "CHOWN" in securityContext.capabilities.add"#,
                )),
            ),
        ],
    );
}

#[test]
fn host_namespaces() {
    table(
        host_namespaces_1_0,
        &[
            (json!({"hostNetwork": false}), none(), None),
            (
                json!({"hostPID": true, "hostNetwork": true, "hostIPC": true}),
                none(),
                Some(("host namespaces", "hostIPC, hostNetwork, hostPID")),
            ),
            (
                json!({"hostPID": true}),
                none(),
                Some(("host namespaces", "hostPID")),
            ),
        ],
    );
}

#[test]
fn host_path_volumes() {
    table(
        host_path_volumes_1_0,
        &[
            (
                json!({"volumes": [{"name": "e", "emptyDir": {}}]}),
                none(),
                None,
            ),
            (
                json!({"volumes": [{"name": "a", "hostPath": {"path": "/"}}, {"name": "b", "hostPath": {"path": "/x"}}]}),
                none(),
                Some(("hostPath volumes", r#"volumes "a", "b""#)),
            ),
        ],
    );
}

#[test]
fn host_ports() {
    table(
        host_ports_1_0,
        &[
            (
                spec(vec![json!({"name": "a", "ports": [{"containerPort": 80}]})]),
                none(),
                None,
            ),
            (
                spec(vec![
                    json!({"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]}),
                ]),
                none(),
                Some(("hostPort", r#"container "a" uses hostPort 8080"#)),
            ),
            (
                spec(vec![
                    json!({"name": "a", "ports": [{"hostPort": 8080}, {"hostPort": 80}]}),
                    json!({"name": "b", "ports": [{"hostPort": 9090}]}),
                ]),
                none(),
                Some((
                    "hostPort",
                    r#"containers "a", "b" use hostPorts 80, 8080, 9090"#,
                )),
            ),
        ],
    );
}

#[test]
fn privileged() {
    table(
        privileged_1_0,
        &[
            (
                spec(vec![c("a", json!({"privileged": false}))]),
                none(),
                None,
            ),
            (
                spec(vec![c("a", json!({"privileged": true}))]),
                none(),
                Some((
                    "privileged",
                    r#"container "a" must not set securityContext.privileged=true"#,
                )),
            ),
        ],
    );
}

#[test]
fn proc_mount() {
    table(
        proc_mount_1_0,
        &[
            (
                spec(vec![c("a", json!({"procMount": "Default"}))]),
                none(),
                None,
            ),
            (
                spec(vec![c("a", json!({"procMount": "Unmasked"}))]),
                none(),
                Some((
                    "procMount",
                    r#"container "a" must not set securityContext.procMount to "Unmasked""#,
                )),
            ),
        ],
    );
}

#[test]
fn se_linux_options() {
    table(
        se_linux_options_1_31,
        &[
            (
                json!({"securityContext": {"seLinuxOptions": {"type": "container_engine_t", "level": "s0"}}}),
                none(),
                None,
            ),
            (
                json!({"securityContext": {"seLinuxOptions": {"type": "foo", "user": "u", "role": "r"}},
                       "containers": [c("a", json!({"seLinuxOptions": {"type": "bar"}}))]}),
                none(),
                Some((
                    "seLinuxOptions",
                    r#"pod and container "a" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#,
                )),
            ),
        ],
    );
    // container_engine_t arrived in v1.31.
    table(
        se_linux_options_1_0,
        &[(
            spec(vec![c(
                "a",
                json!({"seLinuxOptions": {"type": "container_engine_t"}}),
            )]),
            none(),
            Some((
                "seLinuxOptions",
                r#"container "a" set forbidden securityContext.seLinuxOptions: type "container_engine_t""#,
            )),
        )],
    );
}

#[test]
fn seccomp_profile_baseline() {
    table(
        seccomp_profile_baseline_1_19,
        &[
            (spec(vec![json!({"name": "a"})]), none(), None),
            (
                json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                       "containers": [c("a", json!({"seccompProfile": {"type": "Unconfined"}}))]}),
                none(),
                Some((
                    "seccompProfile",
                    r#"pod and container "a" must not set securityContext.seccompProfile.type to "Unconfined""#,
                )),
            ),
        ],
    );
    table(
        seccomp_profile_baseline_1_0,
        &[(
            spec(vec![json!({"name": "a"})]),
            json!({"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}),
            Some((
                "seccompProfile",
                r#"forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined""#,
            )),
        )],
    );
}

#[test]
fn seccomp_profile_restricted() {
    table(
        seccomp_profile_restricted_1_19,
        &[
            (
                json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                       "containers": [{"name": "a"}]}),
                none(),
                None,
            ),
            (
                spec(vec![
                    json!({"name": "a"}),
                    c("b", json!({"seccompProfile": {"type": "Localhost"}})),
                ]),
                none(),
                Some((
                    "seccompProfile",
                    r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
                )),
            ),
        ],
    );
}

#[test]
fn sysctls_by_version() {
    let pod = json!({"securityContext": {"sysctls": [
        {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"},
        {"name": "kernel.msgmax", "value": "1"},
        {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"},
    ]}});
    table(
        sysctls_1_32,
        &[(
            pod.clone(),
            none(),
            Some(("forbidden sysctls", "kernel.msgmax")),
        )],
    );
    table(
        sysctls_1_29,
        &[(
            pod,
            none(),
            Some(("forbidden sysctls", "net.ipv4.tcp_rmem, kernel.msgmax")),
        )],
    );
    assert_eq!(safe_sysctls(MAX_MINOR).count(), 12);
}

#[test]
fn windows_host_process() {
    table(
        windows_host_process_1_0,
        &[
            (spec(vec![json!({"name": "a"})]), none(), None),
            (
                json!({"securityContext": {"windowsOptions": {"hostProcess": true}},
                       "containers": [c("a", json!({"windowsOptions": {"hostProcess": true}}))]}),
                none(),
                Some((
                    "hostProcess",
                    r#"pod and container "a" must not set securityContext.windowsOptions.hostProcess=true"#,
                )),
            ),
        ],
    );
}

#[test]
fn restricted_volumes() {
    table(
        restricted_volumes_1_0,
        &[
            (
                json!({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "projected": {"sources": []}}]}),
                none(),
                None,
            ),
            (
                json!({"volumes": [{"name": "z", "nfs": {"server": "x", "path": "/"}}, {"name": "h", "hostPath": {"path": "/"}}]}),
                none(),
                Some((
                    "restricted volume types",
                    r#"volumes ["h" "z"] have restricted types"#,
                )),
            ),
        ],
    );
}

#[test]
fn run_as_non_root() {
    table(
        run_as_non_root_1_0,
        &[
            (
                json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "a"}]}),
                none(),
                None,
            ),
            (
                json!({"securityContext": {"runAsNonRoot": false},
                       "containers": [c("a", json!({"runAsNonRoot": false})), {"name": "b"}]}),
                none(),
                Some((
                    "runAsNonRoot != true",
                    r#"pod and container "a" must not set securityContext.runAsNonRoot=false"#,
                )),
            ),
            (
                spec(vec![
                    json!({"name": "a"}),
                    c("b", json!({"runAsNonRoot": true})),
                ]),
                none(),
                Some((
                    "runAsNonRoot != true",
                    r#"pod or container "a" must set securityContext.runAsNonRoot=true"#,
                )),
            ),
        ],
    );
}

#[test]
fn run_as_user() {
    table(
        run_as_user_1_23,
        &[
            (
                json!({"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a"}]}),
                none(),
                None,
            ),
            (
                json!({"securityContext": {"runAsUser": 0},
                       "containers": [c("a", json!({"runAsUser": 0})), c("b", json!({"runAsUser": 0}))]}),
                none(),
                Some((
                    "runAsUser=0",
                    r#"pod and containers "a", "b" must not set runAsUser=0"#,
                )),
            ),
        ],
    );
}

fn lv(level: Level, version: Version) -> LevelVersion {
    LevelVersion { level, version }
}

#[test]
fn restricted_runs_baseline_then_restricted_checks_in_upstream_order() {
    let spec = spec(vec![c("c", json!({"privileged": true}))]);
    let r = evaluate(lv(Level::Restricted, Version::LATEST), &none(), &spec);
    assert_eq!(
        forbidden_detail(&r),
        r#"privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    assert_eq!(
        forbidden_reason(&r),
        "privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
    );
}

#[test]
fn overlapping_baseline_checks_run_only_at_baseline() {
    let spec = json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}], "containers": [{"name": "a"}]});
    let baseline = evaluate(lv(Level::Baseline, Version::LATEST), &none(), &spec);
    assert_eq!(forbidden_reason(&baseline), "hostPath volumes");
    let restricted = evaluate(lv(Level::Restricted, Version::LATEST), &none(), &spec);
    let reasons = forbidden_reason(&restricted);
    assert!(!reasons.contains("hostPath volumes"), "{reasons}");
    assert!(reasons.contains("restricted volume types"), "{reasons}");
    assert!(evaluate(lv(Level::Privileged, Version::LATEST), &none(), &spec).is_empty());
}

#[test]
fn old_versions_skip_newer_checks() {
    // runAsUser arrived in v1.23, capabilities_restricted in v1.22, seccomp in v1.19.
    let spec = json!({"securityContext": {"runAsUser": 0, "runAsNonRoot": true},
                      "containers": [c("a", json!({"allowPrivilegeEscalation": false}))]});
    let r = evaluate(lv(Level::Restricted, Version::v1(18)), &none(), &spec);
    assert!(r.is_empty(), "{r:?}");
    let r = evaluate(lv(Level::Restricted, Version::v1(23)), &none(), &spec);
    assert_eq!(
        forbidden_reason(&r),
        "unrestricted capabilities, runAsUser=0, seccompProfile"
    );
    // A version past the newest known evaluates as the newest.
    assert_eq!(
        evaluate(lv(Level::Restricted, Version::v1(99)), &none(), &spec),
        evaluate(lv(Level::Restricted, Version::LATEST), &none(), &spec)
    );
}
