//! The comparison table: one row per metric, a column per label (`petrel`, `kafka`, then any
//! others), and Petrel/Kafka. Pure: results in, markdown out.

use std::fmt::Write as _;

use super::ByLabel;
use crate::load::output::{LoadResult, BYTES_PER_MB};
use crate::load::stats::LatencySummary;

const PETREL: &str = "petrel";
const KAFKA: &str = "kafka";
const BYTES_PER_GB: f64 = 1e9;
const MISSING: &str = "–";

pub const NOTES: &str = "\
MB = 10^6 bytes of record values. Throughput and latency cover the measurement window (after \
the warm-up); latency is measured from each record's intended send time (open loop). \
CPU-seconds per GB = broker CPU time over the whole run / GB produced + consumed over the \
whole run. Petrel/Kafka > 1 means Petrel is higher: better for throughput, worse for \
latency, CPU and memory. `–` = not measured.\n";

struct Metric {
    name: &'static str,
    value: fn(&LoadResult) -> Option<f64>,
    /// Rows of metrics that apply to some workloads only are left out where no run has
    /// them; the others show `–` for "not measured".
    only_where_measured: bool,
}

fn latency_ms(summary: &Option<LatencySummary>, pick: fn(&LatencySummary) -> u64) -> Option<f64> {
    summary.as_ref().map(|s| pick(s) as f64 / 1_000.0)
}

/// Some only when there is something to report: a produce-only run has no consume rate.
fn positive(value: f64) -> Option<f64> {
    (value > 0.0).then_some(value)
}

const METRICS: &[Metric] = &[
    Metric {
        name: "Produce throughput (MB/s)",
        value: |r| positive(r.rates.produce_mb_per_second),
        only_where_measured: false,
    },
    Metric {
        name: "Produce throughput (records/s)",
        value: |r| positive(r.rates.produce_records_per_second),
        only_where_measured: false,
    },
    Metric {
        name: "Consume throughput (MB/s)",
        value: |r| positive(r.rates.consume_mb_per_second),
        only_where_measured: false,
    },
    Metric {
        name: "Consume throughput (records/s)",
        value: |r| positive(r.rates.consume_records_per_second),
        only_where_measured: false,
    },
    Metric {
        name: "Catch-up read rate (MB/s)",
        value: catch_up_mb_per_second,
        only_where_measured: true,
    },
    Metric {
        name: "Ack latency p50 (ms)",
        value: |r| latency_ms(&r.latency.ack, |s| s.p50_us),
        only_where_measured: false,
    },
    Metric {
        name: "Ack latency p99 (ms)",
        value: |r| latency_ms(&r.latency.ack, |s| s.p99_us),
        only_where_measured: false,
    },
    Metric {
        name: "Ack latency p99.9 (ms)",
        value: |r| latency_ms(&r.latency.ack, |s| s.p999_us),
        only_where_measured: false,
    },
    Metric {
        name: "End-to-end latency p50 (ms)",
        value: |r| latency_ms(&r.latency.e2e, |s| s.p50_us),
        only_where_measured: false,
    },
    Metric {
        name: "End-to-end latency p99 (ms)",
        value: |r| latency_ms(&r.latency.e2e, |s| s.p99_us),
        only_where_measured: false,
    },
    Metric {
        name: "End-to-end latency p99.9 (ms)",
        value: |r| latency_ms(&r.latency.e2e, |s| s.p999_us),
        only_where_measured: false,
    },
    Metric {
        name: "Failover gap: longest time a partition had no ack (ms)",
        value: failover_gap_ms,
        only_where_measured: true,
    },
    Metric {
        name: "Broker CPU-seconds per GB moved",
        value: cpu_seconds_per_gb,
        only_where_measured: false,
    },
    Metric {
        name: "Broker peak RSS (MB)",
        value: |r| {
            let bytes = r.broker.as_ref()?.peak_rss_bytes?;
            Some(bytes as f64 / BYTES_PER_MB)
        },
        only_where_measured: false,
    },
    Metric {
        name: "Errors (delivery + consume)",
        value: |r| Some((r.totals.delivery_errors + r.totals.consume_errors) as f64),
        only_where_measured: false,
    },
];

/// For a catch-up run (`--catch-up`): the mean consume rate over the seconds in which the
/// consumers were still behind, i.e. until the first second in which they read no more than
/// 1.5x what was produced in it. The window's mean consume rate hides this once the backlog
/// is read before the window ends.
fn catch_up_mb_per_second(result: &LoadResult) -> Option<f64> {
    if !result.config.get("catch_up")?.as_bool()? {
        return None;
    }
    let behind: Vec<f64> = result
        .series
        .iter()
        .take_while(|p| p.consume_mb_per_second > 1.5 * p.produce_mb_per_second)
        .map(|p| p.consume_mb_per_second)
        .collect();
    positive(behind.iter().sum::<f64>() / behind.len().max(1) as f64)
}

/// Only for runs in which a broker was killed (the orchestration marks them `failover`).
fn failover_gap_ms(result: &LoadResult) -> Option<f64> {
    result
        .workload
        .contains("failover")
        .then_some(result.totals.longest_ack_gap_ms)
}

fn cpu_seconds_per_gb(result: &LoadResult) -> Option<f64> {
    let cpu_seconds = result.broker.as_ref()?.cpu_seconds?;
    let moved_bytes = result.totals.run_produced_bytes + result.totals.run_consumed_bytes;
    (moved_bytes > 0).then(|| cpu_seconds / (moved_bytes as f64 / BYTES_PER_GB))
}

/// Petrel divided by Kafka; None if either is missing or Kafka's is zero.
pub fn ratio(petrel: Option<f64>, kafka: Option<f64>) -> Option<f64> {
    match (petrel, kafka) {
        (Some(petrel), Some(kafka)) if kafka != 0.0 => Some(petrel / kafka),
        _ => None,
    }
}

/// Column order: petrel, kafka, then the other labels alphabetically.
fn column_labels(by_label: &ByLabel) -> Vec<&str> {
    let mut labels = vec![PETREL, KAFKA];
    labels.extend(
        by_label
            .keys()
            .map(String::as_str)
            .filter(|l| *l != PETREL && *l != KAFKA),
    );
    labels
}

pub fn render(by_label: &ByLabel) -> String {
    let labels = column_labels(by_label);
    let mut text = String::from("| metric |");
    for label in &labels {
        let _ = write!(text, " {} |", title(label));
    }
    text.push_str(" Petrel/Kafka |\n|---|");
    text.push_str(&"---:|".repeat(labels.len() + 1));
    text.push('\n');
    for metric in METRICS {
        let values: Vec<Option<f64>> = labels
            .iter()
            .map(|label| by_label.get(*label).and_then(metric.value))
            .collect();
        if metric.only_where_measured && values.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(text, "| {} |", metric.name);
        for value in &values {
            let _ = write!(text, " {} |", format_value(*value));
        }
        let ratio = ratio(values[0], values[1]);
        let _ = writeln!(
            text,
            " {} |",
            ratio.map_or(MISSING.to_string(), |r| format!("{r:.2}×"))
        );
    }
    text
}

fn title(label: &str) -> String {
    match label {
        PETREL => "Petrel".to_string(),
        KAFKA => "Kafka".to_string(),
        "" => "(no label)".to_string(),
        other => other.to_string(),
    }
}

/// Three significant figures or so, without scientific notation.
pub fn format_value(value: Option<f64>) -> String {
    match value {
        None => MISSING.to_string(),
        Some(v) if v.abs() >= 100.0 || v == v.trunc() => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 0.1 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// One line about how a result was produced, from its saved arguments.
pub fn describe_config(config: &serde_json::Value, bootstrap: &str) -> String {
    let field = |name: &str| match config.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => MISSING.to_string(),
        Some(other) => other.to_string(),
    };
    let rate = match config.get("rate").and_then(|v| v.as_u64()) {
        Some(0) => "max".to_string(),
        Some(rate) => format!("{rate} rec/s"),
        None => MISSING.to_string(),
    };
    format!(
        "{bootstrap}; {} producers, {} consumers, {} partitions, {} B records, rate {rate}, \
         acks {}, compression {}, linger {} ms, catch-up {}, {} s (+{} s warm-up)",
        field("producers"),
        field("consumers"),
        field("partitions"),
        field("record_bytes"),
        field("acks"),
        field("compression"),
        field("linger_ms"),
        field("catch_up"),
        field("seconds"),
        field("warmup_seconds"),
    )
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::load::output::{BrokerUsage, Latency, Rates, RunInfo, Totals};

    /// A result with the given produce rate and ack p99, for report tests.
    pub fn sample(label: &str, produce_mb_per_second: f64, ack_p99_us: u64) -> LoadResult {
        let ack = LatencySummary {
            count: 10,
            mean_us: 1_000.0,
            p50_us: 1_000,
            p99_us: ack_p99_us,
            p999_us: ack_p99_us,
            p9999_us: ack_p99_us,
            max_us: ack_p99_us,
            curve: Vec::new(),
        };
        LoadResult {
            schema: crate::load::output::SCHEMA.to_string(),
            label: label.to_string(),
            workload: "w".to_string(),
            bootstrap: "b:1".to_string(),
            config: serde_json::json!({"rate": 0, "producers": 2}),
            run: RunInfo {
                started_unix_ms: 0,
                run_id: 1,
                topic_partitions: 1,
                consumer_group: None,
            },
            totals: Totals {
                run_produced_bytes: 1_500_000_000,
                run_consumed_bytes: 500_000_000,
                ..Totals::default()
            },
            rates: Rates {
                produce_mb_per_second,
                ..Rates::default()
            },
            latency: Latency {
                ack: Some(ack),
                e2e: None,
            },
            series: Vec::new(),
            error_messages: Vec::new(),
            broker: None,
        }
    }

    fn row<'a>(table: &'a str, metric: &str) -> Vec<&'a str> {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {metric} |")))
            .unwrap();
        line.split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn catch_up_rate_averages_the_seconds_spent_behind() {
        let point = |second, produce, consume| crate::load::output::SecondPoint {
            second,
            produce_records: 0,
            produce_mb_per_second: produce,
            consume_records: 0,
            consume_mb_per_second: consume,
            ack_p99_us: None,
            e2e_p99_us: None,
            errors: 0,
        };
        let mut result = sample("petrel", 10.0, 1_000);
        result.series = vec![
            point(1, 10.0, 1000.0),
            point(2, 10.0, 800.0),
            point(3, 10.0, 12.0), // caught up: no more than 1.5x the produce rate
            point(4, 10.0, 900.0),
        ];
        assert_eq!(catch_up_mb_per_second(&result), None, "not a catch-up run");
        result.config = serde_json::json!({"catch_up": true});
        assert_eq!(catch_up_mb_per_second(&result), Some(900.0));
        let mut by_label = ByLabel::new();
        by_label.insert("petrel".into(), result);
        assert!(render(&by_label).contains("| Catch-up read rate (MB/s) | 900 |"));
        let mut by_label = ByLabel::new();
        by_label.insert("petrel".into(), sample("petrel", 10.0, 1_000));
        assert!(
            !render(&by_label).contains("Catch-up"),
            "no row without values"
        );
    }

    #[test]
    fn ratio_divides_petrel_by_kafka() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    #[test]
    fn table_compares_petrel_with_kafka() {
        let mut by_label = ByLabel::new();
        by_label.insert("petrel".into(), sample("petrel", 300.0, 2_000));
        by_label.insert("kafka".into(), sample("kafka", 200.0, 8_000));
        let table = render(&by_label);
        assert!(table.starts_with("| metric | Petrel | Kafka | Petrel/Kafka |"));
        assert_eq!(
            row(&table, "Produce throughput (MB/s)"),
            ["Produce throughput (MB/s)", "300", "200", "1.50×"]
        );
        assert_eq!(
            row(&table, "Ack latency p99 (ms)"),
            ["Ack latency p99 (ms)", "2", "8", "0.25×"]
        );
        // Not measured: shown as missing, never as zero.
        assert_eq!(
            row(&table, "End-to-end latency p99 (ms)"),
            ["End-to-end latency p99 (ms)", "–", "–", "–"]
        );
        assert_eq!(
            row(&table, "Consume throughput (MB/s)"),
            ["Consume throughput (MB/s)", "–", "–", "–"]
        );
    }

    #[test]
    fn cpu_per_gb_uses_broker_usage_when_present() {
        let mut by_label = ByLabel::new();
        let mut petrel = sample("petrel", 1.0, 1);
        petrel.broker = Some(BrokerUsage {
            cpu_seconds: Some(10.0),
            peak_rss_bytes: Some(250_000_000),
        });
        by_label.insert("petrel".into(), petrel);
        let table = render(&by_label);
        // 10 CPU-seconds over 1.5 GB produced + 0.5 GB consumed.
        assert_eq!(
            row(&table, "Broker CPU-seconds per GB moved"),
            ["Broker CPU-seconds per GB moved", "5", "–", "–"]
        );
        assert_eq!(
            row(&table, "Broker peak RSS (MB)"),
            ["Broker peak RSS (MB)", "250", "–", "–"]
        );
    }

    #[test]
    fn other_labels_get_their_own_columns() {
        let mut by_label = ByLabel::new();
        by_label.insert("redpanda".into(), sample("redpanda", 1.0, 1));
        let table = render(&by_label);
        assert!(table.starts_with("| metric | Petrel | Kafka | redpanda | Petrel/Kafka |"));
    }

    #[test]
    fn values_are_formatted_by_magnitude() {
        assert_eq!(format_value(None), "–");
        assert_eq!(format_value(Some(1234.56)), "1235");
        assert_eq!(format_value(Some(12.34)), "12.3");
        assert_eq!(format_value(Some(1.234)), "1.23");
        assert_eq!(format_value(Some(0.01234)), "0.012");
    }
}
