//! `petrel-bench storage`: append throughput and acknowledged-append latency of the
//! storage engine, each beside the same machine's raw limit measured in the same run.
//!
//! Cases, for 1 KiB records batched 1, 16 and 256 per batch:
//! - `raw-write`: sequential O_DIRECT writes with the appender's write-behind depth, into a
//!   preallocated file, of 64 KiB (the appender's chunk) and of 1 MiB. The better of the two
//!   is the bandwidth ceiling the append figures are divided by.
//! - `append`: one producer appends back to back; acknowledged when `append` returns (the
//!   batch is in the appender's buffer; write-behind takes it to disk). The clock stops
//!   after the final flush, so throughput counts bytes on the device.
//! - `raw-fsync`: write the batch (block-aligned) then `fdatasync`, one at a time.
//! - `append-fsync`: append, then wait for `fdatasync` before the next (acks=all).
//! - `group-commit`: N concurrent producers each append + wait for `fdatasync`; reports
//!   how many appends one `fdatasync` covered.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};
use hdrhistogram::Histogram;

use petrel::storage::{Durability, FlushPolicy, Log, LogConfig, ShardStorage, ShardStorageConfig};
use petrel::testkit;

/// glommio's error type is not `Sync`, so it cannot go into `anyhow` directly.
fn io(error: glommio::GlommioError<()>) -> std::io::Error {
    error.into()
}

const RECORD_BYTES: usize = 1024;
const CHUNK_BYTES: usize = 64 * 1024;

pub struct Options {
    pub dir: PathBuf,
    pub seconds: f64,
    pub json: Option<PathBuf>,
    pub only: Option<String>,
    pub records: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Figure {
    case: String,
    records_per_batch: usize,
    producers: usize,
    batches: u64,
    bytes: u64,
    seconds: f64,
    latency_us: Option<[u64; 5]>,
    syncs: Option<u64>,
}

impl Figure {
    fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
    fn batches_per_second(&self) -> f64 {
        self.batches as f64 / self.seconds
    }
    fn p99_us(&self) -> u64 {
        self.latency_us.map_or(0, |l| l[2])
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn percentiles(histogram: &Histogram<u64>) -> [u64; 5] {
    [
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.90),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
    ]
}

pub fn run(options: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.dir)?;
    let dir = options.dir.clone();
    let plan = Plan {
        duration: Duration::from_secs_f64(options.seconds),
        only: options.only.clone(),
        records: options.records.clone(),
    };
    let figures = petrel::runtime::run_single("petrel-bench", dir.clone(), move || async move {
        run_all(&dir, &plan).await
    })??;
    print_report(&figures);
    if let Some(path) = &options.json {
        std::fs::write(path, to_json(&figures))?;
        println!("\nwrote {}", path.display());
    }
    std::fs::remove_dir_all(&options.dir)?;
    Ok(())
}

struct Plan {
    duration: Duration,
    only: Option<String>,
    records: Vec<usize>,
}

impl Plan {
    fn wants(&self, case: &str) -> bool {
        let wanted = self.only.as_deref().is_none_or(|only| case.contains(only));
        if wanted {
            progress(case);
        }
        wanted
    }
}

async fn run_all(dir: &Path, plan: &Plan) -> anyhow::Result<Vec<Figure>> {
    let duration = plan.duration;
    let mut figures = Vec::new();
    for &records in &plan.records {
        let batch = Bytes::from(testkit::uniform_batch(records, RECORD_BYTES, 0));
        if plan.wants("raw-write") {
            figures.push(raw_write(dir, records, CHUNK_BYTES, duration).await?);
            figures.push(raw_write(dir, records, 1 << 20, duration).await?);
        }
        if plan.wants("append") {
            figures.push(append(dir, records, &batch, duration).await?);
        }
        if plan.wants("raw-fsync") {
            figures.push(raw_fsync(dir, records, batch.len(), duration).await?);
        }
        if plan.wants("append-fsync") {
            figures.push(group_commit(dir, records, &batch, 1, duration, "append-fsync").await?);
        }
    }
    let batch = Bytes::from(testkit::uniform_batch(16, RECORD_BYTES, 0));
    for producers in [4usize, 16] {
        if plan.wants("group-commit") {
            figures.push(group_commit(dir, 16, &batch, producers, duration, "group-commit").await?);
        }
    }
    eprintln!();
    Ok(figures)
}

fn progress(what: &str) {
    eprint!("\r\x1b[2K  running {what}");
}

async fn open_raw(path: &Path, bytes: u64) -> anyhow::Result<DmaFile> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .map_err(io)?;
    file.pre_allocate(bytes, true).await.map_err(io)?;
    Ok(file)
}

/// Sequential O_DIRECT writes of `write_bytes`, `write_behind_max` in flight, like the appender.
async fn raw_write(
    dir: &Path,
    records: usize,
    write_bytes: usize,
    duration: Duration,
) -> anyhow::Result<Figure> {
    let path = dir.join("raw-write");
    let file = Rc::new(open_raw(&path, 4 << 30).await?);
    let depth = LogConfig::default().write_behind_max;
    let mut inflight = std::collections::VecDeque::new();
    let start = Instant::now();
    let mut position = 0u64;
    let mut writes = 0u64;
    while start.elapsed() < duration {
        if inflight.len() >= depth {
            let task: glommio::Task<glommio::Result<usize, ()>> =
                inflight.pop_front().expect("inflight");
            task.await.map_err(io)?;
        }
        let mut buffer = file.alloc_dma_buffer(write_bytes);
        buffer.as_bytes_mut().fill(b'x');
        let writer = file.clone();
        let at = position;
        inflight.push_back(glommio::spawn_local(async move {
            writer.write_at(buffer, at).await
        }));
        position += write_bytes as u64;
        writes += 1;
    }
    for task in inflight {
        task.await.map_err(io)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    close_and_remove(file, &path).await?;
    Ok(Figure {
        case: format!("raw-write-{}k", write_bytes / 1024),
        records_per_batch: records,
        producers: 1,
        batches: writes,
        bytes: position,
        seconds,
        latency_us: None,
        syncs: None,
    })
}

/// Block-aligned write of one batch's size, then `fdatasync`, one at a time.
async fn raw_fsync(
    dir: &Path,
    records: usize,
    batch_bytes: usize,
    duration: Duration,
) -> anyhow::Result<Figure> {
    let path = dir.join("raw-fsync");
    let file = Rc::new(open_raw(&path, 1 << 30).await?);
    let alignment = file.alignment() as usize;
    let mut latencies = histogram();
    let start = Instant::now();
    let mut position = 0u64;
    let mut logical = 0u64;
    let mut writes = 0u64;
    while start.elapsed() < duration {
        // Like the appender: the batch starts mid-block, so the last partial block is
        // written again along with the new bytes.
        let begin = position - position % alignment as u64;
        let end = (logical + batch_bytes as u64).div_ceil(alignment as u64) * alignment as u64;
        let mut buffer = file.alloc_dma_buffer((end - begin) as usize);
        buffer.as_bytes_mut().fill(b'x');
        let began = Instant::now();
        file.write_at(buffer, begin).await.map_err(io)?;
        file.fdatasync().await.map_err(io)?;
        latencies.record(began.elapsed().as_micros().max(1) as u64)?;
        logical += batch_bytes as u64;
        position = logical;
        writes += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    close_and_remove(file, &path).await?;
    Ok(Figure {
        case: "raw-fsync".into(),
        records_per_batch: records,
        producers: 1,
        batches: writes,
        bytes: logical,
        seconds,
        latency_us: Some(percentiles(&latencies)),
        syncs: Some(writes),
    })
}

async fn close_and_remove(file: Rc<DmaFile>, path: &Path) -> anyhow::Result<()> {
    if let Ok(file) = Rc::try_unwrap(file) {
        file.close().await.map_err(io)?;
    }
    glommio::io::remove(path).await.map_err(io)?;
    Ok(())
}

async fn open_log(dir: &Path, name: &str) -> anyhow::Result<Rc<Log>> {
    let config = LogConfig {
        flush: FlushPolicy::EveryAppend,
        ..LogConfig::default()
    };
    let shard = ShardStorage::new(&ShardStorageConfig {
        cache_bytes_max: 64 << 20,
        ..ShardStorageConfig::default()
    });
    Ok(Log::open(shard, dir.join(name), name.into(), config).await?)
}

/// One producer, back to back, acknowledged when the append returns.
async fn append(
    dir: &Path,
    records: usize,
    batch: &Bytes,
    duration: Duration,
) -> anyhow::Result<Figure> {
    let log = open_log(dir, &format!("append-{records}")).await?;
    let mut latencies = histogram();
    let start = Instant::now();
    let mut batches = 0u64;
    // The deadline is checked every 64 appends: a clock read per append is a measurable
    // share of a one-microsecond append.
    while !batches.is_multiple_of(64) || start.elapsed() < duration {
        let began = Instant::now();
        log.append(batch.clone(), 0).await?;
        latencies.record(began.elapsed().as_micros().max(1) as u64)?;
        batches += 1;
    }
    log.wait(Durability::Written, i64::MAX).await?;
    let seconds = start.elapsed().as_secs_f64();
    log.delete(&dir.join(".deleted").join(format!("append-{records}")))
        .await?;
    Ok(Figure {
        case: "append".into(),
        records_per_batch: records,
        producers: 1,
        batches,
        bytes: batches * batch.len() as u64,
        seconds,
        latency_us: Some(percentiles(&latencies)),
        syncs: None,
    })
}

/// `producers` tasks, each: append, wait for `fdatasync`, repeat.
async fn group_commit(
    dir: &Path,
    records: usize,
    batch: &Bytes,
    producers: usize,
    duration: Duration,
    case: &str,
) -> anyhow::Result<Figure> {
    let name = format!("{case}-{records}-{producers}");
    let log = open_log(dir, &name).await?;
    let latencies = Rc::new(RefCell::new(histogram()));
    let batches = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let syncs_before = log.sync_count();
    let tasks: Vec<_> = (0..producers)
        .map(|_| {
            let (log, latencies, batches, batch) = (
                log.clone(),
                latencies.clone(),
                batches.clone(),
                batch.clone(),
            );
            glommio::spawn_local(async move {
                while start.elapsed() < duration {
                    let began = Instant::now();
                    let outcome = log.append(batch.clone(), 0).await?;
                    log.wait(Durability::Synced, outcome.last_offset + 1)
                        .await?;
                    latencies
                        .borrow_mut()
                        .record(began.elapsed().as_micros().max(1) as u64)?;
                    batches.set(batches.get() + 1);
                }
                Ok::<(), anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let syncs = log.sync_count() - syncs_before;
    log.delete(&dir.join(".deleted").join(&name)).await?;
    let latencies = percentiles(&latencies.borrow());
    Ok(Figure {
        case: case.into(),
        records_per_batch: records,
        producers,
        batches: batches.get(),
        bytes: batches.get() * batch.len() as u64,
        seconds,
        latency_us: Some(latencies),
        syncs: Some(syncs),
    })
}

fn find<'a>(figures: &'a [Figure], case: &str, records: usize) -> Option<&'a Figure> {
    figures
        .iter()
        .find(|f| f.case == case && f.records_per_batch == records)
}

/// The best raw sequential-write bandwidth measured for this batch size.
fn raw_ceiling(figures: &[Figure], records: usize) -> Option<&Figure> {
    figures
        .iter()
        .filter(|f| f.case.starts_with("raw-write") && f.records_per_batch == records)
        .max_by(|a, b| a.mb_per_second().total_cmp(&b.mb_per_second()))
}

fn print_report(figures: &[Figure]) {
    println!(
        "{:<15} {:>5} {:>4} {:>10} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9} {:>12}",
        "case",
        "rec/b",
        "prod",
        "MB/s",
        "batches/s",
        "p50 us",
        "p99 us",
        "p99.9",
        "max us",
        "syncs",
        "appends/sync"
    );
    for figure in figures {
        let latency =
            figure
                .latency_us
                .map_or(["-".to_string(), "-".into(), "-".into(), "-".into()], |l| {
                    [
                        l[0].to_string(),
                        l[2].to_string(),
                        l[3].to_string(),
                        l[4].to_string(),
                    ]
                });
        let per_sync = figure
            .syncs
            .filter(|&s| s > 0)
            .map_or("-".to_string(), |s| {
                format!("{:.1}", figure.batches as f64 / s as f64)
            });
        println!(
            "{:<15} {:>5} {:>4} {:>10.1} {:>11.0} {:>8} {:>8} {:>8} {:>9} {:>9} {:>12}",
            figure.case,
            figure.records_per_batch,
            figure.producers,
            figure.mb_per_second(),
            figure.batches_per_second(),
            latency[0],
            latency[1],
            latency[2],
            latency[3],
            figure.syncs.map_or("-".to_string(), |s| s.to_string()),
            per_sync
        );
    }
    println!("\nratios against the raw limit measured above (targets: append >= 0.70 of the best raw-write MB/s; append-fsync p99 <= 1.5x raw-fsync p99):");
    for records in [1usize, 16, 256] {
        let (Some(raw), Some(append), Some(raw_sync), Some(append_sync)) = (
            raw_ceiling(figures, records),
            find(figures, "append", records),
            find(figures, "raw-fsync", records),
            find(figures, "append-fsync", records),
        ) else {
            continue;
        };
        let bandwidth = append.mb_per_second() / raw.mb_per_second();
        let tail = append_sync.p99_us() as f64 / raw_sync.p99_us().max(1) as f64;
        println!(
            "  {records:>3} records/batch: append/raw-write bandwidth {bandwidth:.2} [{}]   append-fsync/raw-fsync p99 {tail:.2}x [{}]",
            verdict(bandwidth >= 0.70),
            verdict(tail <= 1.5)
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn to_json(figures: &[Figure]) -> String {
    let rows: Vec<String> = figures
        .iter()
        .map(|f| {
            let latency = f.latency_us.map_or("null".to_string(), |l| {
                format!("{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{}}}", l[0], l[1], l[2], l[3], l[4])
            });
            format!(
                "  {{\"case\":\"{}\",\"records_per_batch\":{},\"producers\":{},\"batches\":{},\"bytes\":{},\"seconds\":{:.3},\"mb_per_s\":{:.2},\"batches_per_s\":{:.1},\"latency_us\":{},\"syncs\":{}}}",
                f.case, f.records_per_batch, f.producers, f.batches, f.bytes, f.seconds, f.mb_per_second(), f.batches_per_second(), latency,
                f.syncs.map_or("null".to_string(), |s| s.to_string())
            )
        })
        .collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
}
