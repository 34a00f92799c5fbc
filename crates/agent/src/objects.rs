//! The agent's read door to the objects a pod refers to (STYLE.md §6): ConfigMaps and Secrets,
//! for env `valueFrom`/`envFrom` and for configMap/secret/projected volumes,
//! PersistentVolumeClaims and their PersistentVolumes for claim volumes, and the
//! service-account tokens of projected volumes (TokenRequest, bound to the pod, as the
//! kubelet asks for them). [`KubeObjects`]
//! reads them through kube-rs; [`MemoryObjects`] is an in-memory stand-in for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, ServiceAccount,
};
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

    /// A token of a service account bound to a pod (`serviceaccounts/<sa>/token`).
    async fn service_account_token(&self, req: &PodTokenRequest) -> Result<String, AgentError>;

    /// The PersistentVolumeClaim `namespace/name`, if it exists.
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, AgentError>;

    /// The PersistentVolume `name`, if it exists.
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, AgentError>;
}

/// What the agent asks the TokenRequest API for: a token of the pod's service account,
/// bound to the pod by name and UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodTokenRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's `serviceAccountName`.
    pub service_account: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The audience (None: the API server's).
    pub audience: Option<String>,
    /// The requested lifetime.
    pub expiration_seconds: i64,
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

    async fn service_account_token(&self, req: &PodTokenRequest) -> Result<String, AgentError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &req.namespace);
        let tr = TokenRequest {
            spec: TokenRequestSpec {
                audiences: req.audience.iter().cloned().collect(),
                expiration_seconds: Some(req.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(req.pod_name.clone()),
                    uid: Some(req.pod_uid.clone()),
                }),
            },
            ..Default::default()
        };
        let op = || {
            format!(
                "create token of serviceaccount {}/{}",
                req.namespace, req.service_account
            )
        };
        let out = api
            .create_token_request(&req.service_account, &Default::default(), &tr)
            .await
            .map_err(|e| AgentError::api(op(), e))?;
        out.status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AgentError::Api {
                operation: op(),
                code: None,
                message: "the answer holds no token".into(),
            })
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, AgentError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|e| {
            AgentError::api(format!("get persistentvolumeclaim {namespace}/{name}"), e)
        })
    }

    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, AgentError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(|e| AgentError::api(format!("get persistentvolume {name}"), e))
    }
}

/// An in-memory [`ObjectSource`] for tests: objects are put in by `(namespace, name)`.
#[derive(Default)]
pub struct MemoryObjects {
    config_maps: Mutex<BTreeMap<(String, String), ConfigMap>>,
    secrets: Mutex<BTreeMap<(String, String), Secret>>,
    claims: Mutex<BTreeMap<(String, String), PersistentVolumeClaim>>,
    volumes: Mutex<BTreeMap<String, PersistentVolume>>,
    token_requests: Mutex<Vec<PodTokenRequest>>,
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

    /// The token requests answered so far, oldest first.
    pub fn token_requests(&self) -> Vec<PodTokenRequest> {
        self.token_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds or replaces a PersistentVolumeClaim (namespace and name from its metadata).
    pub fn put_claim(&self, c: PersistentVolumeClaim) {
        let key = key_of(&c.metadata);
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, c);
    }

    /// Adds or replaces a PersistentVolume.
    pub fn put_volume(&self, v: PersistentVolume) {
        let key = v.metadata.name.clone().unwrap_or_default();
        self.volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, v);
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

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, AgentError> {
        Ok(self
            .claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }

    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, AgentError> {
        Ok(self
            .volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned())
    }

    /// Answers `token-<n>-<sa>-<pod uid>`, `n` counting the requests.
    async fn service_account_token(&self, req: &PodTokenRequest) -> Result<String, AgentError> {
        let mut reqs = self
            .token_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        reqs.push(req.clone());
        Ok(format!(
            "token-{}-{}-{}",
            reqs.len(),
            req.service_account,
            req.pod_uid
        ))
    }
}
