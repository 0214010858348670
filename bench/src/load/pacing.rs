//! Open-loop pacing. In rate mode every record has an intended send time fixed in advance;
//! a producer that falls behind sends late records at once, and their latency still counts
//! from the intended time, so a slow broker cannot hide its stalls by slowing the client
//! down (no coordinated omission).

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// The intended send times of one producer among `producers`, which share `rate_per_second`
/// records/s. Producer `index` owns global slots `index, index + producers, ...`, so the
/// producers interleave evenly instead of all sending at the same instant.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start_ns: u64,
    index: u64,
    producers: u64,
    rate_per_second: u64,
}

impl Schedule {
    pub fn new(start_ns: u64, index: usize, producers: usize, rate_per_second: u64) -> Self {
        assert!(index < producers, "producer index out of range");
        assert!(rate_per_second > 0, "a schedule needs a rate");
        Self {
            start_ns,
            index: index as u64,
            producers: producers as u64,
            rate_per_second,
        }
    }

    /// Intended send time of this producer's `k`-th record: start + (k·producers + index)/rate.
    /// Computed from `k` each time (not by adding an interval) so rounding never drifts.
    pub fn intended_ns(&self, k: u64) -> u64 {
        let slot = u128::from(k) * u128::from(self.producers) + u128::from(self.index);
        let offset_ns = slot * NANOS_PER_SECOND / u128::from(self.rate_per_second);
        u64::try_from(u128::from(self.start_ns) + offset_ns).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_producer_sends_every_interval() {
        let schedule = Schedule::new(1_000, 0, 1, 1_000);
        assert_eq!(schedule.intended_ns(0), 1_000);
        assert_eq!(schedule.intended_ns(1), 1_001_000);
        assert_eq!(schedule.intended_ns(1_000), 1_000_001_000);
    }

    #[test]
    fn producers_interleave_and_share_the_rate() {
        // 4 producers at 1,000 records/s in total: each sends every 4 ms, offset by 1 ms.
        let times: Vec<Vec<u64>> = (0..4)
            .map(|index| {
                let schedule = Schedule::new(0, index, 4, 1_000);
                (0..3).map(|k| schedule.intended_ns(k)).collect()
            })
            .collect();
        assert_eq!(times[0], [0, 4_000_000, 8_000_000]);
        assert_eq!(times[1], [1_000_000, 5_000_000, 9_000_000]);
        assert_eq!(times[3], [3_000_000, 7_000_000, 11_000_000]);
    }

    #[test]
    fn rates_that_do_not_divide_a_second_do_not_drift() {
        // 3 records/s: 333,333,333.3 ns apart; after 3 million records exactly 1e6 seconds.
        let schedule = Schedule::new(0, 0, 1, 3);
        assert_eq!(schedule.intended_ns(3_000_000), 1_000_000 * 1_000_000_000);
        assert_eq!(schedule.intended_ns(1), 333_333_333);
    }

    #[test]
    fn far_future_saturates() {
        let schedule = Schedule::new(u64::MAX - 10, 0, 1, 1);
        assert_eq!(schedule.intended_ns(5), u64::MAX);
    }
}
