//! Faults against a 3-broker cluster while an idempotent acks=all producer writes to a
//! replicated topic (RF 3, min.insync.replicas 2) and a consumer group member reads it
//! (committing every second). Each cycle injects one fault: SIGKILL of a broker, SIGKILL of
//! the leader of partition 0, SIGKILL of the group's coordinator, SIGSTOP past the broker
//! session then SIGCONT, a graceful stop, or a network partition of the leader of
//! partition 0 from the quorum (every quorum link to and from it blackholed by in-test
//! proxies past its session, then healed, while its process keeps running and serving);
//! the broker comes back and the cycle ends once
//! every partition has its three in-sync replicas again. Afterwards every acknowledged
//! record must be read back exactly once, in order per partition; the group member must
//! have read every acknowledged record too (it keeps consuming through coordinator
//! failovers), and every record it read must be the one the log finally holds at that
//! offset (no consumer sees an offset that later disappears).
//!
//! `cargo test --test cluster_chaos` runs 6 cycles (one of each fault), on a plaintext
//! cluster and on a secure one (clients on SASL_SSL, node links on mTLS, ACLs on). For a long run:
//! `CHAOS_CYCLES=300 cargo test --release --test cluster_chaos -- --nocapture`, which
//! prints cycles, records acknowledged, lost, duplicated, and the longest produce
//! unavailability per fault.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{coordinator_of, create_topic_with, eventually, isrs, Cluster};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

const TOPIC: &str = "chaos";
const GROUP: &str = "chaos-group";
const PARTITIONS: i32 = 6;
/// Records per second the producer offers, and the most it sends in one run.
const RATE: u64 = 1000;
const RECORDS_MAX: u64 = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillBroker,
    KillLeader,
    KillCoordinator,
    PausePastSession,
    GracefulStop,
    CutLeaderFromQuorum,
}

const FAULTS: [Fault; 6] = [
    Fault::KillBroker,
    Fault::KillLeader,
    Fault::KillCoordinator,
    Fault::PausePastSession,
    Fault::GracefulStop,
    Fault::CutLeaderFromQuorum,
];

/// Acknowledgements as they arrive: record index and when.
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<(u64, Instant)>>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Self::DeliveryOpaque) {
        if result.is_ok() {
            self.0.lock().expect("acks").push((*index, Instant::now()));
        }
    }
}

fn cycles() -> usize {
    std::env::var("CHAOS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FAULTS.len())
}

/// The two runs share the machine's cores: one at a time.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How the test's clients connect: through which listener, with which librdkafka settings.
#[derive(Clone, Default)]
struct Clients {
    /// The listener they bootstrap from (None: each node's first).
    listener: Option<&'static str>,
    settings: Vec<(String, String)>,
}

impl Clients {
    fn config(&self, bootstrap: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config
    }

    fn bootstrap(&self, cluster: &Cluster) -> String {
        let Some(name) = self.listener else {
            return cluster.bootstrap();
        };
        cluster
            .nodes
            .iter()
            .filter(|node| node.child.is_some())
            .filter_map(|node| node.listeners.iter().find(|(listener, _)| listener == name))
            .map(|(_, address)| address.clone())
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[test]
fn acknowledged_records_survive_every_fault() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    survive_every_fault(&[], &Clients::default());
}

/// The same on a secure cluster: clients on SASL_SSL (SCRAM-SHA-512, a super user made at
/// format time), replica fetches over the SSL inter-broker listener and the quorum links on
/// mTLS with the nodes' certificate, and an authorizer on. The test's own PLAINTEXT
/// listener (ISRs, coordinators) is served as a super user too, `User:ANONYMOUS` here.
#[test]
fn acknowledged_records_survive_every_fault_on_a_secure_cluster() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = common::dev_certs(&temp.path().join("certs"), "");
    let path = |file: &str| certs.join(file).to_str().expect("UTF-8").to_string();
    let (certificate, key, ca) = (path("server.pem"), path("server-key.pem"), path("ca.pem"));
    let clients = Clients {
        listener: Some("SASL_SSL"),
        settings: [
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", ca.as_str()),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "chaos"),
            ("sasl.password", "chaos-secret"),
        ]
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect(),
    };
    let extra = [
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "--inter-broker-listener-name",
        "SSL",
        "--controller-security-protocol",
        "SSL",
        "--ssl-certificate-location",
        &certificate,
        "--ssl-key-location",
        &key,
        "--ssl-truststore-location",
        &ca,
        "--ssl-client-auth",
        "requested",
        "--ssl-principal-mapping-rules",
        "RULE:^CN=([a-z0-9-]+)$/$1/,DEFAULT",
        "--authorizer",
        "standard",
        "--super-users",
        "User:petrel;User:chaos;User:ANONYMOUS",
    ];
    let users = [
        "--add-scram",
        "SCRAM-SHA-512=[name=chaos,password=chaos-secret]",
    ];
    let cluster = Cluster::start_with_links_formatted(3, &extra, &users);
    survive_every_fault_on(cluster, &clients);
}

fn survive_every_fault(extra: &[&str], clients: &Clients) {
    survive_every_fault_on(Cluster::start_with_links(3, extra), clients);
}

fn survive_every_fault_on(mut cluster: Cluster, clients: &Clients) {
    let cycles = cycles();
    create_topic_with(
        &cluster.nodes[0].address,
        TOPIC,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );
    let watcher_index = std::cell::Cell::new(0usize);
    let healthy = |cluster: &Cluster, watcher: usize| {
        let seen = isrs(&cluster.nodes[watcher].address, TOPIC);
        seen.len() == PARTITIONS as usize
            && seen
                .iter()
                .all(|(leader, isr)| *leader > 0 && isr.len() == 3)
    };
    eventually("the topic is fully replicated", || healthy(&cluster, 0));

    let acks = Acks::default();
    let stop = Arc::new(AtomicBool::new(false));
    let bootstrap = clients.bootstrap(&cluster);
    let producer_thread = {
        let (acks, stop, clients) = (acks.clone(), stop.clone(), clients.clone());
        std::thread::spawn(move || {
            let producer: ThreadedProducer<Acks> = clients
                .config(&bootstrap)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "5")
                .create_with_context(acks)
                .expect("producer");
            let started = Instant::now();
            let mut index = 0u64;
            while !stop.load(Ordering::Relaxed) && index < RECORDS_MAX {
                let due = started + Duration::from_micros(index * 1_000_000 / RATE);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let key = format!("k{index}");
                let value = format!("v{index}");
                let mut record = BaseRecord::with_opaque_to(TOPIC, Box::new(index))
                    .key(&key)
                    .payload(&value);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, returned)) => {
                            record = returned;
                            producer.poll(Duration::from_millis(10));
                        }
                    }
                }
                index += 1;
            }
            producer.flush(Duration::from_secs(120)).expect("flush");
            index
        })
    };

    // A group member reading as the faults happen: (partition, offset, record index).
    let live: Arc<Mutex<Vec<(i32, i64, u64)>>> = Arc::default();
    let stop_member = Arc::new(AtomicBool::new(false));
    let member_thread = {
        let (live, stop_member, bootstrap, clients) = (
            live.clone(),
            stop_member.clone(),
            clients.bootstrap(&cluster),
            clients.clone(),
        );
        std::thread::spawn(move || {
            let consumer: BaseConsumer = clients
                .config(&bootstrap)
                .set("group.id", GROUP)
                .set("auto.offset.reset", "earliest")
                .set("auto.commit.interval.ms", "1000")
                .create()
                .expect("group member");
            consumer.subscribe(&[TOPIC]).expect("subscribe");
            while !stop_member.load(Ordering::Relaxed) {
                // Errors (a dead broker's connection) are reported here too; not records.
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    let index = record_index(message.payload().unwrap_or_default());
                    live.lock()
                        .expect("live")
                        .push((message.partition(), message.offset(), index));
                }
            }
        })
    };

    let mut unavailable: BTreeMap<Fault, Duration> = BTreeMap::new();
    for cycle in 0..cycles {
        let fault = FAULTS[cycle % FAULTS.len()];
        let victim = match fault {
            Fault::KillLeader | Fault::CutLeaderFromQuorum => {
                let leader = isrs(&cluster.nodes[watcher_index.get()].address, TOPIC)[0].0;
                cluster
                    .nodes
                    .iter()
                    .position(|n| n.id == leader)
                    .expect("leader")
            }
            Fault::KillCoordinator => {
                let watcher = &cluster.nodes[watcher_index.get()].address;
                let mut coordinator = -1;
                eventually("the group has a coordinator", || {
                    coordinator = coordinator_of(watcher, GROUP);
                    coordinator > 0
                });
                cluster
                    .nodes
                    .iter()
                    .position(|n| n.id == coordinator)
                    .expect("coordinator")
            }
            _ => cycle % 3,
        };
        let watcher = (victim + 1) % 3;
        watcher_index.set(watcher);
        let window_start = Instant::now();
        match fault {
            Fault::KillBroker | Fault::KillLeader | Fault::KillCoordinator => {
                cluster.kill(victim);
                std::thread::sleep(Duration::from_secs(3));
                cluster.restart(victim);
            }
            Fault::PausePastSession => {
                cluster.pause(victim);
                std::thread::sleep(Duration::from_secs(3));
                cluster.resume(victim);
            }
            Fault::GracefulStop => {
                cluster.stop(victim);
                std::thread::sleep(Duration::from_secs(1));
                cluster.restart(victim);
            }
            Fault::CutLeaderFromQuorum => {
                cluster.cut_quorum_links(victim);
                std::thread::sleep(Duration::from_secs(3));
                cluster.heal_quorum_links(victim);
            }
        }
        eventually("every partition is fully replicated again", || {
            healthy(&cluster, watcher)
        });
        // Let the producer show it is back before the next fault.
        std::thread::sleep(Duration::from_millis(500));
        let gap = longest_gap(&acks, window_start);
        let worst = unavailable.entry(fault).or_default();
        *worst = (*worst).max(gap);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = producer_thread.join().expect("producer thread");
    let acknowledged: HashMap<u64, Instant> =
        acks.0.lock().expect("acks").iter().copied().collect();

    let (seen, at, duplicated, disordered) =
        consume_all(clients, &clients.bootstrap(&cluster), &acknowledged);
    let lost = acknowledged
        .keys()
        .filter(|index| !seen.contains_key(index))
        .count();

    // The group member catches up with everything acknowledged, then stops.
    let deadline = Instant::now() + Duration::from_secs(120);
    let member_missed = loop {
        let read: HashSet<u64> = live.lock().expect("live").iter().map(|r| r.2).collect();
        let missed = acknowledged.keys().filter(|i| !read.contains(i)).count();
        if missed == 0 || Instant::now() > deadline {
            break missed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    stop_member.store(true, Ordering::Relaxed);
    member_thread.join().expect("group member thread");
    let live = live.lock().expect("live").clone();
    let vanished = live
        .iter()
        .filter(|(partition, offset, index)| at.get(&(*partition, *offset)) != Some(index))
        .count();
    let distinct: HashSet<u64> = live.iter().map(|r| r.2).collect();
    println!(
        "chaos: the group member read {} records ({} distinct; again after rebalances: {}), missed {member_missed}, read {vanished} that the log no longer holds",
        live.len(),
        distinct.len(),
        live.len() - distinct.len()
    );
    println!(
        "chaos: {cycles} cycles, {sent} records sent, {} acknowledged, {lost} lost, {duplicated} duplicated, {disordered} out of order",
        acknowledged.len()
    );
    for (fault, gap) in &unavailable {
        println!(
            "chaos: longest produce unavailability after {fault:?}: {} ms",
            gap.as_millis()
        );
    }
    assert_eq!(lost, 0, "acknowledged records lost");
    assert_eq!(duplicated, 0, "records read twice");
    assert_eq!(disordered, 0, "records out of order within a partition");
    assert_eq!(
        member_missed, 0,
        "the group member missed acknowledged records"
    );
    assert_eq!(
        vanished, 0,
        "the group member read records the log no longer holds"
    );
    assert!(
        acknowledged.len() as u64 * 10 >= sent * 9,
        "most records are acknowledged"
    );
}

/// The longest time between consecutive acknowledgements since `from`.
fn longest_gap(acks: &Acks, from: Instant) -> Duration {
    let times: Vec<Instant> = {
        let acks = acks.0.lock().expect("acks");
        let mut times: Vec<Instant> = acks
            .iter()
            .map(|(_, at)| *at)
            .filter(|at| *at >= from)
            .collect();
        times.sort_unstable();
        times
    };
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for at in times {
        longest = longest.max(at.duration_since(previous));
        previous = at;
    }
    longest
}

fn record_index(value: &[u8]) -> u64 {
    let value = String::from_utf8_lossy(value);
    value.trim_start_matches('v').parse().expect("index")
}

/// What the log finally holds: every record (partition, offset) -> index.
type Contents = HashMap<(i32, i64), u64>;

/// Reads the topic from the start until every acknowledged record was seen and every
/// partition up to its end (or 120 s): records seen (index -> partition), the contents,
/// duplicates, and records out of order in a partition.
fn consume_all(
    clients: &Clients,
    bootstrap: &str,
    acknowledged: &HashMap<u64, Instant>,
) -> (HashMap<u64, i32>, Contents, usize, usize) {
    let consumer: BaseConsumer = clients
        .config(bootstrap)
        .set("group.id", "chaos-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let ends: HashMap<i32, i64> = (0..PARTITIONS)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(TOPIC, partition, Duration::from_secs(30))
                .expect("watermarks");
            (partition, high)
        })
        .collect();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut at = Contents::new();
    let mut seen: HashMap<u64, i32> = HashMap::new();
    let mut last: HashMap<i32, u64> = HashMap::new();
    let (mut duplicated, mut disordered) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_end = |next: &HashMap<i32, i64>| {
        ends.iter()
            .all(|(partition, end)| next.get(partition).copied().unwrap_or(0) >= *end)
    };
    while (acknowledged.keys().any(|index| !seen.contains_key(index)) || !at_end(&next))
        && Instant::now() < deadline
    {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let index = record_index(message.payload().unwrap_or_default());
            at.insert((message.partition(), message.offset()), index);
            next.insert(message.partition(), message.offset() + 1);
            if seen.insert(index, message.partition()).is_some() {
                duplicated += 1;
            }
            if last
                .get(&message.partition())
                .is_some_and(|&previous| index < previous)
            {
                disordered += 1;
            }
            last.insert(message.partition(), index);
        }
    }
    (seen, at, duplicated, disordered)
}
