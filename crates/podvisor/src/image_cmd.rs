//! `podvisor image import|ls|rm`: the node's image store from the command line (air-gapped
//! nodes load images from tarballs; `ls` and `rm` as `crictl images` / `crictl rmi`).
//!
//! The commands work on the store under the data dir directly, also while the node runs
//! (the store's index is written under a file lock and replaced atomically). `rm` refuses an
//! image a container of the node's runtime still uses.

use std::path::{Path, PathBuf};

use anyhow::Context;
use podvisor_agent::image::{ANNOTATION_IMAGE_ID, ImageRecord, ImageStore};

use crate::cli::{ImageCommand, ImageImportArgs, ImageLsArgs, ImageRmArgs};
use crate::config;

fn open(dirs: &crate::cli::DataDirArgs) -> anyhow::Result<(PathBuf, ImageStore)> {
    let data_dir = config::data_dir(dirs.data_dir.as_deref())?;
    let store = ImageStore::open(data_dir.join("images"))
        .map_err(|e| anyhow::anyhow!("cannot open the image store: {e}"))?;
    Ok((data_dir, store))
}

/// Runs one `podvisor image` command.
pub fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Import(a) => import(a),
        ImageCommand::Ls(a) => ls(a),
        ImageCommand::Rm(a) => rm(a),
    }
}

fn import(args: ImageImportArgs) -> anyhow::Result<()> {
    let (_, store) = open(&args.dirs)?;
    for file in &args.files {
        let records = podvisor_agent::image::archive::import(&store, file)
            .map_err(|e| anyhow::anyhow!("import {}: {e}", file.display()))?;
        for r in records {
            if r.repo_tags.is_empty() {
                println!("Loaded image ID: {}", r.id);
            }
            for t in &r.repo_tags {
                println!("Loaded image: {t}");
            }
        }
    }
    Ok(())
}

/// `1.2MB`, as crictl prints sizes (decimal units).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}{}", UNITS[i])
    }
}

/// The rows `image ls` prints: IMAGE, TAG, IMAGE ID (13 characters), SIZE.
fn rows(mut records: Vec<ImageRecord>) -> Vec<[String; 4]> {
    records.sort_by(|a, b| a.repo_tags.cmp(&b.repo_tags).then(a.id.cmp(&b.id)));
    let mut out = Vec::new();
    for r in records {
        let id: String =
            r.id.trim_start_matches("sha256:")
                .chars()
                .take(13)
                .collect();
        let size = human_size(r.size);
        if r.repo_tags.is_empty() {
            let repo = r
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map_or("<none>", |(repo, _)| repo)
                .to_string();
            out.push([repo, "<none>".into(), id, size]);
            continue;
        }
        for t in &r.repo_tags {
            let (repo, tag) = match t.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
                _ => (t.clone(), "<none>".into()),
            };
            out.push([repo, tag, id.clone(), size.clone()]);
        }
    }
    out
}

fn ls(args: ImageLsArgs) -> anyhow::Result<()> {
    let (_, store) = open(&args.dirs)?;
    if args.quiet {
        let mut ids: Vec<String> = store.list().into_iter().map(|r| r.id).collect();
        ids.sort();
        for id in ids {
            println!("{id}");
        }
        return Ok(());
    }
    let mut table = vec![[
        "IMAGE".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "SIZE".into(),
    ]];
    table.extend(rows(store.list()));
    let widths: Vec<usize> = (0..4)
        .map(|c| table.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in table {
        let line = format!(
            "{:<w0$}   {:<w1$}   {:<w2$}   {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        println!("{}", line.trim_end());
    }
    Ok(())
}

/// The image references (`imageID` annotations) of every container the node's runtime
/// keeps on disk under `data_dir`.
fn used_references(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(sandboxes) = std::fs::read_dir(data_dir.join("runtime").join("sandboxes")) else {
        return out;
    };
    for sb in sandboxes.flatten() {
        let Ok(ctrs) = std::fs::read_dir(sb.path().join("containers")) else {
            continue;
        };
        for c in ctrs.flatten() {
            let Ok(bytes) = std::fs::read(c.path().join("container.json")) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if let Some(id) = v
                .pointer("/config/annotations")
                .and_then(|a| a.get(ANNOTATION_IMAGE_ID))
                .and_then(|i| i.as_str())
            {
                out.push(id.to_string());
            }
        }
    }
    out
}

fn rm(args: ImageRmArgs) -> anyhow::Result<()> {
    let (data_dir, store) = open(&args.dirs)?;
    let used = used_references(&data_dir);
    let in_use = podvisor_agent::image::gc::images_in_use(&store, used.iter().map(String::as_str));
    let mut failed = false;
    for reference in &args.images {
        let key = podvisor_agent::image::manager::normalize(reference)
            .map(|r| podvisor_agent::image::manager::store_key(&r))
            .unwrap_or_else(|_| reference.clone());
        let Some(record) = store.find(&key).or_else(|| store.find(reference)) else {
            eprintln!("ERRO[0000] no such image {reference}");
            failed = true;
            continue;
        };
        match store.remove(&record.id, &in_use) {
            Ok(r) => {
                for t in r.repo_tags.iter().chain(r.repo_digests.iter()) {
                    println!("Deleted: {t}");
                }
                if r.repo_tags.is_empty() && r.repo_digests.is_empty() {
                    println!("Deleted: {}", r.id);
                }
            }
            Err(e) => {
                eprintln!("ERRO[0000] error of removing image {reference:?}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        anyhow::bail!("some images were not removed");
    }
    Ok(())
}

/// Checks the image GC flags (before anything starts).
pub fn gc_policy(
    args: &crate::cli::ImageArgs,
) -> anyhow::Result<podvisor_agent::image::gc::GcPolicy> {
    let policy = podvisor_agent::image::gc::GcPolicy {
        high_percent: args.image_gc_high_threshold,
        low_percent: args.image_gc_low_threshold,
        min_age: args.minimum_image_ttl_duration,
    };
    policy
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid image GC flags: {e}"))
        .context("check --image-gc-high-threshold and --image-gc-low-threshold")?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rows_read_as_crictl_prints_them() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(2_000_000), "2MB");
        let r = ImageRecord {
            id: format!("sha256:{}", "ab".repeat(32)),
            repo_tags: vec!["127.0.0.1:5000/test/busybox:v1".into()],
            repo_digests: Vec::new(),
            layers: Vec::new(),
            size: 1_500,
            config: Default::default(),
            last_used: 0,
        };
        assert_eq!(
            rows(vec![r]),
            [[
                "127.0.0.1:5000/test/busybox".to_string(),
                "v1".into(),
                "ababababababa".into(),
                "1.5kB".into()
            ]]
        );
    }
}
