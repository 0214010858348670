//! Petrel's benchmark commands. Benchmarks are commands, never timed tests.
#![deny(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod fetch_path;
mod load;
mod report;
mod storage;

#[derive(Parser)]
#[command(name = "petrel-bench", about = "Benchmarks for Petrel")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Storage engine: append throughput and latency beside the raw O_DIRECT limit.
    Storage {
        /// Scratch directory on the disk under test (removed afterwards).
        #[arg(long, default_value = "petrel-bench-data")]
        dir: PathBuf,
        /// Seconds per case.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run only the cases whose name contains this (e.g. `append` or `raw-fsync`).
        #[arg(long)]
        only: Option<String>,
        /// Only these batch sizes, in records of 1 KiB (default: 1, 16 and 256).
        #[arg(long, value_delimiter = ',')]
        records: Option<Vec<usize>>,
    },
    /// The copies between stored batches and a Fetch response, per MB, beside memcpy.
    FetchPath {
        #[arg(long, default_value = "petrel-bench-data")]
        dir: PathBuf,
        /// Seconds per step.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Kafka-protocol load against any Kafka-compatible broker: throughput and open-loop
    /// ack and end-to-end latency.
    Load(load::LoadArgs),
    /// Result files of `load` -> a markdown report with a comparison table and SVG plots.
    Report {
        /// Output directory for report.md and the plots.
        #[arg(long, default_value = "report")]
        out: PathBuf,
        /// Result files written by `load --json`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Storage {
            dir,
            seconds,
            json,
            only,
            records,
        } => storage::run(storage::Options {
            dir,
            seconds,
            json,
            only,
            records: records.unwrap_or_else(|| vec![1, 16, 256]),
        }),
        Command::FetchPath { dir, seconds } => fetch_path::run(&dir, seconds),
        Command::Load(args) => load::run(args),
        Command::Report { out, files } => report::run(&out, &files),
    }
}
