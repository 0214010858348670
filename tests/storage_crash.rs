//! Crash test: a real `petrel` process appends and syncs while this test SIGKILLs it at
//! random moments, cycle after cycle. After each kill the log is recovered and must hold
//! every acknowledged (fdatasync'ed) batch byte for byte, in order, with nothing invalid
//! served past a torn tail.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use petrel::record_batch::RecordBatchHeader;
use petrel::storage::{Log, LogConfig, ShardStorage, ShardStorageConfig};
use petrel::testkit;
use rand::{Rng, SeedableRng};

const CYCLES: u64 = 30;
const SEGMENT_BYTES_MAX: u64 = 256 * 1024;

struct Cycle {
    acks: Vec<(u64, i64)>,
    ready: bool,
}

/// Runs the writer until a random moment, then SIGKILLs it.
fn run_writer_and_kill(dir: &Path, first_sequence: u64, rng: &mut impl Rng) -> Cycle {
    let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["log", "crash-writer", "--dir"])
        .arg(dir)
        .args(["--first-sequence", &first_sequence.to_string()])
        .args(["--segment-bytes-max", &SEGMENT_BYTES_MAX.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut cycle = Cycle {
            acks: Vec::new(),
            ready: false,
        };
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["READY", _] => {
                    cycle.ready = true;
                    let _ = ready_tx.send(());
                }
                ["ACK", sequence, base] => {
                    // A line cut by the kill fails to parse and is not counted as acked.
                    if let (Ok(sequence), Ok(base)) = (sequence.parse(), base.parse()) {
                        cycle.acks.push((sequence, base));
                    }
                }
                _ => {}
            }
        }
        cycle
    });
    // A quarter of the kills land early, timed from the spawn: often during recovery of
    // the previous crash. The rest land while appending, timed from the writer's READY
    // (recovery done), so a slow start on a loaded machine does not eat the window.
    if rng.gen_ratio(1, 4) {
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
    } else {
        let _ = ready_rx.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..300)));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the writer never exits by itself");
    reader.join().expect("reader thread")
}

/// Recovers the log in-process and returns every batch it serves, by base offset.
fn recover(dir: PathBuf) -> (BTreeMap<i64, Vec<u8>>, i64) {
    let probe = dir.parent().expect("parent").to_path_buf();
    petrel::runtime::run_single("crash-verify", probe, move || async move {
        let config = LogConfig {
            segment_bytes_max: SEGMENT_BYTES_MAX,
            batch_bytes_max: 64 * 1024,
            ..LogConfig::default()
        };
        let shard = ShardStorage::new(&ShardStorageConfig::default());
        let log = Log::open(shard, dir, "crash-0".into(), config)
            .await
            .expect("recover");
        let mut batches = BTreeMap::new();
        let mut offset = log.log_start_offset();
        let end = log.next_offset();
        while offset < end {
            let read = log
                .read(offset, 1 << 20, i64::MAX, true)
                .await
                .expect("every served batch verifies");
            assert!(
                !read.batches.is_empty(),
                "hole at offset {offset} below end {end}"
            );
            for batch in read.batches {
                let header = RecordBatchHeader::parse(&batch).expect("header");
                assert_eq!(header.base_offset.get(), offset, "offsets are contiguous");
                offset = header.last_offset().expect("last offset") + 1;
                batches.insert(header.base_offset.get(), batch.to_vec());
            }
        }
        assert_eq!(offset, end);
        log.close().await.expect("close");
        (batches, end)
    })
    .expect("executor")
}

#[test]
fn every_synced_batch_survives_sigkill() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("crash-0");
    let seed: u64 = std::env::var("PETREL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id())
        });
    eprintln!("crash test seed {seed} (set PETREL_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acknowledged: BTreeMap<i64, u64> = BTreeMap::new();
    let mut cycles_with_acks = 0;
    for cycle in 0..CYCLES {
        let outcome = run_writer_and_kill(&dir, cycle * 1_000_000, &mut rng);
        if !outcome.acks.is_empty() {
            cycles_with_acks += 1;
        }
        for (sequence, base) in outcome.acks {
            assert!(
                acknowledged.insert(base, sequence).is_none(),
                "offset {base} acknowledged twice"
            );
        }
        let (batches, end) = recover(dir.clone());
        for (&base, &sequence) in &acknowledged {
            let stored = batches
                .get(&base)
                .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged batch {sequence} at offset {base} lost (log end {end})"));
            let sent = testkit::numbered_batch(sequence);
            // Identical except the broker-owned base offset and leader epoch.
            assert_eq!(
                &stored[8..12],
                &sent[8..12],
                "cycle {cycle}: batch {sequence} length"
            );
            assert_eq!(
                &stored[16..],
                &sent[16..],
                "cycle {cycle}: batch {sequence} bytes"
            );
        }
        // Batches written but not acknowledged before the kill may survive; they must still
        // be exactly some batch the writer produced.
        for (base, stored) in &batches {
            let sequence = testkit::sequence_of(stored).expect("numbered batch");
            assert_eq!(
                &stored[16..],
                &testkit::numbered_batch(sequence)[16..],
                "offset {base}"
            );
        }
        // Whatever survived is now the log; the next writer appends after it.
        acknowledged.retain(|base, _| batches.contains_key(base));
        for (base, stored) in &batches {
            acknowledged
                .entry(*base)
                .or_insert_with(|| testkit::sequence_of(stored).unwrap_or_default());
        }
    }
    assert!(
        cycles_with_acks >= CYCLES / 2,
        "the writer acknowledged too rarely ({cycles_with_acks} cycles)"
    );
    let segments = std::fs::read_dir(&dir)
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
        })
        .count();
    assert!(segments > 1, "the run should have rolled segments");
}
