//! Consumer groups with librdkafka against the real broker: sharing partitions, failover
//! after a silent death, a member joining, resuming after a broker restart, and static
//! members rejoining without a rebalance.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

const FAST_GROUPS: [&str; 4] = [
    "--group-initial-rebalance-delay-ms",
    "300",
    "--group-min-session-timeout-ms",
    "1000",
];

fn create_topic(address: &str, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("admin");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for result in
        futures_lite::future::block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .expect("create")
    {
        result.expect("created");
    }
}

fn produce(address: &str, topic: &str, values: std::ops::Range<usize>, partitions: i32) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("producer");
    for index in values {
        let value = index.to_string();
        let partition = (index % partitions as usize) as i32;
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(&value),
            )
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Counts completed rebalances (assignments received).
struct Counting(Arc<AtomicUsize>);
impl ClientContext for Counting {}
impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn consumer(
    address: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> (BaseConsumer<Counting>, Arc<AtomicUsize>) {
    let rebalances = Arc::new(AtomicUsize::new(0));
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", address)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer<Counting> = config
        .create_with_context(Counting(rebalances.clone()))
        .expect("consumer");
    (consumer, rebalances)
}

fn value_of(message: &rdkafka::message::BorrowedMessage<'_>) -> usize {
    std::str::from_utf8(message.payload().expect("payload"))
        .unwrap()
        .parse()
        .unwrap()
}

/// Polls until `ready` holds or the deadline passes.
fn poll_until(consumers: &[&BaseConsumer<Counting>], within: Duration, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within {within:?}"
        );
        for consumer in consumers {
            if let Some(Err(error)) = consumer.poll(Duration::from_millis(50)) {
                panic!("consumer error: {error}");
            }
        }
    }
}

#[test]
fn three_consumers_share_a_topic_and_read_every_record_once() {
    let broker = Broker::start(&FAST_GROUPS);
    let address = broker.address.clone();
    create_topic(&address, "shared", 6);
    let members: Vec<_> = (0..3).map(|_| consumer(&address, "readers", &[])).collect();
    for (member, _) in &members {
        member.subscribe(&["shared"]).expect("subscribe");
    }
    let refs: Vec<&BaseConsumer<Counting>> = members.iter().map(|(c, _)| c).collect();
    poll_until(&refs, Duration::from_secs(30), || {
        refs.iter()
            .all(|c| c.assignment().map_or(0, |a| a.count()) == 2)
    });
    produce(&address, "shared", 0..6000, 6);
    let mut seen: Vec<Vec<usize>> = vec![Vec::new(); 3];
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.iter().map(Vec::len).sum::<usize>() < 6000 {
        assert!(
            Instant::now() < deadline,
            "only {} records",
            seen.iter().map(Vec::len).sum::<usize>()
        );
        for (index, member) in refs.iter().enumerate() {
            while let Some(message) = member.poll(Duration::from_millis(10)) {
                seen[index].push(value_of(&message.expect("message")));
            }
        }
    }
    for member in &refs {
        if member.assignment().map_or(0, |a| a.count()) > 0 {
            let _ = member.commit_consumer_state(CommitMode::Sync);
        }
    }
    let mut all = HashSet::new();
    for (index, values) in seen.iter().enumerate() {
        assert!(!values.is_empty(), "consumer {index} read nothing");
        for value in values {
            assert!(all.insert(*value), "record {value} read twice");
        }
    }
    assert_eq!(all.len(), 6000);
    assert!(all.iter().all(|v| *v < 6000));
}

#[test]
fn a_silent_consumer_is_replaced_within_its_session_timeout_without_rereading_commits() {
    let broker = Broker::start(&FAST_GROUPS);
    let address = broker.address.clone();
    create_topic(&address, "failover", 2);
    produce(&address, "failover", 0..400, 2);
    let session = [
        ("session.timeout.ms", "3000"),
        ("heartbeat.interval.ms", "500"),
    ];
    let (survivor, _) = consumer(&address, "failover-group", &session);
    survivor.subscribe(&["failover"]).expect("subscribe");
    poll_until(&[&survivor], Duration::from_secs(30), || {
        survivor.assignment().map_or(0, |a| a.count()) == 2
    });
    // A second member joins through a raw client: it is given one partition, commits up to
    // offset 100 in it, then falls silent as a killed process would (no heartbeat, no
    // LeaveGroup).
    let mut ghost = common::Raw::connect(&address);
    let (member_id, generation, ghost_partition) =
        raw_join_and_sync(&mut ghost, &survivor, "failover-group");
    raw_commit(
        &mut ghost,
        "failover-group",
        &member_id,
        generation,
        "failover",
        ghost_partition,
        100,
    );
    let silent_since = Instant::now();
    // The survivor must own both partitions again within the ghost's session timeout (3 s)
    // plus the rebalance, and must not re-read what the ghost committed.
    let mut from_ghost_partition = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the survivor never took over");
        if let Some(message) = survivor.poll(Duration::from_millis(50)) {
            let message = message.expect("message");
            if message.partition() == ghost_partition {
                from_ghost_partition.push(message.offset());
            }
        }
        if survivor.assignment().map_or(0, |a| a.count()) == 2
            && !from_ghost_partition.is_empty()
            && from_ghost_partition.len() >= 100
        {
            break;
        }
    }
    let took = silent_since.elapsed();
    assert!(took < Duration::from_secs(15), "took over after {took:?}");
    assert!(
        from_ghost_partition.iter().all(|offset| *offset >= 100),
        "a committed record was read again: {:?}",
        &from_ghost_partition[..5.min(from_ghost_partition.len())]
    );
}

/// Joins `group` as a raw member; drives the survivor meanwhile so it rejoins too and, as
/// leader, assigns. Returns (member id, generation, the one partition assigned).
fn raw_join_and_sync(
    raw: &mut common::Raw,
    survivor: &BaseConsumer<Counting>,
    group: &str,
) -> (String, i32, i32) {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = vec![StrBytes::from_static_str("failover")];
    let mut metadata = bytes::BytesMut::new();
    metadata.extend_from_slice(&0i16.to_be_bytes());
    subscription.encode(&mut metadata, 0).unwrap();
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = metadata.freeze();
    let mut join = JoinGroupRequest::default();
    join.group_id = GroupId(StrBytes::from_string(group.into()));
    join.session_timeout_ms = 3000;
    join.rebalance_timeout_ms = 10000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    join.protocols = vec![protocol];
    let first: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 5, &join);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED first");
    join.member_id = first.member_id.clone();
    let id = raw.send(ApiKey::JoinGroup, 5, &join);
    // The survivor must poll to rejoin; keep it busy until our join is answered.
    raw.stream.set_nonblocking(true).unwrap();
    let mut frame = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while frame.is_none() {
        assert!(Instant::now() < deadline, "join not answered");
        let _ = survivor.poll(Duration::from_millis(50));
        let mut peek = [0u8; 1];
        if raw.stream.peek(&mut peek).is_ok() {
            raw.stream.set_nonblocking(false).unwrap();
            frame = Some(raw.receive::<JoinGroupResponse>(ApiKey::JoinGroup, 5, id));
        }
    }
    let joined = frame.unwrap();
    assert_eq!(joined.error_code, 0);
    let member_id = joined.member_id.to_string();
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_string(group.into()));
    sync.generation_id = joined.generation_id;
    sync.member_id = joined.member_id.clone();
    if joined.leader == joined.member_id {
        panic!("the survivor joined first and must lead");
    }
    let id = raw.send(ApiKey::SyncGroup, 3, &sync);
    raw.stream.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "sync not answered");
        let _ = survivor.poll(Duration::from_millis(50));
        let mut peek = [0u8; 1];
        if raw.stream.peek(&mut peek).is_ok() {
            break;
        }
    }
    raw.stream.set_nonblocking(false).unwrap();
    let synced: SyncGroupResponse = raw.receive(ApiKey::SyncGroup, 3, id);
    assert_eq!(synced.error_code, 0);
    let mut assignment = synced.assignment.clone();
    let version = bytes::Buf::get_i16(&mut assignment);
    let decoded = <ConsumerProtocolAssignment as kafka_protocol::protocol::Decodable>::decode(
        &mut assignment,
        version,
    )
    .expect("assignment");
    let partitions: Vec<i32> = decoded
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.clone())
        .collect();
    assert_eq!(partitions.len(), 1, "two members share two partitions");
    (member_id, joined.generation_id, partitions[0])
}

fn raw_commit(
    raw: &mut common::Raw,
    group: &str,
    member_id: &str,
    generation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let mut committed = OffsetCommitRequestPartition::default();
    committed.partition_index = partition;
    committed.committed_offset = offset;
    let mut topic_entry = OffsetCommitRequestTopic::default();
    topic_entry.name = TopicName(StrBytes::from_string(topic.into()));
    topic_entry.partitions = vec![committed];
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.into()));
    request.generation_id_or_member_epoch = generation;
    request.member_id = StrBytes::from_string(member_id.into());
    request.topics = vec![topic_entry];
    let response: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 8, &request);
    assert_eq!(
        response.topics[0].partitions[0].error_code, 0,
        "commit accepted"
    );
}

#[test]
fn a_new_member_takes_partitions_without_losing_records() {
    let broker = Broker::start(&FAST_GROUPS);
    let address = broker.address.clone();
    create_topic(&address, "growing", 4);
    produce(&address, "growing", 0..2000, 4);
    let (first, _) = consumer(
        &address,
        "growers",
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "100"),
        ],
    );
    first.subscribe(&["growing"]).expect("subscribe");
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 500 {
        assert!(Instant::now() < deadline);
        if let Some(message) = first.poll(Duration::from_millis(50)) {
            seen.insert(value_of(&message.expect("message")));
        }
    }
    let (second, second_rebalances) = consumer(
        &address,
        "growers",
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "100"),
        ],
    );
    second.subscribe(&["growing"]).expect("subscribe");
    produce(&address, "growing", 2000..3000, 4);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 3000 {
        assert!(
            Instant::now() < deadline,
            "lost records: {} of 3000 seen",
            seen.len()
        );
        for member in [&first, &second] {
            if let Some(message) = member.poll(Duration::from_millis(20)) {
                seen.insert(value_of(&message.expect("message")));
            }
        }
    }
    assert!(
        second_rebalances.load(Ordering::Relaxed) >= 1,
        "the new member was assigned partitions"
    );
    assert!(second.assignment().map_or(0, |a| a.count()) > 0);
    assert!(first.assignment().map_or(0, |a| a.count()) > 0);
}

#[test]
fn after_a_broker_restart_the_group_resumes_from_its_commits() {
    let broker = Broker::start(&FAST_GROUPS);
    let address = broker.address.clone();
    create_topic(&address, "resume", 1);
    produce(&address, "resume", 0..100, 1);
    {
        let (reader, _) = consumer(&address, "resumers", &[]);
        reader.subscribe(&["resume"]).expect("subscribe");
        let mut read = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while read < 60 {
            assert!(Instant::now() < deadline);
            if let Some(message) = reader.poll(Duration::from_millis(50)) {
                let message = message.expect("message");
                read += 1;
                if read == 60 {
                    reader
                        .commit_message(&message, CommitMode::Sync)
                        .expect("commit");
                }
            }
        }
        let mut committed = TopicPartitionList::new();
        committed.add_partition("resume", 0);
        let answer = reader
            .committed_offsets(committed, Duration::from_secs(10))
            .expect("offset fetch");
        assert_eq!(
            answer.find_partition("resume", 0).unwrap().offset(),
            Offset::Offset(60)
        );
    }
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let broker = Broker::start_in(&data_dir, &FAST_GROUPS);
    let (reader, _) = consumer(&broker.address, "resumers", &[]);
    reader.subscribe(&["resume"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        assert!(Instant::now() < deadline, "nothing read after restart");
        if let Some(message) = reader.poll(Duration::from_millis(50)) {
            break value_of(&message.expect("message"));
        }
    };
    assert_eq!(first, 60, "resumed from the committed offset");
    drop(reader);
    drop(broker);
    drop(temp);
}

#[test]
fn a_static_member_restarts_without_a_rebalance() {
    let broker = Broker::start(&FAST_GROUPS);
    let address = broker.address.clone();
    create_topic(&address, "statics", 2);
    let settings = |instance: &'static str| {
        vec![
            ("group.instance.id", instance),
            ("session.timeout.ms", "10000"),
        ]
    };
    let (stays, stays_rebalances) = consumer(&address, "static-group", &settings("stays"));
    let (restarts, _) = consumer(&address, "static-group", &settings("restarts"));
    stays.subscribe(&["statics"]).unwrap();
    restarts.subscribe(&["statics"]).unwrap();
    poll_until(&[&stays, &restarts], Duration::from_secs(30), || {
        stays.assignment().map_or(0, |a| a.count()) == 1
            && restarts.assignment().map_or(0, |a| a.count()) == 1
    });
    let before = stays_rebalances.load(Ordering::Relaxed);
    // A static member's close sends no LeaveGroup; its replacement rejoins at once.
    drop(restarts);
    let (restarted, _) = consumer(&address, "static-group", &settings("restarts"));
    restarted.subscribe(&["statics"]).unwrap();
    poll_until(&[&stays, &restarted], Duration::from_secs(30), || {
        restarted.assignment().map_or(0, |a| a.count()) == 1
    });
    // Give a rebalance, if one were coming, time to reach the other member.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        let _ = stays.poll(Duration::from_millis(50));
        let _ = restarted.poll(Duration::from_millis(50));
    }
    assert_eq!(
        stays_rebalances.load(Ordering::Relaxed),
        before,
        "the other member was not rebalanced"
    );
    assert_eq!(stays.assignment().map_or(0, |a| a.count()), 1);
}

/// JoinGroups the broker refuses (here a session timeout below the minimum) create no
/// group: a client cannot fill the coordinator with groups by sending them.
#[test]
fn refused_joins_create_no_groups() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    const JOINS: usize = 1_000;
    let broker = Broker::start(&[]);
    let mut raw = common::Raw::connect(&broker.address);
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    let mut join = JoinGroupRequest::default();
    join.session_timeout_ms = 1;
    join.rebalance_timeout_ms = 1_000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    join.protocols = vec![protocol];
    // Pipelined in windows well under the broker's in-flight limit.
    for window in (0..JOINS).collect::<Vec<_>>().chunks(100) {
        let sent: Vec<i32> = window
            .iter()
            .map(|index| {
                join.group_id = GroupId(StrBytes::from_string(format!("refused-{index}")));
                raw.send(ApiKey::JoinGroup, 5, &join)
            })
            .collect();
        for id in sent {
            let answer: JoinGroupResponse = raw.receive(ApiKey::JoinGroup, 5, id);
            assert_eq!(answer.error_code, 26, "INVALID_SESSION_TIMEOUT");
        }
    }
    let listed: ListGroupsResponse = raw.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert_eq!(listed.error_code, 0);
    assert!(
        listed.groups.is_empty(),
        "{} groups listed, e.g. {:?}",
        listed.groups.len(),
        listed.groups.first().map(|g| g.group_id.to_string())
    );
}
