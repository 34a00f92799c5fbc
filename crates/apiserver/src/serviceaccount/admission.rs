//! The `ServiceAccount` admission of pods (upstream's `plugin/pkg/admission/serviceaccount`),
//! on create:
//!
//! - an empty `serviceAccountName` becomes `default` (and the deprecated `serviceAccount`
//!   mirrors it);
//! - the service account must exist (else `pods "x" is forbidden: error looking up service
//!   account ns/sa: serviceaccount "sa" not found`);
//! - unless `automountServiceAccountToken` is false on the pod (or, when the pod does not
//!   say, on the service account), the projected volume `kube-api-access-<5 random>` (a
//!   `serviceAccountToken` of 3607 s at `token`, `ca.crt` from the `kube-root-ca.crt`
//!   ConfigMap, the `namespace` from the downward API; mode 0644) is added and mounted
//!   read-only at [`TOKEN_MOUNT_PATH`] in every init and app container that has no mount
//!   there yet. Mirror pods (`kubernetes.io/config.mirror`) are left alone.

use rand::Rng as _;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::ops::Core;
use crate::registry::SERVICEACCOUNTS;

/// Where the token volume is mounted in each container.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the token volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap with the cluster's CA in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The alphabet of generated name suffixes (upstream's `utilrand.String`).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `len` random characters of upstream's generated-name alphabet.
pub fn random_suffix(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHANUMS[rng.random_range(0..ALPHANUMS.len())] as char)
        .collect()
}

/// The projected volume source upstream's admission adds (`TokenVolumeSource`).
pub fn token_volume(name: &str) -> Value {
    json!({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": super::WARN_ONLY_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
    ]}})
}

/// Adds the token volume and its mounts to `pod` (already holding `serviceAccountName`).
pub fn mount_token(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(VOLUME_PREFIX))
                .map(str::to_string)
        });
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", random_suffix(5)));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs.iter_mut() {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
            {
                continue;
            }
            mounts.push(mount.clone());
            needs_volume = true;
        }
    }
    if existing.is_none() && needs_volume {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(vs) = volumes.as_array_mut() {
            vs.push(token_volume(&volume_name));
        }
    }
}

impl Core {
    /// The `ServiceAccount` admission of a pod create (see the module docs).
    pub(crate) async fn admit_pod_service_account(&self, pod: &mut Value) -> Result<(), ApiError> {
        if pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(MIRROR_ANNOTATION))
            .is_some()
        {
            return Ok(());
        }
        let name = crate::objects::name_of(pod).to_string();
        let ns = crate::objects::meta_str(pod, "namespace")
            .unwrap_or("")
            .to_string();
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let sa_name = match spec.get("serviceAccountName").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => match spec.get("serviceAccount").and_then(Value::as_str) {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => "default".to_string(),
            },
        };
        spec.insert("serviceAccountName".into(), Value::from(sa_name.clone()));
        spec.insert("serviceAccount".into(), Value::from(sa_name.clone()));
        let pod_says = spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool);
        let Some((sa, _)) = self
            .storage
            .get(&SERVICEACCOUNTS, Some(&ns), &sa_name)
            .await?
        else {
            return Err(crate::admission::pod_forbidden(
                &name,
                format!(
                    "error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found"
                ),
            ));
        };
        let automount = pod_says
            .or_else(|| {
                sa.get("automountServiceAccountToken")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(true);
        if automount {
            mount_token(pod);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_mounts_one_token_volume() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"},
                {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}]}});
        mount_token(&mut pod);
        let vols = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        let vname = vols[1]["name"].as_str().unwrap().to_string();
        assert!(vname.starts_with(VOLUME_PREFIX) && vname.len() == VOLUME_PREFIX.len() + 5);
        assert!(
            vname[VOLUME_PREFIX.len()..]
                .bytes()
                .all(|b| ALPHANUMS.contains(&b))
        );
        assert_eq!(vols[1], token_volume(&vname));
        for c in ["initContainers", "containers"] {
            let m = &pod["spec"][c][0]["volumeMounts"][0];
            assert_eq!(m["name"], vname.as_str());
            assert_eq!(m["readOnly"], true);
            assert_eq!(m["mountPath"], TOKEN_MOUNT_PATH);
        }
        // The container that mounts something there keeps its own mount only.
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Running it again adds nothing.
        let before = pod.clone();
        mount_token(&mut pod);
        assert_eq!(pod, before);
    }

    #[test]
    fn the_volume_is_upstreams() {
        let v = token_volume("kube-api-access-abcde");
        assert_eq!(v["projected"]["defaultMode"], 420);
        assert_eq!(
            v["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        assert_eq!(
            v["projected"]["sources"][1]["configMap"]["name"],
            "kube-root-ca.crt"
        );
        assert_eq!(
            v["projected"]["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }
}
