//! The result file of one `load` run, written by `load` and read by `report`. An
//! orchestration script may add a `broker` object (CPU and memory of the broker process)
//! after the run; everything else is written here.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::stats::LatencySummary;

pub const SCHEMA: &str = "petrel-bench-load/1";
pub const BYTES_PER_MB: f64 = 1e6;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    pub schema: String,
    pub label: String,
    pub workload: String,
    pub bootstrap: String,
    /// Every `load` argument, as given or defaulted.
    pub config: serde_json::Value,
    pub run: RunInfo,
    pub totals: Totals,
    pub rates: Rates,
    pub latency: Latency,
    /// One point per measured second.
    pub series: Vec<SecondPoint>,
    /// The first few error messages per client (counts in `totals` are exact).
    #[serde(default)]
    pub error_messages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub started_unix_ms: u64,
    pub run_id: u64,
    pub topic_partitions: usize,
    pub consumer_group: Option<String>,
}

/// `produced_*`/`consumed_*` count the measurement window only (by arrival of the ack or
/// record); `run_*` count the whole run (backlog, warm-up and drain included), which is what a
/// broker's CPU time over the whole run should be divided by.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub measured_seconds: f64,
    pub produced_records: u64,
    pub produced_bytes: u64,
    pub consumed_records: u64,
    pub consumed_bytes: u64,
    pub run_produced_bytes: u64,
    pub run_consumed_bytes: u64,
    pub backlog_records: u64,
    pub backlog_bytes: u64,
    pub delivery_errors: u64,
    pub consume_errors: u64,
    /// The longest time a partition went without an ack in the measurement (`gaps.rs`):
    /// the failover gap when a broker died during the run.
    #[serde(default)]
    pub longest_ack_gap_ms: f64,
}

/// MB = 10^6 bytes of record values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rates {
    pub produce_records_per_second: f64,
    pub produce_mb_per_second: f64,
    pub consume_records_per_second: f64,
    pub consume_mb_per_second: f64,
}

impl Rates {
    pub fn of(totals: &Totals) -> Self {
        let per_second = |count: u64| {
            if totals.measured_seconds > 0.0 {
                count as f64 / totals.measured_seconds
            } else {
                0.0
            }
        };
        Self {
            produce_records_per_second: per_second(totals.produced_records),
            produce_mb_per_second: per_second(totals.produced_bytes) / BYTES_PER_MB,
            consume_records_per_second: per_second(totals.consumed_records),
            consume_mb_per_second: per_second(totals.consumed_bytes) / BYTES_PER_MB,
        }
    }
}

/// Latency of records intended after the warm-up (including those acked or consumed in the
/// drain after the window, so the tail is not cut off); None if nothing was measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub ack: Option<LatencySummary>,
    pub e2e: Option<LatencySummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondPoint {
    /// Seconds since the start of the measurement, 1 for the first second.
    pub second: u64,
    pub produce_records: u64,
    pub produce_mb_per_second: f64,
    pub consume_records: u64,
    pub consume_mb_per_second: f64,
    pub ack_p99_us: Option<u64>,
    pub e2e_p99_us: Option<u64>,
    pub errors: u64,
}

/// Added by whoever ran the broker; every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrokerUsage {
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

pub fn write(path: &Path, result: &LoadResult) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(result)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

pub fn read(path: &Path) -> anyhow::Result<LoadResult> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let result: LoadResult =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(
        result.schema == SCHEMA,
        "{}: schema {:?}, expected {SCHEMA:?}",
        path.display(),
        result.schema
    );
    Ok(result)
}
