//! Image garbage collection by disk usage, as the kubelet's image GC manager does it.
//!
//! At start and every [`GC_PERIOD`] the agent measures the filesystem that holds the store. When its use
//! reaches the high threshold (`--image-gc-high-threshold`, 85 % by default), images are
//! removed, least recently used first, until the use would be back at the low threshold
//! (`--image-gc-low-threshold`, 80 %). Never removed: an image a container of the node uses
//! (any container the runtime still has, running or exited), and one used or stored less than
//! the minimum age (2 minutes) ago. A store that cannot free enough says so with upstream's
//! message. A high threshold of 100 turns collection off.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use podvisor_runtime::ContainerRuntime;
use tokio_util::sync::CancellationToken;

use super::ANNOTATION_IMAGE_ID;
use super::store::{ImageRecord, ImageStore};

/// How often usage is checked (the kubelet's `ImageGCPeriod`).
pub const GC_PERIOD: Duration = Duration::from_secs(300);

/// When images are collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    /// Disk use (percent) at which collection runs; 100 turns it off.
    pub high_percent: u8,
    /// Disk use (percent) collection frees down to.
    pub low_percent: u8,
    /// An image younger than this (since its last use or its storing) is kept.
    pub min_age: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

impl GcPolicy {
    /// Checks the thresholds as the kubelet does.
    pub fn validate(&self) -> Result<(), String> {
        if self.high_percent > 100 {
            return Err(format!(
                "invalid HighThresholdPercent {}, must be in range [0-100]",
                self.high_percent
            ));
        }
        if self.low_percent > 100 {
            return Err(format!(
                "invalid LowThresholdPercent {}, must be in range [0-100]",
                self.low_percent
            ));
        }
        if self.low_percent > self.high_percent {
            return Err(format!(
                "LowThresholdPercent {} can not be higher than HighThresholdPercent {}",
                self.low_percent, self.high_percent
            ));
        }
        Ok(())
    }
}

/// A filesystem's size and free space, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Total size.
    pub capacity: u64,
    /// Free to unprivileged users.
    pub available: u64,
}

/// The usage of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> std::io::Result<DiskUsage> {
    let s = rustix::fs::statvfs(path)?;
    Ok(DiskUsage {
        capacity: s.f_blocks.saturating_mul(s.f_frsize),
        available: s.f_bavail.saturating_mul(s.f_frsize),
    })
}

/// What one collection did.
#[derive(Debug, Default)]
pub struct GcOutcome {
    /// The bytes it had to free (0: usage was below the high threshold).
    pub wanted: u64,
    /// The bytes it freed (the removed images' sizes).
    pub freed: u64,
    /// The images it removed.
    pub removed: Vec<ImageRecord>,
}

/// The IDs of the stored images that `annotations` (of the runtime's containers) name.
pub fn images_in_use<'a>(
    store: &ImageStore,
    annotations: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let used: Vec<&str> = annotations.into_iter().collect();
    store
        .list()
        .into_iter()
        .filter(|r| {
            used.iter()
                .any(|u| *u == r.id || *u == r.image_ref() || r.repo_digests.iter().any(|d| d == u))
        })
        .map(|r| r.id)
        .collect()
}

/// One collection: `now` in seconds since the epoch.
pub fn collect(
    store: &ImageStore,
    policy: &GcPolicy,
    usage: DiskUsage,
    in_use: &[String],
    now: u64,
) -> GcOutcome {
    let mut out = GcOutcome::default();
    if policy.high_percent >= 100 || usage.capacity == 0 {
        return out;
    }
    let used_percent = 100 - (usage.available.saturating_mul(100) / usage.capacity).min(100);
    if used_percent < u64::from(policy.high_percent) {
        return out;
    }
    let target_free = usage.capacity / 100 * (100 - u64::from(policy.low_percent));
    out.wanted = target_free.saturating_sub(usage.available);
    let mut candidates: Vec<ImageRecord> = store
        .list()
        .into_iter()
        .filter(|r| !in_use.contains(&r.id))
        .filter(|r| now.saturating_sub(r.last_used) >= policy.min_age.as_secs())
        .collect();
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.id.cmp(&b.id)));
    for r in candidates {
        if out.freed >= out.wanted {
            break;
        }
        match store.remove(&r.id, in_use) {
            Ok(removed) => {
                out.freed += removed.size;
                out.removed.push(removed);
            }
            Err(e) => tracing::warn!(image = %r.id, error = %e, "image garbage collection"),
        }
    }
    out
}

/// Collects at start, then every `period` ([`GC_PERIOD`]) until `stop`.
pub async fn run(
    store: Arc<ImageStore>,
    runtime: Arc<dyn ContainerRuntime>,
    policy: GcPolicy,
    period: Duration,
    stop: CancellationToken,
) {
    let mut first = true;
    loop {
        // The first collection runs at start, as the kubelet's does.
        let wait = if first { Duration::ZERO } else { period };
        first = false;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Ok(sandboxes) = runtime.list().await else {
            continue;
        };
        let annotations: Vec<String> = sandboxes
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter_map(|c| c.config.annotations.get(ANNOTATION_IMAGE_ID).cloned())
            .collect();
        let store = store.clone();
        let policy = policy.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let usage = match disk_usage(store.root()) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(error = %e, "image garbage collection: disk usage");
                    return;
                }
            };
            let in_use = images_in_use(&store, annotations.iter().map(String::as_str));
            let now = super::store::epoch_secs();
            let out = collect(&store, &policy, usage, &in_use, now);
            for r in &out.removed {
                tracing::info!(image = %r.id, size = r.size, "image garbage collection removed an image");
            }
            if out.freed < out.wanted {
                tracing::warn!(
                    "Failed to garbage collect required amount of images. Attempted to free {} bytes, but only found {} bytes eligible to free.",
                    out.wanted,
                    out.freed
                );
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;

    fn put(store: &ImageStore, id: &str, layer: &str, last_used: u64) {
        let path = store.layer_path(layer).expect("path");
        std::fs::create_dir_all(&path).expect("layer");
        store
            .put_image(ImageRecord {
                id: id.into(),
                repo_tags: vec![format!("example.com/{}:v1", &id[7..12])],
                repo_digests: Vec::new(),
                layers: vec![layer.into()],
                size: 100,
                config: ImageConfig::default(),
                last_used,
            })
            .expect("put");
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn the_oldest_unused_images_go_until_the_low_threshold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path().join("images")).expect("store");
        let (a, b, c, d) = (digest('a'), digest('b'), digest('c'), digest('d'));
        put(&store, &a, &digest('1'), 1_000);
        put(&store, &b, &digest('2'), 2_000);
        put(&store, &c, &digest('3'), 500); // in use
        put(&store, &d, &digest('4'), 9_950); // too young
        let policy = GcPolicy::default();
        let now = 10_000;
        // Below the high threshold: nothing happens.
        let calm = DiskUsage {
            capacity: 10_000,
            available: 5_000,
        };
        assert_eq!(collect(&store, &policy, calm, &[], now).wanted, 0);
        assert_eq!(store.list().len(), 4);
        // 81 % used, high and low at 80: 50 bytes wanted, the oldest image frees them.
        let over = DiskUsage {
            capacity: 10_000,
            available: 1_950,
        };
        let eighty = GcPolicy {
            high_percent: 80,
            low_percent: 80,
            ..GcPolicy::default()
        };
        let out = collect(&store, &eighty, over, std::slice::from_ref(&c), now);
        assert_eq!(out.wanted, 50);
        assert_eq!(
            out.removed
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            [a.as_str()]
        );
        assert!(!store.has_layer(&digest('1')));
        // 90 % used: 1000 bytes wanted; only b is eligible (c is used, d too young).
        let full = DiskUsage {
            capacity: 10_000,
            available: 1_000,
        };
        let out = collect(&store, &policy, full, std::slice::from_ref(&c), now);
        assert_eq!(out.wanted, 1_000);
        assert_eq!(out.removed.len(), 1);
        assert!(out.freed < out.wanted);
        let left: Vec<String> = store.list().into_iter().map(|r| r.id).collect();
        assert!(left.contains(&c) && left.contains(&d) && left.len() == 2);
        // Collection off.
        let off = GcPolicy {
            high_percent: 100,
            ..GcPolicy::default()
        };
        assert_eq!(collect(&store, &off, full, &[], u64::MAX).removed.len(), 0);
    }

    #[test]
    fn thresholds_are_validated_as_upstream() {
        assert!(GcPolicy::default().validate().is_ok());
        let bad = GcPolicy {
            high_percent: 50,
            low_percent: 60,
            ..GcPolicy::default()
        };
        assert_eq!(
            bad.validate().expect_err("low above high"),
            "LowThresholdPercent 60 can not be higher than HighThresholdPercent 50"
        );
    }

    #[test]
    fn in_use_matches_ids_and_repo_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path().join("images")).expect("store");
        put(&store, &digest('a'), &digest('1'), 0);
        put(&store, &digest('b'), &digest('2'), 0);
        let used = images_in_use(&store, [digest('b').as_str(), "other"]);
        assert_eq!(used, [digest('b')]);
    }
}
