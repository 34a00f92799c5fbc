//! The image service, beside the pod worker: it pulls images from registries, keeps them in a
//! content-addressed store under the data dir, and answers the pod worker's one question
//! before a container is created: "is this container's image here, per its pull policy?"
//!
//! # An image's life on the node
//!
//! ```text
//!   absent ──pull (Pulling)──▶ downloading ──all blobs verified, layers unpacked──▶ stored
//!     ▲          │ fails (ErrImagePull, back-off)                                   │
//!     │          ▼                                                                  │ rm / GC
//!     └──── (retry after the back-off: ImagePullBackOff until then) ◀──────────────┘
//! ```
//!
//! * [`manager`]: the kubelet's `EnsureImageExists` (pull policy, back-off, events, waiting
//!   reasons). The pod worker calls [`ImageManager::ensure`] in `pod/sync.rs` before it
//!   creates a container; the pull runs inside the worker's sync, so a deletion pre-empts it
//!   and the pod shows `Pending` / `ContainerCreating` meanwhile.
//! * [`pull`]: the registry client (oci-client), endpoints and credentials; concurrent pulls
//!   of one image share one download.
//! * [`registries`]: `--insecure-registry`, `registries.yaml` (mirrors, rewrites, auth, TLS),
//!   `imagePullSecrets`.
//! * [`store`]: blobs by digest, each layer unpacked once, the image index; crash-safe.
//! * [`unpack`]: one layer (gzip, zstd, whiteouts) into an overlayfs lower directory.
//! * [`archive`]: `podvisor image import` (docker-archive and OCI archive tarballs).
//! * [`gc`]: garbage collection by disk usage, never of an image in use.
//!
//! The store is shared by every container that uses an image; nothing in it is ever changed
//! in place (a container writes to its own upper directory).

pub mod archive;
pub mod gc;
pub mod manager;
pub mod pull;
pub mod registries;
pub mod store;
pub mod unpack;

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ContainerImage;

pub use manager::{EnsureRequest, Ensured, ImageEvent, ImageManager};
pub use registries::{Credential, RegistrySettings};
pub use store::{ImageConfig, ImageRecord, ImageStore};

/// Opens the store under `data_dir/images` and builds the manager.
pub fn open(data_dir: &Path, settings: RegistrySettings) -> Result<Arc<ImageManager>, String> {
    let store = Arc::new(ImageStore::open(data_dir.join("images")).map_err(|e| e.to_string())?);
    let puller = Arc::new(pull::Puller::new(store.clone(), settings));
    Ok(Arc::new(ImageManager::new(store, puller)))
}

/// The most images a Node's status lists (the kubelet's `nodeStatusMaxImages`).
pub const NODE_STATUS_MAX_IMAGES: usize = 50;

/// The Node's `status.images`: the largest images first, each named by its repo digests and
/// tags.
pub fn node_images(store: &ImageStore) -> Vec<ContainerImage> {
    let mut list = store.list();
    list.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
    list.into_iter()
        .take(NODE_STATUS_MAX_IMAGES)
        .map(|r| ContainerImage {
            names: Some(
                r.repo_digests
                    .iter()
                    .chain(r.repo_tags.iter())
                    .cloned()
                    .collect(),
            ),
            size_bytes: Some(r.size as i64),
        })
        .collect()
}

/// The RuntimeClass (and its handler) that runs a pod's commands on the host filesystem.
pub const HOST_RUNTIME_CLASS: &str = "host";

/// Container annotation: the image ID reported as `imageID` (kept for re-adoption).
pub const ANNOTATION_IMAGE_ID: &str = "io.podvisor.image.id";

/// Whether the pod runs on the host filesystem (`spec.runtimeClassName: host`).
pub fn is_host_mode(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
        == Some(HOST_RUNTIME_CLASS)
}

mod config;
pub use config::apply_image;
