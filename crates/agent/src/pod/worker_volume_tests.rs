//! Volumes inside the pod worker (crate::pod::volumes): a missing ConfigMap keeps the container
//! waiting with CreateContainerConfigError (a `FailedMount` event) and is retried; the mounts
//! and termination-message settings reach the runtime; an emptyDir outlives container
//! restarts; the pod's directory goes with its sandbox; configMap volumes follow updates.

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EmptyDirVolumeSource, Volume, VolumeMount,
};

use super::*;

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    config_map(name, data)
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn pod_with_volumes(policy: &str, c: Container) -> Pod {
    let mut p = pod(policy, vec![c], None);
    if let Some(spec) = p.spec.as_mut() {
        spec.volumes = Some(vec![
            Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "settings".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ]);
    }
    p
}

#[tokio::test(start_paused = true)]
async fn missing_config_map_volume_waits_then_mounts_reach_the_runtime() {
    let h = Harness::new();
    h.rt.script(
        "app",
        FakeScript::always(Attempt::forever().on_stop_exit(s(1), 0)),
    );
    let mut c = container("app");
    c.volume_mounts = Some(vec![mount("cfg", "/etc/cfg"), mount("scratch", "/scratch")]);
    c.termination_message_policy = Some("FallbackToLogsOnError".into());
    let mut w = h.start(pod_with_volumes("Always", c)).await;

    let st = h.last();
    assert_eq!(phase(&st), "Pending");
    let message = "MountVolume.SetUp failed for volume \"cfg\" : configmaps \"settings\" not found";
    let waiting = cs(&st, "app")
        .state
        .and_then(|s| s.waiting)
        .unwrap_or_default();
    assert_eq!(
        waiting.reason.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert_eq!(waiting.message.as_deref(), Some(message));
    assert_eq!(
        h.event("FailedMount"),
        Some((EventType::Warning, message.to_string()))
    );
    assert!(h.rt.find_container(UID, "app").is_none(), "never created");

    h.objects
        .put_config_map(cm("settings", &[("mode", "fast")]));
    advance(s(16)).await;
    let st = h.last();
    assert_eq!(phase(&st), "Running");
    let cfg = h.rt.find_container(UID, "app").expect("created").config;
    let pod_dir = h.dir.path().join("pods").join(UID);
    assert_eq!(
        cfg.mounts,
        [
            podvisor_runtime::Mount {
                source: pod_dir.join("volumes/kubernetes.io~configmap/cfg"),
                target: "/etc/cfg".into(),
                read_only: true,
            },
            podvisor_runtime::Mount {
                source: pod_dir.join("volumes/kubernetes.io~empty-dir/scratch"),
                target: "/scratch".into(),
                read_only: false,
            },
        ]
    );
    assert_eq!(
        cfg.termination_message,
        Some(podvisor_runtime::TerminationMessage {
            path: "/dev/termination-log".into(),
            fallback_to_logs_on_error: true,
        })
    );
    let mode = pod_dir.join("volumes/kubernetes.io~configmap/cfg/mode");
    assert_eq!(std::fs::read_to_string(&mode).expect("file"), "fast");

    // An update reaches the file at a later sync (the worker wakes itself for it).
    h.objects
        .put_config_map(cm("settings", &[("mode", "slow")]));
    advance(crate::pod::volumes::REFRESH_INTERVAL + s(1)).await;
    assert_eq!(std::fs::read_to_string(&mode).expect("file"), "slow");

    // The emptyDir keeps what a container wrote; the pod's directory goes with the pod.
    let scratch = pod_dir.join("volumes/kubernetes.io~empty-dir/scratch/restartCount");
    std::fs::write(&scratch, "1\n").expect("write");
    w.delete(&h.clock, 30);
    advance(s(5)).await;
    assert!(!h.rt.has_sandbox(UID));
    assert!(!pod_dir.exists(), "the pod's volumes are removed with it");
    w.stop_agent().await;
}

#[tokio::test(start_paused = true)]
async fn empty_dir_survives_container_restarts() {
    let h = Harness::new();
    h.rt.script("app", FakeScript::always(Attempt::exits_after(s(1), 1)));
    h.objects.put_config_map(cm("settings", &[]));
    let mut c = container("app");
    c.volume_mounts = Some(vec![mount("scratch", "/scratch")]);
    let w = h.start(pod_with_volumes("OnFailure", c)).await;
    let file = h
        .dir
        .path()
        .join("pods")
        .join(UID)
        .join("volumes/kubernetes.io~empty-dir/scratch/count");
    std::fs::write(&file, "1").expect("write");
    advance(s(40)).await;
    let st = h.last();
    assert!(cs(&st, "app").restart_count >= 2, "{st:?}");
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), "1");
    w.stop_agent().await;
}
