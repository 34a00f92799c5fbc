//! What a pod may ask for that this node does not run yet, refused visibly: each container
//! of such a pod waits with `CreateContainerConfigError` and the message below, and a
//! `Failed` event (`Error: <message>`) says why, as the kubelet reports a container whose
//! configuration it cannot build. Nothing is silently ignored.
//!
//! * `spec.hostUsers: false` (user namespaces, KEP-127): the container would run with the
//!   host's user IDs, the opposite of what was asked.
//! * `image` volumes (KEP-4639) mounted by the container: the agent cannot mount an OCI
//!   image or artifact as a volume.
//!
//! The check is pure and runs before each create attempt, so the refusal is retried with
//! the config-error back-off like any other configuration error.

use k8s_openapi::api::core::v1::{Container, Pod};

/// Why `c` of `pod` cannot be created on this node, if it cannot.
pub fn unsupported(pod: &Pod, c: &Container) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec.host_users == Some(false) {
        return Some(
            "user namespaces are not supported on this node: spec.hostUsers: false cannot be honoured"
                .to_string(),
        );
    }
    let mounted = |name: &str| c.volume_mounts.iter().flatten().any(|m| m.name == name);
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.image.is_some() && mounted(&v.name))
        .map(|v| {
            let reference = v
                .image
                .as_ref()
                .and_then(|i| i.reference.as_deref())
                .unwrap_or_default();
            format!(
                "image volumes are not supported on this node: volume {:?} (image {reference:?}) cannot be mounted",
                v.name
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn host_users_false_is_refused_and_true_is_not() {
        let mut p = pod(serde_json::json!({"spec": {"hostUsers": false,
            "containers": [{"name": "app", "image": "busybox"}]}}));
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let why = unsupported(&p, &c).unwrap();
        assert!(why.contains("hostUsers: false"), "{why}");
        p.spec.as_mut().unwrap().host_users = Some(true);
        assert_eq!(unsupported(&p, &c), None);
    }

    #[test]
    fn image_volume_is_refused_only_for_containers_that_mount_it() {
        let p = pod(serde_json::json!({"spec": {
            "volumes": [{"name": "model", "image": {"reference": "quay.io/m:v1"}}],
            "containers": [
                {"name": "uses", "image": "busybox", "volumeMounts": [{"name": "model", "mountPath": "/m"}]},
                {"name": "other", "image": "busybox"}]}}));
        let spec = p.spec.as_ref().unwrap();
        let why = unsupported(&p, &spec.containers[0]).unwrap();
        assert_eq!(
            why,
            "image volumes are not supported on this node: volume \"model\" (image \"quay.io/m:v1\") cannot be mounted"
        );
        assert_eq!(unsupported(&p, &spec.containers[1]), None);
    }
}
