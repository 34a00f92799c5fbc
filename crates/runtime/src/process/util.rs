//! Small helpers shared by the client and the supervisor: clocks, atomic files, /proc.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The wall clock. The runtime records real start and finish times of real processes, so it
/// reads the real clock (the agent's injected clock is for lifecycle decisions, not for
/// stamping what the kernel did).
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// The monotonic clock, for the supervisor's poll-loop deadlines (it has no tokio runtime).
#[allow(clippy::disallowed_methods)]
pub(crate) fn mono_now() -> Instant {
    Instant::now()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, optionally
/// fsynced, renamed over `path`, and (when `sync`) the directory fsynced too.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path without a parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path without a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if sync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Flushes a file and its directory entry to disk.
pub(crate) fn sync_file(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes a JSON value atomically (see [`atomic_write`]).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T, sync: bool) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    atomic_write(path, &bytes, sync)
}

/// Reads a JSON file: `Ok(None)` if it does not exist, an `InvalidData` error if it is corrupt.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`), used
/// with the PID to identify a process without trusting a possibly reused PID alone.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The parent PID and state letter of a process, from `/proc/<pid>/stat`.
pub(crate) fn ppid_and_state(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether the process `pid` still exists and is the one that started at `ticks` (zombies
/// count as gone).
pub(crate) fn process_alive(pid: u32, ticks: u64) -> bool {
    match (start_ticks(pid), ppid_and_state(pid)) {
        (Some(t), Some((_, state))) => t == ticks && state != 'Z' && state != 'X',
        _ => false,
    }
}

/// Whether signal `sig`'s default action ends a process (false for SIGCHLD, SIGCONT, SIGURG,
/// SIGWINCH, and the stop signals, which do not end it either).
fn default_terminates(sig: i32) -> bool {
    !matches!(sig, 17 | 18 | 19 | 20 | 21 | 22 | 23 | 28)
}

/// Whether `sig` takes effect on process `pid` (see `ContainerStatus::handles_stop_signal`).
pub(crate) fn handles_signal(pid: u32, sig: i32) -> Option<bool> {
    if !(1..=64).contains(&sig) {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = |key: &str| -> Option<&str> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        Some(line[key.len()..].trim())
    };
    let mask = |key: &str| -> Option<u64> { u64::from_str_radix(line(key)?, 16).ok() };
    // `NSpid:` lists the PID in each nested namespace, the innermost last: 1 is an init
    let ns_init = line("NSpid:")
        .and_then(|l| l.split_whitespace().last())
        .is_some_and(|p| p == "1");
    let masks = SignalMasks {
        blocked: mask("SigBlk:")?,
        ignored: mask("SigIgn:")?,
        caught: mask("SigCgt:")?,
    };
    Some(signal_takes_effect(masks, sig, ns_init))
}

/// A process's signal masks (`/proc/<pid>/status`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignalMasks {
    pub(crate) blocked: u64,
    pub(crate) ignored: u64,
    pub(crate) caught: u64,
}

/// Whether `sig` (1–64) sent from outside ends or reaches a process with `masks`: caught, or
/// its default action ends the process — except for a PID namespace's init (`ns_init`), for
/// which the kernel drops every signal it has no handler for but SIGKILL and SIGSTOP (so
/// `sleep` as PID 1 ignores SIGTERM). Ignored or blocked: no effect.
pub(crate) fn signal_takes_effect(masks: SignalMasks, sig: i32, ns_init: bool) -> bool {
    if matches!(sig, 9 | 19) {
        return true;
    }
    let bit = 1u64 << (sig - 1);
    if masks.caught & bit != 0 {
        return true;
    }
    if masks.ignored & bit != 0 || masks.blocked & bit != 0 || ns_init {
        return false;
    }
    default_terminates(sig)
}

/// Formats a time as RFC 3339 with nanoseconds in UTC (`2026-11-25T09:23:05.123456789Z`).
pub(crate) fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// A random 64-bit value (std's per-process random hash keys; good enough for IDs).
pub(crate) fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = wall_now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    std::collections::hash_map::RandomState::new().hash_one((n, nanos, std::process::id()))
}

/// Whether `s` is safe as a single path component and an ID: 1–128 characters of
/// `[A-Za-z0-9._-]`, not starting with a dot.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_nano(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_name("web-1_x.y"));
        assert!(!valid_name(""));
        assert!(!valid_name(".."));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(129)));
    }

    #[test]
    fn own_process_is_alive_and_reads_signals() {
        let pid = std::process::id();
        let ticks = start_ticks(pid).expect("own stat");
        assert!(process_alive(pid, ticks));
        assert!(!process_alive(pid, ticks + 1));
        // SIGKILL cannot be caught, ignored or blocked.
        assert_eq!(handles_signal(pid, 9), Some(true));
        assert_eq!(handles_signal(pid, 0), None);
    }

    #[test]
    fn a_pid_namespace_init_without_a_handler_ignores_its_stop_signal() {
        let none = SignalMasks {
            blocked: 0,
            ignored: 0,
            caught: 0,
        };
        // `sleep` as an ordinary process dies of SIGTERM, as PID 1 of its namespace it does not
        assert!(signal_takes_effect(none, 15, false));
        assert!(!signal_takes_effect(none, 15, true));
        // a handler makes it take effect either way; SIGKILL always does
        let term_caught = SignalMasks {
            caught: 1 << 14,
            ..none
        };
        assert!(signal_takes_effect(term_caught, 15, true));
        assert!(signal_takes_effect(none, 9, true));
        // ignored or blocked: never; a default that does not end the process: never
        let usr1_ignored = SignalMasks {
            ignored: 1 << 9,
            ..none
        };
        assert!(!signal_takes_effect(usr1_ignored, 10, false));
        assert!(!signal_takes_effect(none, 17, false));
    }

    #[test]
    fn atomic_write_replaces_and_read_json_reports_absence() {
        let dir = std::env::temp_dir().join(format!("pv-util-{}", random_u64()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join("x.json");
        assert!(read_json::<u32>(&p).expect("read").is_none());
        write_json(&p, &7u32, true).expect("write");
        write_json(&p, &8u32, false).expect("write");
        assert_eq!(read_json::<u32>(&p).expect("read"), Some(8));
        std::fs::write(&p, b"{").expect("corrupt");
        assert!(read_json::<u32>(&p).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
