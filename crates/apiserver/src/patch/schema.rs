//! The merge schema of the served kinds: how each list field merges.
//!
//! Upstream derives this from struct tags (`patchStrategy`, `patchMergeKey`) for strategic
//! merge patch and from OpenAPI extensions (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`) for server-side apply. Both are transcribed here for the
//! fields of the served kinds. A list not named here is atomic: a patch or an applied
//! configuration replaces it wholesale. Maps always merge key by key.
//!
//! Paths are the field names from the object root with list items skipped, so
//! `spec.containers[*].env` is `["spec", "containers", "env"]`. Workload kinds
//! (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job) embed a pod template at
//! `spec.template`; paths under it are resolved against the pod rules.

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    /// Replaced wholesale (no patch strategy; `x-kubernetes-list-type: atomic`).
    Atomic,
    /// A set of scalars: strategic merge unions them, apply owns each value.
    Set,
    /// A list of objects identified by key fields.
    Map {
        /// The strategic-merge-patch merge key (`patchMergeKey`).
        merge_key: &'static str,
        /// The server-side-apply list-map keys (`x-kubernetes-list-map-keys`).
        keys: &'static [&'static str],
    },
}

const NAME: ListType = ListType::Map {
    merge_key: "name",
    keys: &["name"],
};
const TYPE: ListType = ListType::Map {
    merge_key: "type",
    keys: &["type"],
};
const IP: ListType = ListType::Map {
    merge_key: "ip",
    keys: &["ip"],
};

/// Rules for lists of pod specs, relative to a pod (or pod template) root.
fn pod_list(path: &[&str]) -> Option<ListType> {
    Some(match path {
        [
            "spec",
            "containers" | "initContainers" | "ephemeralContainers",
        ] => NAME,
        [
            "spec",
            "containers" | "initContainers" | "ephemeralContainers",
            rest @ ..,
        ] => {
            return container_list(rest);
        }
        ["spec", "volumes"] => NAME,
        ["spec", "imagePullSecrets"] => NAME,
        ["spec", "schedulingGates"] => NAME,
        ["spec", "resourceClaims"] => NAME,
        ["spec", "hostAliases"] => IP,
        ["spec", "topologySpreadConstraints"] => ListType::Map {
            merge_key: "topologyKey",
            keys: &["topologyKey", "whenUnsatisfiable"],
        },
        ["status", "conditions"] => TYPE,
        ["status", "podIPs" | "hostIPs"] => IP,
        ["status", "resourceClaimStatuses"] => NAME,
        _ => return None,
    })
}

/// Rules for the lists of a container.
fn container_list(path: &[&str]) -> Option<ListType> {
    Some(match path {
        ["ports"] => ListType::Map {
            merge_key: "containerPort",
            keys: &["containerPort", "protocol"],
        },
        ["env"] => NAME,
        ["volumeMounts"] => ListType::Map {
            merge_key: "mountPath",
            keys: &["mountPath"],
        },
        ["volumeDevices"] => ListType::Map {
            merge_key: "devicePath",
            keys: &["devicePath"],
        },
        _ => return None,
    })
}

/// Rules every kind shares (object metadata).
fn metadata_list(path: &[&str]) -> Option<ListType> {
    match path {
        ["metadata", "finalizers"] => Some(ListType::Set),
        ["metadata", "ownerReferences"] => Some(ListType::Map {
            merge_key: "uid",
            keys: &["uid"],
        }),
        _ => None,
    }
}

/// Whether `kind` embeds a pod template at `spec.template`.
fn has_pod_template(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "PodTemplate"
    )
}

/// The merge rule of the list at `path` in an object of `kind`.
pub(crate) fn list_type(kind: &str, path: &[&str]) -> ListType {
    if let Some(t) = metadata_list(path) {
        return t;
    }
    if has_pod_template(kind)
        && let ["spec", "template", rest @ ..] = path
    {
        if let Some(t) = metadata_list(rest) {
            return t;
        }
        return pod_list(rest).unwrap_or(ListType::Atomic);
    }
    let found = match kind {
        "Pod" => pod_list(path),
        "Service" => match path {
            ["spec", "ports"] => Some(ListType::Map {
                merge_key: "port",
                keys: &["port", "protocol"],
            }),
            ["status", "conditions"] => Some(TYPE),
            _ => None,
        },
        "Node" => match path {
            ["spec", "podCIDRs"] => Some(ListType::Set),
            ["status", "conditions"] | ["status", "addresses"] => Some(TYPE),
            _ => None,
        },
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Namespace" => match path {
            ["status", "conditions"] => Some(TYPE),
            _ => None,
        },
        _ => None,
    };
    found.unwrap_or(ListType::Atomic)
}

/// Whether the object at `path` is an atomic struct (`+structType=atomic`): owned and
/// replaced as one value by server-side apply.
pub(crate) fn atomic_struct(kind: &str, path: &[&str]) -> bool {
    matches!(
        (kind, path),
        (
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet",
            ["spec", "selector"]
        )
    )
}

/// The value a list-map key takes when an item omits it (`+default` on a key field).
pub(crate) fn key_default(key: &str) -> Option<serde_json::Value> {
    match key {
        "protocol" => Some(serde_json::Value::from("TCP")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_containers_merge_by_name() {
        assert_eq!(list_type("Pod", &["spec", "containers"]), NAME);
        assert_eq!(
            list_type("Pod", &["spec", "containers", "ports"]),
            ListType::Map {
                merge_key: "containerPort",
                keys: &["containerPort", "protocol"]
            }
        );
        assert_eq!(list_type("Pod", &["spec", "tolerations"]), ListType::Atomic);
        assert_eq!(
            list_type("Pod", &["spec", "containers", "args"]),
            ListType::Atomic
        );
    }

    #[test]
    fn pod_template_rules_apply_to_workloads() {
        assert_eq!(
            list_type(
                "Deployment",
                &["spec", "template", "spec", "containers", "env"]
            ),
            NAME
        );
        assert_eq!(
            list_type(
                "Deployment",
                &["spec", "template", "metadata", "finalizers"]
            ),
            ListType::Set
        );
        assert_eq!(list_type("Deployment", &["status", "conditions"]), TYPE);
        assert_eq!(
            list_type("ConfigMap", &["spec", "containers"]),
            ListType::Atomic
        );
    }

    #[test]
    fn metadata_lists_for_every_kind() {
        assert_eq!(
            list_type("Lease", &["metadata", "finalizers"]),
            ListType::Set
        );
        assert_eq!(
            list_type("Secret", &["metadata", "ownerReferences"]),
            ListType::Map {
                merge_key: "uid",
                keys: &["uid"]
            }
        );
    }
}
