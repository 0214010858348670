//! ACLs with `--authorizer standard`: bindings created, listed and deleted with
//! CreateAcls, DescribeAcls and DeleteAcls (as `kafka-acls` sends them), kept across a
//! restart, and enforced per API with the codes clients expect: a principal without WRITE
//! that produces gets TOPIC_AUTHORIZATION_FAILED (29) and nothing is written; a group it
//! may not read, GROUP_AUTHORIZATION_FAILED (30); an ACL change without ALTER on the
//! cluster, CLUSTER_AUTHORIZATION_FAILED (31); Metadata shows only what it may describe.
//! Principals come from SASL logins and from client certificates (mTLS, with
//! `--ssl-principal-mapping-rules`); the first users from `petrel format --add-scram`.
//! Stock clients are in the interop matrix.

mod common;

use bytes::Bytes;
use common::acls::{create_acls, creation, describe_acls, text};
use common::sasl::{alter, scram_login};
use common::{create_topic, dev_certs, produce_one, tls_client_config, tls_listener_args};
use common::{Broker, Raw};
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DeleteAclsRequest, DeleteAclsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, JoinGroupRequest, JoinGroupResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
};
use petrel::security::scram::ScramMechanism;

const SHA512: ScramMechanism = ScramMechanism::Sha512;
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;
const ALLOW: i8 = 3;
const DENY: i8 = 2;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const INVALID_REQUEST: i16 = 42;
const SECURITY_DISABLED: i16 = 54;

/// Deletes what a filter on a principal matches; per filter, (error, bindings removed).
fn delete_acls_of(raw: &mut Raw, principal: &str) -> (i16, usize) {
    let mut filter = DeleteAclsFilter::default();
    filter.resource_type_filter = 1;
    filter.resource_name_filter = None;
    filter.host_filter = None;
    filter.pattern_type_filter = 1;
    filter.principal_filter = Some(text(principal));
    filter.operation = 1;
    filter.permission_type = 1;
    let mut request = DeleteAclsRequest::default();
    request.filters = vec![filter];
    let response: DeleteAclsResponse = raw.call(ApiKey::DeleteAcls, 3, &request);
    let result = &response.filter_results[0];
    (result.error_code, result.matching_acls.len())
}

fn login(address: &str, user: &str) -> Raw {
    let mut raw = Raw::connect(address);
    let password = format!("{user}-secret");
    assert_eq!(scram_login(&mut raw, SHA512, user, &password), Ok(()));
    raw
}

fn batch() -> Bytes {
    Bytes::from(petrel::record_batch::build_batch(
        &[b"payload"],
        1_700_000_000_000,
    ))
}

/// The latest offset of partition 0 (error code, offset).
fn end_offset(raw: &mut Raw, topic: &str) -> (i16, i64) {
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.timestamp = -1;
    let mut asked = ListOffsetsTopic::default();
    asked.name = common::topic_name(topic);
    asked.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.topics = vec![asked];
    let response: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 7, &request);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset)
}

/// Metadata of every topic (None) or of the named ones: (name, error code) per topic.
fn metadata(raw: &mut Raw, topics: Option<&[&str]>) -> Vec<(String, i16)> {
    let mut request = MetadataRequest::default();
    request.allow_auto_topic_creation = false;
    request.topics = topics.map(|names| {
        names
            .iter()
            .map(|name| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(common::topic_name(name));
                topic
            })
            .collect()
    });
    let response: MetadataResponse = raw.call(ApiKey::Metadata, 12, &request);
    let mut topics: Vec<(String, i16)> = response
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
            (name, t.error_code)
        })
        .collect();
    topics.sort();
    topics
}

fn join_group(raw: &mut Raw, group: &str) -> i16 {
    let mut request = JoinGroupRequest::default();
    request.group_id = kafka_protocol::messages::GroupId(text(group));
    request.session_timeout_ms = 10_000;
    request.rebalance_timeout_ms = 10_000;
    request.protocol_type = text("consumer");
    let mut protocol =
        kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    request.protocols = vec![protocol];
    let response: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 9, &request);
    response.error_code
}

fn find_coordinator(raw: &mut Raw, group: &str) -> i16 {
    let mut request = FindCoordinatorRequest::default();
    request.key_type = 0;
    request.coordinator_keys = vec![text(group)];
    let response: FindCoordinatorResponse = raw.call(ApiKey::FindCoordinator, 4, &request);
    response.coordinators[0].error_code
}

/// A broker with a PLAINTEXT and a SASL_PLAINTEXT listener, `--authorizer standard` and
/// admin as the super user from its first start: its users (admin, alice, bob) come from
/// `petrel format --add-scram`, as Kafka's `kafka-storage format --add-scram`; admin makes
/// the topics (orders, secret).
fn secured_broker(temp: &tempfile::TempDir) -> Broker {
    let dir = temp.path().join("data");
    let mut format = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"));
    format.args(["format", "--data-dir"]).arg(&dir);
    for user in ["admin", "alice", "bob"] {
        format.arg("--add-scram").arg(format!(
            "SCRAM-SHA-512=[name={user},password={user}-secret]"
        ));
    }
    let output = format.output().expect("run petrel format");
    assert!(output.status.success(), "petrel format: {output:?}");
    let broker = Broker::start_in(
        &dir,
        &[
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "--authorizer",
            "standard",
            "--super-users",
            "User:admin",
        ],
    );
    let mut admin = login(broker.listener("SASL_PLAINTEXT"), "admin");
    for topic in ["orders", "secret"] {
        assert_eq!(create_topic(&mut admin, topic, 1).topics[0].error_code, 0);
    }
    broker
}

#[test]
fn acls_are_enforced_per_api_with_the_codes_clients_expect() {
    let temp = tempfile::tempdir().expect("temp dir");
    let broker = secured_broker(&temp);
    let sasl = broker.listener("SASL_PLAINTEXT").to_string();
    let mut admin = login(&sasl, "admin");
    assert_eq!(
        create_acls(
            &mut admin,
            vec![
                creation(TOPIC, "orders", LITERAL, "User:alice", WRITE, ALLOW),
                creation(TOPIC, "ord", PREFIXED, "User:bob", READ, ALLOW),
                creation(GROUP, "bob-", PREFIXED, "User:bob", READ, ALLOW),
                creation(TOPIC, "*", LITERAL, "User:bob", WRITE, DENY),
            ]
        ),
        vec![0, 0, 0, 0]
    );

    // alice writes where she may; elsewhere 29 and nothing is written.
    let mut alice = login(&sasl, "alice");
    assert_eq!(produce_one(&mut alice, "orders", batch()).0, 0);
    assert_eq!(
        produce_one(&mut alice, "secret", batch()).0,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(end_offset(&mut admin, "secret"), (0, 0), "nothing written");
    assert_eq!(end_offset(&mut admin, "orders"), (0, 1));
    // WRITE implies DESCRIBE: alice sees orders only; secret by name is 29.
    assert_eq!(metadata(&mut alice, None), vec![("orders".into(), 0)]);
    assert_eq!(
        metadata(&mut alice, Some(&["secret"])),
        vec![("secret".into(), TOPIC_AUTHORIZATION_FAILED)]
    );
    // alice may not change ACLs, list them, or read.
    assert_eq!(
        create_acls(
            &mut alice,
            vec![creation(
                TOPIC,
                "secret",
                LITERAL,
                "User:alice",
                WRITE,
                ALLOW
            )]
        ),
        vec![CLUSTER_AUTHORIZATION_FAILED]
    );
    assert_eq!(describe_acls(&mut alice), Err(CLUSTER_AUTHORIZATION_FAILED));
    assert_eq!(
        end_offset(&mut alice, "orders"),
        (0, 1),
        "WRITE implies DESCRIBE"
    );

    // bob reads through a prefix, a DENY on every topic beats nothing but his writes,
    // and only his own groups.
    let mut bob = login(&sasl, "bob");
    assert_eq!(
        produce_one(&mut bob, "orders", batch()).0,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(end_offset(&mut bob, "orders"), (0, 1));
    assert_eq!(end_offset(&mut bob, "secret").0, TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(find_coordinator(&mut bob, "bob-consumers"), 0);
    assert_eq!(
        find_coordinator(&mut bob, "alice-consumers"),
        GROUP_AUTHORIZATION_FAILED
    );
    assert_eq!(join_group(&mut bob, "other"), GROUP_AUTHORIZATION_FAILED);

    // Nobody else: the PLAINTEXT listener is User:ANONYMOUS and sees nothing.
    let mut anonymous = Raw::connect(broker.listener("PLAINTEXT"));
    assert_eq!(metadata(&mut anonymous, None), vec![]);
    assert_eq!(
        produce_one(&mut anonymous, "orders", batch()).0,
        TOPIC_AUTHORIZATION_FAILED
    );

    // Bad bindings are INVALID_REQUEST, each on its own.
    assert_eq!(
        create_acls(
            &mut admin,
            vec![
                creation(
                    CLUSTER,
                    "not-the-cluster",
                    LITERAL,
                    "User:alice",
                    DESCRIBE,
                    ALLOW
                ),
                creation(TOPIC, "t", LITERAL, "alice", READ, ALLOW),
                creation(TOPIC, "t", LITERAL, "User:carol", READ, ALLOW),
            ]
        ),
        vec![INVALID_REQUEST, INVALID_REQUEST, 0]
    );

    // Deleting alice's bindings takes her WRITE away at once.
    assert_eq!(delete_acls_of(&mut admin, "User:alice"), (0, 1));
    assert_eq!(
        produce_one(&mut alice, "orders", batch()).0,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(end_offset(&mut admin, "orders"), (0, 1));
}

#[test]
fn acls_survive_a_restart_and_need_an_authorizer() {
    let temp = tempfile::tempdir().expect("temp dir");
    let broker = secured_broker(&temp);
    let mut admin = login(broker.listener("SASL_PLAINTEXT"), "admin");
    let creations = vec![
        creation(TOPIC, "orders", LITERAL, "User:alice", WRITE, ALLOW),
        creation(GROUP, "g", LITERAL, "User:bob", READ, ALLOW),
        creation(
            CLUSTER,
            "kafka-cluster",
            LITERAL,
            "User:bob",
            DESCRIBE,
            ALLOW,
        ),
    ];
    assert_eq!(create_acls(&mut admin, creations.clone()), vec![0, 0, 0]);
    assert_eq!(
        create_acls(&mut admin, creations),
        vec![0, 0, 0],
        "creating again changes nothing"
    );
    let before = describe_acls(&mut admin).expect("listed");
    assert_eq!(before.len(), 3);
    // A bootstrap user an admin deleted stays deleted: bootstrap users apply once.
    let mut deletion = ScramCredentialDeletion::default();
    deletion.name = text("alice");
    deletion.mechanism = SHA512.code();
    let mut request = AlterUserScramCredentialsRequest::default();
    request.deletions = vec![deletion];
    assert_eq!(alter(&mut admin, request), vec![("alice".to_string(), 0)]);
    drop(admin);

    let dir = broker.data_dir.clone();
    broker.stop();
    let args = [
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "--authorizer",
        "standard",
        "--super-users",
        "User:admin",
    ];
    let broker = Broker::start_in(&dir, &args);
    let mut admin = login(broker.listener("SASL_PLAINTEXT"), "admin");
    assert_eq!(describe_acls(&mut admin), Ok(before.clone()));
    let mut alice = Raw::connect(broker.listener("SASL_PLAINTEXT"));
    assert_eq!(
        scram_login(&mut alice, SHA512, "alice", "alice-secret"),
        Err(58),
        "SASL_AUTHENTICATION_FAILED: not re-created at the restart"
    );
    // bob may DESCRIBE the cluster: DescribeAcls answers him too.
    let mut bob = login(broker.listener("SASL_PLAINTEXT"), "bob");
    assert_eq!(describe_acls(&mut bob), Ok(before));
    drop((admin, bob));

    // Without an authorizer the ACL APIs answer SECURITY_DISABLED.
    broker.stop();
    let broker = Broker::start_in(&dir, &args[..2]);
    let mut raw = Raw::connect(broker.listener("PLAINTEXT"));
    assert_eq!(describe_acls(&mut raw), Err(SECURITY_DISABLED));
    assert_eq!(
        create_acls(
            &mut raw,
            vec![creation(TOPIC, "t", LITERAL, "User:x", READ, ALLOW)]
        ),
        vec![SECURITY_DISABLED]
    );
}

#[test]
fn a_client_certificate_s_subject_is_the_principal() {
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = dev_certs(&temp.path().join("certs"), "admin,alice,mallory");
    let mut args = tls_listener_args("SSL://127.0.0.1:0", &certs);
    let ca = certs.join("ca.pem");
    args.extend([
        "--ssl-truststore-location".into(),
        ca.to_str().expect("utf-8").into(),
        "--ssl-client-auth".into(),
        "required".into(),
        "--ssl-principal-mapping-rules".into(),
        "RULE:^CN=([a-z]+)$/$1/,DEFAULT".into(),
        "--authorizer".into(),
        "standard".into(),
        "--super-users".into(),
        "User:admin".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Broker::start(&args);
    let address = broker.listener("SSL").to_string();
    let connect = |client: &str| {
        let certificate = certs.join(format!("client-{client}.pem"));
        let key = certs.join(format!("client-{client}-key.pem"));
        let config = tls_client_config(&ca, Some((&certificate, &key)));
        Raw::connect_tls(&address, config).expect("mTLS handshake")
    };
    let mut admin = connect("admin");
    assert_eq!(
        create_topic(&mut admin, "telemetry", 1).topics[0].error_code,
        0
    );
    assert_eq!(
        create_acls(
            &mut admin,
            vec![creation(
                TOPIC,
                "telemetry",
                LITERAL,
                "User:alice",
                WRITE,
                ALLOW
            )]
        ),
        vec![0]
    );
    let mut alice = connect("alice");
    assert_eq!(produce_one(&mut alice, "telemetry", batch()).0, 0);
    let mut mallory = connect("mallory");
    assert_eq!(
        produce_one(&mut mallory, "telemetry", batch()).0,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(end_offset(&mut admin, "telemetry"), (0, 1));
}
