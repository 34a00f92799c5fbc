//! The injected wall clock (STYLE.md §7): timestamps come from here, durations from
//! `tokio::time`. Every component takes a [`WallClock`]; only [`WallClock::system`] reads
//! the real clock (`clippy.toml` bans `SystemTime::now` and `Timestamp::now` elsewhere).
//! Under paused tokio time, [`WallClock::tokio`] advances with tokio's clock so that
//! lifecycle tests are deterministic.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
#[cfg(feature = "kube")]
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

/// A source of wall-clock time. Cheap to clone; clones read the same clock.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::system()
    }
}

impl WallClock {
    /// The system clock.
    pub fn system() -> WallClock {
        // The one place that reads the real clock.
        #[allow(clippy::disallowed_methods)]
        fn now() -> SystemTime {
            SystemTime::now()
        }
        WallClock(Arc::new(now))
    }

    /// A clock that starts at `base` and advances with tokio time, so it pauses and jumps
    /// with `tokio::time::pause`/`advance` (call inside a runtime).
    pub fn tokio(base: SystemTime) -> WallClock {
        let origin = tokio::time::Instant::now();
        WallClock(Arc::new(move || base + origin.elapsed()))
    }

    /// A clock that always shows `at`.
    pub fn fixed(at: SystemTime) -> WallClock {
        WallClock(Arc::new(move || at))
    }

    /// A clock from any function.
    pub fn from_fn(f: impl Fn() -> SystemTime + Send + Sync + 'static) -> WallClock {
        WallClock(Arc::new(f))
    }

    /// A clock from a function returning [`Timestamp`]s (the type of Kubernetes times).
    pub fn from_timestamp_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> WallClock {
        WallClock(Arc::new(move || SystemTime::from(f())))
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }

    /// Now as a [`Timestamp`] (nanosecond precision).
    pub fn timestamp(&self) -> Timestamp {
        to_timestamp(self.now())
    }

    /// Now as a Kubernetes `Time` (whole seconds, as the wire carries it).
    #[cfg(feature = "kube")]
    pub fn now_time(&self) -> Time {
        to_time(self.now())
    }

    /// The tokio instant at which the wall clock will show `at` (now if it is past).
    pub fn instant_for(&self, at: SystemTime) -> tokio::time::Instant {
        let now = self.now();
        tokio::time::Instant::now() + at.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// A wall-clock time as a [`Timestamp`], clamped to the range a `Timestamp` holds.
pub fn to_timestamp(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(if t < SystemTime::UNIX_EPOCH {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// A wall-clock time as a Kubernetes `Time`, truncated to whole seconds (the wire format has
/// no fraction, and comparing with what the server returns must not see phantom changes).
#[cfg(feature = "kube")]
pub fn to_time(t: SystemTime) -> Time {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A wall-clock time as a Kubernetes `MicroTime` (microseconds).
#[cfg(feature = "kube")]
pub fn to_micro_time(t: SystemTime) -> MicroTime {
    let micros = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A Kubernetes `Time` as a wall-clock time.
#[cfg(feature = "kube")]
pub fn from_time(t: &Time) -> SystemTime {
    let secs = t.0.as_second();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "kube")]
    #[test]
    fn times_truncate_to_seconds_and_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 999_999_999);
        assert_eq!(to_time(t).0.as_second(), 1_700_000_000);
        assert_eq!(
            from_time(&to_time(t)),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(to_micro_time(t).0.as_microsecond(), 1_700_000_000_999_999);
    }

    #[test]
    fn timestamps_keep_nanoseconds_both_ways() {
        let ts = Timestamp::new(1_700_000_000, 123_456_789).unwrap();
        let c = WallClock::from_timestamp_fn(move || ts);
        assert_eq!(c.timestamp(), ts);
        assert_eq!(
            c.now(),
            SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)
        );
        assert_eq!(WallClock::fixed(c.now()).timestamp(), ts);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let c = WallClock::tokio(base);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(c.now(), base + Duration::from_secs(5));
        let at = c.instant_for(base + Duration::from_secs(8));
        assert_eq!(at - tokio::time::Instant::now(), Duration::from_secs(3));
    }
}
