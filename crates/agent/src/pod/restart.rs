//! CrashLoopBackOff (spec §4), as upstream's `flowcontrol.Backoff` keyed per container.
//!
//! * key = container name + spec hash (a changed container spec, e.g. a new image, starts a
//!   fresh back-off);
//! * `in_backoff(key, finished_at, now)`: an entry exists, it has not expired, and
//!   `now − finished_at < entry.backoff`;
//! * `next(key, finished_at, now)` (called when a restart goes ahead): no entry or expired →
//!   `initial`; otherwise double, capped at `max`; the entry's `last_update` becomes `now`;
//! * expiry: `finished_at − last_update > 2 × max` (the instance ran more than 10 minutes
//!   with the defaults).
//!
//! The resulting delays between an exit and the next start are 0, 10, 20, 40, 80, 160, 300,
//! 300 … seconds: the first restart is immediate because the entry does not exist yet.
//! Pure: the caller supplies every time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// A back-off key: container name and spec hash.
pub(crate) type BackoffKey = (String, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    backoff: Duration,
    last_update: SystemTime,
}

/// Per-container restart back-off of one pod.
#[derive(Clone, Debug)]
pub(crate) struct CrashBackoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<BackoffKey, Entry>,
}

impl CrashBackoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> CrashBackoff {
        CrashBackoff {
            initial,
            max: max.max(initial),
            entries: HashMap::new(),
        }
    }

    fn expired(&self, e: &Entry, event_time: SystemTime) -> bool {
        event_time
            .duration_since(e.last_update)
            .unwrap_or(Duration::ZERO)
            > self.max * 2
    }

    /// If the container that finished at `finished_at` must still wait, the current back-off
    /// and the wall time at which it may start.
    pub(crate) fn in_backoff(
        &self,
        key: &BackoffKey,
        finished_at: SystemTime,
        now: SystemTime,
    ) -> Option<(Duration, SystemTime)> {
        let e = self.entries.get(key)?;
        if self.expired(e, finished_at) {
            return None;
        }
        let since = now.duration_since(finished_at).unwrap_or(Duration::ZERO);
        (since < e.backoff).then(|| (e.backoff, finished_at + e.backoff))
    }

    /// Records that a restart goes ahead now.
    pub(crate) fn next(&mut self, key: &BackoffKey, finished_at: SystemTime, now: SystemTime) {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(e, finished_at) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.clone(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// The current back-off of `key`, if any.
    #[cfg(test)]
    pub(crate) fn current(&self, key: &BackoffKey) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a container that crashes `run` after each start; returns the delays between
    /// each exit and the next start.
    fn delays(run: Duration, restarts: usize) -> Vec<u64> {
        let mut b = CrashBackoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let key = ("c".to_string(), 1);
        let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut out = Vec::new();
        for _ in 0..restarts {
            now += run; // runs, then exits
            let finished = now;
            if let Some((_, until)) = b.in_backoff(&key, finished, now) {
                now = until;
            }
            assert!(b.in_backoff(&key, finished, now).is_none());
            b.next(&key, finished, now);
            out.push(now.duration_since(finished).unwrap().as_secs());
        }
        out
    }

    #[test]
    fn crash_loop_delays_are_0_10_20_40_80_160_300_300() {
        assert_eq!(
            delays(Duration::from_secs(1), 9),
            vec![0, 10, 20, 40, 80, 160, 300, 300, 300]
        );
    }

    #[test]
    fn backoff_resets_after_ten_minutes_of_running() {
        // runs of 601 s: every restart finds the entry expired → immediate
        assert_eq!(delays(Duration::from_secs(601), 4), vec![0, 0, 0, 0]);
    }

    #[test]
    fn spec_change_uses_a_fresh_key() {
        let mut b = CrashBackoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        b.next(&("c".into(), 1), t, t);
        assert!(b.in_backoff(&("c".into(), 1), t, t).is_some());
        assert!(b.in_backoff(&("c".into(), 2), t, t).is_none());
    }

    #[test]
    fn configurable_initial_and_max() {
        let mut b = CrashBackoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let key = ("c".to_string(), 0);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut seen = Vec::new();
        for _ in 0..5 {
            b.next(&key, t, t);
            seen.push(b.current(&key).unwrap().as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 4, 4]);
    }
}
