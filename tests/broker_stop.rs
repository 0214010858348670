//! Stopping: SIGTERM answers a waiting long poll at once, and a fetch whose partitions live
//! on several shards does not hold the stop (a shard that stopped first used to leave a
//! draining shard's read on it unanswered, so the stop waited out the 10 s drain timeout,
//! as a Java consumer group's fetches did).

mod common;

use common::{create_topic, topic_name, Broker, Raw};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};

#[test]
fn sigterm_answers_a_waiting_long_poll_and_nothing_waits_out_the_drain() {
    let mut broker = Broker::start_logged(&[]);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "polled", 4).topics[0].error_code, 0);
    // Every partition (on both shards) at its end: nothing to read, so the fetch waits up
    // to a minute, longer than the client's 20 s read timeout.
    let mut topic = FetchTopic::default();
    topic.topic = topic_name("polled");
    topic.partitions = (0..4)
        .map(|index| {
            let mut partition = FetchPartition::default();
            partition.partition = index;
            partition.partition_max_bytes = 1 << 20;
            partition
        })
        .collect();
    let mut request = FetchRequest::default();
    request.max_wait_ms = 60_000;
    request.min_bytes = 1;
    request.max_bytes = 4 << 20;
    request.topics = vec![topic];
    let id = raw.send(ApiKey::Fetch, 12, &request);
    std::thread::sleep(std::time::Duration::from_millis(300));

    broker.signal(libc::SIGTERM);
    let answer: FetchResponse = raw.receive(ApiKey::Fetch, 12, id);
    let partitions = &answer.responses[0].partitions;
    assert_eq!(partitions.len(), 4);
    assert!(partitions
        .iter()
        .all(|p| p.error_code == 0 && p.records.as_ref().is_none_or(|r| r.is_empty())));
    let status = broker.child.wait().expect("wait");
    assert!(status.success(), "exit {status}");
    let log = broker.log();
    assert!(
        !log.contains("connections still busy at the end of the drain"),
        "a connection held the stop:\n{log}"
    );
}
