//! A cluster with security on: quorum links over mTLS (`--controller-security-protocol
//! SSL`), replica fetches over an SSL inter-broker listener, `--authorizer standard` with
//! the nodes' principal (`User:petrel`, from their certificate) and `User:admin` as super
//! users. Replication works (acks=all over SSL); then, as outsiders would: a process that
//! knows the cluster id but has no node certificate, and one with a client certificate of
//! the same CA, each connect to a voter's quorum port and send a hello and a Raft message
//! with a far higher term; a client without CLUSTER_ACTION, and a super user naming a stale
//! registration epoch (KIP-903), send follower fetches. Nothing changes (the partition's
//! leader, leader epoch, ISR and high watermark; the control plane keeps answering), and
//! each is refused with a log line that names the peer. Its first user comes from `petrel
//! format --add-scram` on every node, applied once through the quorum. ACLs set on one node
//! are enforced by every node and listed alike by each after all of them restarted.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::cluster::{eventually, Cluster};
use common::sasl::scram_login;
use common::{dev_certs, produce_one, tls_client_config, topic_name, Raw};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
};
use petrel::security::scram::ScramMechanism;
use raft::eraftpb::{Message, MessageType};

const TOPIC: &str = "guarded";
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const STALE_BROKER_EPOCH: i16 = 77;

struct Secure {
    cluster: Cluster,
    certs: PathBuf,
}

fn start(temp: &Path) -> Secure {
    let certs = dev_certs(&temp.join("certs"), "admin,mallory");
    let path = |file: &str| certs.join(file).to_str().expect("utf-8").to_string();
    let extra = [
        "--listeners".to_string(),
        "SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0".into(),
        "--ssl-certificate-location".into(),
        path("server.pem"),
        "--ssl-key-location".into(),
        path("server-key.pem"),
        "--ssl-truststore-location".into(),
        path("ca.pem"),
        "--ssl-client-auth".into(),
        "requested".into(),
        "--ssl-principal-mapping-rules".into(),
        "RULE:^CN=([a-z0-9-]+)$/$1/,DEFAULT".into(),
        "--controller-security-protocol".into(),
        "SSL".into(),
        "--authorizer".into(),
        "standard".into(),
        "--super-users".into(),
        "User:petrel;User:admin".into(),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    Secure {
        cluster: Cluster::start_logged(
            3,
            &extra,
            &[
                "--add-scram",
                "SCRAM-SHA-256=[name=admin,password=admin-secret]",
            ],
        ),
        certs,
    }
}

impl Secure {
    fn ssl_address(&self, index: usize) -> String {
        self.cluster.nodes[index]
            .listeners
            .iter()
            .find(|(name, _)| name == "SSL")
            .map(|(_, address)| address.clone())
            .expect("an SSL listener")
    }

    /// A Kafka connection to node `index`'s SSL listener as client `who` (mTLS).
    fn client(&self, index: usize, who: &str) -> Raw {
        let certificate = self.certs.join(format!("client-{who}.pem"));
        let key = self.certs.join(format!("client-{who}-key.pem"));
        let config = tls_client_config(&self.certs.join("ca.pem"), Some((&certificate, &key)));
        Raw::connect_tls(&self.ssl_address(index), config).expect("TLS to the SSL listener")
    }

    /// A SASL connection to node `index` as the bootstrap user admin.
    fn sasl_admin(&self, index: usize) -> Result<Raw, i16> {
        let address = self.cluster.nodes[index]
            .listeners
            .iter()
            .find(|(name, _)| name == "SASL_PLAINTEXT")
            .map(|(_, address)| address.clone())
            .expect("a SASL_PLAINTEXT listener");
        let mut raw = Raw::connect(&address);
        scram_login(&mut raw, ScramMechanism::Sha256, "admin", "admin-secret").map(|()| raw)
    }

    /// The node index of a node id.
    fn index_of(&self, id: i32) -> usize {
        self.cluster
            .nodes
            .iter()
            .position(|node| node.id == id)
            .expect("a node of the cluster")
    }
}

/// The topic's partition 0: (leader, leader epoch, ISR, topic id).
fn partition_state(raw: &mut Raw) -> Option<(i32, i32, Vec<i32>, uuid::Uuid)> {
    let mut request = MetadataRequest::default();
    request.topics = None;
    let response: MetadataResponse = raw.call(ApiKey::Metadata, 12, &request);
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC))?;
    let partition = topic.partitions.first()?;
    let mut isr: Vec<i32> = partition.isr_nodes.iter().map(|b| b.0).collect();
    isr.sort_unstable();
    Some((
        partition.leader_id.0,
        partition.leader_epoch,
        isr,
        topic.topic_id,
    ))
}

fn high_watermark(raw: &mut Raw) -> (i16, i64) {
    let mut partition = ListOffsetsPartition::default();
    partition.timestamp = -1;
    let mut topic = ListOffsetsTopic::default();
    topic.name = topic_name(TOPIC);
    topic.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![topic];
    let response: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 7, &request);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset)
}

fn create_topic(raw: &mut Raw, name: &str) -> i16 {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(name);
    topic.num_partitions = 1;
    topic.replication_factor = 3;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    let response: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 7, &request);
    response.topics[0].error_code
}

/// A follower's Fetch v15 of partition 0 from offset 0, as replica `replica` at
/// registration epoch `epoch`: the partition's error code.
fn follower_fetch(raw: &mut Raw, topic_id: uuid::Uuid, replica: i32, epoch: i64) -> i16 {
    let mut partition = FetchPartition::default();
    partition.fetch_offset = 1;
    partition.current_leader_epoch = -1;
    partition.last_fetched_epoch = -1;
    partition.partition_max_bytes = 1 << 20;
    let mut topic = FetchTopic::default();
    topic.topic_id = topic_id;
    topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.replica_state.replica_id = BrokerId(replica);
    request.replica_state.replica_epoch = epoch;
    request.max_wait_ms = 0;
    request.max_bytes = 1 << 20;
    request.session_epoch = -1;
    request.topics = vec![topic];
    let response: FetchResponse = raw.call(ApiKey::Fetch, 15, &request);
    response.responses[0].partitions[0].error_code
}

/// The quorum protocol's frames: `[u32 length][u8 kind][payload]`; kind 0 a hello, 1 a Raft
/// message.
fn quorum_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32(payload.len() as u32 + 1);
    out.put_u8(kind);
    out.put_slice(payload);
    out.to_vec()
}

/// What an outsider sends a voter: a hello in the name of node `as_node` of the cluster,
/// then a heartbeat from it with a term far above the quorum's.
fn forged_frames(as_node: u64, to: u64) -> Vec<u8> {
    let hello = format!(r#"{{"cluster_id":"petrel-test","node_id":{as_node}}}"#);
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = as_node;
    message.to = to;
    message.term = 1_000_000;
    let encoded: Bytes = petrel::cluster::quorum::codec::encode_message(&message);
    let mut bytes = quorum_frame(0, hello.as_bytes());
    bytes.extend(quorum_frame(1, &encoded));
    bytes
}

#[test]
fn only_nodes_speak_for_nodes_and_only_current_followers_fetch() {
    let temp = tempfile::tempdir().expect("temp dir");
    let secure = start(temp.path());
    let mut admin = secure.client(0, "admin");
    eventually("the topic is created", || {
        create_topic(&mut admin, TOPIC) == 0
    });
    // The bootstrap user (`petrel format --add-scram` on every node) went through the
    // quorum once, and logs in on every node.
    for index in 0..3 {
        eventually("admin logs in with SASL", || {
            secure.sasl_admin(index).is_ok()
        });
    }
    // Followers fetch over SSL as User:petrel (a super user: CLUSTER_ACTION).
    eventually("every replica is in the ISR", || {
        partition_state(&mut admin).is_some_and(|(_, _, isr, _)| isr == [1, 2, 3])
    });
    let (leader, epoch, isr, topic_id) = partition_state(&mut admin).expect("the topic");
    let leader_index = secure.index_of(leader);
    let mut on_leader = secure.client(leader_index, "admin");
    let batch = Bytes::from(petrel::record_batch::build_batch(
        &[b"kept"],
        1_700_000_000_000,
    ));
    assert_eq!(
        produce_one(&mut on_leader, TOPIC, batch).0,
        0,
        "acks=all over SSL"
    );
    assert_eq!(high_watermark(&mut on_leader), (0, 1));

    // Not the leader: a voter the forged messages speak to, in the name of the leader.
    let voter = (leader_index + 1) % 3;
    let voter_id = secure.cluster.nodes[voter].id as u64;
    let quorum = format!("127.0.0.1:{}", secure.cluster.nodes[voter].quorum_port);

    // 1. No TLS at all: the bytes are not a TLS handshake; nothing is read as a frame.
    let mut plain = std::net::TcpStream::connect(&quorum).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    use std::io::Write;
    let _ = plain.write_all(&forged_frames(leader as u64, voter_id));
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(&[0, 0]),
        "no quorum frame answers a stranger"
    );

    // 2. A certificate of the cluster's CA, but a client's: refused after the handshake.
    let certificate = secure.certs.join("client-mallory.pem");
    let key = secure.certs.join("client-mallory-key.pem");
    let mallory_tls = tls_client_config(&secure.certs.join("ca.pem"), Some((&certificate, &key)));
    match Raw::connect_tls(&quorum, mallory_tls) {
        Err(_) => {} // refused during the handshake
        Ok(mut mallory) => {
            let _ = mallory.write_raw(&forged_frames(leader as u64, voter_id));
            // Closed (EOF, a reset or an alert), not answered and not left open.
            match mallory.read_frame() {
                Ok(frame) => panic!("the voter answered mallory: {frame:?}"),
                Err(error) => assert!(
                    !matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "the voter left mallory's link open"
                ),
            }
        }
    }

    // 3. A follower fetch from a client without CLUSTER_ACTION, in a follower's name.
    let follower = isr
        .iter()
        .copied()
        .find(|&id| id != leader)
        .expect("a follower");
    let mut mallory = secure.client(leader_index, "mallory");
    assert_eq!(
        follower_fetch(&mut mallory, topic_id, follower, 0),
        TOPIC_AUTHORIZATION_FAILED
    );
    // 4. A super user naming a registration epoch that is not the follower's current one.
    assert_eq!(
        follower_fetch(&mut on_leader, topic_id, follower, 0),
        STALE_BROKER_EPOCH
    );

    // Nothing changed, and the control plane still answers.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        partition_state(&mut admin),
        Some((leader, epoch, isr.clone(), topic_id)),
        "leader, leader epoch and ISR unchanged"
    );
    assert_eq!(high_watermark(&mut on_leader), (0, 1));
    assert_eq!(create_topic(&mut admin, "after-the-attacks"), 0);

    // Each refusal is logged with the peer's address.
    let voter_log = secure.cluster.log_of(voter);
    let refusals: Vec<&str> = voter_log
        .lines()
        .filter(|line| line.contains("refusing a quorum connection: 127.0.0.1:"))
        .collect();
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("has no node certificate")),
        "the plaintext attempt is logged: {refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("is User:mallory, not a node's principal")),
        "mallory's attempt is logged: {refusals:?}"
    );
    let leader_log = secure.cluster.log_of(leader_index);
    assert!(
        leader_log.contains("a follower fetch without CLUSTER_ACTION on the cluster is refused")
    );
    assert!(leader_log
        .contains("a follower fetch without the broker's current registration epoch is refused"));
    assert!(
        voter_log.contains("at term"),
        "raft-rs logs its term changes here"
    );
    assert!(
        !voter_log.contains("term 1000000"),
        "the forged term never reached Raft"
    );
}

/// CreateAcls on one node: every node lists the binding and enforces it (a principal with
/// no grant is refused a topic everywhere, the granted one is not); after all three nodes
/// stopped and started again, each still lists the same bindings.
#[test]
fn acls_set_on_one_node_hold_on_every_node_and_survive_restarting_all() {
    use common::acls::{create_acls, creation, describe_acls};
    const TOPIC_RESOURCE: i8 = 2;
    const LITERAL: i8 = 3;
    const DESCRIBE: i8 = 8;
    const ALLOW: i8 = 3;
    let temp = tempfile::tempdir().expect("temp dir");
    let mut secure = start(temp.path());
    let mut admin = secure.client(0, "admin");
    eventually("the topic is created", || {
        create_topic(&mut admin, TOPIC) == 0
    });
    let grant = creation(
        TOPIC_RESOURCE,
        TOPIC,
        LITERAL,
        "User:mallory",
        DESCRIBE,
        ALLOW,
    );
    assert_eq!(create_acls(&mut admin, vec![grant]), vec![0]);
    let listed = |raw: &mut Raw| describe_acls(raw).expect("DescribeAcls");
    let expected = vec![(
        TOPIC_RESOURCE,
        TOPIC.to_string(),
        LITERAL,
        "User:mallory".to_string(),
        DESCRIBE,
        ALLOW,
    )];
    // mallory may describe the topic on every node; a principal without a grant may not.
    let sees_topic = |raw: &mut Raw| {
        let mut request = MetadataRequest::default();
        let mut topic = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
        topic.name = Some(topic_name(TOPIC));
        request.topics = Some(vec![topic]);
        let response: MetadataResponse = raw.call(ApiKey::Metadata, 12, &request);
        response.topics.first().map(|t| t.error_code)
    };
    for index in 0..3 {
        eventually("every node lists the binding", || {
            listed(&mut secure.client(index, "admin")) == expected
        });
        assert_eq!(sees_topic(&mut secure.client(index, "mallory")), Some(0));
    }

    for index in 0..3 {
        secure.cluster.stop(index);
    }
    secure.cluster.restart_all();
    for index in 0..3 {
        eventually("the binding is listed after the restart", || {
            listed(&mut secure.client(index, "admin")) == expected
        });
        assert_eq!(sees_topic(&mut secure.client(index, "mallory")), Some(0));
    }
    // The grant is mallory's only: the nodes' own certificate-less clients see nothing.
    let anonymous = tls_client_config(&secure.certs.join("ca.pem"), None);
    let mut stranger = Raw::connect_tls(&secure.ssl_address(0), anonymous).expect("TLS");
    assert_eq!(sees_topic(&mut stranger), Some(TOPIC_AUTHORIZATION_FAILED));
}
