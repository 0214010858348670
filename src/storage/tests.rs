//! Tests of the storage engine on a real glommio executor and real O_DIRECT files.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::record_batch::{self, RecordBatchHeader};

/// Runs `body(dir)` on a fresh executor with its own temp data directory.
fn run<F, Fut>(body: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();
    crate::runtime::run_single("storage-test", dir.clone(), move || body(dir)).expect("executor");
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 * 1024,
        batch_bytes_max: 32 * 1024,
        chunk_bytes_min: 16 * 1024,
        chunk_bytes_max: 64 * 1024,
        preallocate_bytes: 256 * 1024,
        ..LogConfig::default()
    }
}

fn shard() -> Rc<ShardStorage> {
    ShardStorage::new(&ShardStorageConfig::default())
}

/// Batch `n`: `1 + n % 5` records of varying size, timestamp `1000 + n`.
fn batch(n: u64) -> Vec<u8> {
    let value = vec![b'a' + (n % 26) as u8; 100 + (n as usize * 37) % 900];
    let values: Vec<&[u8]> = (0..1 + n % 5).map(|_| value.as_slice()).collect();
    record_batch::build_batch(&values, 1000 + n as i64)
}

async fn open(dir: &Path, shard: Rc<ShardStorage>, config: LogConfig) -> Rc<Log> {
    Log::open(shard, dir.join("topic-0"), "topic-0".into(), config)
        .await
        .expect("open log")
}

/// Appends batches `range`, waiting for `fdatasync` after each; returns their base offsets.
async fn append_synced(log: &Log, range: std::ops::Range<u64>) -> Vec<i64> {
    let mut bases = Vec::new();
    for n in range {
        let outcome = log.append(Bytes::from(batch(n)), 3).await.expect("append");
        log.wait(Durability::Synced, outcome.last_offset + 1)
            .await
            .expect("sync");
        bases.push(outcome.base_offset);
    }
    bases
}

/// Reads everything from `from`, checking each batch against `batch(n)` in order.
async fn read_all(log: &Log, from: i64) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut offset = from;
    while offset < log.next_offset() {
        let read = log
            .read(offset, 10_000, i64::MAX, true)
            .await
            .expect("read");
        assert!(!read.batches.is_empty(), "no progress at offset {offset}");
        assert!(read.next_offset > offset);
        offset = read.next_offset;
        batches.extend(read.batches);
    }
    batches
}

/// The stored batch equals what was sent except for the broker-owned offset and epoch.
fn assert_same_batch(stored: &[u8], sent: &[u8], base_offset: i64) {
    let header = RecordBatchHeader::parse(stored).expect("header");
    assert_eq!(header.base_offset.get(), base_offset);
    assert_eq!(header.partition_leader_epoch.get(), 3);
    assert_eq!(&stored[16..], &sent[16..], "batch at {base_offset} differs");
    record_batch::verify(stored, usize::MAX).expect("stored batch verifies");
}

#[test]
fn append_read_back_and_reopen() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let bases = append_synced(&log, 0..200).await;
        assert!(log.segment_count() > 3, "64 KiB segments must have rolled");
        let check = |batches: &[Bytes]| {
            assert_eq!(batches.len(), 200);
            for (n, stored) in batches.iter().enumerate() {
                assert_same_batch(stored, &batch(n as u64), bases[n]);
            }
        };
        check(&read_all(&log, 0).await);
        let end = log.next_offset();
        log.close().await.expect("close");

        // A fresh shard has an empty cache: everything now comes from disk.
        let log = open(&dir, shard(), small_config()).await;
        assert_eq!(log.next_offset(), end);
        assert_eq!(log.synced_offset(), end);
        check(&read_all(&log, 0).await);
        // Reads starting mid-batch return the batch that holds the offset (batch 104 has
        // five records).
        let read = log
            .read(bases[104] + 2, 1, i64::MAX, true)
            .await
            .expect("read");
        assert_eq!(read.batches.len(), 1);
        assert_same_batch(&read.batches[0], &batch(104), bases[104]);
        // Appends continue after reopen, in the recovered active segment.
        let more = append_synced(&log, 200..210).await;
        assert_eq!(more[0], end);
        log.close().await.expect("close");
    });
}

#[test]
fn reads_respect_byte_budget_end_offset_and_range() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let bases = append_synced(&log, 0..50).await;
        for cached in [true, false] {
            if !cached {
                log.drop_cached();
            }
            // The first batch is returned even when it is larger than the budget.
            let read = log.read(0, 1, i64::MAX, true).await.expect("read");
            assert_eq!(read.batches.len(), 1, "cached={cached}");
            // The end offset (high watermark) is never crossed.
            let read = log
                .read(0, usize::MAX, bases[10], true)
                .await
                .expect("read");
            assert_eq!(read.next_offset, bases[10], "cached={cached}");
            assert_eq!(read.batches.len(), 10);
            // A budget stops between batches.
            let budget = batch(0).len() + batch(1).len() + batch(2).len();
            let read = log.read(0, budget, i64::MAX, true).await.expect("read");
            assert_eq!(read.batches.len(), 3, "cached={cached}");
            assert!(read.bytes <= budget);
            // Without min_one the budget holds even for the first batch: a budget one byte
            // short of it reads nothing, and the offset to read next stays put.
            let first = batch(0).len();
            let read = log.read(0, first - 1, i64::MAX, false).await.expect("read");
            assert!(read.batches.is_empty(), "cached={cached}");
            assert_eq!((read.bytes, read.next_offset), (0, 0));
            let read = log.read(0, first, i64::MAX, false).await.expect("read");
            assert_eq!(read.batches.len(), 1, "cached={cached}");
            let read = log
                .read(0, budget - 1, i64::MAX, false)
                .await
                .expect("read");
            assert_eq!(read.batches.len(), 2, "cached={cached}");
            // A read that skips into a later segment is bounded the same way.
            let late = bases[40];
            let read = log.read(late, 1, i64::MAX, false).await.expect("read");
            assert!(read.batches.is_empty() && read.next_offset == late);
        }
        assert!(log.segment_count() > 1, "the reads above cross segments");
        let end = log.next_offset();
        assert!(log
            .read(end, 100, i64::MAX, true)
            .await
            .expect("at end")
            .batches
            .is_empty());
        assert!(matches!(
            log.read(end + 1, 100, i64::MAX, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            log.read(-1, 100, i64::MAX, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.close().await.expect("close");
    });
}

#[test]
fn unsynced_appends_are_readable_and_concurrent_waiters_share_flushes() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        // Many appends without waiting, then one waiter per batch, all at once.
        let mut outcomes = Vec::new();
        for n in 0..64 {
            outcomes.push(log.append(Bytes::from(batch(n)), 3).await.expect("append"));
        }
        // Readable from disk before any explicit flush: a read flushes what it needs.
        log.drop_cached();
        assert_eq!(read_all(&log, 0).await.len(), 64);
        let waiters: Vec<_> = outcomes
            .iter()
            .map(|outcome| {
                let log = log.clone();
                let end = outcome.last_offset + 1;
                glommio::spawn_local(async move { log.wait(Durability::Synced, end).await })
            })
            .collect();
        let syncs_before = log.sync_count();
        for waiter in waiters {
            waiter.await.expect("synced");
        }
        assert_eq!(log.synced_offset(), log.next_offset());
        // Group commit: the first waiter's flush covers everything appended, so the other
        // 63 waiters ride along instead of issuing their own fdatasync.
        assert_eq!(log.sync_count() - syncs_before, 1);
        log.close().await.expect("close");
    });
}

#[test]
fn rejects_bad_batches_without_writing_anything() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        append_synced(&log, 0..3).await;
        let end = log.next_offset();
        let mut corrupt = batch(9);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let mut two = batch(1);
        two.extend_from_slice(&batch(2));
        let too_big = record_batch::build_batch(&[&vec![0u8; 2 << 20]], 1);
        for bad in [corrupt, two, too_big, vec![1, 2, 3]] {
            assert!(matches!(
                log.append(Bytes::from(bad), 0).await,
                Err(StorageError::InvalidBatch(_))
            ));
        }
        assert_eq!(log.next_offset(), end);
        append_synced(&log, 3..4).await;
        assert_eq!(read_all(&log, 0).await.len(), 4);
        log.close().await.expect("close");
    });
}

#[test]
fn retention_by_size_and_time_deletes_whole_old_segments() {
    run(|dir| async move {
        let config = LogConfig {
            retention_bytes_max: Some(200 * 1024),
            retention_age_max: None,
            ..small_config()
        };
        let log = open(&dir, shard(), config).await;
        append_synced(&log, 0..400).await;
        let before = log.size_bytes();
        let deleted = log.enforce_retention(i64::MAX).await.expect("retention");
        assert!(deleted > 0);
        assert!(
            log.size_bytes() <= 200 * 1024 + 64 * 1024,
            "{} bytes left",
            log.size_bytes()
        );
        assert!(log.size_bytes() < before);
        let start = log.log_start_offset();
        assert_eq!(Some(&start), log.segment_bases().first());
        assert!(matches!(
            log.read(0, 100, i64::MAX, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(!read_all(&log, start).await.is_empty());
        let files = std::fs::read_dir(dir.join("topic-0")).expect("dir").count();
        log.close().await.expect("close");

        // The log start offset survives a restart; deleted files stay deleted.
        let log = open(
            &dir,
            shard(),
            LogConfig {
                retention_age_max: Some(Duration::from_secs(1)),
                ..small_config()
            },
        )
        .await;
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(
            std::fs::read_dir(dir.join("topic-0")).expect("dir").count(),
            files
        );
        // Time retention: batch timestamps are ~1000 ms after the epoch, so all sealed
        // segments are far past a one-second retention; the active one stays.
        log.enforce_retention(1_000_000).await.expect("retention");
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
        log.close().await.expect("close");
    });
}

#[test]
fn a_deleted_segment_is_shrunk_only_when_nothing_else_reads_it() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        append_synced(&log, 0..400).await;
        let base = log.segment_bases()[0];
        log.close().await.expect("close");

        let config = small_config();
        let (segment, invalid_tail) = super::segment::Segment::open_sealed(
            &shard(),
            &dir.join("topic-0"),
            base,
            config.index_interval_bytes,
            config.batch_bytes_max,
        )
        .await
        .expect("open sealed");
        assert!(invalid_tail.is_none());
        let log_path = segment.log_path().to_path_buf();
        let stored = std::fs::read(&log_path).expect("read segment");
        assert!(!stored.is_empty());

        // A reader holds the segment too: its data must stay.
        let reader = segment.clone();
        segment.release_space_gradually().await;
        assert!(std::fs::read(&log_path).expect("read segment") == stored);
        drop(reader);

        // Held by the deleter alone: every block goes back before the removal.
        segment.release_space_gradually().await;
        assert_eq!(std::fs::metadata(&log_path).expect("stat").len(), 0);
        segment.close().await.expect("close");
    });
}

#[test]
fn changed_limits_apply_to_an_open_log() {
    run(|dir| async move {
        // Opened keeping everything, as a topic created with defaults.
        let config = LogConfig {
            retention_bytes_max: None,
            retention_age_max: None,
            ..small_config()
        };
        let log = open(&dir, shard(), config).await;
        append_synced(&log, 0..400).await;
        assert_eq!(log.enforce_retention(i64::MAX).await.expect("retention"), 0);
        let segments = log.segment_count();

        // A topic config change (IncrementalAlterConfigs) tightens retention and grows
        // segments: the next pass deletes, later appends roll by the new size.
        let mut limits = log.limits();
        limits.retention_bytes_max = Some(200 * 1024);
        limits.segment_bytes_max = 1 << 30;
        log.set_limits(limits);
        assert!(log.enforce_retention(i64::MAX).await.expect("retention") > 0);
        assert!(log.size_bytes() <= 200 * 1024 + 64 * 1024);
        let after_retention = log.segment_count();
        assert!(after_retention < segments);
        append_synced(&log, 400..800).await;
        assert_eq!(
            log.segment_count(),
            after_retention,
            "no roll at 1 GiB segments"
        );
        log.close().await.expect("close");
    });
}

#[test]
fn truncation_removes_the_tail_and_appends_continue() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let bases = append_synced(&log, 0..200).await;
        // Cut mid-batch inside an early segment (batch 44 has five records): that whole
        // batch goes, and every later segment.
        let segments_before = log.segment_count();
        log.truncate_to(bases[44] + 2).await.expect("truncate");
        assert_eq!(log.next_offset(), bases[44]);
        assert!(log.segment_count() < segments_before);
        assert_eq!(read_all(&log, 0).await.len(), 44);
        let again = append_synced(&log, 1000..1010).await;
        assert_eq!(again[0], bases[44]);
        let batches = read_all(&log, 0).await;
        assert_eq!(batches.len(), 54);
        assert_same_batch(&batches[49], &batch(1005), again[5]);
        log.close().await.expect("close");

        let log = open(&dir, shard(), small_config()).await;
        let batches = read_all(&log, 0).await;
        assert_eq!(batches.len(), 54);
        assert_same_batch(&batches[53], &batch(1009), again[9]);
        assert_same_batch(&batches[43], &batch(43), bases[43]);
        log.close().await.expect("close");
    });
}

#[test]
fn corrupt_tail_is_truncated_and_the_log_stays_usable() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let bases = append_synced(&log, 0..30).await;
        log.close().await.expect("close");

        // Flip a byte inside batch 25, in the active (last) segment.
        let segment_dir = dir.join("topic-0");
        let last_base = *bases.iter().filter(|&&b| b <= bases[25]).max().unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&segment_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        let log_file = names
            .iter()
            .rev()
            .find(|n| n.to_string_lossy().ends_with(".log"))
            .unwrap();
        let path = segment_dir.join(log_file);
        let segment_base: i64 = log_file.to_string_lossy()[..20].parse().unwrap();
        assert!(
            segment_base <= last_base,
            "batch 25 must be in the last segment"
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let position: usize = (0..25)
            .filter(|&n| bases[n] >= segment_base)
            .map(|n| batch(n as u64).len())
            .sum();
        bytes[position + 70] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();

        let log = open(&dir, shard(), small_config()).await;
        assert_eq!(
            log.next_offset(),
            bases[25],
            "recovery cuts at the corrupt batch"
        );
        let batches = read_all(&log, 0).await;
        assert_eq!(batches.len(), 25);
        append_synced(&log, 100..105).await;
        assert_eq!(read_all(&log, 0).await.len(), 30);
        log.close().await.expect("close");
    });
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error_never_data() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        append_synced(&log, 0..100).await;
        log.close().await.expect("close");
        let path = dir
            .join("topic-0")
            .join(format!("{}.log", segment::file_stem(0)));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[70] ^= 0xff; // inside the first batch
        std::fs::write(&path, &bytes).unwrap();

        // The sealed segment is below the recovery point, so it is not rescanned; a read
        // still checks the CRC and refuses the batch, naming where it is.
        let log = open(&dir, shard(), small_config()).await;
        match log.read(0, 1 << 20, i64::MAX, true).await {
            Err(StorageError::Corrupt {
                path: at, position, ..
            }) => {
                assert_eq!(at, path);
                assert_eq!(position, 0);
            }
            other => panic!("expected a corruption error, got {other:?}"),
        }
        log.close().await.expect("close");
    });
}

#[test]
fn torn_zero_tail_and_garbage_after_the_last_batch_are_cut() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        append_synced(&log, 0..5).await;
        let end = log.next_offset();
        log.close().await.expect("close");
        let path = dir
            .join("topic-0")
            .join(format!("{}.log", segment::file_stem(0)));
        let clean = std::fs::read(&path).unwrap();
        // A half-written batch: the first 100 bytes of a valid one.
        let tails: Vec<Vec<u8>> = vec![
            vec![0; 4096],
            batch(7)[..100].to_vec(),
            (0..3000).map(|i| (i * 31) as u8).collect(),
        ];
        for tail in tails {
            let mut bytes = clean.clone();
            bytes.extend_from_slice(&tail);
            std::fs::write(&path, &bytes).unwrap();
            let log = open(&dir, shard(), small_config()).await;
            assert_eq!(log.next_offset(), end);
            assert_eq!(read_all(&log, 0).await.len(), 5);
            log.close().await.expect("close");
            assert_eq!(std::fs::read(&path).unwrap(), clean);
        }
    });
}

#[test]
fn finds_batches_by_timestamp() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let bases = append_synced(&log, 0..100).await;
        for target in [0, 1000, 1042, 1099] {
            let found = log
                .find_batch_by_timestamp(target)
                .await
                .expect("lookup")
                .expect("found");
            let n = (target - 1000).max(0) as usize;
            assert_eq!(
                RecordBatchHeader::parse(&found).unwrap().base_offset.get(),
                bases[n],
                "ts {target}"
            );
        }
        assert!(log
            .find_batch_by_timestamp(5000)
            .await
            .expect("lookup")
            .is_none());
        log.close().await.expect("close");
    });
}

#[test]
fn sealed_segment_files_are_closed_to_stay_within_the_open_file_budget() {
    run(|dir| async move {
        let limited = || {
            ShardStorage::new(&ShardStorageConfig {
                open_files_max: 3,
                ..ShardStorageConfig::default()
            })
        };
        let shard = limited();
        let log = open(&dir, shard.clone(), small_config()).await;
        append_synced(&log, 0..200).await;
        assert!(log.segment_count() >= 5, "{} segments", log.segment_count());
        assert!(shard.open_files() <= 3);
        // Every segment is read back from disk, each reopened in turn.
        log.drop_cached();
        let batches = read_all(&log, 0).await;
        assert_eq!(batches.len(), 200);
        assert!(shard.open_files() <= 3);
        log.close().await.expect("close");
        assert_eq!(shard.open_files(), 0);

        // Opening a log of many segments does not open them all: the active one, and the
        // sealed one before it, whose headers rebuild the producer state.
        let shard = limited();
        let log = open(&dir, shard.clone(), small_config()).await;
        assert_eq!(shard.open_files(), 2);
        assert_eq!(read_all(&log, 0).await.len(), 200);
        // Retention reopens what it shrinks; the budget still holds.
        log.delete_before(log.segment_bases()[3])
            .await
            .expect("delete");
        assert!(shard.open_files() <= 3);

        // Active segments are never closed: once every file is active, opens fail.
        let other = Log::open(shard.clone(), dir.join("b-0"), "b-0".into(), small_config())
            .await
            .expect("second log");
        let third = Log::open(shard.clone(), dir.join("c-0"), "c-0".into(), small_config())
            .await
            .expect("third log");
        let refused = Log::open(shard.clone(), dir.join("d-0"), "d-0".into(), small_config()).await;
        assert!(
            matches!(refused, Err(StorageError::TooManyOpenFiles { limit: 3 })),
            "{:?}",
            refused.err()
        );
        assert_eq!(shard.open_files(), 3);
        for log in [log, other, third] {
            log.close().await.expect("close");
        }
    });
}

#[test]
fn interval_policy_syncs_in_the_background() {
    run(|dir| async move {
        let config = LogConfig {
            flush: FlushPolicy::Interval(Duration::from_millis(20)),
            ..small_config()
        };
        let log = open(&dir, shard(), config).await;
        let outcome = log.append(Bytes::from(batch(1)), 3).await.expect("append");
        log.wait_durable(outcome.last_offset + 1)
            .await
            .expect("written");
        assert!(log.written_offset() > outcome.last_offset);
        for _ in 0..100 {
            if log.synced_offset() > outcome.last_offset {
                break;
            }
            crate::runtime::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            log.synced_offset() > outcome.last_offset,
            "background sync never ran"
        );
        log.close().await.expect("close");
    });
}

/// Operation fuzzer: random batch sizes (from one small record to several chunks), random
/// appends, flushes, syncs, reads, reopens and truncations, checked against a model of the
/// log. Replays from its seed.
#[test]
fn random_operations_match_a_model() {
    use rand::{Rng, SeedableRng};
    for seed in 0..6u64 {
        run(move |dir| async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let config = LogConfig {
                segment_bytes_max: 1 << 20,
                batch_bytes_max: 512 * 1024,
                chunk_bytes_min: 16 * 1024,
                chunk_bytes_max: 128 * 1024,
                ..LogConfig::default()
            };
            let mut log = open(&dir, shard(), config.clone()).await;
            // The model: every batch in the log, by base offset.
            let mut model: Vec<(i64, Vec<u8>)> = Vec::new();
            for step in 0..400 {
                match rng.gen_range(0..100) {
                    0..=69 => {
                        let records = rng.gen_range(1..8);
                        let value_bytes = if rng.gen_ratio(1, 8) {
                            rng.gen_range(20_000..70_000)
                        } else {
                            rng.gen_range(1..3_000)
                        };
                        let sent = crate::testkit::uniform_batch(records, value_bytes, step);
                        let outcome = log
                            .append(Bytes::from(sent.clone()), 3)
                            .await
                            .expect("append");
                        model.push((outcome.base_offset, sent));
                    }
                    70..=79 => log
                        .wait(Durability::Written, i64::MAX)
                        .await
                        .expect("flush"),
                    80..=86 => log.wait(Durability::Synced, i64::MAX).await.expect("sync"),
                    87..=92 => {
                        if rng.gen_bool(0.5) {
                            log.drop_cached();
                        }
                        if let Some(index) =
                            (!model.is_empty()).then(|| rng.gen_range(0..model.len()))
                        {
                            let (budget, min_one) = (rng.gen_range(1..300_000), rng.gen_bool(0.5));
                            let read = log
                                .read(model[index].0, budget, i64::MAX, min_one)
                                .await
                                .expect("read");
                            let fits = model[index].1.len() <= budget;
                            assert_eq!(
                                read.batches.is_empty(),
                                !min_one && !fits,
                                "seed {seed} step {step}"
                            );
                            assert!(read.bytes <= budget || read.batches.len() == 1);
                            for (stored, (base, sent)) in read.batches.iter().zip(&model[index..]) {
                                assert_same_batch(stored, sent, *base);
                            }
                        }
                    }
                    93..=96 => {
                        log.close().await.expect("close");
                        log = open(&dir, shard(), config.clone()).await;
                    }
                    _ => {
                        if let Some(index) =
                            (!model.is_empty()).then(|| rng.gen_range(0..model.len()))
                        {
                            log.truncate_to(model[index].0).await.expect("truncate");
                            model.truncate(index);
                        }
                    }
                }
                let expected_end = model.last().map_or(0, |(base, sent)| {
                    base + i64::from(
                        RecordBatchHeader::parse(sent)
                            .unwrap()
                            .last_offset_delta
                            .get(),
                    ) + 1
                });
                assert_eq!(log.next_offset(), expected_end, "seed {seed} step {step}");
            }
            log.drop_cached();
            let stored = read_all(&log, 0).await;
            assert_eq!(stored.len(), model.len(), "seed {seed}");
            for (stored, (base, sent)) in stored.iter().zip(&model) {
                assert_same_batch(stored, sent, *base);
            }
            log.close().await.expect("close");
        });
    }
}

#[test]
fn idempotent_retries_are_not_written_twice_even_after_reopen() {
    use crate::storage::producer_state::SequenceError;
    use crate::testkit::idempotent_batch;
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let first = log
            .append(Bytes::from(idempotent_batch(3, 50, 42, 0, 0)), 0)
            .await
            .expect("append");
        assert_eq!((first.base_offset, first.duplicate), (0, false));
        let retry = log
            .append(Bytes::from(idempotent_batch(3, 50, 42, 0, 0)), 0)
            .await
            .expect("retry");
        assert_eq!(
            (retry.base_offset, retry.last_offset, retry.duplicate),
            (0, 2, true)
        );
        assert_eq!(log.next_offset(), 3, "a duplicate is not written");
        let second = log
            .append(Bytes::from(idempotent_batch(2, 50, 42, 0, 3)), 0)
            .await
            .expect("append");
        assert_eq!(second.base_offset, 3);
        assert!(matches!(
            log.append(Bytes::from(idempotent_batch(1, 50, 42, 0, 9)), 0)
                .await,
            Err(StorageError::Sequence(SequenceError::OutOfOrder {
                expected: 5,
                got: 9
            }))
        ));
        // Another producer interleaves freely.
        assert_eq!(
            log.append(Bytes::from(idempotent_batch(1, 50, 43, 0, 0)), 0)
                .await
                .unwrap()
                .base_offset,
            5
        );
        log.wait(Durability::Synced, i64::MAX).await.expect("sync");
        log.close().await.expect("close");

        // The state is rebuilt from the log on open.
        let log = open(&dir, shard(), small_config()).await;
        let retry = log
            .append(Bytes::from(idempotent_batch(2, 50, 42, 0, 3)), 0)
            .await
            .expect("retry");
        assert_eq!((retry.base_offset, retry.duplicate), (3, true));
        assert_eq!(log.next_offset(), 6);
        // An epoch bump restarts at 0 and fences the old epoch.
        assert_eq!(
            log.append(Bytes::from(idempotent_batch(1, 50, 42, 1, 0)), 0)
                .await
                .unwrap()
                .base_offset,
            6
        );
        assert!(matches!(
            log.append(Bytes::from(idempotent_batch(1, 50, 42, 0, 5)), 0)
                .await,
            Err(StorageError::Sequence(SequenceError::Fenced {
                current: 1,
                got: 0
            }))
        ));
        log.close().await.expect("close");
    });
}

/// Random workloads through injected file system faults (`storage::faults`): ENOSPC, EIO
/// and torn writes on writes, syncs, preallocation, truncation and renames, each at a random
/// step. After every round the log is closed and reopened, as the shard does with a failed
/// log, and every acknowledged batch must still be there, byte for byte. A batch is
/// acknowledged when its `wait` succeeded (`Written` or `Synced`, like acks=1 and acks=-1).
/// `PETREL_FAULT_ROUNDS` runs longer (the default keeps the test at a few seconds).
#[test]
fn acknowledged_batches_survive_injected_faults() {
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    use super::faults::{self, FaultKind, FaultOp, FaultPlan, FaultRule};

    let rounds: u64 = std::env::var("PETREL_FAULT_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    run(move |dir| async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let config = LogConfig {
            segment_bytes_max: 32 * 1024,
            ..small_config()
        };
        let storage = shard();
        let mut log = open(&dir, storage.clone(), config.clone()).await;
        // Acknowledged batches: base offset -> (batch number, so its bytes can be rebuilt).
        let mut acknowledged: BTreeMap<i64, u64> = BTreeMap::new();
        let (mut injected, mut failed_ops, mut checked) = (0u64, 0u64, 0u64);
        let mut next_batch = 0u64;
        let ops = [
            FaultOp::Write,
            FaultOp::Sync,
            FaultOp::Allocate,
            FaultOp::Truncate,
            FaultOp::Rename,
        ];
        let kinds = [FaultKind::NoSpace, FaultKind::Io, FaultKind::Torn];
        for round in 0..rounds {
            faults::install(FaultPlan::new(vec![FaultRule {
                op: ops[rng.gen_range(0..ops.len())],
                kind: kinds[rng.gen_range(0..kinds.len())],
                skip: rng.gen_range(0..12),
                count: rng.gen_range(1..4),
                path_contains: None,
            }]));
            for _ in 0..rng.gen_range(5..25) {
                let outcome = if rng.gen_bool(0.1) {
                    log.roll_segment().await.map(|()| None)
                } else {
                    let n = next_batch;
                    next_batch += 1;
                    let durability = if rng.gen_bool(0.5) {
                        Durability::Synced
                    } else {
                        Durability::Written
                    };
                    match log.append(Bytes::from(batch(n)), 3).await {
                        Ok(appended) => log
                            .wait(durability, appended.last_offset + 1)
                            .await
                            .map(|()| Some((appended.base_offset, n))),
                        Err(error) => Err(error),
                    }
                };
                match outcome {
                    Ok(Some((base_offset, n))) => {
                        acknowledged.insert(base_offset, n);
                    }
                    Ok(None) => {}
                    Err(_) => failed_ops += 1,
                }
            }
            injected += faults::clear();
            // Recovery as the shard does it: close (a failed log only settles its writes),
            // reopen, which scans the tail and keeps what is valid.
            let _ = log.close().await;
            log = Log::open(
                storage.clone(),
                dir.join("topic-0"),
                "topic-0".into(),
                config.clone(),
            )
            .await
            .unwrap_or_else(|error| panic!("round {round}: reopen failed: {error}"));
            assert!(log.failure().is_none());
            let mut lost = Vec::new();
            for (&base_offset, &n) in &acknowledged {
                let read = log.read(base_offset, 1, i64::MAX, true).await;
                match read.as_ref().map(|read| read.batches.first()) {
                    Ok(Some(stored))
                        if RecordBatchHeader::parse(stored)
                            .map(|h| h.base_offset.get())
                            .ok()
                            == Some(base_offset) =>
                    {
                        assert_same_batch(stored, &batch(n), base_offset);
                    }
                    _ => lost.push((base_offset, n, format!("{read:?}"))),
                }
            }
            checked += acknowledged.len() as u64;
            assert!(
                lost.is_empty(),
                "round {round}: acknowledged batches lost: {lost:?}"
            );
        }
        let _ = log.close().await;
        println!(
            "fault injection: {rounds} rounds, {injected} faults injected, {failed_ops} operations \
             failed, {} batches acknowledged, {checked} acknowledged-batch checks, lost: 0",
            acknowledged.len()
        );
        assert!(
            injected > rounds / 2,
            "the plans must actually fire: {injected} faults"
        );
    });
}

/// Every file of `dir` with its bytes, to prove an open changed nothing.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).expect("read"))
        })
        .collect()
}

/// Opening must fail on damage in a segment that is not the last, naming the segment, the
/// byte and the later segments, and leave every file as it was.
async fn assert_refused_untouched(dir: &Path, damaged: i64, position: u64, later: &[i64]) {
    let log_dir = dir.join("topic-0");
    let before = snapshot(&log_dir);
    let opened = Log::open(shard(), log_dir.clone(), "topic-0".into(), small_config()).await;
    let error = match opened {
        Ok(log) => {
            log.close().await.expect("close");
            panic!("opened over a damaged sealed segment {damaged}");
        }
        Err(error) => error,
    };
    let damaged_path = log_dir.join(format!("{}.log", segment::file_stem(damaged)));
    let later_paths: Vec<PathBuf> = later
        .iter()
        .map(|base| log_dir.join(format!("{}.log", segment::file_stem(*base))))
        .collect();
    let message = error.to_string();
    match error {
        StorageError::CorruptSealed {
            path,
            position: at,
            later_segments,
            ..
        } => {
            assert_eq!(path, damaged_path);
            assert_eq!(at, position);
            assert_eq!(later_segments, later_paths);
        }
        other => panic!("expected CorruptSealed, got {other:?}"),
    }
    for expected in [
        damaged_path.display().to_string(),
        format!("byte {position}"),
        format!("petrel log dump {}", log_dir.display()),
        "nothing was changed on disk".to_string(),
    ] {
        assert!(message.contains(&expected), "{expected:?} not in {message}");
    }
    for base in later {
        let name = format!("{}.log", segment::file_stem(*base));
        assert!(message.contains(&name), "{name} not in {message}");
    }
    assert!(
        snapshot(&log_dir) == before,
        "the failed open changed files"
    );
}

#[test]
fn damage_in_a_sealed_segment_fails_the_open_and_changes_nothing() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let bases = append_synced(&log, 0..200).await;
        let segments = log.segment_bases();
        assert!(segments.len() >= 4, "{segments:?}");
        log.close().await.expect("close");
        let log_dir = dir.join("topic-0");
        let path_of = |base: i64| log_dir.join(format!("{}.log", segment::file_stem(base)));
        // Where batch `n` starts in its segment.
        let position_of = |n: usize| -> u64 {
            let segment = *segments.iter().filter(|&&s| s <= bases[n]).max().unwrap();
            (0..n)
                .filter(|&m| bases[m] >= segment)
                .map(|m| batch(m as u64).len() as u64)
                .sum()
        };
        let clean = snapshot(&log_dir);
        let flip = |base: i64, position: u64| {
            let mut bytes = std::fs::read(path_of(base)).unwrap();
            bytes[position as usize + 70] ^= 0x55;
            std::fs::write(path_of(base), &bytes).unwrap();
        };
        let restore = || {
            for (name, bytes) in &clean {
                std::fs::write(log_dir.join(name), bytes).unwrap();
            }
        };

        // Below the recovery point, with its index gone: the scan finds batch 3 damaged.
        for extension in ["index", "timeindex"] {
            std::fs::remove_file(log_dir.join(format!("{}.{extension}", segment::file_stem(0))))
                .unwrap();
        }
        flip(0, position_of(3));
        assert_refused_untouched(&dir, 0, position_of(3), &segments[1..]).await;
        restore();

        // At or past the recovery point (no checkpoint: every segment is scanned), but not
        // the last one: still not a torn tail.
        std::fs::remove_file(log_dir.join(checkpoint::FILE_NAME)).unwrap();
        let second = segments[1];
        let n = bases.iter().position(|&b| b >= second).unwrap() + 2;
        flip(second, position_of(n));
        assert_refused_untouched(&dir, second, position_of(n), &segments[2..]).await;
        restore();

        // A segment overlapping its predecessor.
        let third = segments[2];
        std::fs::copy(path_of(third), path_of(third - 1)).unwrap();
        assert_refused_untouched(&dir, third - 1, 0, &segments[2..]).await;
        std::fs::remove_file(path_of(third - 1)).unwrap();

        // Undamaged, the log opens whole.
        let log = open(&dir, shard(), small_config()).await;
        assert_eq!(read_all(&log, 0).await.len(), 200);
        log.close().await.expect("close");
    });
}

#[test]
fn the_recovery_point_never_stays_past_a_log_cut_by_recovery() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let bases = append_synced(&log, 0..150).await;
        let segments = log.segment_bases();
        assert!(segments.len() >= 3, "{segments:?}");
        log.close().await.expect("close");
        let log_dir = dir.join("topic-0");
        // The active segment is lost, and the one before it (now the last) has a damaged
        // batch: recovery cuts the log below the checkpoint's recovery point.
        let active = *segments.last().unwrap();
        super::segment::Segment::remove_files(&log_dir, active)
            .await
            .expect("remove");
        let sealed = segments[segments.len() - 2];
        let first = bases.iter().position(|&b| b >= sealed).unwrap();
        let path = log_dir.join(format!("{}.log", segment::file_stem(sealed)));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[70] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();

        let log = open(&dir, shard(), small_config()).await;
        assert_eq!(log.next_offset(), bases[first]);
        let stored = std::fs::read(log_dir.join(checkpoint::FILE_NAME)).unwrap();
        let checkpoint = checkpoint::Checkpoint::decode(&stored).expect("checkpoint");
        assert!(
            checkpoint.recovery_point <= log.next_offset(),
            "recovery point {} past the log end {}",
            checkpoint.recovery_point,
            log.next_offset()
        );
        log.close().await.expect("close");
    });
}

#[test]
fn rolls_and_retention_at_once_never_break_the_checkpoint() {
    const ROLLS: u64 = 40;
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let stop = Rc::new(std::cell::Cell::new(false));
        // Retention (DeleteRecords here) writes the checkpoint without the append lock;
        // rolls write it holding that lock: the two keep meeting.
        let trimmer = {
            let (log, stop) = (log.clone(), stop.clone());
            glommio::spawn_local(async move {
                let mut trims = 0;
                while !stop.get() {
                    trims += log.delete_before(log.next_offset()).await?;
                    futures_lite::future::yield_now().await;
                }
                Ok::<usize, StorageError>(trims)
            })
        };
        for n in 0..ROLLS {
            let outcome = log.append(Bytes::from(batch(n)), 3).await.expect("append");
            log.wait(Durability::Written, outcome.last_offset + 1)
                .await
                .expect("write");
            log.roll_segment()
                .await
                .unwrap_or_else(|error| panic!("roll {n}: {error}"));
        }
        stop.set(true);
        let trims = trimmer.await.expect("retention");
        assert!(trims > ROLLS as usize / 2, "only {trims} segments trimmed");
        let stored = std::fs::read(dir.join("topic-0").join(checkpoint::FILE_NAME)).unwrap();
        let checkpoint = checkpoint::Checkpoint::decode(&stored).expect("checkpoint");
        assert_eq!(checkpoint.log_start_offset, log.log_start_offset());
        assert_eq!(Some(&checkpoint.recovery_point), log.segment_bases().last());
        log.close().await.expect("close");
    });
}

/// The leader-epoch history follows appends of new epochs, truncation and retention, and
/// survives a reopen; a log written before it existed (no file) counts as epoch 0.
#[test]
fn the_leader_epoch_history_follows_the_log() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        let mut bases = Vec::new();
        for (n, epoch) in [(0u64, 1), (1, 1), (2, 4), (3, 4), (4, 6)] {
            let outcome = log
                .append(Bytes::from(batch(n)), epoch)
                .await
                .expect("append");
            bases.push(outcome.base_offset);
        }
        let end = log.next_offset();
        assert_eq!(log.end_offset_for_epoch(1), (1, bases[2]));
        assert_eq!(log.end_offset_for_epoch(5), (4, bases[4]));
        assert_eq!(log.end_offset_for_epoch(6), (6, end));
        // Truncating into epoch 4 forgets epoch 6.
        log.truncate_to(bases[4]).await.expect("truncate");
        assert_eq!(log.latest_epoch(), Some(4));
        assert_eq!(log.end_offset_for_epoch(4), (4, bases[4]));
        log.close().await.expect("close");
        let log = open(&dir, shard(), small_config()).await;
        assert_eq!(log.end_offset_for_epoch(1), (1, bases[2]), "persisted");
        assert_eq!(log.latest_epoch(), Some(4));
        log.close().await.expect("close");
        // A log whose history file is gone: everything is epoch 0 from the log start.
        std::fs::remove_file(dir.join("topic-0").join(epochs::FILE_NAME)).expect("remove");
        let log = open(&dir, shard(), small_config()).await;
        assert_eq!(log.end_offset_for_epoch(0), (0, log.next_offset()));
        log.close().await.expect("close");
    });
}

/// A follower below the leader's log start drops its log and continues from that start:
/// the log is empty there, takes replicated batches at that offset, and stays so reopened.
#[test]
fn a_log_restarted_past_its_end_continues_from_there() {
    run(|dir| async move {
        let log = open(&dir, shard(), small_config()).await;
        for n in 0..3u64 {
            log.append(Bytes::from(batch(n)), 2).await.expect("append");
        }
        let end = log.next_offset();
        log.restart_at(end - 1)
            .await
            .expect("not past the end: nothing to do");
        assert_eq!(log.next_offset(), end);
        log.restart_at(end + 100).await.expect("restart");
        assert_eq!(log.log_start_offset(), end + 100);
        assert_eq!(log.next_offset(), end + 100);
        assert_eq!(
            log.latest_epoch(),
            None,
            "the epoch history went with the data"
        );
        assert_eq!(log.segment_bases(), vec![end + 100]);
        let appended = log.append(Bytes::from(batch(7)), 3).await.expect("append");
        assert_eq!(appended.base_offset, end + 100);
        let read = log
            .read(end + 100, 1 << 20, i64::MAX, true)
            .await
            .expect("read");
        assert_eq!(read.batches.len(), 1);
        log.close().await.expect("close");
        let log = open(&dir, shard(), small_config()).await;
        assert_eq!(log.log_start_offset(), end + 100, "persisted");
        assert_eq!(log.latest_epoch(), Some(3));
        log.close().await.expect("close");
    });
}

#[test]
fn a_quiet_segment_reserves_little_disk_and_a_busy_one_full_steps() {
    use std::os::unix::fs::MetadataExt;
    run(|dir| async move {
        let config = LogConfig {
            segment_bytes_max: 64 << 20,
            preallocate_bytes: 8 << 20,
            ..small_config()
        };
        let log = open(&dir, shard(), config).await;
        append_synced(&log, 0..1).await;
        let segment = std::fs::read_dir(dir.join("topic-0"))
            .expect("read dir")
            .flatten()
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "log"))
            .expect("a segment file");
        let reserved = || std::fs::metadata(&segment).expect("stat").blocks() * 512;
        assert!(reserved() <= 1 << 20, "one batch reserved {}", reserved());
        // 4 MiB of appends: the reservation grows, ahead of the head, in full steps.
        let value = vec![b'x'; 16 << 10];
        let big = Bytes::from(record_batch::build_batch(&[value.as_slice()], 1000));
        let mut last = 0;
        for _ in 0..256 {
            last = log
                .append(big.clone(), 1)
                .await
                .expect("append")
                .last_offset;
        }
        log.wait(Durability::Synced, last + 1).await.expect("sync");
        let written = std::fs::metadata(&segment).expect("stat").len();
        assert!(written > 4 << 20, "{written} bytes written");
        assert!(reserved() >= written, "{} reserved < {written}", reserved());
        assert!(reserved() <= 16 << 20, "{} reserved", reserved());
        log.close().await.expect("close");
    });
}
