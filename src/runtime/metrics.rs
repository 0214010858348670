//! The metrics seam: counters and histograms that any layer updates on its own shard,
//! without locks, atomics or cross-core traffic (each shard's series live in its thread),
//! and that are gathered on demand: each shard takes a [`Snapshot`] of its own series, and
//! the snapshots are merged (`Snapshot::merge`). The export format (Prometheus text) is
//! not here: this module only counts.
//!
//! A series is a name (Prometheus style, unit last: `petrel_produce_bytes_total`,
//! `petrel_request_duration_seconds`) and labels. Looking a series up costs a map search,
//! so hot paths look it up once and keep the handle ([`Counter`], [`Histogram`]): an update
//! through a handle is one add to a `Cell`.
//!
//! Bounded: a shard holds at most `SERIES_PER_SHARD_MAX` series; past it a new series is
//! not registered (its handle counts into nothing) and `petrel_metrics_series_dropped_total`
//! says how many were refused.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Series one shard holds at most (labels come from topic names, which clients choose).
pub const SERIES_PER_SHARD_MAX: usize = 65_536;
/// Histograms record whole numbers (microseconds, bytes) between 1 and this, with two
/// significant digits: about 20 KiB each.
const HISTOGRAM_VALUE_MAX: u64 = 3_600_000_000;
const HISTOGRAM_DIGITS: u8 = 2;
/// The count of series refused past `SERIES_PER_SHARD_MAX`.
pub const SERIES_DROPPED: &str = "petrel_metrics_series_dropped_total";

/// Labels of a series, in the order given (the same order names the same series).
pub type Labels = Vec<(&'static str, String)>;
/// A series: its name and labels.
pub type SeriesKey = (&'static str, Labels);

/// A counter of one series on this shard.
#[derive(Clone, Debug, Default)]
pub struct Counter(Rc<Cell<u64>>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }

    pub fn increment(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A histogram of one series on this shard.
#[derive(Clone)]
pub struct Histogram(Rc<RefCell<hdrhistogram::Histogram<u64>>>);

impl Histogram {
    /// Records `value`; values past the range count as its maximum.
    pub fn record(&self, value: u64) {
        self.0.borrow_mut().saturating_record(value.max(1));
    }
}

fn new_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, HISTOGRAM_VALUE_MAX, HISTOGRAM_DIGITS)
        .expect("the histogram bounds are valid constants")
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<SeriesKey, Counter>,
    histograms: BTreeMap<SeriesKey, Histogram>,
    dropped: u64,
}

impl Registry {
    fn series(&self) -> usize {
        self.counters.len() + self.histograms.len()
    }
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// The counter of series `name{labels}` on this shard (registered on first use).
pub fn counter(name: &'static str, labels: Labels) -> Counter {
    REGISTRY.with(|registry| {
        let mut registry = registry.borrow_mut();
        let key = (name, labels);
        if let Some(counter) = registry.counters.get(&key) {
            return counter.clone();
        }
        if registry.series() >= SERIES_PER_SHARD_MAX {
            registry.dropped += 1;
            return Counter::default();
        }
        registry.counters.entry(key).or_default().clone()
    })
}

/// The histogram of series `name{labels}` on this shard (registered on first use).
pub fn histogram(name: &'static str, labels: Labels) -> Histogram {
    REGISTRY.with(|registry| {
        let mut registry = registry.borrow_mut();
        let key = (name, labels);
        if let Some(histogram) = registry.histograms.get(&key) {
            return histogram.clone();
        }
        if registry.series() >= SERIES_PER_SHARD_MAX {
            registry.dropped += 1;
            return Histogram(Rc::new(RefCell::new(new_histogram())));
        }
        let histogram = Histogram(Rc::new(RefCell::new(new_histogram())));
        registry.histograms.insert(key, histogram.clone());
        histogram
    })
}

/// Every series of this shard as it stands now.
pub fn gather() -> Snapshot {
    REGISTRY.with(|registry| {
        let registry = registry.borrow();
        let mut counters: BTreeMap<SeriesKey, u64> = registry
            .counters
            .iter()
            .map(|(key, counter)| (key.clone(), counter.get()))
            .collect();
        if registry.dropped > 0 {
            counters.insert((SERIES_DROPPED, Vec::new()), registry.dropped);
        }
        let histograms = registry
            .histograms
            .iter()
            .map(|(key, histogram)| (key.clone(), histogram.0.borrow().clone()))
            .collect();
        Snapshot {
            counters,
            histograms,
        }
    })
}

/// Series values taken from one or more shards (`Send`: it crosses shards to be merged).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub counters: BTreeMap<SeriesKey, u64>,
    pub histograms: BTreeMap<SeriesKey, hdrhistogram::Histogram<u64>>,
}

impl Snapshot {
    /// Adds `other`'s series to this one's (another shard's: the same series sum).
    pub fn merge(&mut self, other: Snapshot) {
        for (key, value) in other.counters {
            let sum = self.counters.entry(key).or_default();
            *sum = sum.wrapping_add(value);
        }
        for (key, histogram) in other.histograms {
            match self.histograms.get_mut(&key) {
                // Same bounds everywhere, so adding cannot fail; a failure keeps ours.
                Some(ours) => {
                    let _ = ours.add(&histogram);
                }
                None => {
                    self.histograms.insert(key, histogram);
                }
            }
        }
    }

    /// The value of counter `name{labels}` (0 if it never counted).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .iter()
            .find(|((series, series_labels), _)| *series == name && same(series_labels, labels))
            .map_or(0, |(_, value)| *value)
    }

    /// Histogram `name{labels}`, if it recorded anything.
    pub fn histogram(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<&hdrhistogram::Histogram<u64>> {
        self.histograms
            .iter()
            .find(|((series, series_labels), _)| *series == name && same(series_labels, labels))
            .map(|(_, histogram)| histogram)
    }
}

fn same(series: &Labels, wanted: &[(&str, &str)]) -> bool {
    series.len() == wanted.len()
        && series
            .iter()
            .zip(wanted)
            .all(|((name, value), (wanted_name, wanted_value))| {
                name == wanted_name && value == wanted_value
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(topic: &str) -> Labels {
        vec![("topic", topic.to_string())]
    }

    /// What one shard counts, taken on its own thread.
    fn shard(records: u64, latency: u64) -> Snapshot {
        std::thread::spawn(move || {
            let counted = counter("test_records_total", labels("a"));
            counted.add(records);
            // The same series looked up again is the same counter.
            counter("test_records_total", labels("a")).increment();
            counter("test_records_total", labels("b")).add(5);
            histogram("test_duration_seconds", Vec::new()).record(latency);
            gather()
        })
        .join()
        .expect("shard thread")
    }

    #[test]
    fn each_shard_counts_alone_and_snapshots_merge_into_the_sum() {
        let mut total = shard(10, 100);
        total.merge(shard(20, 300));
        assert_eq!(total.counter("test_records_total", &[("topic", "a")]), 32);
        assert_eq!(total.counter("test_records_total", &[("topic", "b")]), 10);
        assert_eq!(total.counter("test_records_total", &[("topic", "c")]), 0);
        let latency = total
            .histogram("test_duration_seconds", &[])
            .expect("recorded");
        assert_eq!(latency.len(), 2);
        assert!(
            latency.equivalent(latency.max(), 300),
            "two significant digits"
        );
        // Nothing counted on this thread: its registry is its own.
        assert_eq!(gather().counters.len(), 0);
    }

    #[test]
    fn series_past_the_cap_are_refused_and_counted() {
        std::thread::spawn(|| {
            for n in 0..SERIES_PER_SHARD_MAX {
                counter("test_many_total", vec![("n", n.to_string())]);
            }
            let extra = counter("test_many_total", vec![("n", "extra".to_string())]);
            extra.add(7);
            let taken = gather();
            assert_eq!(taken.counter(SERIES_DROPPED, &[]), 1);
            assert_eq!(taken.counter("test_many_total", &[("n", "extra")]), 0);
            assert_eq!(taken.counters.len(), SERIES_PER_SHARD_MAX + 1);
        })
        .join()
        .expect("thread");
    }
}
