//! The failover gap: the longest time any partition went without a successful ack during
//! the measurement. When a broker dies, the partitions it led stop acknowledging until a
//! new leader takes over and the producer finds it, while the others go on; so the gap is
//! per partition, from its last ack before the failure to its first after.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Partitions tracked (the topic's first ones); acks of others are not counted.
const PARTITIONS_MAX: usize = 65_536;

pub struct AckGaps {
    /// Per partition: when its last ack arrived (`clock::now_ns` scale; 0: none yet).
    last_ns: Vec<AtomicU64>,
    longest_ns: AtomicU64,
    /// Gaps count from the start of the measurement (the end of the warm-up).
    measured_from_ns: Arc<AtomicU64>,
}

impl AckGaps {
    pub fn new(partitions: usize, measured_from_ns: Arc<AtomicU64>) -> Self {
        AckGaps {
            last_ns: (0..partitions.min(PARTITIONS_MAX))
                .map(|_| AtomicU64::new(0))
                .collect(),
            longest_ns: AtomicU64::new(0),
            measured_from_ns,
        }
    }

    /// An ack of a record of `partition` arrived at `now_ns`.
    pub fn acked(&self, partition: i32, now_ns: u64) {
        let Some(last) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.last_ns.get(p))
        else {
            return;
        };
        let previous = last.swap(now_ns, Ordering::Relaxed);
        let from = self.measured_from_ns.load(Ordering::Relaxed);
        if previous != 0 && now_ns >= from {
            let gap = now_ns.saturating_sub(previous.max(from));
            self.longest_ns.fetch_max(gap, Ordering::Relaxed);
        }
    }

    pub fn longest_ms(&self) -> f64 {
        self.longest_ns.load(Ordering::Relaxed) as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_is_per_partition_and_counts_from_the_measurement() {
        let gaps = AckGaps::new(2, Arc::new(AtomicU64::new(1_000)));
        gaps.acked(0, 100);
        gaps.acked(1, 900);
        // Partition 1 keeps acking; partition 0 is silent until 5_000.
        for t in (1_000..5_000).step_by(100) {
            gaps.acked(1, t);
        }
        gaps.acked(0, 5_000);
        assert_eq!(
            gaps.longest_ns.load(Ordering::Relaxed),
            4_000,
            "from the measurement start"
        );
        gaps.acked(7, 9_000_000);
        assert_eq!(
            gaps.longest_ms(),
            0.004,
            "an untracked partition counts for nothing"
        );
    }
}
