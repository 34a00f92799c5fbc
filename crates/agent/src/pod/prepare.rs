//! What a container needs before it is created, resolved per attempt: its environment
//! (`env.rs`), its image (pulled per `imagePullPolicy` with the pod's pull secrets) and its
//! volume mounts; a failure is a `CreateContainerConfigError` (waiting reason, `Failed`
//! event, retried after the back-off). Also the refresh and removal of the pod's volumes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::time::Instant;

use super::env::{self, EnvSources};
use super::restart::ContainerLifecycle;
use super::status::Waiting;
use super::sync::CONFIG_ERROR_RETRY;
use super::volumes::VolumeError;
use super::worker::{PodWorker, WorkerCtx};
use crate::api::EventType;

/// What the environment and the volumes of `pod` are resolved against on this node.
fn env_sources<'a>(pod: &'a Pod, ctx: &'a WorkerCtx, pod_ips: &[String]) -> EnvSources<'a> {
    let ips = vec![ctx.node_ip.clone()];
    EnvSources {
        pod,
        pod_ips: if pod_ips.is_empty() {
            ips.clone()
        } else {
            pod_ips.to_vec()
        },
        host_ips: ips,
        allocatable: &ctx.allocatable,
        objects: ctx.objects.as_ref(),
    }
}

impl PodWorker {
    /// The container's environment (`env.rs`), or None after reporting a
    /// CreateContainerConfigError (waiting reason, `Failed` event, retry after the back-off).
    pub(super) async fn resolve_env(&mut self, c: &Container) -> Option<Vec<(String, String)>> {
        let services = match (self.ctx.services)() {
            Some(list) => super::service_env::service_env(&self.pod, &list),
            None => {
                let message = env::EnvError::ServicesNotSynced.to_string();
                self.config_error(c, "Failed", format!("Error: {message}"), message);
                return None;
            }
        };
        let sources = env_sources(&self.pod, &self.ctx, &self.pod_ips);
        match env::resolve_with_services(&sources, c, &services).await {
            Ok(env) => {
                if let Some(rec) = self.containers.get_mut(&c.name) {
                    rec.lifecycle.config_resolved();
                }
                for w in env.warnings {
                    self.event(None, EventType::Warning, env::INVALID_ENV_NAMES, w);
                }
                Some(env.vars)
            }
            Err(e) => {
                let message = e.to_string();
                self.config_error(c, "Failed", format!("Error: {message}"), message);
                None
            }
        }
    }

    /// The container's image (`crate::image`): `Some(None)` when no image is used (a
    /// `runtimeClassName: host` pod, or no image service), `Some(Some(image))` when it is in
    /// the store, None after reporting why not (waiting reason, events, the retry's wake-up).
    pub(super) async fn ensure_image(
        &mut self,
        c: &Container,
    ) -> Option<Option<crate::image::ImageRecord>> {
        let image = c.image.clone().unwrap_or_default();
        let images = self
            .ctx
            .images
            .clone()
            .filter(|_| !crate::image::is_host_mode(&self.pod));
        let Some(images) = images else {
            self.event(
                Some(&c.name),
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            return Some(None);
        };
        let secrets = self.pull_secrets().await;
        let req = crate::image::EnsureRequest {
            pod_uid: &self.uid,
            image: &image,
            pull_policy: c.image_pull_policy.as_deref(),
            pull_secrets: &secrets,
        };
        let mut events = Vec::new();
        let outcome = images.ensure(&req, &mut events).await;
        for e in events {
            self.event(Some(&c.name), e.type_, e.reason, e.message);
        }
        match outcome {
            crate::image::Ensured::Ready(r) => Some(Some(r)),
            crate::image::Ensured::Failed {
                reason,
                message,
                retry_at,
            } => {
                // Held until `retry_at`: a status write (which comes back as a pod update)
                // does not bring the next attempt forward.
                let rec = self.containers.entry(c.name.clone()).or_default();
                rec.lifecycle = ContainerLifecycle::ConfigError {
                    waiting: Waiting {
                        reason: reason.into(),
                        message: Some(message),
                    },
                    retry_at,
                };
                self.event(
                    Some(&c.name),
                    EventType::Warning,
                    "Failed",
                    format!("Error: {reason}"),
                );
                self.wake_at(retry_at);
                None
            }
        }
    }

    /// The data of the pod's `imagePullSecrets`; a missing one is reported with the
    /// kubelet's `FailedToRetrieveImagePullSecret` warning.
    async fn pull_secrets(&mut self) -> Vec<std::collections::BTreeMap<String, Vec<u8>>> {
        let names: Vec<String> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            match self.ctx.objects.secret(&self.namespace, &name).await {
                Ok(Some(s)) => out.push(
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                ),
                _ => missing.push(name),
            }
        }
        if !missing.is_empty() {
            self.event(
                None,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        out
    }

    /// The container's volume mounts (`volumes.rs`), or None after reporting a
    /// CreateContainerConfigError (`FailedMount` event, retry after the config-error back-off).
    pub(super) async fn volume_mounts(
        &mut self,
        c: &Container,
        env: &[(String, String)],
    ) -> Option<Vec<podvisor_runtime::Mount>> {
        let sources = env_sources(&self.pod, &self.ctx, &self.pod_ips);
        match self.volumes.container_mounts(&sources, c, env).await {
            Ok(m) => {
                if let Some(at) = self.volumes.next_refresh() {
                    self.wake_at(at);
                }
                Some(m)
            }
            Err(e) => {
                let reason = match e {
                    VolumeError::SetUp { .. } => "FailedMount",
                    VolumeError::Mount(_) => "Failed",
                };
                let message = e.to_string();
                self.config_error(c, reason, message.clone(), message);
                None
            }
        }
    }

    /// A CreateContainerConfigError: the container waits with `message`, an event
    /// (`reason`, `event`) says why, and the next attempt comes after the kubelet's pod
    /// worker back-off (10 s plus up to 50 % jitter).
    pub(super) fn config_error(
        &mut self,
        c: &Container,
        reason: &str,
        event: String,
        message: String,
    ) {
        let jitter = Duration::from_millis(rand::random_range(0..5_000));
        let retry_at = Instant::now() + CONFIG_ERROR_RETRY + jitter;
        let rec = self.containers.entry(c.name.clone()).or_default();
        rec.lifecycle = ContainerLifecycle::ConfigError {
            waiting: Waiting {
                reason: "CreateContainerConfigError".into(),
                message: Some(message),
            },
            retry_at,
        };
        self.event(Some(&c.name), EventType::Warning, reason, event);
        self.wake_at(retry_at);
    }

    /// Rewrites the pod's configMap/secret/downwardAPI volumes that changed, at most every
    /// `volumes::REFRESH_INTERVAL`, and wakes the worker for the next refresh.
    pub(super) async fn refresh_volumes(&mut self) {
        let sources = env_sources(&self.pod, &self.ctx, &self.pod_ips);
        if let Some(at) = self.volumes.refresh(&sources).await {
            self.wake_at(at);
        }
    }

    /// Removes the pod's volumes (after its sandbox: nothing runs that uses them).
    pub(super) fn remove_volumes(&mut self) {
        if let Err(e) = self.volumes.cleanup() {
            tracing::warn!(error = %e, dir = %self.volumes.dir().display(), "cannot remove the pod's volumes");
        }
    }
}
