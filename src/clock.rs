//! Reading the wall clock. Decisions (CheckCall) read the precise clock.
//! Bulk screening reads the coarse clock the kernel updates every tick (at
//! most a few milliseconds behind, for a fraction of the cost of the precise
//! one, which is a visible share of a screened number's cost): screening
//! plans calls, and calling windows turn on minutes.

use jiff::Timestamp;

/// The wall clock to within a kernel tick (a few ms); falls back to the
/// precise clock where there is no coarse one.
pub fn coarse_now() -> Timestamp {
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        if let Ok(nanos) = i32::try_from(now.tv_nsec)
            && let Ok(timestamp) = Timestamp::new(now.tv_sec, nanos)
        {
            return timestamp;
        }
    }
    Timestamp::now()
}

/// The context of [`time_ordered_uuid`]: ids made by this process are
/// ordered as made (as `uuid::Uuid::now_v7` orders its own).
static UUID_CONTEXT: std::sync::Mutex<std::panic::AssertUnwindSafe<uuid::ContextV7>> =
    std::sync::Mutex::new(std::panic::AssertUnwindSafe(uuid::ContextV7::new()));

/// A new time-ordered id (UUID v7) for a record, entry or decision. While
/// the system clock reads before 1970 it is a random one (v4): uuid's own
/// `now_v7` panics there, and a request must not.
pub fn time_ordered_uuid() -> uuid::Uuid {
    match std::time::SystemTime::UNIX_EPOCH.elapsed() {
        Ok(since) => uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            &UUID_CONTEXT,
            since.as_secs(),
            since.subsec_nanos(),
        )),
        Err(_) => uuid::Uuid::new_v4(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_time_ordered_ids_are_v7_and_ordered_as_made() {
        let ids: Vec<uuid::Uuid> = (0..1_000).map(|_| time_ordered_uuid()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn test_coarse_clock_is_within_a_tick_of_the_precise_one() {
        let before = Timestamp::now();
        let coarse = coarse_now();
        let after = Timestamp::now();
        // The coarse clock lags by at most a tick (10 ms at HZ=100).
        let lag = before.duration_since(coarse);
        assert!(lag < jiff::SignedDuration::from_millis(20), "{lag:?}");
        assert!(coarse <= after, "{coarse} after {after}");
    }
}

/// A reading of the clock that keeps counting while the machine is
/// suspended (Linux `CLOCK_BOOTTIME`), unlike `Instant` (`CLOCK_MONOTONIC`):
/// how old the contact data a replica decides on is must count a suspend
/// (found by review: resumed after 10 s, a replica still looked fresh and
/// decided without the opt-outs recorded meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BootInstant(std::time::Duration);

impl BootInstant {
    #[cfg(target_os = "linux")]
    pub fn now() -> BootInstant {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        BootInstant(
            std::time::Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + std::time::Duration::from_nanos(u64::try_from(t.tv_nsec).unwrap_or(0)),
        )
    }

    /// Elsewhere, the monotonic clock (which may stop while suspended).
    #[cfg(not(target_os = "linux"))]
    pub fn now() -> BootInstant {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        BootInstant(START.get_or_init(std::time::Instant::now).elapsed())
    }

    /// The time from `earlier` to this reading (zero if it is later).
    pub fn saturating_duration_since(self, earlier: BootInstant) -> std::time::Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// The time since this reading.
    pub fn elapsed(self) -> std::time::Duration {
        BootInstant::now().saturating_duration_since(self)
    }

    /// The reading: the time counted since boot (elsewhere than Linux,
    /// since the first reading).
    pub fn since_boot(self) -> std::time::Duration {
        self.0
    }

    /// The reading `since_boot` after boot (for tests of what reads it).
    #[cfg(test)]
    pub const fn after_boot(since_boot: std::time::Duration) -> BootInstant {
        BootInstant(since_boot)
    }
}
