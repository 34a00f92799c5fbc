//! The container environment inside the pod worker (crate::pod::env): a missing ConfigMap or key
//! keeps the container waiting with CreateContainerConfigError and is retried every 10–15 s
//! until the object appears; the resolved variables reach the runtime.

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, SecretKeySelector,
};

use super::*;

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    config_map(name, data)
}

fn cm_key(var: &str, name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: var.into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: name.into(),
                key: key.into(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn failed_events(h: &Harness) -> Vec<(Duration, String)> {
    h.events
        .events()
        .into_iter()
        .filter(|(_, e)| e.reason == "Failed")
        .map(|(at, e)| (h.since(at), e.message))
        .collect()
}

fn waiting(st: &PodStatus, name: &str) -> (Option<String>, Option<String>) {
    let w = cs(st, name)
        .state
        .and_then(|s| s.waiting)
        .unwrap_or_default();
    (w.reason, w.message)
}

fn creates(h: &Harness) -> usize {
    h.rt.calls()
        .into_iter()
        .filter(|r| matches!(r.call, FakeCall::CreateContainer { .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn missing_config_map_waits_with_create_container_config_error_then_starts() {
    let h = Harness::new();
    let mut c = container("app");
    c.env = Some(vec![cm_key("MODE", "settings", "mode")]);
    let w = h.start(pod("Always", vec![c], None)).await;

    let st = h.last();
    assert_eq!(phase(&st), "Pending");
    assert_eq!(
        waiting(&st, "app"),
        (
            Some("CreateContainerConfigError".into()),
            Some("configmap \"settings\" not found".into())
        )
    );
    assert_eq!(
        failed_events(&h),
        [(s(0), "Error: configmap \"settings\" not found".to_string())]
    );
    let (ty, _) = h.event("Failed").unwrap();
    assert_eq!(ty, EventType::Warning);
    assert_eq!(creates(&h), 0, "the container is never created");

    // nothing is retried before the back-off period
    advance(s(9)).await;
    assert_eq!(failed_events(&h).len(), 1);

    // the ConfigMap appears without the key: the next attempt (10–15 s) says so
    h.objects.put_config_map(cm("settings", &[("other", "x")]));
    advance(s(7)).await;
    let failed = failed_events(&h);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[1].0 >= s(10) && failed[1].0 <= s(15), "{failed:?}");
    assert_eq!(
        failed[1].1,
        "Error: couldn't find key mode in ConfigMap default/settings"
    );
    let st = h.last();
    assert_eq!(phase(&st), "Pending");
    assert_eq!(
        waiting(&st, "app"),
        (
            Some("CreateContainerConfigError".into()),
            Some("couldn't find key mode in ConfigMap default/settings".into())
        )
    );
    assert_eq!(cs(&st, "app").restart_count, 0);

    // with the key, the next attempt starts it
    h.objects
        .put_config_map(cm("settings", &[("mode", "fast")]));
    advance(s(16)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    assert!(cs(&st, "app").state.unwrap().running.is_some());
    assert_eq!(cs(&st, "app").restart_count, 0);
    assert_eq!(failed_events(&h).len(), 2);
    let cfg = h.rt.find_container(UID, "app").expect("created").config;
    assert_eq!(cfg.env, [("MODE".to_string(), "fast".to_string())]);
    assert_eq!(h.starts().len(), 1);
    w.stop_agent().await;
}

#[tokio::test(start_paused = true)]
async fn resolved_env_reaches_the_runtime_with_expanded_args() {
    let h = Harness::new();
    h.objects.put_config_map(cm(
        "app-config",
        &[("LEVEL", "debug"), ("9bad", "x"), ("COLOR", "blue")],
    ));
    h.objects.put_secret(podvisor_testkit::secret(
        "default",
        "db",
        &[("password", b"hunter2")],
    ));
    let mut c = container("app");
    c.env_from = Some(vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: "app-config".into(),
            optional: None,
        }),
        ..Default::default()
    }]);
    c.env = Some(vec![
        EnvVar {
            name: "POD".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "metadata.name".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "status.podIP".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "PASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "db".into(),
                    key: "password".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "COLOR".into(),
            value: Some("$(COLOR)-ish".into()),
            ..Default::default()
        },
        cm_key("OPTIONAL", "absent", "k").clone(),
    ]);
    // the optional reference to a missing ConfigMap is skipped
    if let Some(r) = c
        .env
        .as_mut()
        .and_then(|e| e.last_mut())
        .and_then(|e| e.value_from.as_mut())
        .and_then(|v| v.config_map_key_ref.as_mut())
    {
        r.optional = Some(true);
    }
    c.command = Some(vec!["run".into(), "--level=$(LEVEL)".into()]);
    c.args = Some(vec!["$(POD)@$(IP)".into()]);
    let w = h.start(pod("Always", vec![c], None)).await;

    let cfg = h.rt.find_container(UID, "app").expect("created").config;
    let env: Vec<(&str, &str)> = cfg
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("LEVEL", "debug"),
            ("POD", "p"),
            ("IP", "10.0.0.7"),
            ("PASSWORD", "hunter2"),
            ("COLOR", "blue-ish"),
        ]
    );
    assert_eq!(cfg.command, ["run", "--level=debug"]);
    assert_eq!(cfg.args, ["p@10.0.0.7"]);
    let (ty, msg) = h.event("InvalidEnvironmentVariableNames").unwrap();
    assert_eq!(ty, EventType::Warning);
    assert_eq!(
        msg,
        "Keys [9bad] from the EnvFrom configMap default/app-config were skipped since they are considered invalid environment variable names."
    );
    assert_eq!(phase(&h.last()), "Running");
    w.stop_agent().await;
}

#[tokio::test(start_paused = true)]
async fn deleting_a_pod_that_waits_for_its_config_map_ends_it() {
    let h = Harness::new();
    let mut c = container("app");
    c.env = Some(vec![cm_key("MODE", "settings", "mode")]);
    let mut w = h.start(pod("Always", vec![c], Some(30))).await;
    assert_eq!(
        waiting(&h.last(), "app").0.as_deref(),
        Some("CreateContainerConfigError")
    );
    w.delete(&h.clock, 30);
    advance(s(1)).await;
    assert_eq!(
        h.api.deletes().len(),
        1,
        "nothing runs, so the pod goes at once"
    );
    advance(s(30)).await;
    assert_eq!(creates(&h), 0);
    w.stop_agent().await;
}
