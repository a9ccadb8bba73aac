//! A lock-free latency histogram in microseconds: log-linear buckets, 8 per
//! octave, so percentiles are exact to within 12.5%.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BUCKETS: u64 = 8;
const BUCKETS: usize = 8 * 42;

/// Latency histogram in microseconds.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    let msb = 63 - micros.leading_zeros() as u64;
    let shift = msb - 3;
    let index = (shift + 1) * SUB_BUCKETS + ((micros >> shift) & (SUB_BUCKETS - 1));
    (index as usize).min(BUCKETS - 1)
}

/// The highest value a bucket holds.
fn bucket_ceiling(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = index / SUB_BUCKETS - 1;
    let sub = index % SUB_BUCKETS;
    ((SUB_BUCKETS + sub + 1) << shift) - 1
}

impl LatencyHistogram {
    pub fn record(&self, micros: u64) {
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Empties the histogram (a history bucket being reused).
    pub fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
    }

    /// The value at quantile `q` (0..=1), as its bucket's ceiling; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_ceiling(index);
            }
        }
        bucket_ceiling(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in 0..100_000u64 {
            let b = bucket_of(v);
            assert!(b >= last);
            last = b;
            let ceiling = bucket_ceiling(b);
            assert!(ceiling >= v, "{v} -> {b} -> {ceiling}");
            assert!(
                ceiling as f64 <= (v as f64) * 1.125 + 1.0,
                "{v} -> {ceiling}"
            );
        }
    }

    #[test]
    fn test_quantiles() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        assert!((500..=570).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((990..=1120).contains(&p99), "{p99}");
    }
}
