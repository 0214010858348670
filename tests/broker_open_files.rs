//! File descriptors: a shard keeps at most `--open-files-max` segment files open (sealed
//! segments' files are closed while unused and reopened on demand), the budget follows the
//! process's RLIMIT_NOFILE (raised to its hard limit at start), and the broker refuses
//! topics beyond `--partitions-max` before touching the disk.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::{topic_name, Broker, Raw};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use petrel::record_batch::RecordBatchHeader;

const POLICY_VIOLATION: i16 = 44;

fn creatable(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(name);
    topic.num_partitions = partitions;
    topic.replication_factor = -1;
    topic.configs = configs
        .iter()
        .map(|(key, value)| {
            let mut config = CreatableTopicConfig::default();
            config.name = StrBytes::from_string(key.to_string());
            config.value = Some(StrBytes::from_string(value.to_string()));
            config
        })
        .collect();
    topic
}

/// Creates `topics`; returns each one's (error code, message).
fn create(raw: &mut Raw, topics: Vec<CreatableTopic>) -> Vec<(i16, String)> {
    let mut request = CreateTopicsRequest::default();
    request.topics = topics;
    request.timeout_ms = 30_000;
    let response: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &request);
    response
        .topics
        .iter()
        .map(|topic| {
            let message = topic.error_message.as_ref().map(|m| m.to_string());
            (topic.error_code, message.unwrap_or_default())
        })
        .collect()
}

fn produce(raw: &mut Raw, topic: &str, batch: Vec<u8>) {
    let (code, _) = common::produce_one(raw, topic, Bytes::from(batch));
    assert_eq!(code, 0, "produce failed with {code}");
}

/// Reads partition 0 of `topic` from the start in small fetches; returns the batch count.
fn read_everything(raw: &mut Raw, topic: &str, end_offset: i64) -> usize {
    let mut offset = 0;
    let mut batches = 0;
    while offset < end_offset {
        let mut partition = FetchPartition::default();
        partition.fetch_offset = offset;
        partition.partition_max_bytes = 32 * 1024;
        let mut fetch_topic = FetchTopic::default();
        fetch_topic.topic = topic_name(topic);
        fetch_topic.partitions = vec![partition];
        let mut request = FetchRequest::default();
        request.max_wait_ms = 1_000;
        request.min_bytes = 1;
        request.max_bytes = 32 * 1024;
        request.topics = vec![fetch_topic];
        let response: FetchResponse = raw.call(ApiKey::Fetch, 12, &request);
        let answer = &response.responses[0].partitions[0];
        assert_eq!(answer.error_code, 0, "fetch at {offset} failed");
        let records = answer.records.clone().unwrap_or_default();
        assert!(!records.is_empty(), "no progress at offset {offset}");
        let mut position = 0;
        while position < records.len() {
            let header = RecordBatchHeader::parse(&records[position..]).expect("header");
            position += header.total_bytes().expect("length");
            offset = header.last_offset().expect("last offset") + 1;
            batches += 1;
        }
    }
    batches
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

fn segment_files(data_dir: &Path, partition_dir: &str) -> usize {
    std::fs::read_dir(data_dir.join(partition_dir))
        .expect("partition dir")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .count()
}

const SEGMENTS: usize = 30;
const OPEN_FILES_MAX: usize = 8;

#[test]
fn many_segments_are_read_back_within_a_small_open_file_budget() {
    let budget = OPEN_FILES_MAX.to_string();
    let broker = Broker::start(&["--open-files-max", &budget]);
    let pid = broker.child.id();
    let mut raw = Raw::connect(&broker.address);
    let fds_at_start = open_fds(pid);
    // Two batches of ~8 KiB fill a 16 KiB segment: each batch after the first two rolls.
    let created = create(
        &mut raw,
        vec![creatable("rolling", 1, &[("segment.bytes", "16384")])],
    );
    assert_eq!(created[0].0, 0, "{}", created[0].1);
    let batches = 2 * SEGMENTS;
    for n in 0..batches {
        produce(
            &mut raw,
            "rolling",
            petrel::testkit::uniform_batch(8, 1000, n as i64),
        );
    }
    assert!(segment_files(&broker.data_dir, "rolling-0") >= SEGMENTS);
    let end = (batches * 8) as i64;
    assert_eq!(read_everything(&mut raw, "rolling", end), batches);
    // The partition's shard holds at most its budget of segment files (its offsets log's
    // included, already open at start); beyond that only a few transient opens.
    let fds = open_fds(pid);
    assert!(
        fds <= fds_at_start + OPEN_FILES_MAX + 4,
        "{fds} descriptors open, {fds_at_start} at start"
    );

    // A restart opens the 30 segments within the same budget, and serves them all again.
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let broker = Broker::start_in(&data_dir, &["--open-files-max", &budget]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(read_everything(&mut raw, "rolling", end), batches);
    drop(broker);
    drop(temp);
}

#[test]
fn creations_beyond_partitions_max_are_refused_before_touching_the_disk() {
    let broker = Broker::start(&["--partitions-max", "50"]);
    let mut raw = Raw::connect(&broker.address);
    let refused = create(&mut raw, vec![creatable("huge", 25_000, &[])]);
    assert_eq!(refused[0].0, POLICY_VIOLATION, "{}", refused[0].1);
    assert!(
        refused[0].1.contains("25000 partitions") && refused[0].1.contains("partitions-max is 50"),
        "{}",
        refused[0].1
    );
    let leftovers = std::fs::read_dir(&broker.data_dir)
        .expect("data dir")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("huge"))
        .count();
    assert_eq!(leftovers, 0, "directories of a refused topic");

    // The running total counts the topics of the same request.
    let answers = create(
        &mut raw,
        vec![creatable("first", 30, &[]), creatable("second", 30, &[])],
    );
    assert_eq!(answers[0].0, 0, "{}", answers[0].1);
    assert_eq!(answers[1].0, POLICY_VIOLATION, "{}", answers[1].1);
    assert!(
        answers[1].1.contains("to 60 partitions"),
        "{}",
        answers[1].1
    );
    assert_eq!(create(&mut raw, vec![creatable("third", 20, &[])])[0].0, 0);

    // Growing a topic counts the same way.
    let mut growth = CreatePartitionsTopic::default();
    growth.name = topic_name("third");
    growth.count = 21;
    let mut request = CreatePartitionsRequest::default();
    request.topics = vec![growth];
    request.timeout_ms = 10_000;
    let response: CreatePartitionsResponse = raw.call(ApiKey::CreatePartitions, 3, &request);
    assert_eq!(response.results[0].error_code, POLICY_VIOLATION);

    // A broker whose topics already exceed its limit refuses to start, and says why.
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let output = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["serve", "--listen", "127.0.0.1:0", "--partitions-max", "10"])
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .expect("run petrel");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("50 partitions") && stderr.contains("partitions-max"),
        "{stderr}"
    );
    drop(temp);
}

/// Runs `petrel serve` with `args` until it prints its first line or exits; returns that
/// line (or stderr) and whether it started.
fn try_start(
    args: &[&str],
    soft_nofile: Option<u64>,
) -> (bool, String, Option<std::process::Child>) {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_petrel"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2"])
        .arg("--data-dir")
        .arg(temp.path().join("data"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(soft) = soft_nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = soft;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("spawn petrel");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).expect("read");
    if first.starts_with("petrel listening on") {
        return (true, first, Some(child));
    }
    let output = child.wait_with_output().expect("wait");
    (
        false,
        String::from_utf8_lossy(&output.stderr).into_owned(),
        None,
    )
}

/// (soft, hard) "Max open files" of a running process.
fn nofile_of(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("nofile line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[test]
fn the_descriptor_limit_is_raised_and_the_budget_checked_at_start() {
    // Started with the common soft limit of 1024, the broker raises it to the hard limit
    // (which 4096 connections and the segment files need).
    let (started, said, child) = try_start(&[], Some(1024));
    assert!(started, "{said}");
    let mut child = child.expect("child");
    let (soft, hard) = nofile_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(soft, hard, "soft limit not raised");

    // More connections or segment files than any descriptor limit allows: a clear refusal.
    let huge = (1u64 << 40).to_string();
    for flag in ["--connections-max", "--open-files-max"] {
        let (started, said, _) = try_start(&[flag, &huge], None);
        assert!(!started);
        assert!(
            said.contains("ulimit -n") && said.contains("LimitNOFILE"),
            "{flag}: {said}"
        );
    }
    let (started, said, _) = try_start(&["--open-files-max", "8", "--partitions-max", "17"], None);
    assert!(!started);
    assert!(said.contains("invalid setting partitions-max"), "{said}");
}
