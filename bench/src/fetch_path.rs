//! `petrel-bench fetch-path`: the cost of each step between stored batches and the bytes a
//! Fetch response hands to the socket, per MB, beside a plain memcpy of the same bytes.
//!
//! Steps, as the broker runs them for a consumer reading 1 MiB per fetch:
//! - `read-cache`: `Log::read` served from the shard's batch cache (no copy: `Bytes` clones);
//! - `read-disk`: `Log::read` from disk through the read-ahead window (one copy out of the
//!   pinned DMA buffer);
//! - `join`: several batches joined into one `Bytes` for the encoder (one copy);
//! - `encode`: the FetchResponse encoded, records copied into the response buffer (one copy).

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchResponse, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use petrel::storage::{Durability, Log, LogConfig, ShardStorage, ShardStorageConfig};
use petrel::testkit;

const FETCH_BYTES: usize = 1 << 20;
const LOG_BYTES: usize = 256 << 20;

pub fn run(dir: &Path, seconds: f64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let scratch = dir.to_path_buf();
    let duration = Duration::from_secs_f64(seconds);
    let rows = petrel::runtime::run_single("petrel-bench", scratch.clone(), move || async move {
        measure(&scratch, duration).await
    })??;
    println!("{:<12} {:>10} {:>12}  copies", "step", "GB/s", "us per MB");
    for (name, gigabytes_per_second, copies) in &rows {
        println!(
            "{name:<12} {gigabytes_per_second:>10.2} {:>12.1}  {copies}",
            1e3 / gigabytes_per_second
        );
    }
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

async fn filled_log(
    storage: Rc<ShardStorage>,
    dir: &Path,
    batch: &Bytes,
) -> anyhow::Result<Rc<Log>> {
    let log = Log::open(
        storage,
        dir.to_path_buf(),
        "fetch-0".into(),
        LogConfig::default(),
    )
    .await?;
    while (log.size_bytes() as usize) < LOG_BYTES {
        log.append(batch.clone(), 0).await?;
    }
    log.wait(Durability::Synced, i64::MAX).await?;
    Ok(log)
}

async fn measure(
    dir: &Path,
    duration: Duration,
) -> anyhow::Result<Vec<(&'static str, f64, &'static str)>> {
    // 16-record batches of 1 KiB records, as a producer with default batching sends them.
    let batch = Bytes::from(testkit::uniform_batch(16, 1024, 0));
    let storage = |cache_bytes_max| {
        ShardStorage::new(&ShardStorageConfig {
            cache_bytes_max,
            ..ShardStorageConfig::default()
        })
    };
    // Kept open with a cache that holds it all: reads are cache hits.
    let cached = filled_log(storage(LOG_BYTES * 2), &dir.join("cached"), &batch).await?;
    // Written, closed, reopened with no cache: reads go to disk.
    let written = filled_log(storage(0), &dir.join("disk"), &batch).await?;
    written.close().await?;
    let on_disk = Log::open(
        storage(0),
        dir.join("disk"),
        "fetch-0".into(),
        LogConfig::default(),
    )
    .await?;
    let end = on_disk.next_offset();

    let mut rows = Vec::new();
    let source = vec![7u8; FETCH_BYTES];
    let mut target = vec![0u8; FETCH_BYTES];
    let memcpy = rate(duration, || {
        target.copy_from_slice(&source);
        std::hint::black_box(&target);
        FETCH_BYTES
    });
    rows.push(("memcpy", memcpy, "baseline"));
    for (name, log, copies) in [
        ("read-disk", &on_disk, "1 (DMA buffer to Bytes)"),
        ("read-cache", &cached, "0 (Bytes clones)"),
    ] {
        let log = log.clone();
        let gigabytes_per_second = rate_async(duration, end, |offset| {
            let log = log.clone();
            async move {
                log.read(offset, FETCH_BYTES, i64::MAX, true)
                    .await
                    .map(|r| (r.bytes, r.next_offset))
            }
        })
        .await?;
        rows.push((name, gigabytes_per_second, copies));
    }

    let fetched = cached.read(0, FETCH_BYTES, i64::MAX, true).await?;
    let join = rate(duration, || {
        let mut joined = BytesMut::with_capacity(fetched.bytes);
        for batch in &fetched.batches {
            joined.extend_from_slice(batch);
        }
        std::hint::black_box(joined.freeze()).len()
    });
    rows.push(("join", join, "1 (batches to one Bytes)"));

    let mut joined = BytesMut::with_capacity(fetched.bytes);
    for batch in &fetched.batches {
        joined.extend_from_slice(batch);
    }
    let records = joined.freeze();
    let encode = rate(duration, || {
        let mut partition = PartitionData::default();
        partition.records = Some(records.clone());
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName(StrBytes::from_static_str("fetch"));
        topic.partitions = vec![partition];
        let mut response = FetchResponse::default();
        response.responses = vec![topic];
        let mut out = BytesMut::with_capacity(records.len() + 256);
        response.encode(&mut out, 12).expect("encode");
        std::hint::black_box(out).len()
    });
    rows.push(("encode", encode, "1 (records into the response)"));
    cached.close().await?;
    on_disk.close().await?;
    Ok(rows)
}

/// GB/s of `step`, which returns the bytes it moved.
fn rate(duration: Duration, mut step: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut bytes = 0usize;
    while start.elapsed() < duration {
        bytes += step();
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e9
}

async fn rate_async<F, Fut>(duration: Duration, end: i64, mut step: F) -> anyhow::Result<f64>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = petrel::storage::Result<(usize, i64)>>,
{
    let start = Instant::now();
    let mut bytes = 0usize;
    let mut offset = 0;
    while start.elapsed() < duration {
        let (read, next) = step(offset).await?;
        bytes += read;
        offset = if next >= end { 0 } else { next };
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e9)
}
