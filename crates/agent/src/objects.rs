//! The agent's read door to the objects a pod refers to (STYLE.md §6): ConfigMaps and Secrets,
//! for env `valueFrom`/`envFrom` and for configMap/secret/projected volumes. [`KubeObjects`]
//! reads them through kube-rs; [`MemoryObjects`] is an in-memory stand-in for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client};

use crate::error::AgentError;

/// Reads of the objects a pod refers to. `Ok(None)` means the object does not exist.
#[async_trait::async_trait]
pub trait ObjectSource: Send + Sync + 'static {
    /// The ConfigMap `namespace/name`, if it exists.
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, AgentError>;

    /// The Secret `namespace/name`, if it exists.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, AgentError>;
}

/// [`ObjectSource`] over kube-rs (the node's credentials; the node authorizer allows reads).
#[derive(Clone)]
pub struct KubeObjects {
    client: Client,
}

impl KubeObjects {
    /// Wraps a client.
    pub fn new(client: Client) -> KubeObjects {
        KubeObjects { client }
    }
}

#[async_trait::async_trait]
impl ObjectSource for KubeObjects {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, AgentError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(|e| AgentError::api(format!("get configmap {namespace}/{name}"), e))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, AgentError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(|e| AgentError::api(format!("get secret {namespace}/{name}"), e))
    }
}

/// An in-memory [`ObjectSource`] for tests: objects are put in by `(namespace, name)`.
#[derive(Default)]
pub struct MemoryObjects {
    config_maps: Mutex<BTreeMap<(String, String), ConfigMap>>,
    secrets: Mutex<BTreeMap<(String, String), Secret>>,
}

impl MemoryObjects {
    /// An empty store.
    pub fn new() -> MemoryObjects {
        MemoryObjects::default()
    }

    /// Adds or replaces a ConfigMap (namespace and name from its metadata).
    pub fn put_config_map(&self, cm: ConfigMap) {
        let key = key_of(&cm.metadata);
        self.config_maps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, cm);
    }

    /// Adds or replaces a Secret (namespace and name from its metadata).
    pub fn put_secret(&self, s: Secret) {
        let key = key_of(&s.metadata);
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, s);
    }
}

/// The `(namespace, name)` an object is stored under (namespace `default` when unset).
fn key_of(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

#[async_trait::async_trait]
impl ObjectSource for MemoryObjects {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, AgentError> {
        Ok(self
            .config_maps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, AgentError> {
        Ok(self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }
}
