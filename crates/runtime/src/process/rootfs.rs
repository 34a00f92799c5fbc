//! A container instance's own root filesystem, planned in the supervisor and built in the
//! child (`spawn.rs`, [`RootOp`]) inside its private mount namespace.
//!
//! ```text
//! <container dir>/rootfs/upper   the instance's writes (gone with the instance)
//!                       /work    overlayfs work directory
//!                       /merged  the overlay: the image's layers (read-only) + upper
//! ```
//!
//! In the child, in order: the overlay on `merged`; `/proc` (the pod's pid namespace: the
//! child is in the supervisor's); a tmpfs `/dev` with null, zero, full, random, urandom and
//! tty bound from the host, a private `devpts` (`/dev/ptmx` → `pts/ptmx`), a tmpfs
//! `/dev/shm` and the `fd`, `stdin`, `stdout`, `stderr` links (privileged: the host's `/dev`
//! with the pod's own `devpts` and `/dev/shm`); `/sys` bound read-only (privileged:
//! read-write); unless `procMount: Unmasked` or privileged, containerd's masked paths
//! (`/proc/kcore`, `/proc/keys`, ... hidden) and read-only paths (`/proc/sys`, `/proc/bus`,
//! ...); the working directory; then the container's bind mounts (volumes, `/etc/hosts`, …, the
//! termination-message file) with their mount points made inside the overlay (so in the
//! instance's upper directory, never on the host); then `pivot_root` into `merged`; with
//! `readOnlyRootFilesystem`, the new root is then remounted read-only.
//! Execs join the namespace and so see the same root.

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use super::spawn::RootOp;
use crate::{Mount, RootFs, SecurityConfig};

/// The steps, and for each a description for error messages.
pub(crate) struct RootPlan {
    pub ops: Vec<RootOp>,
    pub what: Vec<String>,
}

fn c(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("path contains a NUL byte: {:?}", p.display().to_string()))
}

fn cs(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// The most symbolic links followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// What a path of the image is, as the merged layers show it.
enum Entry {
    Missing,
    Link(PathBuf),
    Other,
}

/// `rel` (relative to the image's root) in the topmost layer that has it; a whiteout (a
/// character device 0:0) hides it.
fn lookup(layers: &[PathBuf], rel: &Path) -> Entry {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for l in layers {
        let p = l.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => return Entry::Missing,
            Ok(m) if m.file_type().is_symlink() => {
                return match std::fs::read_link(&p) {
                    Ok(t) => Entry::Link(t),
                    Err(_) => Entry::Other,
                };
            }
            Ok(_) => return Entry::Other,
            Err(_) => {}
        }
    }
    Entry::Missing
}

/// `inner` (absolute, inside the container) below `root`, with the image's symbolic links
/// followed inside the image (an absolute link is relative to the image's root, `..` stops
/// at it), so that a mount point or working directory never resolves to a host path before
/// the root switch. `inner` itself may not contain `..`.
fn inside(root: &Path, layers: &[PathBuf], inner: &Path) -> Result<PathBuf, String> {
    let leaves = || {
        format!(
            "path {:?} leaves the container's root",
            inner.display().to_string()
        )
    };
    let mut rest: std::collections::VecDeque<std::ffi::OsString> = Default::default();
    for comp in inner.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => rest.push_back(n.to_os_string()),
            _ => return Err(leaves()),
        }
    }
    let mut out = PathBuf::new();
    let mut links = 0;
    while let Some(comp) = rest.pop_front() {
        if comp == ".." {
            out.pop();
            continue;
        }
        if comp == "." {
            continue;
        }
        let cand = out.join(&comp);
        match lookup(layers, &cand) {
            Entry::Link(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!(
                        "path {:?}: too many levels of symbolic links",
                        inner.display().to_string()
                    ));
                }
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => rest.push_front(n.to_os_string()),
                        Component::ParentDir => rest.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            Entry::Missing | Entry::Other => out = cand,
        }
    }
    Ok(root.join(out))
}

impl RootPlan {
    fn push(&mut self, op: RootOp, what: String) {
        self.ops.push(op);
        self.what.push(what);
    }

    /// Directories from below `root` down to `path` (not included).
    fn parents(&mut self, root: &Path, path: &Path) -> Result<(), String> {
        let mut acc = root.to_path_buf();
        let rel = path.strip_prefix(root).unwrap_or(path);
        let comps: Vec<_> = rel.components().collect();
        for comp in comps.iter().take(comps.len().saturating_sub(1)) {
            acc.push(comp);
            self.push(
                RootOp::Mkdir(c(&acc)?, 0o755),
                format!("create directory {:?}", acc.display().to_string()),
            );
        }
        Ok(())
    }

    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> Result<(), String> {
        let what = format!(
            "mount {source:?} on {:?}{}",
            target.display().to_string(),
            fstype.map(|f| format!(" ({f})")).unwrap_or_default()
        );
        self.push(
            RootOp::Mount {
                source: cs(source),
                target: c(target)?,
                fstype: fstype.map(cs),
                flags,
                data: data.map(cs),
            },
            what,
        );
        Ok(())
    }
}

const NOSUID: u64 = libc::MS_NOSUID;
const NODEV: u64 = libc::MS_NODEV;
const NOEXEC: u64 = libc::MS_NOEXEC;
const BIND: u64 = libc::MS_BIND | libc::MS_REC;
const RO_REMOUNT: u64 = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;

/// Prepares `dir/rootfs` (upper, work, merged) and returns the steps. `mounts` are the
/// container's bind mounts (targets inside the container), `cwd` its working directory.
pub(crate) fn plan(
    rootfs: &RootFs,
    dir: &Path,
    mounts: &[Mount],
    cwd: &Path,
    security: &SecurityConfig,
) -> Result<RootPlan, String> {
    let read_only_root = security.read_only_root_filesystem;
    let privileged = security.confined && security.privileged;
    let masked = security.confined && !security.privileged && !security.unmasked_proc;
    let base = dir.join("rootfs");
    let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d)
            .map_err(|e| format!("create {:?}: {e}", d.display().to_string()))?;
    }
    let mut lower: Vec<String> = Vec::new();
    for l in &rootfs.layers {
        let s = l.display().to_string();
        if s.contains([':', ',']) {
            return Err(format!(
                "layer path {s:?} cannot be an overlayfs lower directory"
            ));
        }
        lower.push(s);
    }
    if lower.is_empty() {
        let empty = base.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| format!("create {empty:?}: {e}"))?;
        lower.push(empty.display().to_string());
    }
    let mut p = RootPlan {
        ops: Vec::new(),
        what: Vec::new(),
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    p.mount("overlay", &merged, Some("overlay"), 0, Some(&data))?;
    // /proc of the pod's pid namespace
    let proc_ = merged.join("proc");
    p.push(RootOp::Mkdir(c(&proc_)?, 0o555), "create /proc".into());
    p.mount("proc", &proc_, Some("proc"), NOSUID | NODEV | NOEXEC, None)?;
    let dev = merged.join("dev");
    p.push(RootOp::Mkdir(c(&dev)?, 0o755), "create /dev".into());
    if privileged {
        privileged_dev(&mut p, &dev)?;
    } else {
        minimal_dev(&mut p, &dev)?;
    }
    // /sys, read-only unless privileged
    let sys = merged.join("sys");
    p.push(RootOp::Mkdir(c(&sys)?, 0o555), "create /sys".into());
    p.mount("/sys", &sys, None, BIND, None)?;
    if !privileged {
        p.mount(
            "/sys",
            &sys,
            None,
            RO_REMOUNT | NOSUID | NODEV | NOEXEC,
            None,
        )?;
    }
    if masked {
        mask(&mut p, &merged)?;
    }
    // the working directory
    let wd = inside(&merged, &rootfs.layers, cwd)?;
    if wd != merged {
        p.parents(&merged, &wd)?;
        p.push(
            RootOp::Mkdir(c(&wd)?, 0o755),
            format!(
                "create the working directory {:?}",
                cwd.display().to_string()
            ),
        );
    }
    // the container's bind mounts
    for m in mounts {
        if !m.target.is_absolute() {
            return Err(format!(
                "mount target {:?} is not an absolute path",
                m.target.display().to_string()
            ));
        }
        let t = inside(&merged, &rootfs.layers, &m.target)?;
        let meta = std::fs::metadata(&m.source).map_err(|e| {
            format!(
                "mount source {:?}: {}",
                m.source.display().to_string(),
                e.kind()
            )
        })?;
        p.parents(&merged, &t)?;
        let point = c(&t)?;
        if meta.is_dir() {
            p.push(
                RootOp::Mkdir(point, 0o755),
                format!("create mount point {:?}", m.target.display().to_string()),
            );
        } else {
            p.push(
                RootOp::Touch(point),
                format!("create mount point {:?}", m.target.display().to_string()),
            );
        }
        let what = format!(
            "error mounting {:?} to {:?}{}",
            m.source.display().to_string(),
            m.target.display().to_string(),
            if m.read_only { " (read-only)" } else { "" }
        );
        p.push(
            RootOp::Mount {
                source: c(&m.source)?,
                target: c(&t)?,
                fstype: None,
                flags: BIND,
                data: None,
            },
            what.clone(),
        );
        if m.read_only {
            p.push(
                RootOp::Mount {
                    source: cs(""),
                    target: c(&t)?,
                    fstype: None,
                    flags: RO_REMOUNT,
                    data: None,
                },
                what,
            );
        }
    }
    p.push(
        RootOp::PivotRoot(c(&merged)?),
        "pivot_root into the container's root filesystem".into(),
    );
    if read_only_root {
        p.push(
            RootOp::Mount {
                source: cs(""),
                target: cs("/"),
                fstype: None,
                flags: RO_REMOUNT,
                data: None,
            },
            "remount the root filesystem read-only".into(),
        );
    }
    Ok(p)
}

/// containerd's masked paths: hidden (`/dev/null` over files, an empty read-only tmpfs over
/// directories) unless `procMount: Unmasked` or privileged.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's read-only paths, under the same condition.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Masks and write-protects the kernel interfaces a container has no business with (what
/// `procMount: Default` means). Paths this kernel lacks are skipped.
fn mask(p: &mut RootPlan, merged: &Path) -> Result<(), String> {
    for path in MASKED_PATHS {
        let t = merged.join(&path[1..]);
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => p.mount("tmpfs", &t, Some("tmpfs"), libc::MS_RDONLY, None)?,
            Ok(_) => p.mount("/dev/null", &t, None, libc::MS_BIND, None)?,
            Err(_) => {}
        }
    }
    for path in READONLY_PATHS {
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        let t = merged.join(&path[1..]);
        let src = t.display().to_string();
        p.mount(&src, &t, None, BIND, None)?;
        p.mount(&src, &t, None, RO_REMOUNT | NOSUID | NODEV | NOEXEC, None)?;
    }
    Ok(())
}

/// A privileged container's `/dev`: the host's devices (recursively bound), with the pod's
/// own `devpts` (and `/dev/ptmx` pointing into it) and `/dev/shm`.
fn privileged_dev(p: &mut RootPlan, dev: &Path) -> Result<(), String> {
    p.mount("/dev", dev, None, BIND, None)?;
    own_pts_and_shm(p, dev, false)?;
    p.mount(
        &dev.join("pts/ptmx").display().to_string(),
        &dev.join("ptmx"),
        None,
        libc::MS_BIND,
        None,
    )
}

/// The pod's own `devpts` and `/dev/shm` under `dev` (`mkdir`: make their mount points).
fn own_pts_and_shm(p: &mut RootPlan, dev: &Path, mkdir: bool) -> Result<(), String> {
    let (pts, shm) = (dev.join("pts"), dev.join("shm"));
    if mkdir {
        p.push(RootOp::Mkdir(c(&pts)?, 0o755), "create /dev/pts".into());
    }
    p.mount(
        "devpts",
        &pts,
        Some("devpts"),
        NOSUID | NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    if mkdir {
        p.push(RootOp::Mkdir(c(&shm)?, 0o1777), "create /dev/shm".into());
    }
    p.mount(
        "shm",
        &shm,
        Some("tmpfs"),
        NOSUID | NODEV | NOEXEC,
        Some("mode=1777,size=65536k"),
    )
}

/// A minimal `/dev`: a tmpfs with null, zero, full, random, urandom and tty from the host, a
/// private `devpts`, a tmpfs `/dev/shm` and the usual links.
fn minimal_dev(p: &mut RootPlan, dev: &Path) -> Result<(), String> {
    p.mount(
        "tmpfs",
        dev,
        Some("tmpfs"),
        NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for n in ["null", "zero", "full", "random", "urandom", "tty"] {
        let t = dev.join(n);
        p.push(RootOp::Touch(c(&t)?), format!("create /dev/{n}"));
        p.mount(&format!("/dev/{n}"), &t, None, BIND, None)?;
    }
    own_pts_and_shm(p, dev, true)?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        p.push(
            RootOp::Symlink {
                target: cs(target),
                link: c(&dev.join(link))?,
            },
            format!("link /dev/{link}"),
        );
    }
    Ok(())
}

/// The executables to try for `argv0` inside the container's root (after the root switch):
/// the path itself when it has a slash, else each `$PATH` directory.
pub(crate) fn candidates(argv0: &str, path_var: &str, cwd: &Path) -> Vec<PathBuf> {
    if argv0.contains('/') {
        let p = Path::new(argv0);
        return vec![if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        }];
    }
    path_var
        .split(':')
        .map(|d| {
            let d = if d.is_empty() { "." } else { d };
            let d = Path::new(d);
            if d.is_absolute() {
                d.join(argv0)
            } else {
                cwd.join(d).join(argv0)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_stay_inside_the_root_and_pivot_comes_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).expect("vol");
        let mounts = [Mount {
            source: vol.clone(),
            target: "/data/v".into(),
            read_only: true,
        }];
        let rootfs = RootFs {
            layers: vec![dir.path().join("l2"), dir.path().join("l1")],
        };
        let p = plan(
            &rootfs,
            dir.path(),
            &mounts,
            Path::new("/work"),
            &SecurityConfig::default(),
        )
        .expect("plan");
        assert_eq!(p.ops.len(), p.what.len());
        assert!(matches!(p.ops.last(), Some(RootOp::PivotRoot(_))));
        assert!(matches!(&p.ops[0], RootOp::Mount { data: Some(d), .. }
            if d.to_str().expect("utf8").starts_with(&format!("lowerdir={}:{}", dir.path().join("l2").display(), dir.path().join("l1").display()))));
        let merged = dir.path().join("rootfs/merged");
        for op in &p.ops {
            let path = match op {
                RootOp::Mkdir(p, _) | RootOp::Touch(p) => p,
                RootOp::Mount { target, .. } => target,
                RootOp::Symlink { link, .. } => link,
                RootOp::PivotRoot(p) => p,
            };
            assert!(
                Path::new(path.to_str().expect("utf8")).starts_with(&merged),
                "{path:?}"
            );
        }
        assert!(p.what.iter().any(|w| w.contains("(read-only)")));
        let escape = [Mount {
            source: vol,
            target: "/../../etc".into(),
            read_only: false,
        }];
        assert!(
            plan(
                &rootfs,
                dir.path(),
                &escape,
                Path::new("/"),
                &SecurityConfig::default()
            )
            .is_err()
        );
    }

    #[test]
    fn proc_mount_default_masks_and_privileged_gets_the_hosts_devices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = RootFs { layers: vec![] };
        let merged = dir.path().join("rootfs/merged");
        let ops = |sec: &SecurityConfig| {
            let p = plan(&rootfs, dir.path(), &[], Path::new("/"), sec).expect("plan");
            p.ops
                .into_iter()
                .filter_map(|op| match op {
                    RootOp::Mount {
                        source,
                        target,
                        flags,
                        ..
                    } => Some((
                        source.to_str().expect("utf8").to_string(),
                        target.to_str().expect("utf8").to_string(),
                        flags,
                    )),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let at = |rel: &str| merged.join(rel).display().to_string();
        let confined = SecurityConfig {
            confined: true,
            ..Default::default()
        };
        let masked = ops(&confined);
        let hidden: Vec<String> = MASKED_PATHS.iter().map(|p| at(&p[1..])).collect();
        // Each masked file this kernel has is hidden under /dev/null, each directory under
        // an empty tmpfs.
        for path in MASKED_PATHS {
            let t = at(&path[1..]);
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => {
                    assert!(masked.iter().any(|(s, x, _)| s == "tmpfs" && *x == t))
                }
                Ok(_) => assert!(masked.contains(&("/dev/null".into(), t, libc::MS_BIND))),
                Err(_) => assert!(!masked.iter().any(|(_, x, _)| *x == t)),
            }
        }
        assert!(
            masked
                .iter()
                .any(|(_, t, f)| *t == at("proc/sys") && f & libc::MS_RDONLY != 0)
        );
        assert!(
            masked
                .iter()
                .any(|(_, t, f)| *t == at("sys") && f & libc::MS_RDONLY != 0)
        );
        let unmasked = ops(&SecurityConfig {
            unmasked_proc: true,
            ..confined.clone()
        });
        assert!(!unmasked.iter().any(|(_, t, _)| hidden.contains(t)));
        let privileged = ops(&SecurityConfig {
            privileged: true,
            ..confined.clone()
        });
        assert!(privileged.contains(&("/dev".into(), at("dev"), BIND)));
        assert!(!privileged.iter().any(|(_, t, _)| hidden.contains(t)));
        assert!(
            !privileged
                .iter()
                .any(|(_, t, f)| *t == at("sys") && f & libc::MS_RDONLY != 0)
        );
        // Unconfined (the default): nothing masked, the minimal /dev.
        let plain = ops(&SecurityConfig::default());
        assert!(!plain.iter().any(|(_, t, _)| hidden.contains(t)));
        assert!(
            plain
                .iter()
                .any(|(s, t, _)| s == "tmpfs" && *t == at("dev"))
        );
    }

    #[test]
    #[allow(unsafe_code)]
    fn image_symlinks_resolve_inside_the_image_and_whiteouts_hide() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (top, low) = (dir.path().join("top"), dir.path().join("low"));
        for d in ["var", "etc", "srv"] {
            std::fs::create_dir_all(low.join(d)).expect("mkdir");
        }
        std::fs::create_dir_all(top.join("srv")).expect("mkdir");
        std::os::unix::fs::symlink("/run", low.join("var/run")).expect("link");
        std::os::unix::fs::symlink("../../../../etc", low.join("srv/up")).expect("link");
        std::os::unix::fs::symlink("loop", low.join("loop")).expect("link");
        // the top layer deletes /srv/up
        let layers = vec![top.clone(), low.clone()];
        let root = Path::new("/r");
        let at = |p: &str| inside(root, &layers, Path::new(p));
        assert_eq!(
            at("/var/run/secrets").expect("link"),
            root.join("run/secrets")
        );
        assert_eq!(
            at("/srv/up/hosts").expect("clamped"),
            root.join("etc/hosts")
        );
        assert_eq!(at("/new/dir").expect("missing"), root.join("new/dir"));
        assert!(at("/loop/x").expect_err("loop").contains("symbolic links"));
        assert!(at("/a/../../etc").is_err());
        let whiteout = top.join("srv/up");
        let path = c(&whiteout).expect("path");
        // SAFETY: a valid NUL-terminated path; mknod only creates a file.
        if unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR, 0) } == 0 {
            assert_eq!(
                at("/srv/up/hosts").expect("hidden"),
                root.join("srv/up/hosts")
            );
        }
    }

    #[test]
    fn executables_are_looked_up_along_path_or_taken_as_given() {
        let cwd = Path::new("/w");
        assert_eq!(
            candidates("sh", "/usr/bin:/bin", cwd),
            vec![PathBuf::from("/usr/bin/sh"), PathBuf::from("/bin/sh")]
        );
        assert_eq!(
            candidates("./run", "/bin", cwd),
            vec![PathBuf::from("/w/./run")]
        );
        assert_eq!(
            candidates("/bin/sh", "", cwd),
            vec![PathBuf::from("/bin/sh")]
        );
    }
}
