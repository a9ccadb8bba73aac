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

#[cfg(test)]
mod tests {
    use super::*;

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
