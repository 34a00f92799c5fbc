//! Pulling an image from a registry into the [`ImageStore`](super::store::ImageStore), with
//! `oci-client` (Docker v2 and OCI manifests; an index resolves to linux and this node's
//! architecture; token and basic auth; every blob's digest verified).
//!
//! Endpoints are tried in order (mirrors, then the registry, see [`super::registries`]); the
//! first that serves the manifest is used for the whole image. Credentials for an endpoint:
//! its `registries.yaml` auth, else the pod's pull-secret credentials for the image's
//! registry (each in turn), else anonymous. Concurrent pulls of one reference share one
//! download; layers already unpacked are not fetched again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::registries::{Credential, Endpoint, RegistrySettings};
use super::store::{ImageConfig, ImageRecord, ImageStore};

/// The result of a pull shared by concurrent callers: the image, or the message of why not.
type SharedPull = Shared<BoxFuture<'static, Result<ImageRecord, String>>>;

/// Pulls images. See the module documentation.
pub struct Puller {
    store: Arc<ImageStore>,
    settings: RegistrySettings,
    inflight: Mutex<HashMap<String, SharedPull>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller").finish_non_exhaustive()
    }
}

impl Puller {
    /// A puller into `store` with the node's registry settings.
    pub fn new(store: Arc<ImageStore>, settings: RegistrySettings) -> Puller {
        // reqwest is built without a default TLS provider: the workspace's is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Puller {
            store,
            settings,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Pulls `reference` (normalized) with `credentials` (from the pod's pull secrets).
    /// Concurrent calls for one reference share the first caller's download.
    pub async fn pull(
        self: &Arc<Self>,
        reference: &Reference,
        credentials: Vec<Credential>,
    ) -> Result<ImageRecord, String> {
        let key = reference.whole();
        let fut = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let this = self.clone();
                    let r = reference.clone();
                    let k = key.clone();
                    let f = async move {
                        let result = this.pull_once(&r, &credentials).await;
                        this.inflight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&k);
                        result
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key, f.clone());
                    f
                }
            }
        };
        fut.await
    }

    async fn pull_once(
        &self,
        reference: &Reference,
        credentials: &[Credential],
    ) -> Result<ImageRecord, String> {
        let whole = reference.whole();
        let endpoints = self
            .settings
            .endpoints(reference.registry(), reference.repository());
        let mut first_error = None;
        for endpoint in &endpoints {
            match self.pull_from(reference, endpoint, credentials).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::debug!(image = %whole, endpoint = %endpoint.host, error = %e, "pull from endpoint failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(format!(
            "failed to pull and unpack image \"{whole}\": {}",
            first_error.unwrap_or_else(|| "no endpoint".into())
        ))
    }

    fn client_for(&self, endpoint: &Endpoint) -> Result<Client, String> {
        let tls = self
            .settings
            .config_of(&endpoint.host)
            .and_then(|c| c.tls.clone())
            .unwrap_or_default();
        let mut extra = Vec::new();
        if let Some(ca) = &tls.ca_file {
            let data = std::fs::read(ca).map_err(|e| format!("read {}: {e}", ca.display()))?;
            extra.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        Ok(Client::new(ClientConfig {
            protocol: if endpoint.http {
                ClientProtocol::HttpsExcept(vec![endpoint.host.clone()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: tls.insecure_skip_verify,
            extra_root_certificates: extra,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: "podvisor",
            ..ClientConfig::default()
        }))
    }

    /// The credentials to try at `endpoint`, in order.
    fn auths_for(&self, endpoint: &Endpoint, credentials: &[Credential]) -> Vec<RegistryAuth> {
        let configured = self
            .settings
            .config_of(&endpoint.host)
            .and_then(|c| c.auth.as_ref())
            .and_then(|a| a.credential());
        let basic = |c: &Credential| RegistryAuth::Basic(c.username.clone(), c.password.clone());
        match configured {
            Some(c) => vec![basic(&c)],
            None if credentials.is_empty() => vec![RegistryAuth::Anonymous],
            None => credentials.iter().map(basic).collect(),
        }
    }

    async fn pull_from(
        &self,
        reference: &Reference,
        endpoint: &Endpoint,
        credentials: &[Credential],
    ) -> Result<ImageRecord, String> {
        let mut target = match (reference.tag(), reference.digest()) {
            (_, Some(d)) => Reference::with_digest(
                reference.registry().to_string(),
                endpoint.repository.clone(),
                d.to_string(),
            ),
            (t, None) => Reference::with_tag(
                reference.registry().to_string(),
                endpoint.repository.clone(),
                t.unwrap_or("latest").to_string(),
            ),
        };
        if endpoint.mirror || endpoint.host != reference.registry() {
            target.set_mirror_registry(endpoint.host.clone());
        }
        let whole = reference.whole();
        let mut last = String::new();
        for auth in self.auths_for(endpoint, credentials) {
            // One client per attempt: the client keeps the first credentials it saw per host.
            let client = self.client_for(endpoint)?;
            match client.pull_manifest_and_config(&target, &auth).await {
                Ok((manifest, digest, config)) => {
                    return self
                        .fetch(&client, &target, reference, manifest, digest, config)
                        .await;
                }
                Err(e) => last = resolve_error(&whole, &e),
            }
        }
        Err(last)
    }

    async fn fetch(
        &self,
        client: &Client,
        target: &Reference,
        reference: &Reference,
        manifest: oci_client::manifest::OciImageManifest,
        manifest_digest: String,
        config: String,
    ) -> Result<ImageRecord, String> {
        let config_digest = manifest.config.digest.clone();
        self.store
            .put_blob(&config_digest, config.as_bytes())
            .map_err(|e| format!("failed to fetch config: {e}"))?;
        let image_config = ImageConfig::parse(config.as_bytes())?;
        let mut size = u64::try_from(manifest.config.size).unwrap_or(0);
        let mut layers = Vec::new();
        for layer in &manifest.layers {
            size += u64::try_from(layer.size).unwrap_or(0);
            layers.push(layer.digest.clone());
            if self.store.has_layer(&layer.digest) {
                continue;
            }
            let lock = self.store.layer_lock(&layer.digest);
            let _held = lock.lock().await;
            if self.store.has_layer(&layer.digest) {
                continue;
            }
            let tmp = self.store.tmp_path("download");
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| format!("create {}: {e}", tmp.display()))?;
            let fetched = client.pull_blob(target, layer, file).await;
            if let Err(e) = fetched {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(format!("failed to copy: {}: {e}", layer.digest));
            }
            let store = self.store.clone();
            let digest = layer.digest.clone();
            let path = tmp.clone();
            let unpacked = tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                store.unpack_layer(&digest, f).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            let _ = tokio::fs::remove_file(&tmp).await;
            unpacked.map_err(|e| format!("failed to extract layer {}: {e}", layer.digest))?;
        }
        let repo = format!("{}/{}", reference.registry(), reference.repository());
        let record = ImageRecord {
            id: config_digest,
            repo_tags: reference
                .tag()
                .filter(|_| reference.digest().is_none())
                .map(|t| vec![format!("{repo}:{t}")])
                .unwrap_or_default(),
            repo_digests: vec![format!("{repo}@{manifest_digest}")],
            layers,
            size,
            config: image_config,
            last_used: 0,
        };
        self.store.put_image(record).map_err(|e| e.to_string())
    }
}

/// A manifest fetch error worded as containerd words it.
fn resolve_error(whole: &str, e: &OciDistributionError) -> String {
    let detail = match e {
        OciDistributionError::ImageManifestNotFoundError(_) => format!("{whole}: not found"),
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) =>
        {
            format!("{whole}: not found")
        }
        OciDistributionError::UnauthorizedError { url } => {
            format!("unexpected status from GET request to {url}: 401 Unauthorized")
        }
        OciDistributionError::AuthenticationFailure(m) => {
            format!("failed to authorize: {m}")
        }
        other => other.to_string(),
    };
    format!("failed to resolve reference \"{whole}\": {detail}")
}
