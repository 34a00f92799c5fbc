//! Cgroups for sandboxes and containers: the v2 unified hierarchy and the v1 controllers, as
//! mounted on the host (pure v2, pure v1, or hybrid: v1 controllers plus a cgroup2 mount used
//! for `cgroup.kill`).
//!
//! Layout: `<hierarchy>/<parent>/<sandbox id>/<container id>`, where `<parent>` is
//! `<the agent's own cgroup>/podvisor` unless configured. The client resolves the parents once
//! ([`detect`]) and records them in the sandbox record; the supervisor creates, limits, kills
//! and removes the directories below them.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Resources;

/// Which hierarchy a directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CgKind {
    /// The cgroup2 hierarchy (`cgroup.kill`, and whatever controllers it has).
    Unified,
    /// v1 memory.
    Memory,
    /// v1 cpu.
    Cpu,
    /// v1 pids.
    Pids,
    /// v1 freezer.
    Freezer,
}

/// One cgroup directory in one hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CgDir {
    /// The hierarchy.
    pub kind: CgKind,
    /// The absolute directory.
    pub path: PathBuf,
    /// For `Unified`: the controllers enabled for children (memory, cpu, pids).
    #[serde(default)]
    pub controllers: Vec<String>,
    /// For `Unified`: whether `cgroup.kill` exists (kernel ≥ 5.14).
    #[serde(default)]
    pub kill: bool,
}

impl CgDir {
    fn has(&self, controller: &str) -> bool {
        match self.kind {
            CgKind::Unified => self.controllers.iter().any(|c| c == controller),
            CgKind::Memory => controller == "memory",
            CgKind::Cpu => controller == "cpu",
            CgKind::Pids => controller == "pids",
            CgKind::Freezer => controller == "freezer",
        }
    }

    /// The same hierarchy, one level down.
    pub(crate) fn child(&self, name: &str) -> CgDir {
        CgDir {
            path: self.path.join(name),
            ..self.clone()
        }
    }
}

/// The parents resolved at runtime start, and what is missing.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    /// Writable parent directories, one per usable hierarchy.
    pub parents: Vec<CgDir>,
    /// Human-readable list of what is not available.
    pub missing: Vec<String>,
}

struct Mount {
    root: String,
    point: PathBuf,
    v2: bool,
    controllers: Vec<String>,
}

fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let (root, point) = (l[3].to_string(), PathBuf::from(l[4]));
        match r[0] {
            "cgroup2" => out.push(Mount {
                root,
                point,
                v2: true,
                controllers: vec![],
            }),
            "cgroup" => out.push(Mount {
                root,
                point,
                v2: false,
                controllers: r[2].split(',').map(str::to_string).collect(),
            }),
            _ => {}
        }
    }
    out
}

/// The calling process's cgroup path in the v1 hierarchy holding `controller`, or in the v2
/// hierarchy when `controller` is None.
fn own_path(controller: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (id, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        match controller {
            None if id == "0" && ctrls.is_empty() => return Some(path.to_string()),
            Some(c) if ctrls.split(',').any(|x| x == c) => return Some(path.to_string()),
            _ => {}
        }
    }
    None
}

fn parent_in(m: &Mount, own: Option<String>, configured: Option<&str>) -> PathBuf {
    match configured {
        Some(p) => m.point.join(p.trim_start_matches('/')),
        None => {
            let own = own.unwrap_or_else(|| "/".into());
            let rel = own
                .strip_prefix(m.root.as_str())
                .unwrap_or(&own)
                .trim_start_matches('/');
            m.point.join(rel).join("podvisor")
        }
    }
}

/// Finds the hierarchies, creates the podvisor parents and reports what is missing.
pub(crate) fn detect(configured: Option<&str>) -> Layout {
    let mut layout = Layout::default();
    let ms = mounts();
    for (kind, name) in [
        (CgKind::Memory, "memory"),
        (CgKind::Cpu, "cpu"),
        (CgKind::Pids, "pids"),
        (CgKind::Freezer, "freezer"),
    ] {
        let Some(m) = ms
            .iter()
            .find(|m| !m.v2 && m.controllers.iter().any(|c| c == name))
        else {
            continue;
        };
        let dir = parent_in(m, own_path(Some(name)), configured);
        match std::fs::create_dir_all(&dir) {
            Ok(()) => layout.parents.push(CgDir {
                kind,
                path: dir,
                controllers: vec![],
                kill: false,
            }),
            Err(e) => layout
                .missing
                .push(format!("v1 {name} cgroup ({}: {e})", dir.display())),
        }
    }
    if let Some(m) = ms.iter().find(|m| m.v2) {
        let dir = parent_in(m, own_path(None), configured);
        match std::fs::create_dir_all(&dir) {
            Ok(()) => {
                let available =
                    std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
                let mut enabled = Vec::new();
                for c in ["memory", "cpu", "pids"] {
                    let in_v1 = layout.parents.iter().any(|p| p.has(c));
                    if !in_v1
                        && available.split_whitespace().any(|a| a == c)
                        && std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"))
                            .is_ok()
                    {
                        enabled.push(c.to_string());
                    }
                }
                let kill = dir.join("cgroup.kill").exists();
                if !kill {
                    layout.missing.push("cgroup.kill (kernel < 5.14)".into());
                }
                layout.parents.push(CgDir {
                    kind: CgKind::Unified,
                    path: dir,
                    controllers: enabled,
                    kill,
                });
            }
            Err(e) => layout
                .missing
                .push(format!("cgroup2 ({}: {e})", dir.display())),
        }
    }
    let has = |c: &str| layout.parents.iter().any(|p| p.has(c));
    for (c, what) in [
        ("memory", "memory limits and OOM detection"),
        ("cpu", "cpu limits"),
        ("pids", "pids limits"),
    ] {
        if !has(c) {
            layout.missing.push(what.into());
        }
    }
    let can_kill_tree = layout.parents.iter().any(|p| {
        p.kind == CgKind::Freezer
            || (p.kind == CgKind::Unified && p.path.join("cgroup.kill").exists())
    });
    if !can_kill_tree {
        layout.missing.push(
            "whole-tree kills (no cgroup.kill, no freezer): SIGKILL reaches the process group only"
                .into(),
        );
    }
    layout
}

/// The hierarchies a cgroup with these limits needs: the unified one always (kill sweeps,
/// placement at clone), a v1 controller only when a limit asks for it, and the v1 freezer only
/// when there is no `cgroup.kill`. Joining a v1 hierarchy is a cgroup migration, which costs an
/// RCU grace period (~10 ms) on kernels without `favordynmods`, so none is joined needlessly.
pub(crate) fn needed(dirs: &[CgDir], limits: &[&Resources]) -> Vec<CgDir> {
    let any = |f: fn(&Resources) -> bool| limits.iter().any(|r| f(r));
    let can_kill = dirs.iter().any(|d| d.kind == CgKind::Unified && d.kill);
    dirs.iter()
        .filter(|d| match d.kind {
            CgKind::Unified => true,
            CgKind::Memory => any(|r| r.memory_limit_bytes.is_some()),
            CgKind::Cpu => any(|r| r.cpu_request_millis.is_some() || r.cpu_limit_millis.is_some()),
            CgKind::Pids => any(|r| r.pids_limit.is_some()),
            CgKind::Freezer => !can_kill,
        })
        .cloned()
        .collect()
}

/// Creates the directories (the ones that fail are dropped, with their error in the result).
pub(crate) fn create(dirs: &[CgDir]) -> (Vec<CgDir>, Vec<String>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for d in dirs {
        match std::fs::create_dir_all(&d.path) {
            Ok(()) => {
                if d.kind == CgKind::Unified && !d.controllers.is_empty() {
                    let ctl: Vec<String> = d.controllers.iter().map(|c| format!("+{c}")).collect();
                    let _ = std::fs::write(d.path.join("cgroup.subtree_control"), ctl.join(" "));
                }
                ok.push(d.clone());
            }
            Err(e) => errors.push(format!("{}: {e}", d.path.display())),
        }
    }
    (ok, errors)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| format!("write {value:?} to {}: {e}", dir.join(file).display()))
}

/// Applies resource limits to the directories that have the controllers.
pub(crate) fn apply(dirs: &[CgDir], r: &Resources) -> Result<(), String> {
    for d in dirs {
        if let Some(mem) = r.memory_limit_bytes {
            match d.kind {
                CgKind::Memory => write(&d.path, "memory.limit_in_bytes", &mem.to_string())?,
                CgKind::Unified if d.has("memory") => {
                    write(&d.path, "memory.max", &mem.to_string())?;
                    let _ = write(&d.path, "memory.swap.max", "0");
                }
                _ => {}
            }
        }
        if let Some(req) = r.cpu_request_millis {
            let shares = (req * 1024 / 1000).max(2);
            match d.kind {
                CgKind::Cpu => write(&d.path, "cpu.shares", &shares.to_string())?,
                CgKind::Unified if d.has("cpu") => {
                    let weight = 1 + ((shares.min(262_144) - 2) * 9999) / 262_142;
                    write(&d.path, "cpu.weight", &weight.to_string())?
                }
                _ => {}
            }
        }
        if let Some(lim) = r.cpu_limit_millis {
            let quota = (lim * 100).max(1000);
            match d.kind {
                CgKind::Cpu => {
                    write(&d.path, "cpu.cfs_period_us", "100000")?;
                    write(&d.path, "cpu.cfs_quota_us", &quota.to_string())?
                }
                CgKind::Unified if d.has("cpu") => {
                    write(&d.path, "cpu.max", &format!("{quota} 100000"))?
                }
                _ => {}
            }
        }
        if let Some(p) = r.pids_limit
            && (d.kind == CgKind::Pids || (d.kind == CgKind::Unified && d.has("pids")))
        {
            write(&d.path, "pids.max", &p.to_string())?;
        }
    }
    Ok(())
}

/// What a child needs to start in a set of cgroups.
pub(crate) struct Placement {
    /// The cgroup v2 directory (for `clone3(CLONE_INTO_CGROUP)`) and its `cgroup.procs`.
    pub unified: Option<(OwnedFd, OwnedFd)>,
    /// `cgroup.procs` of every v1 directory (the child writes "0" to join).
    pub procs: Vec<OwnedFd>,
}

/// Opens the files a child needs to join `dirs`.
pub(crate) fn placement(dirs: &[CgDir]) -> io::Result<Placement> {
    let mut p = Placement {
        unified: None,
        procs: Vec::new(),
    };
    for d in dirs {
        let procs = OwnedFd::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open(d.path.join("cgroup.procs"))?,
        );
        if d.kind == CgKind::Unified {
            p.unified = Some((OwnedFd::from(std::fs::File::open(&d.path)?), procs));
        } else {
            p.procs.push(procs);
        }
    }
    Ok(p)
}

/// The PIDs in the first directory (as seen from the caller's PID namespace), or None when
/// there are no directories.
pub(crate) fn procs(dirs: &[CgDir]) -> Option<Vec<i32>> {
    let d = dirs.first()?;
    let text = std::fs::read_to_string(d.path.join("cgroup.procs")).ok()?;
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Kills every process in the cgroup: `cgroup.kill` on v2, else a freeze → SIGKILL all → thaw
/// sweep on the v1 freezer. Returns false when neither is available.
pub(crate) fn kill_all(dirs: &[CgDir]) -> bool {
    if let Some(d) = dirs
        .iter()
        .find(|d| d.kind == CgKind::Unified && d.path.join("cgroup.kill").exists())
        && std::fs::write(d.path.join("cgroup.kill"), "1").is_ok()
    {
        return true;
    }
    let Some(d) = dirs.iter().find(|d| d.kind == CgKind::Freezer) else {
        return false;
    };
    if std::fs::write(d.path.join("freezer.state"), "FROZEN").is_err() {
        return false;
    }
    for _ in 0..200 {
        match std::fs::read_to_string(d.path.join("freezer.state")) {
            Ok(s) if s.trim() == "FROZEN" => break,
            Ok(_) => std::thread::sleep(Duration::from_micros(500)),
            Err(_) => break,
        }
    }
    // Frozen processes cannot fork; every PID listed now is killed, then thawed to let it die.
    if let Some(pids) = procs(std::slice::from_ref(d)) {
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = std::fs::write(d.path.join("freezer.state"), "THAWED");
    true
}

/// What the processes of a cgroup use: CPU time from `cpu.stat` (v2) or `cpuacct.usage`
/// (v1, where the cpu and cpuacct controllers share a hierarchy), memory working set from
/// `memory.current`/`memory.usage_in_bytes` less inactive file pages (as the kubelet's
/// cadvisor computes it); what no controller counts is summed over the cgroup's live
/// processes from `/proc` (utime + stime, resident set).
pub(crate) fn usage(dirs: &[CgDir]) -> crate::ContainerStats {
    let read = |d: &CgDir, f: &str| std::fs::read_to_string(d.path.join(f)).ok();
    let stat_field = |text: &str, key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(' ')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    let mut cpu = None;
    let mut memory = None;
    for d in dirs {
        match d.kind {
            CgKind::Unified => {
                if d.has("cpu") && cpu.is_none() {
                    cpu = read(d, "cpu.stat")
                        .and_then(|t| stat_field(&t, "usage_usec"))
                        .map(|u| u * 1000);
                }
                if d.has("memory") && memory.is_none() {
                    let current = read(d, "memory.current").and_then(|t| t.trim().parse().ok());
                    let inactive = read(d, "memory.stat")
                        .and_then(|t| stat_field(&t, "inactive_file"))
                        .unwrap_or(0);
                    memory = current.map(|c: u64| c.saturating_sub(inactive));
                }
            }
            CgKind::Cpu if cpu.is_none() => {
                cpu = read(d, "cpuacct.usage").and_then(|t| t.trim().parse().ok());
            }
            CgKind::Memory if memory.is_none() => {
                let usage = read(d, "memory.usage_in_bytes").and_then(|t| t.trim().parse().ok());
                let inactive = read(d, "memory.stat")
                    .and_then(|t| stat_field(&t, "total_inactive_file"))
                    .unwrap_or(0);
                memory = usage.map(|u: u64| u.saturating_sub(inactive));
            }
            _ => {}
        }
    }
    if cpu.is_none() || memory.is_none() {
        let (c, m) = procs(dirs)
            .unwrap_or_default()
            .into_iter()
            .filter_map(proc_usage)
            .fold((0u64, 0u64), |(c, m), (pc, pm)| (c + pc, m + pm));
        cpu = cpu.or(Some(c));
        memory = memory.or(Some(m));
    }
    crate::ContainerStats {
        cpu_usage_nanos: cpu.unwrap_or(0),
        memory_working_set_bytes: memory.unwrap_or(0),
    }
}

/// One process's CPU time (ns) and resident set (bytes), from `/proc/<pid>/stat`.
fn proc_usage(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command (which may hold spaces), from field 3 on.
    let rest: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = field(14)? + field(15)?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let page = rustix::param::page_size() as u64;
    Some((ticks * 1_000_000_000 / hz, field(24)? * page))
}

/// The number of OOM kills recorded in the memory cgroup (0 when unknown).
pub(crate) fn oom_kills(dirs: &[CgDir]) -> u64 {
    for d in dirs {
        let file = match d.kind {
            CgKind::Memory => "memory.oom_control",
            CgKind::Unified if d.has("memory") => "memory.events",
            _ => continue,
        };
        let text = std::fs::read_to_string(d.path.join(file)).unwrap_or_default();
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("oom_kill ") {
                return n.trim().parse().unwrap_or(0);
            }
        }
    }
    0
}

/// Removes the directories (children first is the caller's job). Errors are returned as text.
pub(crate) fn remove(dirs: &[CgDir]) -> Vec<String> {
    let mut errors = Vec::new();
    for d in dirs {
        let mut last = None;
        for _ in 0..50 {
            match std::fs::remove_dir(&d.path) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    last = None;
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        if let Some(e) = last {
            errors.push(format!("rmdir {}: {e}", d.path.display()));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v1 freeze → kill → thaw sweep (used where there is no `cgroup.kill`) kills every
    /// process in the cgroup, including one that left the process group.
    #[test]
    fn freezer_sweep_kills_everything() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let layout = detect(None);
        let Some(parent) = layout.parents.iter().find(|d| d.kind == CgKind::Freezer) else {
            eprintln!("skipping: no v1 freezer here");
            return;
        };
        let dir = parent.child(&format!(
            "freezer-test-{:x}",
            super::super::util::random_u64()
        ));
        let (dirs, errors) = create(std::slice::from_ref(&dir));
        assert!(errors.is_empty(), "{errors:?}");
        // The shell waits for a line on stdin until it has been moved into the cgroup; then
        // it starts a setsid'd daemon (which leaves the process group) and execs sleep.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; setsid sleep 1000 & exec sleep 1000"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::fs::write(dir.path.join("cgroup.procs"), child.id().to_string()).expect("join");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"go\n").expect("release the shell");
        }
        let mut pids = Vec::new();
        for _ in 0..500 {
            pids = procs(&dirs).unwrap_or_default();
            if pids.len() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if pids.len() < 2 {
            for p in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            remove(&dirs);
        }
        assert!(pids.len() >= 2, "{pids:?}");
        assert!(kill_all(&dirs));
        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        for _ in 0..500 {
            if procs(&dirs).is_some_and(|p| p.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(procs(&dirs), Some(vec![]));
        assert_eq!(
            std::fs::read_to_string(dir.path.join("freezer.state"))
                .expect("state")
                .trim(),
            "THAWED"
        );
        assert!(remove(&dirs).is_empty());
    }
}
