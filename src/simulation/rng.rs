//! The simulation's one source of randomness: a seeded ChaCha8 stream, so a seed replays
//! exactly. Every choice of a run (delays, drops, faults, election timeouts, topic ids)
//! is drawn from it or from a stream forked from it.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

pub struct SimRng(ChaCha8Rng);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A stream of its own, seeded from this one (a node's election timeouts).
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.0.gen())
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.gen_bool(p.min(1.0))
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.0.gen_range(0..n)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        self.0.gen_range(low..=high)
    }

    /// A duration in `low..=high`, to the microsecond.
    pub fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        let micros = self.between(low.as_micros() as u64, high.as_micros() as u64);
        Duration::from_micros(micros)
    }

    /// A fraction in `0..max`.
    pub fn fraction(&mut self, max: f64) -> f64 {
        self.0.gen::<f64>() * max
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let index = self.below(items.len() as u64) as usize;
        items.get(index)
    }

    pub fn uuid(&mut self) -> Uuid {
        Uuid::from_u128(self.0.gen())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_stream_and_forks_are_their_own() {
        let draw = |seed| {
            let mut rng = SimRng::new(seed);
            let mut fork = rng.fork();
            (rng.below(1000), rng.uuid(), fork.below(1000))
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut rng = SimRng::new(1);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.between(5, 5), 5);
        assert!(rng.pick::<u8>(&[]).is_none());
        for _ in 0..100 {
            let d = rng.duration(Duration::from_millis(1), Duration::from_millis(2));
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(2));
        }
    }
}
