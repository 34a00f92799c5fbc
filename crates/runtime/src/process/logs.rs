//! Container logs in the CRI format (`<RFC3339Nano> stdout|stderr F|P <line>`), written by the
//! supervisor from the container's stdout and stderr pipes, with size-based rotation.
//!
//! Layout (per sandbox directory): `logs/<container name>/<attempt>.log`, where `attempt`
//! counts the containers of that name created in the sandbox (0, 1, 2, …), so the previous
//! instance's log is `<attempt - 1>.log`. When a file would grow past the limit it is renamed
//! to `<attempt>.log.1` (replacing an older rotated file) and a new one is started. Lines
//! longer than 16 KiB are split into `P` (partial) entries ending with an `F` entry.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::util::{rfc3339_nano, wall_now};

/// The longest entry; longer lines are split into partial entries.
pub(crate) const MAX_ENTRY: usize = 16 * 1024;

/// A CRI-format log file with rotation.
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl LogFile {
    /// Opens (appending) or creates the file and its directory.
    pub(crate) fn open(path: &Path, max: u64) -> io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            max: max.max(256),
        })
    }

    /// Appends one entry, rotating first if it would not fit.
    pub(crate) fn write_entry(&mut self, stream: &str, partial: bool, line: &[u8]) {
        let mut entry = Vec::with_capacity(line.len() + 48);
        entry.extend_from_slice(rfc3339_nano(wall_now()).as_bytes());
        entry.push(b' ');
        entry.extend_from_slice(stream.as_bytes());
        entry.extend_from_slice(if partial { b" P " } else { b" F " });
        entry.extend_from_slice(line);
        entry.push(b'\n');
        if self.size > 0 && self.size + entry.len() as u64 > self.max {
            self.rotate();
        }
        if self.file.write_all(&entry).is_ok() {
            self.size += entry.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(".1");
        if std::fs::rename(&self.path, &rotated).is_err() {
            return;
        }
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            self.file = f;
            self.size = 0;
        }
    }
}

/// One output stream of a container: the read end of its pipe and the unfinished line.
pub(crate) struct LogStream {
    /// The non-blocking read end.
    pub fd: OwnedFd,
    name: &'static str,
    buf: Vec<u8>,
}

impl LogStream {
    /// A stream named `stdout` or `stderr`.
    pub(crate) fn new(fd: OwnedFd, name: &'static str) -> LogStream {
        LogStream {
            fd,
            name,
            buf: Vec::new(),
        }
    }

    /// Reads what is available and writes complete entries. Returns true at end of file (the
    /// unfinished line is then written as a full entry).
    pub(crate) fn pump(&mut self, log: &mut LogFile) -> bool {
        let mut chunk = [0u8; 8192];
        let eof = loop {
            match nix::unistd::read(&self.fd, &mut chunk) {
                Ok(0) => break true,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.emit(log);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => break false,
                Err(_) => break true,
            }
        };
        if eof && !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            log.write_entry(self.name, false, &rest);
        }
        eof
    }

    /// Writes the unfinished line, if any, as a full entry (the stream is being closed).
    pub(crate) fn finish(&mut self, log: &mut LogFile) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            log.write_entry(self.name, false, &rest);
        }
    }

    fn emit(&mut self, log: &mut LogFile) {
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut s = start;
            while end - s > MAX_ENTRY {
                log.write_entry(self.name, true, &self.buf[s..s + MAX_ENTRY]);
                s += MAX_ENTRY;
            }
            log.write_entry(self.name, false, &self.buf[s..end]);
            start = end + 1;
        }
        while self.buf.len() - start > MAX_ENTRY {
            log.write_entry(self.name, true, &self.buf[start..start + MAX_ENTRY]);
            start += MAX_ENTRY;
        }
        self.buf.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_rotate_at_the_limit() {
        let dir =
            std::env::temp_dir().join(format!("pv-logs-{}", super::super::util::random_u64()));
        let path = dir.join("c/0.log");
        let mut log = LogFile::open(&path, 1000).expect("open");
        for i in 0..40 {
            log.write_entry("stdout", false, format!("line {i}").as_bytes());
        }
        let current = std::fs::read_to_string(&path).expect("current");
        let rotated = std::fs::read_to_string(dir.join("c/0.log.1")).expect("rotated");
        assert!(current.len() <= 1000 && rotated.len() <= 1000);
        assert!(current.ends_with("stdout F line 39\n"), "{current}");
        for line in current.lines().chain(rotated.lines()) {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().expect("ts");
            assert_eq!(ts.len(), 30, "{line}");
            assert!(ts.ends_with('Z'));
            assert_eq!(parts.next(), Some("stdout"));
            assert_eq!(parts.next(), Some("F"));
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
