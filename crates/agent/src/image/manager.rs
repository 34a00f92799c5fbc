//! The kubelet's image manager (`EnsureImageExists`): the pull policy, the pull back-off per
//! pod and image, and the events and waiting reasons a pod shows while its image is fetched.
//!
//! ```text
//!  invalid reference ──────────────────────────▶ InvalidImageName   (event InspectFailed)
//!  policy says no pull: present ───────────────▶ ready              (event Pulled "already present")
//!                       missing (Never) ───────▶ ErrImageNeverPull  (event ErrImageNeverPull)
//!  in back-off (pod UID + image) ──────────────▶ ImagePullBackOff   (event BackOff)
//!  pull (event Pulling) ── ok ─────────────────▶ ready              (event Pulled "Successfully pulled …")
//!                       └─ fails ──────────────▶ ErrImagePull       (event Failed; back-off advanced)
//! ```
//!
//! The back-off is upstream's `flowcontrol.Backoff` with the kubelet's image settings: 10 s
//! doubling to 300 s; an entry idle for twice the maximum starts over. Time comes from tokio.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::Reference;
use tokio::time::Instant;

use super::pull::Puller;
use super::registries::credentials_from_secrets;
use super::store::{ImageRecord, ImageStore};
use crate::api::EventType;

/// The first pull back-off.
pub const PULL_BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The largest pull back-off.
pub const PULL_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long `ErrImagePull` is shown before the next attempt reports the back-off.
pub const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(2);

/// Waiting reason: the pull failed.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// Waiting reason: the pull is in back-off.
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
/// Waiting reason: the image is missing and the policy is `Never`.
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
/// Waiting reason: the image name does not parse.
pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";

/// An event the pod worker records for the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason (`Pulling`, `Pulled`, `Failed`, `BackOff`, …).
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// What [`ImageManager::ensure`] found.
#[derive(Debug)]
pub enum Ensured {
    /// The image is in the store.
    Ready(ImageRecord),
    /// It is not: the container waits with `reason` and `message`; the next attempt makes
    /// sense from `retry_at`.
    Failed {
        /// The waiting reason.
        reason: &'static str,
        /// The waiting message.
        message: String,
        /// When to try again.
        retry_at: Instant,
    },
}

/// What the container asks for.
#[derive(Clone, Debug)]
pub struct EnsureRequest<'a> {
    /// The pod's UID (the back-off key's first half).
    pub pod_uid: &'a str,
    /// The spec's `image`.
    pub image: &'a str,
    /// The spec's `imagePullPolicy` (defaulted when None).
    pub pull_policy: Option<&'a str>,
    /// The data of the pod's `imagePullSecrets` (dockerconfigjson or dockercfg).
    pub pull_secrets: &'a [BTreeMap<String, Vec<u8>>],
}

#[derive(Clone, Copy, Debug)]
struct Backoff {
    last_update: Instant,
    backoff: Duration,
}

/// The image manager. One per agent.
pub struct ImageManager {
    store: Arc<ImageStore>,
    puller: Arc<Puller>,
    backoff: Mutex<HashMap<String, Backoff>>,
}

impl std::fmt::Debug for ImageManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageManager").finish_non_exhaustive()
    }
}

/// The reference an image name stands for (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalize(image: &str) -> Result<Reference, String> {
    if image.is_empty() || image.trim() != image {
        return Err(invalid(image));
    }
    image.parse::<Reference>().map_err(|_| invalid(image))
}

fn invalid(image: &str) -> String {
    format!(
        "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"
    )
}

/// The key the store knows a reference by: `registry/repo@digest` or `registry/repo:tag`.
pub fn store_key(r: &Reference) -> String {
    match r.digest() {
        Some(d) => format!("{}/{}@{d}", r.registry(), r.repository()),
        None => r.whole(),
    }
}

/// Upstream's default `imagePullPolicy`: `Always` for `:latest` or no tag (without a digest),
/// else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

impl ImageManager {
    /// A manager over `store`, pulling with `puller`.
    pub fn new(store: Arc<ImageStore>, puller: Arc<Puller>) -> ImageManager {
        ImageManager {
            store,
            puller,
            backoff: Mutex::new(HashMap::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<ImageStore> {
        &self.store
    }

    /// Makes sure the container's image is in the store, per its pull policy; `events` gets
    /// the events to record, in order.
    pub async fn ensure(&self, req: &EnsureRequest<'_>, events: &mut Vec<ImageEvent>) -> Ensured {
        let image = req.image;
        let reference = match normalize(image) {
            Ok(r) => r,
            Err(message) => {
                events.push(ImageEvent {
                    type_: EventType::Warning,
                    reason: "InspectFailed",
                    message: message.clone(),
                });
                return Ensured::Failed {
                    reason: INVALID_IMAGE_NAME,
                    message,
                    retry_at: Instant::now() + PULL_BACKOFF_INITIAL,
                };
            }
        };
        let policy = req
            .pull_policy
            .unwrap_or_else(|| default_pull_policy(image));
        let present = self.store.find(&store_key(&reference));
        let pull = match policy {
            "Never" => false,
            "IfNotPresent" => present.is_none(),
            _ => true,
        };
        if !pull {
            return match present {
                Some(r) => {
                    events.push(ImageEvent {
                        type_: EventType::Normal,
                        reason: "Pulled",
                        message: format!("Container image \"{image}\" already present on machine"),
                    });
                    self.store.touch(&r.id, super::store::epoch_secs());
                    Ensured::Ready(r)
                }
                None => {
                    let message = format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    );
                    events.push(ImageEvent {
                        type_: EventType::Warning,
                        reason: ERR_IMAGE_NEVER_PULL,
                        message: message.clone(),
                    });
                    Ensured::Failed {
                        reason: ERR_IMAGE_NEVER_PULL,
                        message,
                        retry_at: Instant::now() + PULL_BACKOFF_INITIAL,
                    }
                }
            };
        }
        let key = format!("{}_{image}", req.pod_uid);
        let now = Instant::now();
        if let Some(until) = self.in_backoff(&key, now) {
            events.push(ImageEvent {
                type_: EventType::Normal,
                reason: "BackOff",
                message: format!("Back-off pulling image \"{image}\""),
            });
            return Ensured::Failed {
                reason: IMAGE_PULL_BACK_OFF,
                message: format!("Back-off pulling image \"{image}\""),
                retry_at: until,
            };
        }
        events.push(ImageEvent {
            type_: EventType::Normal,
            reason: "Pulling",
            message: format!("Pulling image \"{image}\""),
        });
        let started = Instant::now();
        let credentials = credentials_from_secrets(req.pull_secrets, reference.registry());
        match self.puller.pull(&reference, credentials).await {
            Ok(record) => {
                let took = truncate_ms(started.elapsed());
                events.push(ImageEvent {
                    type_: EventType::Normal,
                    reason: "Pulled",
                    message: format!(
                        "Successfully pulled image \"{image}\" in {} ({} including waiting). Image size: {} bytes.",
                        podvisor_api::status::go_duration(took),
                        podvisor_api::status::go_duration(took),
                        record.size
                    ),
                });
                self.gc_backoff(Instant::now());
                self.store.touch(&record.id, super::store::epoch_secs());
                Ensured::Ready(record)
            }
            Err(message) => {
                events.push(ImageEvent {
                    type_: EventType::Warning,
                    reason: "Failed",
                    message: format!("Failed to pull image \"{image}\": {message}"),
                });
                self.next_backoff(&key, Instant::now());
                Ensured::Failed {
                    reason: ERR_IMAGE_PULL,
                    message,
                    // Shown for a moment; then ImagePullBackOff until the back-off ends.
                    retry_at: Instant::now() + ERR_IMAGE_PULL_SHOWN,
                }
            }
        }
    }

    fn backoffs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backoff>> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the back-off of `key` ends, if it is in force at `now`.
    fn in_backoff(&self, key: &str, now: Instant) -> Option<Instant> {
        let b = *self.backoffs().get(key)?;
        let until = b.last_update + b.backoff;
        (now < until).then_some(until)
    }

    fn next_backoff(&self, key: &str, now: Instant) {
        let mut map = self.backoffs();
        let next = match map.get(key) {
            Some(b) if now.duration_since(b.last_update) <= PULL_BACKOFF_MAX * 2 => {
                (b.backoff * 2).min(PULL_BACKOFF_MAX)
            }
            _ => PULL_BACKOFF_INITIAL,
        };
        map.insert(
            key.to_string(),
            Backoff {
                last_update: now,
                backoff: next,
            },
        );
    }

    fn gc_backoff(&self, now: Instant) {
        self.backoffs()
            .retain(|_, b| now.duration_since(b.last_update) <= PULL_BACKOFF_MAX * 2);
    }
}

fn truncate_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_always_for_latest_or_no_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("127.0.0.1:5000/busybox"), "Always");
        assert_eq!(
            default_pull_policy("127.0.0.1:5000/busybox:1.36"),
            "IfNotPresent"
        );
        assert_eq!(
            default_pull_policy(
                "busybox@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
            ),
            "IfNotPresent"
        );
    }

    #[test]
    fn names_normalize_like_docker_and_bad_ones_are_invalid() {
        assert_eq!(
            store_key(&normalize("busybox").expect("ok")),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            store_key(&normalize("127.0.0.1:5000/a/b:1").expect("ok")),
            "127.0.0.1:5000/a/b:1"
        );
        let e = normalize("Not Valid").expect_err("invalid");
        assert!(e.contains("invalid reference format"), "{e}");
        assert!(normalize("").is_err());
    }

    fn manager(dir: &std::path::Path) -> ImageManager {
        let store = Arc::new(ImageStore::open(dir).expect("store"));
        let puller = Arc::new(Puller::new(store.clone(), Default::default()));
        ImageManager::new(store, puller)
    }

    #[tokio::test(start_paused = true)]
    async fn the_pull_backoff_doubles_to_five_minutes_and_resets_when_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = manager(dir.path());
        let now = Instant::now();
        m.next_backoff("k", now);
        assert_eq!(m.in_backoff("k", now), Some(now + Duration::from_secs(10)));
        assert_eq!(m.in_backoff("k", now + Duration::from_secs(10)), None);
        let mut t = now;
        for want in [20, 40, 80, 160, 300, 300] {
            t += Duration::from_secs(11);
            m.next_backoff("k", t);
            assert_eq!(m.in_backoff("k", t), Some(t + Duration::from_secs(want)));
        }
        t += Duration::from_secs(601);
        m.next_backoff("k", t);
        assert_eq!(m.in_backoff("k", t), Some(t + Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn never_with_a_missing_image_and_a_bad_name_fail_without_a_pull() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = manager(dir.path());
        let mut events = Vec::new();
        let req = EnsureRequest {
            pod_uid: "u",
            image: "127.0.0.1:1/x:1",
            pull_policy: Some("Never"),
            pull_secrets: &[],
        };
        match m.ensure(&req, &mut events).await {
            Ensured::Failed {
                reason, message, ..
            } => {
                assert_eq!(reason, ERR_IMAGE_NEVER_PULL);
                assert_eq!(
                    message,
                    "Container image \"127.0.0.1:1/x:1\" is not present with pull policy of Never"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(events[0].reason, ERR_IMAGE_NEVER_PULL);
        let req = EnsureRequest {
            image: "bad name",
            ..req
        };
        assert!(matches!(
            m.ensure(&req, &mut events).await,
            Ensured::Failed {
                reason: INVALID_IMAGE_NAME,
                ..
            }
        ));
        assert_eq!(events[1].reason, "InspectFailed");
    }
}
