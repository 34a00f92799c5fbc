use serde_json::{Value, json};

use super::*;

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn policy_from_labels_defaults_and_parses() {
    let (p, errs) = Policy::from_labels(&Map::new());
    assert!(errs.is_empty());
    assert_eq!(p, Policy::default());
    assert_eq!(p.enforce.to_string(), "privileged:latest");

    let (p, errs) = Policy::from_labels(&labels(json!({
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "v1.25",
        "pod-security.kubernetes.io/warn": "baseline",
    })));
    assert!(errs.is_empty());
    assert_eq!(p.enforce.to_string(), "restricted:v1.25");
    assert_eq!(p.warn.to_string(), "baseline:latest");
    assert_eq!(p.audit, LevelVersion::PRIVILEGED);
}

#[test]
fn bad_labels_fail_closed_for_enforce_and_open_for_audit_and_warn() {
    let (p, errs) = Policy::from_labels(&labels(json!({
        "pod-security.kubernetes.io/enforce": "strict",
        "pod-security.kubernetes.io/audit": "nope",
        "pod-security.kubernetes.io/warn-version": "v1.02",
    })));
    assert_eq!(p.enforce.level, Level::Restricted);
    assert_eq!(p.audit.level, Level::Privileged);
    let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        [
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "nope": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v1.02": must be "latest" or "v1.x""#,
        ]
    );
}

#[test]
fn versions_parse_as_upstream() {
    for (s, ok) in [
        ("latest", true),
        ("v1.0", true),
        ("v1.32", true),
        ("v1.", false),
        ("v1.01", false),
        ("v2.1", false),
        ("1.25", false),
        ("v1.99999999999", false),
    ] {
        assert_eq!(Version::parse(s).is_ok(), ok, "{s}");
    }
}

fn privileged_pod() -> (Value, Value) {
    (
        json!({"name": "x"}),
        json!({"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}),
    )
}

#[test]
fn decide_denies_with_upstream_message_and_no_warning() {
    let (p, _) = Policy::from_labels(&labels(json!({
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "baseline",
    })));
    let (meta, spec) = privileged_pod();
    let d = decide(&p, &[], &meta, &spec, true);
    assert_eq!(
        d.denied.as_deref(),
        Some(
            r#"violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
        )
    );
    assert!(d.warnings.is_empty());
    assert_eq!(d.audit["enforce-policy"], "baseline:latest");
    assert!(
        d.audit["audit-violations"]
            .starts_with(r#"would violate PodSecurity "baseline:latest": privileged"#)
    );
}

#[test]
fn templates_are_only_warned_about() {
    let (p, _) = Policy::from_labels(&labels(json!({
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "baseline",
    })));
    let (meta, spec) = privileged_pod();
    let d = decide(&p, &[], &meta, &spec, false);
    assert_eq!(d.denied, None);
    assert_eq!(
        d.warnings,
        [
            r#"would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
        ]
    );
}

#[test]
fn pod_spec_of_templates() {
    let deploy = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}});
    let (meta, spec) = pod_spec_of(&DEPLOYMENTS, &deploy).expect("template");
    assert_eq!(meta["labels"]["a"], "b");
    assert!(spec.get("containers").is_some());
    let cron =
        json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostPID": true}}}}}});
    assert_eq!(
        pod_spec_of(&CRONJOBS, &cron).expect("cron").1["hostPID"],
        true
    );
    assert!(pod_spec_of(&REPLICATIONCONTROLLERS, &json!({"spec": {}})).is_none());
    assert!(pod_spec_of(&NAMESPACES, &json!({})).is_none());
}

#[test]
fn only_image_container_count_and_seccomp_annotation_changes_are_significant() {
    let old =
        json!({"metadata": {"labels": {}}, "spec": {"containers": [{"name": "c", "image": "a"}]}});
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"]["x"] = json!("y");
    relabelled["spec"]["activeDeadlineSeconds"] = json!(5);
    assert!(!significant_pod_update(&relabelled, &old));
    let mut image = old.clone();
    image["spec"]["containers"][0]["image"] = json!("b");
    assert!(significant_pod_update(&image, &old));
    let mut ann = old.clone();
    ann["metadata"]["annotations"] =
        json!({"container.seccomp.security.alpha.kubernetes.io/c": "unconfined"});
    assert!(significant_pod_update(&ann, &old));
    let mut eph = old.clone();
    eph["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "x"}]);
    assert!(significant_pod_update(&eph, &old));
}

#[test]
fn existing_pods_are_grouped_by_reason() {
    let pod = |name: &str, spec: Value| json!({"metadata": {"name": name}, "spec": spec});
    let priv_spec = json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]});
    let host = json!({"hostPID": true, "containers": [{"name": "c"}]});
    let ok = json!({"containers": [{"name": "c"}]});
    let pods = vec![
        pod("p3", priv_spec.clone()),
        pod("p1", priv_spec.clone()),
        pod("p2", priv_spec),
        pod("h", host),
        pod("fine", ok),
    ];
    let lv = LevelVersion {
        level: Level::Baseline,
        version: Version::LATEST,
    };
    let w = existing_pod_warnings("ns1", lv, &pods, 7);
    assert_eq!(
        w,
        [
            "new PodSecurity enforce level only checked against the first 5 of 7 existing pods",
            r#"existing pods in namespace "ns1" violate the new PodSecurity enforce level "baseline:latest""#,
            "h: host namespaces",
            "p1 (and 2 other pods): privileged",
        ]
    );
}
