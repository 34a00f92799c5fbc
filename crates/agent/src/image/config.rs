//! The image's configuration merged into a container's, as upstream does it (containerd's
//! CRI plugin): `command` replaces ENTRYPOINT and drops CMD, `args` replaces CMD; the image's
//! `Env` comes first and the container's variables replace or follow it; `WorkingDir` when the
//! container sets none; `User` (names resolved from the image's `/etc/passwd` and
//! `/etc/group`) unless `runAsUser` is set; `STOPSIGNAL` when the container sets none.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Container;
use podvisor_runtime::{ContainerConfig, Signal};

use super::store::{ImageRecord, ImageStore};
use super::{ANNOTATION_IMAGE_ID, ImageManager};

/// Merges `stored` (the container's image, None when no image is used) into `config` and
/// returns the `image` and `imageID` its status reports. `spec_image` is the spec's `image`.
pub fn apply_image(
    images: Option<&ImageManager>,
    config: &mut ContainerConfig,
    c: &Container,
    stored: Option<&ImageRecord>,
    spec_image: &str,
) -> Result<(String, String), String> {
    let (Some(images), Some(record)) = (images, stored) else {
        return Ok((spec_image.to_string(), String::new()));
    };
    let ic = &record.config;
    let command_set = c.command.as_ref().is_some_and(|v| !v.is_empty());
    let args_set = c.args.as_ref().is_some_and(|v| !v.is_empty());
    if !command_set {
        config.command = ic.entrypoint.clone();
        if !args_set {
            config.args = ic.cmd.clone();
        }
    }
    let mut env: Vec<(String, String)> = ic
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    for (k, v) in std::mem::take(&mut config.env) {
        match env.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => env.push((k, v)),
        }
    }
    config.env = env;
    if config.working_dir.is_none() {
        config.working_dir = ic.working_dir.as_ref().map(PathBuf::from);
    }
    let layers = layer_dirs(images.store(), record);
    if layers.iter().any(|l| !l.is_dir()) {
        return Err(format!(
            "image {} is incomplete in the store (a layer is missing); remove it and pull again",
            record.id
        ));
    }
    if config.uid.is_none() {
        if let Some(user) = &ic.user {
            let (uid, gid) = resolve_user(&layers, user)?;
            config.uid = Some(uid);
            if config.gid.is_none() {
                config.gid = Some(gid);
            }
        }
    } else if config.gid.is_none()
        && let Some(uid) = config.uid
    {
        config.gid = Some(
            read_top(&layers, "etc/passwd")
                .and_then(|p| passwd_entry(&p, &uid.to_string()))
                .map_or(0, |(_, g)| g),
        );
    }
    let pod_sets_signal = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.as_deref())
        .is_some();
    if !pod_sets_signal && let Some(s) = ic.stop_signal.as_deref().and_then(Signal::from_name) {
        config.stop_signal = Some(s);
    }
    let name = record
        .repo_tags
        .first()
        .cloned()
        .unwrap_or_else(|| spec_image.to_string());
    let id = record.image_ref();
    config.rootfs = Some(podvisor_runtime::RootFs { layers });
    config.image = name.clone();
    config
        .annotations
        .insert(ANNOTATION_IMAGE_ID.to_string(), id.clone());
    Ok((name, id))
}

/// The image's unpacked layers, top first.
pub fn layer_dirs(store: &ImageStore, record: &ImageRecord) -> Vec<PathBuf> {
    record
        .layers
        .iter()
        .rev()
        .filter_map(|l| store.layer_path(l).ok())
        .collect()
}

/// The file at `rel` as the merged image shows it (the topmost layer that has it; a
/// whiteout hides it).
fn read_top(layers: &[PathBuf], rel: &str) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    for l in layers {
        let p = l.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_char_device() => return None,
            Ok(m) if m.is_file() => return std::fs::read_to_string(&p).ok(),
            _ => {}
        }
    }
    None
}

/// `name` or `uid` in a passwd file: (uid, gid).
fn passwd_entry(passwd: &str, who: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || (f[0] != who && f[2] != who) {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?))
    })
}

/// `name` or `gid` in a group file: gid.
fn group_entry(group: &str, who: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || (f[0] != who && f[2] != who) {
            return None;
        }
        f[2].parse().ok()
    })
}

/// The image's `User` (`user`, `uid`, `user:group`, `uid:gid`) as numbers.
fn resolve_user(layers: &[PathBuf], user: &str) -> Result<(u32, u32), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_top(layers, "etc/passwd").unwrap_or_default();
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, passwd_entry(&passwd, u).map_or(0, |(_, g)| g)),
        Err(_) => passwd_entry(&passwd, u).ok_or_else(|| {
            format!("unable to find user {u}: no matching entries in passwd file")
        })?,
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entry(&read_top(layers, "etc/group").unwrap_or_default(), g)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_from_the_topmost_passwd_and_group() {
        let lower = tempfile::tempdir().expect("tempdir");
        let upper = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(lower.path().join("etc")).expect("mkdir");
        std::fs::create_dir_all(upper.path().join("etc")).expect("mkdir");
        std::fs::write(lower.path().join("etc/passwd"), "old:x:1:1::/:/bin/sh\n").expect("w");
        std::fs::write(
            upper.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .expect("w");
        std::fs::write(lower.path().join("etc/group"), "staff:x:50:\n").expect("w");
        let layers = vec![upper.path().to_path_buf(), lower.path().to_path_buf()];
        assert_eq!(resolve_user(&layers, "app").expect("app"), (1000, 1001));
        assert_eq!(resolve_user(&layers, "1000").expect("uid"), (1000, 1001));
        assert_eq!(resolve_user(&layers, "app:staff").expect("grp"), (1000, 50));
        assert_eq!(resolve_user(&layers, "42:7").expect("nums"), (42, 7));
        assert!(resolve_user(&layers, "old").is_err());
        assert!(
            resolve_user(&layers, "app:nogroup")
                .expect_err("missing group")
                .contains("unable to find group nogroup")
        );
    }

    #[test]
    fn passwd_lines_match_by_name_or_uid() {
        let p = "a:x:5:6:::\nbad line\n";
        assert_eq!(passwd_entry(p, "a"), Some((5, 6)));
        assert_eq!(passwd_entry(p, "5"), Some((5, 6)));
        assert_eq!(passwd_entry(p, "b"), None);
    }
}
