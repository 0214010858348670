//! Black-box start-up tests: what the real `petrel serve` does with a data directory it
//! must not trust blindly (missing metadata, leftovers, a second broker), with a host that
//! cannot run it (memlock limit, no O_DIRECT), with a shard that panics, and whether it
//! answers correctly from its first accepted connection.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{api_versions_ok, create_topic, topic_name, Broker, Raw};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;

/// A start-up that must fail has this long to do so (a generous bound that only catches a
/// broker that starts, or hangs, instead of refusing).
const REFUSAL_WATCHDOG: Duration = Duration::from_secs(30);

/// How a `petrel` run ended: its exit status (`None`: it was still running at the
/// watchdog and was killed) and what it printed.
struct Run {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn refused(&self) -> bool {
        self.status.is_some_and(|status| !status.success())
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `command` until it exits or `watchdog` passes (then kills it).
fn run_until_exit(mut command: Command, watchdog: Duration) -> Run {
    command
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("PETREL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + watchdog;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn serve_command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_petrel"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra);
    command
}

/// `petrel serve` under `sh -c '<limits>; exec petrel serve ...'`.
fn serve_under_shell(limits: &str, data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(r#"{limits}; exec "$0" "$@""#))
        .arg(env!("CARGO_BIN_EXE_petrel"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra);
    command
}

fn delete_topic(raw: &mut Raw, name: &str) -> DeleteTopicsResponse {
    let mut topic = DeleteTopicState::default();
    topic.name = Some(topic_name(name));
    let mut request = DeleteTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    raw.call(ApiKey::DeleteTopics, 6, &request)
}

fn batch(records: usize) -> Bytes {
    Bytes::from(petrel::testkit::uniform_batch(records, 100, 1_000))
}

fn produce(raw: &mut Raw, topic: &str, partitions: std::ops::Range<i32>) -> ProduceResponse {
    let batches = partitions.map(|index| (index, batch(2))).collect();
    common::produce(raw, topic, batches, 1)
}

fn fetch(raw: &mut Raw, topic: &str, partitions: std::ops::Range<i32>) -> FetchResponse {
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic_name(topic);
    fetch_topic.partitions = partitions
        .map(|index| {
            let mut partition = FetchPartition::default();
            partition.partition = index;
            partition.partition_max_bytes = 1 << 20;
            partition
        })
        .collect();
    let mut request = FetchRequest::default();
    request.max_bytes = 50 << 20;
    request.topics = vec![fetch_topic];
    raw.call(ApiKey::Fetch, 12, &request)
}

fn list_offsets(
    raw: &mut Raw,
    topic: &str,
    partitions: std::ops::Range<i32>,
) -> ListOffsetsResponse {
    let mut list_topic = ListOffsetsTopic::default();
    list_topic.name = topic_name(topic);
    list_topic.partitions = partitions
        .map(|index| {
            let mut partition = ListOffsetsPartition::default();
            partition.partition_index = index;
            partition.timestamp = -1;
            partition
        })
        .collect();
    let mut request = ListOffsetsRequest::default();
    request.topics = vec![list_topic];
    raw.call(ApiKey::ListOffsets, 7, &request)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(read) => read
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn segment_path(partition_dir: &Path) -> PathBuf {
    partition_dir.join("00000000000000000000.log")
}

#[test]
fn missing_metadata_over_existing_data_refuses_to_start_and_changes_nothing() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "orders", 2).topics[0].error_code, 0);
    let produced = produce(&mut raw, "orders", 0..2);
    assert!(produced.responses[0]
        .partition_responses
        .iter()
        .all(|p| p.error_code == 0));
    drop(raw);
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let metadata = data_dir.join("petrel-metadata.json");
    std::fs::remove_file(&metadata).expect("remove metadata");
    let segment = segment_path(&data_dir.join("orders-0"));
    let stored = std::fs::read(&segment).expect("segment");
    assert!(!stored.is_empty());

    let run = run_until_exit(serve_command(&data_dir, &[]), REFUSAL_WATCHDOG);
    assert!(run.refused(), "must refuse to start: {run}");
    for expected in [
        "petrel-metadata.json is missing",
        "orders-0",
        "__internal",
        "refusing to start an empty cluster over existing data",
        "Restore the file, or move these entries away",
    ] {
        assert!(
            run.stderr.contains(expected),
            "stderr lacks {expected:?}: {run}"
        );
    }
    assert!(!metadata.exists(), "no empty cluster may be written");
    assert_eq!(std::fs::read(&segment).expect("segment"), stored);
    drop(temp);
}

#[test]
fn a_new_topic_moves_a_leftover_directory_to_orphans_instead_of_deleting_it() {
    let broker = Broker::start(&[]);
    // A directory no topic in the metadata owns: e.g. a crash between opening a new topic's
    // logs and persisting it, or a partition restored by hand.
    let leftover = broker.data_dir.join("ghost-0");
    std::fs::create_dir_all(&leftover).expect("mkdir");
    std::fs::write(segment_path(&leftover), b"precious bytes").expect("write");
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "ghost", 1).topics[0].error_code, 0);
    let orphans = broker.data_dir.join(".orphans");
    let moved = entries(&orphans);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0].starts_with("ghost-0."), "{moved:?}");
    assert_eq!(
        std::fs::read(segment_path(&orphans.join(&moved[0]))).expect("moved file"),
        b"precious bytes"
    );
    // The new topic starts empty, in a directory of its own.
    let fetched = fetch(&mut raw, "ghost", 0..1);
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 0);
    broker.stop();
}

#[test]
fn a_failed_create_keeps_the_leftover_and_removes_only_what_it_made() {
    let broker = Broker::start(&[]);
    let leftover = broker.data_dir.join("ghost-0");
    std::fs::create_dir_all(&leftover).expect("mkdir");
    std::fs::write(segment_path(&leftover), b"precious bytes").expect("write");
    // A file where the orphans directory would go: moving the leftover away fails.
    std::fs::write(broker.data_dir.join(".orphans"), b"in the way").expect("write");
    let mut raw = Raw::connect(&broker.address);
    let created = create_topic(&mut raw, "ghost", 4);
    assert_eq!(created.topics[0].error_code, 56, "KAFKA_STORAGE_ERROR");
    assert_eq!(
        std::fs::read(segment_path(&leftover)).expect("leftover kept"),
        b"precious bytes"
    );
    let names = entries(&broker.data_dir);
    for index in 1..4 {
        let made = format!("ghost-{index}");
        assert!(
            !names.contains(&made),
            "{made} was made by the failed create: {names:?}"
        );
    }
    assert!(entries(&broker.data_dir.join(".deleted")).is_empty());
    broker.stop();
}

#[test]
fn a_deleted_topic_leaves_nothing_and_start_up_empties_the_trash() {
    let temp = tempfile::tempdir().expect("temp");
    let data_dir = temp.path().join("data");
    // What a crash in the middle of deleting a topic leaves behind.
    let trash = data_dir.join(".deleted").join("old-0.0123456789abcdef");
    std::fs::create_dir_all(&trash).expect("mkdir");
    std::fs::write(segment_path(&trash), b"deleted data").expect("write");
    let broker = Broker::start_in(&data_dir, &[]);
    assert!(
        entries(&data_dir.join(".deleted")).is_empty(),
        "start-up purges .deleted"
    );
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "gone", 2).topics[0].error_code, 0);
    produce(&mut raw, "gone", 0..2);
    let deleted = delete_topic(&mut raw, "gone");
    assert_eq!(deleted.responses[0].error_code, 0);
    let names = entries(&data_dir);
    assert!(
        !names.iter().any(|name| name.starts_with("gone-")),
        "{names:?}"
    );
    assert!(entries(&data_dir.join(".deleted")).is_empty());
    drop(raw);
    broker.stop();
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused_until_the_first_is_gone() {
    let mut first = Broker::start(&[]);
    let data_dir = first.data_dir.clone();
    let run = run_until_exit(serve_command(&data_dir, &[]), REFUSAL_WATCHDOG);
    assert!(run.refused(), "a second broker must refuse: {run}");
    assert!(run.stderr.contains(".lock"), "names the lock file: {run}");
    let pid = first.child.id().to_string();
    assert!(
        run.stderr.contains(&pid),
        "names the owner's pid {pid}: {run}"
    );
    assert!(
        api_versions_ok(&first.address),
        "the first broker still answers"
    );

    // SIGKILL: the lock goes with the process, so the next broker starts.
    first.child.kill().expect("kill");
    first.child.wait().expect("wait");
    let second = Broker::start_in(&data_dir, &[]);
    assert!(api_versions_ok(&second.address));
    second.stop();
    drop(first);
}

#[test]
fn a_low_memlock_limit_is_named_with_its_fix() {
    let temp = tempfile::tempdir().expect("temp");
    let data_dir = temp.path().join("data");
    // glommio refuses to build a reactor below 512 KiB of RLIMIT_MEMLOCK, root or not.
    let run = run_until_exit(
        serve_under_shell("ulimit -l 64", &data_dir, &[]),
        REFUSAL_WATCHDOG,
    );
    assert!(run.refused(), "must refuse: {run}");
    for expected in [
        "RLIMIT_MEMLOCK is 64 KiB",
        "512 KiB",
        "ulimit -l unlimited",
        "LimitMEMLOCK=infinity",
    ] {
        assert!(
            run.stderr.contains(expected),
            "stderr lacks {expected:?}: {run}"
        );
    }
    assert!(!run.stderr.contains("panicked"), "{run}");

    // A low soft limit under a high enough hard limit is raised, not refused.
    let mut child = KillOnDrop(
        serve_under_shell("ulimit -H -l 1024; ulimit -S -l 64", &data_dir, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    drop(child);
    assert!(line.starts_with("petrel listening on "), "{line:?}");
}

/// Whether `dir` accepts an O_DIRECT open.
fn o_direct_works(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("o-direct-check");
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    let _ = std::fs::remove_file(&path);
    opened.is_ok()
}

#[test]
fn a_file_system_without_o_direct_is_named() {
    // ramfs refuses O_DIRECT; mounting it in a private mount namespace needs root and
    // unshare(1), and vanishes with the process. Otherwise /dev/shm (tmpfs), which
    // supports O_DIRECT since Linux 6.6.
    let temp = tempfile::tempdir().expect("temp");
    let mount_point = temp.path().join("ramfs");
    std::fs::create_dir_all(&mount_point).expect("mkdir");
    let data_dir = mount_point.join("data");
    let in_ramfs = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t ramfs none {} && mkdir {}",
            mount_point.display(),
            data_dir.display()
        ))
        .output()
        .is_ok_and(|output| output.status.success());
    let run = if in_ramfs {
        let mut command = Command::new("unshare");
        command
            .args(["-m", "sh", "-c"])
            .arg(format!(
                r#"mount -t ramfs none {} && exec "$0" "$@""#,
                mount_point.display()
            ))
            .arg(env!("CARGO_BIN_EXE_petrel"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--data-dir",
            ])
            .arg(&data_dir);
        run_until_exit(command, REFUSAL_WATCHDOG)
    } else {
        let shm = tempfile::tempdir_in("/dev/shm").expect("temp dir in /dev/shm");
        if o_direct_works(shm.path()) {
            eprintln!("skipped: no ramfs (needs root and unshare), and /dev/shm supports O_DIRECT");
            return;
        }
        run_until_exit(
            serve_command(&shm.path().join("data"), &[]),
            REFUSAL_WATCHDOG,
        )
    };
    assert!(run.refused(), "must refuse: {run}");
    assert!(
        run.stderr
            .contains("does not support O_DIRECT (e.g. tmpfs); use ext4/xfs"),
        "{run}"
    );
}

#[test]
fn a_shard_panic_during_start_ends_the_process_naming_the_thread() {
    let temp = tempfile::tempdir().expect("temp");
    let data_dir = temp.path().join("data");
    let run = run_until_exit(
        serve_command(
            &data_dir,
            &["--inject-panic-shard", "1", "--inject-panic-after-ms", "0"],
        ),
        REFUSAL_WATCHDOG,
    );
    assert!(run.refused(), "must exit: {run}");
    assert!(
        run.stderr.contains("petrel: fatal: thread petrel-shard-1"),
        "{run}"
    );
    assert!(!run.stdout.contains("petrel listening"), "{run}");
}

#[test]
fn a_shard_panic_after_start_ends_the_process_naming_the_thread() {
    let temp = tempfile::tempdir().expect("temp");
    let data_dir = temp.path().join("data");
    let run = run_until_exit(
        serve_command(
            &data_dir,
            &[
                "--inject-panic-shard",
                "0",
                "--inject-panic-after-ms",
                "300",
            ],
        ),
        REFUSAL_WATCHDOG,
    );
    assert!(run.refused(), "must exit: {run}");
    assert!(
        run.stdout.contains("petrel listening"),
        "started first: {run}"
    );
    assert!(
        run.stderr.contains("petrel: fatal: thread petrel-shard-0"),
        "{run}"
    );
    assert_eq!(
        run.status.and_then(|status| status.code()),
        Some(70),
        "{run}"
    );
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Error codes in the answers of a Produce, a Fetch and a ListOffsets for every partition.
fn answer_codes(raw: &mut Raw, topic: &str, partitions: i32) -> Vec<i16> {
    let mut codes: Vec<i16> = produce(raw, topic, 0..partitions).responses[0]
        .partition_responses
        .iter()
        .map(|p| p.error_code)
        .collect();
    codes.extend(
        fetch(raw, topic, 0..partitions).responses[0]
            .partitions
            .iter()
            .map(|p| p.error_code),
    );
    codes.extend(
        list_offsets(raw, topic, 0..partitions).topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code),
    );
    codes
}

#[test]
fn the_first_accepted_connection_after_a_restart_finds_every_partition() {
    const PARTITIONS: i32 = 500;
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(
        create_topic(&mut raw, "wide", PARTITIONS).topics[0].error_code,
        0
    );
    assert!(answer_codes(&mut raw, "wide", PARTITIONS)
        .iter()
        .all(|&c| c == 0));
    drop(raw);
    let port = broker.port();
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();

    // Same port, so the test can knock before the broker says it listens.
    let listen = format!("127.0.0.1:{port}");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["serve", "--shards", "4", "--listen", &listen, "--data-dir"])
            .arg(&data_dir)
            .env("PETREL_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let deadline = Instant::now() + REFUSAL_WATCHDOG;
    let stream = loop {
        if let Ok(stream) = std::net::TcpStream::connect(&listen) {
            break stream;
        }
        assert!(Instant::now() < deadline, "the broker never accepted");
        assert!(
            child.0.try_wait().expect("try_wait").is_none(),
            "the broker exited"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    drop(stream);
    // The first connection that got through: every partition must be there.
    let mut raw = Raw::connect(&listen);
    let codes = answer_codes(&mut raw, "wide", PARTITIONS);
    let unknown = codes.iter().filter(|&&code| code == 3).count();
    assert_eq!(
        unknown, 0,
        "UNKNOWN_TOPIC_OR_PARTITION from a started broker"
    );
    assert!(codes.iter().all(|&c| c == 0), "{codes:?}");
    drop(child);
    drop(temp);
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    entries(dir)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).expect("read");
            (name, bytes)
        })
        .collect()
}

#[test]
fn a_damaged_sealed_segment_stops_the_start_and_log_dump_shows_it() {
    let broker = Broker::start(&["--segment-bytes", "16384"]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "damaged", 1).topics[0].error_code, 0);
    for _ in 0..150 {
        let produced = produce(&mut raw, "damaged", 0..1);
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    }
    drop(raw);
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let log_dir = data_dir.join("damaged-0");
    let segments: Vec<String> = entries(&log_dir)
        .into_iter()
        .filter(|name| name.ends_with(".log"))
        .collect();
    assert!(segments.len() >= 3, "{segments:?}");
    // The first segment's index is gone and a byte of its first batch flipped: before,
    // the start truncated it to nothing and deleted every later segment.
    for extension in ["index", "timeindex"] {
        std::fs::remove_file(log_dir.join(segments[0].replace(".log", &format!(".{extension}"))))
            .expect("remove index");
    }
    let first = log_dir.join(&segments[0]);
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[70] ^= 0x55;
    std::fs::write(&first, &bytes).expect("write");
    let before = snapshot(&log_dir);

    let run = run_until_exit(serve_command(&data_dir, &[]), REFUSAL_WATCHDOG);
    assert!(run.refused(), "must refuse: {run}");
    let expected_start = format!("{} is damaged at byte 0", first.display());
    assert!(run.stderr.contains(&expected_start), "{run}");
    assert!(run.stderr.contains("petrel log dump"), "{run}");
    for later in &segments[1..] {
        assert!(run.stderr.contains(later.as_str()), "names {later}: {run}");
    }
    assert!(
        snapshot(&log_dir) == before,
        "the refused start changed the log"
    );

    let mut dump = Command::new(env!("CARGO_BIN_EXE_petrel"));
    dump.args(["log", "dump"]).arg(&log_dir);
    let run = run_until_exit(dump, REFUSAL_WATCHDOG);
    assert!(run.refused(), "{run}");
    let invalid = format!("{}  offsets 0..0  bytes 0 of", first.display());
    assert!(run.stdout.contains(&invalid), "{run}");
    assert!(run.stdout.contains("INVALID from byte 0"), "{run}");
    assert_eq!(
        run.stdout.matches("  valid").count(),
        segments.len() - 1,
        "{run}"
    );
    assert!(snapshot(&log_dir) == before, "log dump changed the log");
    drop(temp);
}

/// `petrel log dump` recovers the log it reads (cuts a torn tail, rewrites the checkpoint),
/// so it must never run under a live broker: it takes the data directory's lock.
#[test]
fn log_dump_refuses_a_partition_of_a_running_broker() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "dumped", 1).topics[0].error_code, 0);
    assert_eq!(
        produce(&mut raw, "dumped", 0..1).responses[0].partition_responses[0].error_code,
        0
    );
    let partition_dir = broker.data_dir.join("dumped-0");
    let dump = || {
        Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["log", "dump"])
            .arg(&partition_dir)
            .output()
            .expect("run petrel log dump")
    };
    let refused = dump();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("needs the broker stopped") && stderr.contains(".lock"),
        "{stderr}"
    );
    let temp = broker.stop();
    let dumped = dump();
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    assert!(String::from_utf8_lossy(&dumped.stdout).contains("every one valid"));
    drop(temp);
}
