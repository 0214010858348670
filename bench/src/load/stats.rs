//! Recording: each client thread records into its own `Recorder`; once a second the monitor
//! takes every recorder's interval (a lock held for a swap, contended only then) and merges.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency histograms cover 1 µs to 60 s at 3 significant digits; longer values are
/// recorded as 60 s (and show up as a max of 60 s, which is loud enough).
pub const LATENCY_US_MIN: u64 = 1;
pub const LATENCY_US_MAX: u64 = 60_000_000;
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Points in a saved percentile curve.
pub const CURVE_POINTS: usize = 50;
/// The curve ends at this quantile: 1/(1-q) = 10^5.
const CURVE_NINES: f64 = 5.0;
/// Error messages kept per recorder for the result file; the count is always exact.
const ERROR_MESSAGES_MAX: usize = 10;

pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// What one thread saw in one interval.
pub struct Interval {
    pub records: u64,
    pub bytes: u64,
    pub latency_us: Histogram<u64>,
}

impl Interval {
    pub fn new() -> Self {
        Self {
            records: 0,
            bytes: 0,
            latency_us: new_latency_histogram(),
        }
    }

    pub fn merge(&mut self, other: &Interval) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
    }
}

pub struct Recorder {
    interval: Mutex<Interval>,
    /// Latency is recorded only for records intended at or after this time (the end of the
    /// warm-up); `u64::MAX` until the measurement is scheduled.
    measured_from_ns: Arc<AtomicU64>,
    errors: AtomicU64,
    error_messages: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn new(measured_from_ns: Arc<AtomicU64>) -> Self {
        Self {
            interval: Mutex::new(Interval::new()),
            measured_from_ns,
            errors: AtomicU64::new(0),
            error_messages: Mutex::new(Vec::new()),
        }
    }

    /// A record of `bytes` intended at `intended_ns` arrived (acked or consumed) at `now_ns`.
    /// Throughput counts every record; latency only measured ones. `intended_ns` is None for
    /// records whose send time is unknown (another run's).
    pub fn record(&self, intended_ns: Option<u64>, now_ns: u64, bytes: usize) {
        let measured_from_ns = self.measured_from_ns.load(Ordering::Relaxed);
        let mut interval = lock(&self.interval);
        interval.records += 1;
        interval.bytes += bytes as u64;
        if let Some(intended_ns) = intended_ns.filter(|&t| t >= measured_from_ns) {
            let latency_us = now_ns.saturating_sub(intended_ns) / 1_000;
            interval
                .latency_us
                .saturating_record(latency_us.clamp(LATENCY_US_MIN, LATENCY_US_MAX));
        }
    }

    pub fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut messages = lock(&self.error_messages);
        if messages.len() < ERROR_MESSAGES_MAX {
            messages.push(message);
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn error_messages(&self) -> Vec<String> {
        lock(&self.error_messages).clone()
    }

    /// Takes what was recorded since the last call and starts a new interval.
    pub fn take_interval(&self) -> Interval {
        // Allocate outside the lock: the recording thread waits only for the swap.
        let fresh = Interval::new();
        std::mem::replace(&mut *lock(&self.interval), fresh)
    }
}

/// A recording thread that panicked cannot leave an interval half-updated in a way that
/// matters to a benchmark, so a poisoned lock is used as is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Latency percentiles of a run, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    /// Latency at `CURVE_POINTS` quantiles from 0 to 0.99999, evenly spaced in log(1/(1-q)).
    pub curve: Vec<CurvePoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub quantile: f64,
    pub latency_us: u64,
}

impl LatencySummary {
    /// None for an empty histogram: "no latency measured" must not read as "zero latency".
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        Some(Self {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            p9999_us: histogram.value_at_quantile(0.9999),
            max_us: histogram.max(),
            curve: curve_quantiles()
                .map(|quantile| CurvePoint {
                    quantile,
                    latency_us: histogram.value_at_quantile(quantile),
                })
                .collect(),
        })
    }
}

/// `CURVE_POINTS` quantiles q_i = 1 - 10^(-CURVE_NINES·i/(CURVE_POINTS-1)): 0 first,
/// 0.99999 last, evenly spaced on the "number of nines" axis the plots use.
pub fn curve_quantiles() -> impl Iterator<Item = f64> {
    (0..CURVE_POINTS).map(|i| {
        let nines = CURVE_NINES * i as f64 / (CURVE_POINTS - 1) as f64;
        1.0 - 10f64.powf(-nines)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_runs_from_zero_to_five_nines() {
        let quantiles: Vec<f64> = curve_quantiles().collect();
        assert_eq!(quantiles.len(), CURVE_POINTS);
        assert_eq!(quantiles[0], 0.0);
        assert!((quantiles[CURVE_POINTS - 1] - 0.99999).abs() < 1e-12);
        assert!(quantiles.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn summary_of_a_uniform_histogram() {
        let mut histogram = new_latency_histogram();
        for value in 1..=10_000 {
            histogram.record(value).unwrap();
        }
        let summary = LatencySummary::of(&histogram).unwrap();
        assert_eq!(summary.count, 10_000);
        // Three significant digits: within 0.1%.
        assert!(summary.p50_us.abs_diff(5_000) <= 5);
        assert!(summary.p99_us.abs_diff(9_900) <= 10);
        assert!(summary.max_us.abs_diff(10_000) <= 10);
        assert_eq!(summary.curve.len(), CURVE_POINTS);
        assert!(summary
            .curve
            .windows(2)
            .all(|p| p[0].latency_us <= p[1].latency_us));
        assert!(LatencySummary::of(&new_latency_histogram()).is_none());
    }

    #[test]
    fn latency_is_recorded_only_after_the_warm_up() {
        let measured_from_ns = Arc::new(AtomicU64::new(1_000_000));
        let recorder = Recorder::new(measured_from_ns);
        recorder.record(Some(999_999), 5_000_000, 100); // warm-up: counted, no latency
        recorder.record(Some(1_000_000), 4_000_000, 100); // 3 ms
        recorder.record(None, 4_000_000, 100); // unknown send time
        let interval = recorder.take_interval();
        assert_eq!((interval.records, interval.bytes), (3, 300));
        assert_eq!(interval.latency_us.len(), 1);
        assert!(interval
            .latency_us
            .equivalent(interval.latency_us.max(), 3_000));
        assert_eq!(recorder.take_interval().records, 0);
    }

    #[test]
    fn out_of_range_latency_is_clamped() {
        let recorder = Recorder::new(Arc::new(AtomicU64::new(0)));
        recorder.record(Some(10), 10, 1); // 0 µs -> 1 µs
        recorder.record(Some(0), 120 * 1_000_000_000, 1); // 120 s -> 60 s
        let interval = recorder.take_interval();
        assert_eq!(interval.latency_us.min(), LATENCY_US_MIN);
        assert!(interval.latency_us.max() >= LATENCY_US_MAX);
    }

    #[test]
    fn errors_are_counted_exactly_and_messages_bounded() {
        let recorder = Recorder::new(Arc::new(AtomicU64::new(0)));
        for i in 0..25 {
            recorder.error(format!("error {i}"));
        }
        assert_eq!(recorder.errors(), 25);
        assert_eq!(recorder.error_messages().len(), ERROR_MESSAGES_MAX);
    }
}
