//! Termination deadlines persisted in the agent's state directory, so that an agent killed
//! mid-grace and restarted kills the pod's processes at the original deadline (never earlier,
//! at most a second later) instead of granting a fresh grace period.
//!
//! One JSON file per pod UID under `<state_dir>/terminations/`, written atomically (a temp
//! file, then a rename) when termination starts, when the deadline moves earlier and when a stop signal
//! is sent; removed when the pod's worker finishes. A corrupt file is ignored (and the
//! deadline recomputed), never a panic.

use std::path::{Path, PathBuf};

use crate::error::AgentError;
use crate::pod::state::Deadline;

/// The persisted facts of one pod's termination.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminationRecord {
    /// The pod UID.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The deadline.
    pub deadline: Deadline,
    /// Containers that were already sent their stop signal (their preStop is not run again).
    pub signalled: Vec<String>,
}

/// The directory of termination records.
#[derive(Clone, Debug)]
pub struct DeadlineStore {
    dir: PathBuf,
}

fn io_err(operation: &'static str, path: &Path, e: std::io::Error) -> AgentError {
    AgentError::Io {
        operation,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl DeadlineStore {
    /// Opens (creating) `<state_dir>/terminations`.
    pub fn open(state_dir: &Path) -> Result<DeadlineStore, AgentError> {
        let dir = state_dir.join("terminations");
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        Ok(DeadlineStore { dir })
    }

    fn path(&self, uid: &str) -> Option<PathBuf> {
        let ok = !uid.is_empty()
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        ok.then(|| self.dir.join(format!("{uid}.json")))
    }

    /// Writes the record atomically.
    pub fn save(&self, rec: &TerminationRecord) -> Result<(), AgentError> {
        let Some(path) = self.path(&rec.uid) else {
            return Err(AgentError::Config(format!(
                "unusable pod uid {:?}",
                rec.uid
            )));
        };
        let tmp = path.with_extension("json.tmp");
        let data = serde_json::to_vec(rec).map_err(|e| AgentError::Io {
            operation: "encode",
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, data).map_err(|e| io_err("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e))
    }

    /// The record of `uid`, if one exists and is readable.
    pub fn load(&self, uid: &str) -> Option<TerminationRecord> {
        let path = self.path(uid)?;
        let data = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<TerminationRecord>(&data) {
            Ok(r) if r.uid == uid => Some(r),
            Ok(_) | Err(_) => {
                tracing::warn!(path = %path.display(), "ignoring unreadable termination record");
                None
            }
        }
    }

    /// Removes the record of `uid` (absent is fine).
    pub fn remove(&self, uid: &str) {
        if let Some(path) = self.path(uid) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::state::GraceRequest;
    use std::time::{Duration, SystemTime};

    #[test]
    fn records_round_trip_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadlineStore::open(dir.path()).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let rec = TerminationRecord {
            uid: "u-1".into(),
            namespace: "ns".into(),
            name: "p".into(),
            deadline: Deadline::new(now, GraceRequest::Seconds(30)),
            signalled: vec!["app".into()],
        };
        store.save(&rec).unwrap();
        assert_eq!(store.load("u-1"), Some(rec.clone()));
        // a new store on the same directory (agent restart) sees it, to the nanosecond
        let again = DeadlineStore::open(dir.path()).unwrap();
        assert_eq!(
            again.load("u-1").unwrap().deadline.at,
            now + Duration::from_secs(30)
        );
        std::fs::write(dir.path().join("terminations/u-2.json"), b"{not json").unwrap();
        assert_eq!(store.load("u-2"), None);
        assert_eq!(store.load("../etc/passwd"), None);
        store.remove("u-1");
        assert_eq!(store.load("u-1"), None);
    }
}
