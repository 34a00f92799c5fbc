//! Termination messages (spec §1.8), shared by the backends.
//!
//! For every container **instance** the runtime creates an empty file (mode 0666) and, in the
//! process backend, bind-mounts it at [`TerminationMessage::path`] in the container's private
//! mount namespace. When the instance ends, the message is:
//!
//! 1. the last ≤ [`MAX_MESSAGE_BYTES`] bytes of that file, if it is not empty;
//! 2. otherwise, with `FallbackToLogsOnError` and an exit code other than 0, the tail of the
//!    instance's log: the content (not the CRI prefixes) of its last
//!    [`FALLBACK_LOG_LINES`] entries, at most the last [`FALLBACK_LOG_BYTES`] bytes of it;
//! 3. otherwise none.
//!
//! A start that never ran (exit code 128, `StartError`) has no message: nothing ran to write
//! one. The message is reported in [`ExitStatus::termination_message`](crate::ExitStatus),
//! separately from the runtime's own `message`; the agent joins them as the kubelet does
//! (`runtime message + ": " + termination message`).
//!
//! The log writer records a last line without a newline as a full entry, so the newline after
//! the last entry is not part of the fallback message (`echo -n DONE; false` and
//! `echo DONE; false` both give `DONE`).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::TerminationMessage;

/// The most of the termination file that is read (the kubelet's
/// `MaxContainerTerminationMessageLength`).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The most log entries the fallback takes (`MaxContainerTerminationMessageLogLines`).
pub const FALLBACK_LOG_LINES: usize = 80;
/// The most bytes of log content the fallback takes (`MaxContainerTerminationMessageLogLength`).
pub const FALLBACK_LOG_BYTES: usize = 2048;

/// The termination message of an instance that ran: `file` is what the container wrote (its
/// last ≤ 4096 bytes), `log_tail` yields the log fallback (called only when it applies).
pub fn message(
    settings: Option<&TerminationMessage>,
    file: &[u8],
    exit_code: i32,
    log_tail: impl FnOnce() -> Vec<u8>,
) -> Option<String> {
    let settings = settings?;
    let file = &file[file.len().saturating_sub(MAX_MESSAGE_BYTES)..];
    let text = if !file.is_empty() {
        file.to_vec()
    } else if settings.fallback_to_logs_on_error && exit_code != 0 {
        log_tail()
    } else {
        Vec::new()
    };
    (!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned())
}

/// Reads the last ≤ [`MAX_MESSAGE_BYTES`] bytes of a termination file (empty if missing).
pub fn read_file(path: &Path) -> Vec<u8> {
    read_last(path, MAX_MESSAGE_BYTES as u64)
        .map(|(data, _)| data)
        .unwrap_or_default()
}

fn read_last(path: &Path, n: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(n);
    f.seek(SeekFrom::Start(start))?;
    let mut data = Vec::with_capacity((len - start) as usize);
    f.take(n).read_to_end(&mut data)?;
    Ok((data, start == 0))
}

/// The log fallback from a CRI-format log file: the content of its last
/// [`FALLBACK_LOG_LINES`] entries, at most its last [`FALLBACK_LOG_BYTES`] bytes (empty if the
/// file is missing). Reads only as much of the end of the file as it needs.
pub fn log_tail(path: &Path) -> Vec<u8> {
    let mut window: u64 = 16 * 1024;
    loop {
        let Ok((data, whole)) = read_last(path, window) else {
            return Vec::new();
        };
        // Drop the first, possibly cut, entry unless the window holds the whole file.
        let body = if whole {
            &data[..]
        } else {
            match data.iter().position(|&b| b == b'\n') {
                Some(p) => &data[p + 1..],
                None => &[][..],
            }
        };
        let (tail, entries) = cri_tail(body, FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES);
        if whole || entries >= FALLBACK_LOG_LINES || tail.len() >= FALLBACK_LOG_BYTES {
            return tail;
        }
        window = window.saturating_mul(4);
    }
}

/// The content of the last `lines` entries of CRI-format log data (complete entries), at most
/// its last `bytes` bytes, and how many entries were taken. Full (`F`) entries end with a
/// newline, partial (`P`) ones do not; the last newline is dropped. Lines that are not in CRI
/// format are taken whole.
pub fn cri_tail(data: &[u8], lines: usize, bytes: usize) -> (Vec<u8>, usize) {
    let entries: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let skip = entries.len().saturating_sub(lines);
    let mut out = Vec::new();
    for e in &entries[skip..] {
        let (content, partial) = cri_content(e);
        out.extend_from_slice(content);
        if !partial {
            out.push(b'\n');
        }
    }
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    let cut = out.len().saturating_sub(bytes);
    out.drain(..cut);
    (out, entries.len() - skip)
}

/// `<time> <stream> <tag> <content>` → (content, partial).
fn cri_content(entry: &[u8]) -> (&[u8], bool) {
    let mut parts = entry.splitn(4, |&b| b == b' ');
    let (Some(_time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return (entry, false);
    };
    if stream != b"stdout" && stream != b"stderr" {
        return (entry, false);
    }
    let partial = tag.split(|&b| b == b':').next() == Some(b"P");
    (parts.next().unwrap_or(&[]), partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(fallback: bool) -> TerminationMessage {
        TerminationMessage {
            path: "/dev/termination-log".into(),
            fallback_to_logs_on_error: fallback,
        }
    }

    /// The message when the log's tail is `DONE`.
    fn with_log_done(
        settings: Option<&TerminationMessage>,
        file: &[u8],
        code: i32,
    ) -> Option<String> {
        message(settings, file, code, || b"DONE".to_vec())
    }

    #[test]
    fn the_file_wins_over_the_log() {
        let s = settings(true);
        assert_eq!(with_log_done(Some(&s), b"OK", 1).as_deref(), Some("OK"));
    }

    #[test]
    fn fallback_only_on_failure_with_an_empty_file() {
        let s = settings(true);
        assert_eq!(with_log_done(Some(&s), b"", 1).as_deref(), Some("DONE"));
        assert_eq!(with_log_done(Some(&s), b"", 0), None);
        let file_only = settings(false);
        assert_eq!(with_log_done(Some(&file_only), b"", 1), None);
        assert_eq!(with_log_done(None, b"X", 1), None);
    }

    #[test]
    fn the_file_is_cut_to_its_last_4096_bytes() {
        let s = settings(false);
        let mut file = vec![b'a'; 10];
        file.extend(vec![b'b'; MAX_MESSAGE_BYTES]);
        let m = message(Some(&s), &file, 0, Vec::new).expect("message");
        assert_eq!(m.len(), MAX_MESSAGE_BYTES);
        assert!(m.bytes().all(|b| b == b'b'));
    }

    #[test]
    fn cri_tail_strips_prefixes_and_joins_partials() {
        let log = b"2024-01-01T00:00:00.000000000Z stdout F one\n\
2024-01-01T00:00:00.000000000Z stderr P tw\n\
2024-01-01T00:00:00.000000000Z stderr F o\n\
2024-01-01T00:00:00.000000000Z stdout F DONE\n";
        assert_eq!(cri_tail(log, 80, 2048).0, b"one\ntwo\nDONE");
        assert_eq!(cri_tail(log, 2, 2048).0, b"o\nDONE");
        assert_eq!(cri_tail(log, 80, 3).0, b"ONE");
        assert_eq!(cri_tail(b"not cri\n", 80, 2048).0, b"not cri");
    }

    #[test]
    fn log_tail_reads_the_end_of_a_long_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut data = String::new();
        for i in 0..5000 {
            data.push_str(&format!(
                "2024-01-01T00:00:00.000000000Z stdout F line {i}\n"
            ));
        }
        std::fs::write(&path, data).expect("write");
        let tail = String::from_utf8(log_tail(&path)).expect("utf8");
        assert!(tail.ends_with("line 4999"), "{tail}");
        assert_eq!(tail.lines().count(), FALLBACK_LOG_LINES);
        assert!(tail.starts_with("line 4920"), "{tail}");
        assert_eq!(log_tail(&dir.path().join("missing.log")), b"");
    }
}
