//! Storage faults against the real broker (`--inject-faults`, see `storage::faults`): a
//! partition whose writes fail with ENOSPC answers KAFKA_STORAGE_ERROR, the broker and its
//! other partitions keep working, the partition takes appends again once writes succeed
//! (the shard reopens failed logs), and every acknowledged batch is still there, byte for
//! byte.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;

use common::{api_versions_ok, create_topic, produce_one, topic_name, Broker, Raw};

const KAFKA_STORAGE_ERROR: i16 = 56;

/// Every stored batch of partition 0 from `offset`, by base offset.
fn fetch_all(raw: &mut Raw, topic: &str) -> BTreeMap<i64, Bytes> {
    let mut stored = BTreeMap::new();
    let mut offset = 0;
    loop {
        let mut partition = FetchPartition::default();
        partition.partition = 0;
        partition.fetch_offset = offset;
        partition.partition_max_bytes = 1 << 20;
        let mut fetch_topic = FetchTopic::default();
        fetch_topic.topic = topic_name(topic);
        fetch_topic.partitions = vec![partition];
        let mut request = FetchRequest::default();
        request.max_wait_ms = 0;
        request.max_bytes = 4 << 20;
        request.topics = vec![fetch_topic];
        let response: FetchResponse = raw.call(ApiKey::Fetch, 12, &request);
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "fetch at {offset}");
        let mut records = data.records.clone().unwrap_or_default();
        if records.is_empty() {
            return stored;
        }
        while records.len() >= 12 {
            let base = i64::from_be_bytes(records[0..8].try_into().expect("8 bytes"));
            let length = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
            let total = 12 + usize::try_from(length).expect("length");
            let batch = records.split_to(total);
            let last_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
            offset = base + i64::from(last_delta) + 1;
            stored.insert(base, batch);
        }
    }
}

#[test]
fn a_full_disk_fails_only_its_partition_and_heals_without_losing_acknowledged_batches() {
    // The first 20 writes of `faulty-0` succeed, the next 3 fail with ENOSPC (each one
    // fails the log; the shard reopens it about a second later), then writes succeed again.
    let mut broker = Broker::start(&[
        "--inject-faults",
        "write:enospc:skip=20:count=3:path=faulty-0",
    ]);
    let mut raw = Raw::connect(&broker.address);
    for name in ["faulty", "healthy"] {
        assert_eq!(create_topic(&mut raw, name, 1).topics[0].error_code, 0);
    }

    let mut acknowledged: BTreeMap<i64, Bytes> = BTreeMap::new();
    let (mut storage_errors, mut successes_after_error) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..2_000i64 {
        let value = format!("batch {n:05} {}", "x".repeat(200));
        let batch = Bytes::from(petrel::record_batch::build_batch(
            &[value.as_bytes()],
            1_000 + n,
        ));
        let (code, base_offset) = produce_one(&mut raw, "faulty", batch.clone());
        match code {
            0 => {
                acknowledged.insert(base_offset, batch);
                if storage_errors > 0 {
                    successes_after_error += 1;
                }
            }
            KAFKA_STORAGE_ERROR => {
                storage_errors += 1;
                // Other partitions are unaffected meanwhile.
                let healthy = Bytes::from(petrel::record_batch::build_batch(&[b"ok"], n));
                assert_eq!(produce_one(&mut raw, "healthy", healthy).0, 0);
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("batch {n}: unexpected error {other}"),
        }
        if successes_after_error >= 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the partition did not heal: {storage_errors} errors"
        );
    }
    assert!(
        storage_errors > 0,
        "the injected ENOSPC must reach the producer"
    );
    assert!(
        successes_after_error >= 30,
        "appends must work again without a restart"
    );
    assert!(broker.is_running() && api_versions_ok(&broker.address));

    let check = |stored: &BTreeMap<i64, Bytes>| {
        let lost: Vec<i64> = acknowledged
            .iter()
            .filter(|(base, sent)| {
                stored
                    .get(base)
                    .is_none_or(|batch| batch.len() != sent.len() || batch[16..] != sent[16..])
            })
            .map(|(base, _)| *base)
            .collect();
        assert!(lost.is_empty(), "acknowledged batches lost: {lost:?}");
    };
    check(&fetch_all(&mut raw, "faulty"));
    // And after a restart (the recovery scan again, without faults).
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let broker = Broker::start_in(&data_dir, &[]);
    let mut raw = Raw::connect(&broker.address);
    check(&fetch_all(&mut raw, "faulty"));
    println!(
        "faults: {storage_errors} produce requests answered KAFKA_STORAGE_ERROR, {} batches \
         acknowledged and checked twice, lost: 0",
        acknowledged.len()
    );
    drop(temp);
}
