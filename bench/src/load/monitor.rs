//! Once a second: take every client's interval, print a progress line to stderr, and
//! accumulate what belongs to the measurement.

use std::sync::Arc;

use hdrhistogram::Histogram;

use super::clock;
use super::output::{SecondPoint, BYTES_PER_MB};
use super::stats::{new_latency_histogram, Interval, Recorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The catch-up backlog: counted for the whole run only.
    Backlog,
    /// Counted for the whole run only.
    Warmup,
    /// Counted in rates, series and latency.
    Measure,
    /// After the window: late acks and records still add to latency (their intended time
    /// was in the window), not to rates.
    Drain,
}

/// What the measurement accumulated.
pub struct Measured {
    pub seconds: f64,
    pub produced: (u64, u64),
    pub consumed: (u64, u64),
    pub run_produced_bytes: u64,
    pub run_consumed_bytes: u64,
    pub ack_us: Histogram<u64>,
    pub e2e_us: Histogram<u64>,
    pub series: Vec<SecondPoint>,
}

pub struct Monitor {
    producers: Vec<Arc<Recorder>>,
    consumers: Vec<Arc<Recorder>>,
    started_ns: u64,
    last_tick_ns: u64,
    errors_printed: u64,
    /// Records consumed in the latest tick's interval.
    pub consumed_records_last: u64,
    pub measured: Measured,
}

impl Monitor {
    pub fn new(producers: Vec<Arc<Recorder>>, consumers: Vec<Arc<Recorder>>) -> Self {
        let now_ns = clock::now_ns();
        Self {
            producers,
            consumers,
            started_ns: now_ns,
            last_tick_ns: now_ns,
            errors_printed: 0,
            consumed_records_last: 0,
            measured: Measured {
                seconds: 0.0,
                produced: (0, 0),
                consumed: (0, 0),
                run_produced_bytes: 0,
                run_consumed_bytes: 0,
                ack_us: new_latency_histogram(),
                e2e_us: new_latency_histogram(),
                series: Vec::new(),
            },
        }
    }

    pub fn errors(&self) -> u64 {
        self.producers
            .iter()
            .chain(&self.consumers)
            .map(|r| r.errors())
            .sum()
    }

    pub fn tick(&mut self, phase: Phase) {
        let now_ns = clock::now_ns();
        let elapsed_seconds = (now_ns - self.last_tick_ns) as f64 / 1e9;
        self.last_tick_ns = now_ns;
        let produced = merged(&self.producers);
        let consumed = merged(&self.consumers);
        let errors = self.errors();
        let new_errors = errors - self.errors_printed;
        self.errors_printed = errors;
        self.consumed_records_last = consumed.records;

        let measured = &mut self.measured;
        measured.run_produced_bytes += produced.bytes;
        measured.run_consumed_bytes += consumed.bytes;
        let mb_per_second = |bytes: u64| bytes as f64 / BYTES_PER_MB / elapsed_seconds.max(1e-9);
        if matches!(phase, Phase::Measure | Phase::Drain) {
            add(&mut measured.ack_us, &produced.latency_us);
            add(&mut measured.e2e_us, &consumed.latency_us);
        }
        let ack_p99_us = p99(&produced.latency_us);
        let e2e_p99_us = p99(&consumed.latency_us);
        if phase == Phase::Measure {
            measured.seconds += elapsed_seconds;
            measured.produced.0 += produced.records;
            measured.produced.1 += produced.bytes;
            measured.consumed.0 += consumed.records;
            measured.consumed.1 += consumed.bytes;
            measured.series.push(SecondPoint {
                second: measured.series.len() as u64 + 1,
                produce_records: produced.records,
                produce_mb_per_second: mb_per_second(produced.bytes),
                consume_records: consumed.records,
                consume_mb_per_second: mb_per_second(consumed.bytes),
                ack_p99_us,
                e2e_p99_us,
                errors: new_errors,
            });
        }
        eprintln!(
            "{:>5.0}s {:<7} produce {:>9.0} rec/s {:>8.2} MB/s | consume {:>8.2} MB/s | \
             ack p99 {:>9} | e2e p99 {:>9} | errors {}{}",
            (now_ns - self.started_ns) as f64 / 1e9,
            match phase {
                Phase::Backlog => "backlog",
                Phase::Warmup => "warmup",
                Phase::Measure => "measure",
                Phase::Drain => "drain",
            },
            produced.records as f64 / elapsed_seconds.max(1e-9),
            mb_per_second(produced.bytes),
            mb_per_second(consumed.bytes),
            format_ms(ack_p99_us),
            format_ms(e2e_p99_us),
            errors,
            if new_errors > 0 { "  <-- ERRORS" } else { "" },
        );
    }
}

fn merged(recorders: &[Arc<Recorder>]) -> Interval {
    let mut total = Interval::new();
    for recorder in recorders {
        total.merge(&recorder.take_interval());
    }
    total
}

fn add(total: &mut Histogram<u64>, part: &Histogram<u64>) {
    total.add(part).expect("histograms share bounds");
}

fn p99(histogram: &Histogram<u64>) -> Option<u64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(0.99))
}

pub fn format_ms(latency_us: Option<u64>) -> String {
    match latency_us {
        Some(us) => format!("{:.2} ms", us as f64 / 1_000.0),
        None => "-".to_string(),
    }
}
