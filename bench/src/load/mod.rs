//! `petrel-bench load`: a Kafka-protocol load generator for any Kafka-compatible broker.
//!
//! Producers and consumers are librdkafka clients (one instance, so its own connections, per
//! producer and per consumer) in this one process, sharing one clock (`clock`). Each value
//! carries its intended send time (`record`); ack latency is measured in the producer's
//! delivery callback and end-to-end latency in the consumer, both from the intended time, so
//! in rate mode (`pacing`) the load is open-loop. `run` drives the phases, `monitor` prints a
//! line a second and accumulates, `output` is the result file that `petrel-bench report` reads.

mod clock;
mod consumer;
mod gaps;
mod monitor;
pub mod output;
mod pacing;
mod producer;
mod record;
mod run;
pub mod stats;
mod topic;

use std::path::PathBuf;

use anyhow::{bail, ensure};
use clap::{Args, ValueEnum};
use serde::Serialize;

pub use record::KeyDistribution;
pub use run::run;

/// Limits on the arguments, so a typo cannot ask for a million threads or an unbounded series.
const CLIENTS_MAX: usize = 256;
const PARTITIONS_MAX: u32 = 10_000;
/// Below librdkafka's default `message.max.bytes` (1,000,000) with room for batch overhead.
const RECORD_BYTES_MAX: usize = 900_000;
/// One day; also bounds the per-second series.
const SECONDS_MAX: u64 = 86_400;

#[derive(Args, Debug, Clone, Serialize)]
pub struct LoadArgs {
    /// Broker to connect to (librdkafka `bootstrap.servers`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to produce to and consume from; created with the admin API if missing.
    #[arg(long, default_value = "petrel-bench")]
    pub topic: String,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// Replication factor of the topic if it has to be created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: u16,
    /// Producer instances, each its own librdkafka client and thread.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer instances in one group, each its own client and thread; 0 = produce only.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Bytes per record value (16-byte header + filler). Records have 8-byte keys or none.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    #[arg(long, value_enum, default_value_t = KeyDistribution::None)]
    pub key_distribution: KeyDistribution,
    /// Producer `acks`: 0, 1, -1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "-1", "all"])]
    pub acks: String,
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Producer `linger.ms`.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Producer `batch.size` in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_bytes: u64,
    /// Records/s over all producers (open loop); 0 = as fast as the client queue accepts.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Measurement seconds (after the warm-up).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seconds of load before the measurement, excluded from histograms and rates.
    #[arg(long, default_value_t = 10)]
    pub warmup_seconds: u64,
    /// Write the result here as JSON (input of `petrel-bench report`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Free text saved in the result, e.g. `kafka` or `petrel`; `report` compares by label.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Workload name saved in the result; `report` groups results by it.
    #[arg(long, default_value = "default")]
    pub workload: String,
    /// Where a new consumer group starts reading.
    #[arg(long, value_enum, default_value_t = ConsumeFrom::Latest)]
    pub consume_from: ConsumeFrom,
    /// Catch-up workload: first produce `--backlog-bytes` as fast as possible, then start the
    /// consumers from earliest while producers keep writing at `--rate`; the consume rate is
    /// the catch-up read rate (size the backlog so consumers are still behind at the end).
    #[arg(long)]
    pub catch_up: bool,
    /// Backlog for `--catch-up`, in bytes of record values.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub backlog_bytes: u64,
    /// With `--catch-up`: after the backlog, `sync` and drop the kernel's page cache (needs
    /// root), so a broker that reads through the page cache reads the backlog from disk too.
    #[arg(long)]
    pub drop_caches: bool,
    /// Consumer group id; default: a new group per run.
    #[arg(long)]
    pub group: Option<String>,
    /// librdkafka setting for producers and consumers, `key=value`; repeatable; applied last
    /// (`security.*`, `ssl.*` and `sasl.*` also to the admin client: TLS and SASL runs).
    #[arg(long, value_parser = parse_extra)]
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's `compression.type` value.
    fn librdkafka_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumeFrom {
    Earliest,
    Latest,
}

fn parse_extra(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("expected key=value, got `{text}`")),
    }
}

impl LoadArgs {
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=CLIENTS_MAX).contains(&self.producers),
            "--producers must be 1..={CLIENTS_MAX}"
        );
        ensure!(
            self.consumers <= CLIENTS_MAX,
            "--consumers must be 0..={CLIENTS_MAX}"
        );
        ensure!(
            (1..=PARTITIONS_MAX).contains(&self.partitions),
            "--partitions must be 1..={PARTITIONS_MAX}"
        );
        ensure!(
            (record::HEADER_BYTES..=RECORD_BYTES_MAX).contains(&self.record_bytes),
            "--record-bytes must be {}..={RECORD_BYTES_MAX}",
            record::HEADER_BYTES
        );
        ensure!(
            (1..=SECONDS_MAX).contains(&self.seconds),
            "--seconds must be 1..={SECONDS_MAX}"
        );
        ensure!(
            self.warmup_seconds <= SECONDS_MAX,
            "--warmup-seconds must be at most {SECONDS_MAX}"
        );
        if self.catch_up {
            ensure!(self.consumers > 0, "--catch-up needs --consumers > 0");
            ensure!(
                self.backlog_bytes > 0,
                "--catch-up needs --backlog-bytes > 0"
            );
        }
        if self.catch_up && self.consume_from == ConsumeFrom::Latest {
            // Not an error: catch-up always reads from earliest; say so in the output.
            eprintln!("note: --catch-up reads from earliest; --consume-from latest is ignored");
        }
        if self.topic.is_empty() {
            bail!("--topic must not be empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_settings_parse_as_key_value() {
        assert_eq!(
            parse_extra("fetch.min.bytes=1"),
            Ok(("fetch.min.bytes".into(), "1".into()))
        );
        assert_eq!(parse_extra("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_extra("novalue").is_err());
        assert!(parse_extra("=x").is_err());
    }
}
