//! The metrics seam on a real broker: each shard counts its own requests and appends
//! (`runtime::metrics`, no locks, no cross-core traffic), and a gather merges them.

mod common;

use bytes::Bytes;
use clap::Parser;
use petrel::server::measure::{REQUESTS, REQUEST_DURATION};
use petrel::shard::partition::{PRODUCE_BYTES, PRODUCE_RECORDS};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: petrel::config::ServeArgs,
}

#[test]
fn produce_is_counted_on_the_owning_shards_and_gathered_whole() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let cli = Cli::parse_from([
        "petrel",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
    ]);
    let config = cli
        .settings
        .resolve(
            petrel::runtime::executor::allowed_cpus(),
            petrel::config::raise_fd_limit().expect("fd limit"),
        )
        .expect("config");
    let broker = petrel::broker::start(config, None).expect("broker starts");
    let mut raw = common::Raw::connect(&broker.listen.to_string());
    let created = common::create_topic(&mut raw, "metered", 4);
    assert_eq!(created.topics[0].error_code, 0);

    // Four partitions over two shards, three records each, in two produce requests.
    let batch = |n: u8| Bytes::from(petrel::record_batch::build_batch(&[&[n], &[n], &[n]], 1));
    let batches: Vec<(i32, Bytes)> = (0..4).map(|p| (p, batch(p as u8))).collect();
    let bytes: u64 = batches.iter().map(|(_, b)| b.len() as u64).sum();
    for half in batches.chunks(2) {
        let answer = common::produce(&mut raw, "metered", half.to_vec(), -1);
        for partition in &answer.responses[0].partition_responses {
            assert_eq!(partition.error_code, 0);
        }
    }

    let gathered = broker.gather_metrics();
    assert_eq!(
        gathered.counter(PRODUCE_RECORDS, &[("topic", "metered")]),
        12
    );
    assert_eq!(
        gathered.counter(PRODUCE_BYTES, &[("topic", "metered")]),
        bytes
    );
    assert_eq!(gathered.counter(REQUESTS, &[("api", "Produce")]), 2);
    assert_eq!(gathered.counter(REQUESTS, &[("api", "CreateTopics")]), 1);
    let durations = gathered
        .histogram(REQUEST_DURATION, &[("api", "Produce")])
        .expect("produce durations recorded");
    assert_eq!(durations.len(), 2, "one duration per request");
    broker.stop();
}
