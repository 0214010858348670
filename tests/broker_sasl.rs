//! SASL listeners (SASL_PLAINTEXT, SASL_SSL): users' SCRAM credentials set with
//! AlterUserScramCredentials (as `kafka-configs` sends them), logins with SCRAM-SHA-256,
//! SCRAM-SHA-512 and PLAIN, in SaslAuthenticate (handshake v1) and as bare tokens (v0);
//! a wrong password, an unknown user, an unknown mechanism, a request before logging in,
//! an oversized token and a truncated frame are refused and closed; credentials survive a
//! restart; sessions end and are renewed with the credentials of the moment (KIP-368). Stock clients over SASL_SSL are in the interop matrix (`tests/interop/run`:
//! kcat-sasl, java-sasl, kafka-cli-sasl).

mod common;

use common::sasl::{
    alter, authenticate, handshake, scram_login, scram_session, set_user, upsertion,
};
use common::{create_topic, Broker, Raw};
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse, MetadataRequest, MetadataResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use petrel::security::scram::ScramMechanism;

const SHA256: ScramMechanism = ScramMechanism::Sha256;
const SHA512: ScramMechanism = ScramMechanism::Sha512;

fn sasl_broker(extra: &[&str]) -> Broker {
    let mut args = vec![
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Broker::start(&args)
}

fn metadata_works(raw: &mut Raw) -> bool {
    let response: MetadataResponse = raw.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    !response.brokers.is_empty()
}

#[test]
fn scram_and_plain_logins_admit_the_right_password_only() {
    let broker = sasl_broker(&[]);
    let sasl = broker.listener("SASL_PLAINTEXT").to_string();
    let mut admin = Raw::connect(broker.listener("PLAINTEXT"));
    set_user(&mut admin, "alice", SHA512, "alice-secret");
    set_user(&mut admin, "bob", SHA256, "bob-secret");

    for (mechanism, user, password) in [
        (SHA512, "alice", "alice-secret"),
        (SHA256, "bob", "bob-secret"),
    ] {
        let mut raw = Raw::connect(&sasl);
        assert_eq!(scram_login(&mut raw, mechanism, user, password), Ok(()));
        assert!(metadata_works(&mut raw), "{user} is served once logged in");
    }
    // SASL_AUTHENTICATION_FAILED (58), then the connection closes.
    for (mechanism, user, password) in [
        (SHA512, "alice", "wrong"),
        (SHA512, "nobody", "alice-secret"),
        (SHA256, "alice", "alice-secret"), // she has no SHA-256 credential
    ] {
        let mut raw = Raw::connect(&sasl);
        assert_eq!(
            scram_login(&mut raw, mechanism, user, password),
            Err(58),
            "{user}/{password}"
        );
        assert!(raw.closed_by_peer());
    }
    // PLAIN checks the password against the user's SCRAM credential.
    let mut raw = Raw::connect(&sasl);
    assert_eq!(handshake(&mut raw, "PLAIN", 1).error_code, 0);
    assert_eq!(
        authenticate(&mut raw, b"\0bob\0bob-secret".to_vec()).error_code,
        0
    );
    assert!(metadata_works(&mut raw));
    let mut raw = Raw::connect(&sasl);
    assert_eq!(handshake(&mut raw, "PLAIN", 1).error_code, 0);
    assert_eq!(
        authenticate(&mut raw, b"\0bob\0guess".to_vec()).error_code,
        58
    );
    assert!(raw.closed_by_peer());
    broker.stop();
}

#[test]
fn a_handshake_v0_client_sends_bare_tokens() {
    use std::io::{Read, Write};
    let broker = sasl_broker(&[]);
    let mut admin = Raw::connect(broker.listener("PLAINTEXT"));
    set_user(&mut admin, "carol", SHA512, "carol-secret");
    let mut raw = Raw::connect(broker.listener("SASL_PLAINTEXT"));
    let shook = handshake(&mut raw, "PLAIN", 0);
    assert_eq!(shook.error_code, 0);
    let token = b"\0carol\0carol-secret";
    let mut frame = (token.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    raw.stream.write_all(&frame).expect("write the token");
    let mut answer = [0u8; 4];
    raw.stream
        .read_exact(&mut answer)
        .expect("an empty answer frame");
    assert_eq!(answer, [0, 0, 0, 0]);
    assert!(metadata_works(&mut raw));
    broker.stop();
}

#[test]
fn anything_but_a_login_before_logging_in_is_refused() {
    // A short phase time, for the truncated frame below.
    let broker = sasl_broker(&["--request-read-timeout-ms", "2000"]);
    let sasl = broker.listener("SASL_PLAINTEXT").to_string();
    // ApiVersions is answered (clients ask it first), then a Metadata request closes.
    let mut raw = Raw::connect(&sasl);
    assert!(common::api_versions_ok(&sasl));
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(raw.closed_by_peer(), "no request before authenticating");
    let mut raw = Raw::connect(&sasl);
    let shook = handshake(&mut raw, "GSSAPI", 1);
    assert_eq!(shook.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let offered: Vec<String> = shook.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]);
    assert!(raw.closed_by_peer());
    let mut raw = Raw::connect(&sasl);
    assert_eq!(
        authenticate(&mut raw, b"\0a\0b".to_vec()).error_code,
        34,
        "no handshake yet"
    );
    // A SCRAM message far over the 4 KiB a real one needs: refused, and closed.
    let mut raw = Raw::connect(&sasl);
    assert_eq!(handshake(&mut raw, "SCRAM-SHA-512", 1).error_code, 0);
    let huge = format!("n,,n=alice,r={}", "x".repeat(64 << 10));
    assert_eq!(
        authenticate(&mut raw, huge.into_bytes()).error_code,
        58,
        "SASL_AUTHENTICATION_FAILED"
    );
    assert!(raw.closed_by_peer());
    // A handshake frame cut short: closed once the phase's time is up.
    let mut raw = Raw::connect(&sasl);
    std::io::Write::write_all(&mut raw.stream, &100u32.to_be_bytes()).expect("write");
    std::io::Write::write_all(&mut raw.stream, &[0, 17, 0, 1]).expect("write");
    assert!(
        raw.closed_by_peer(),
        "a truncated frame does not hold the connection"
    );
    // A frame over the 512 KiB cap of the phase is not read.
    let mut raw = Raw::connect(&sasl);
    std::io::Write::write_all(&mut raw.stream, &(1u32 << 20).to_be_bytes()).expect("write");
    assert!(raw.closed_by_peer());
    // On a listener without SASL the handshake is an illegal state, and the broker serves on.
    let mut plain = Raw::connect(broker.listener("PLAINTEXT"));
    assert_eq!(handshake(&mut plain, "PLAIN", 1).error_code, 34);
    assert!(metadata_works(&mut plain));
    broker.stop();
}

#[test]
fn credentials_are_described_checked_and_kept_across_a_restart() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let args = [
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    ];
    let broker = Broker::start_in(&data, &args);
    let mut admin = Raw::connect(broker.listener("PLAINTEXT"));
    set_user(&mut admin, "dave", SHA256, "dave-secret");
    set_user(&mut admin, "dave", SHA512, "dave-secret");
    set_user(&mut admin, "erin", SHA512, "erin-secret");
    // Kafka's refusals: iterations out of range (93), a credential that does not exist (91),
    // the same user and mechanism twice (92); each user fails or succeeds whole.
    let mut request = AlterUserScramCredentialsRequest::default();
    request.upsertions = vec![
        upsertion("frank", SHA512, "x", 100),
        upsertion("grace", SHA512, "x", 4096),
        upsertion("grace", SHA512, "y", 4096),
    ];
    let mut deletion = ScramCredentialDeletion::default();
    deletion.name = StrBytes::from_static_str("heidi");
    deletion.mechanism = SHA512.code();
    request.deletions = vec![deletion];
    let mut results = alter(&mut admin, request);
    results.sort();
    assert_eq!(
        results,
        [
            ("frank".into(), 93),
            ("grace".into(), 92),
            ("heidi".into(), 91)
        ]
    );
    // Erin's credential goes.
    let mut request = AlterUserScramCredentialsRequest::default();
    let mut deletion = ScramCredentialDeletion::default();
    deletion.name = StrBytes::from_static_str("erin");
    deletion.mechanism = SHA512.code();
    request.deletions = vec![deletion];
    assert_eq!(alter(&mut admin, request), [("erin".to_string(), 0)]);
    let described = describe(&mut admin, None);
    assert_eq!(
        described,
        [("dave".to_string(), 0, vec![(1, 4096), (2, 4096)])]
    );
    let twice = describe(&mut admin, Some(&["dave", "dave"]));
    assert_eq!(
        twice,
        [("dave".to_string(), 92, vec![])],
        "DUPLICATE_RESOURCE, once"
    );
    drop(admin);
    let dir = broker.stop();
    assert!(dir.is_none(), "started in our own directory");

    let broker = Broker::start_in(&data, &args);
    let mut admin = Raw::connect(broker.listener("PLAINTEXT"));
    let described = describe(&mut admin, Some(&["dave", "erin"]));
    assert_eq!(
        described,
        [
            ("dave".to_string(), 0, vec![(1, 4096), (2, 4096)]),
            ("erin".to_string(), 91, vec![])
        ]
    );
    let mut raw = Raw::connect(broker.listener("SASL_PLAINTEXT"));
    assert_eq!(scram_login(&mut raw, SHA256, "dave", "dave-secret"), Ok(()));
    assert_eq!(
        create_topic(&mut raw, "after-restart", 1).topics[0].error_code,
        0
    );
    let mut raw = Raw::connect(broker.listener("SASL_PLAINTEXT"));
    assert_eq!(
        scram_login(&mut raw, SHA512, "erin", "erin-secret"),
        Err(58)
    );
    broker.stop();
}

/// Per user: its name, error code, and (mechanism code, iterations) of each credential.
type Described = Vec<(String, i16, Vec<(i8, i32)>)>;

fn describe(raw: &mut Raw, users: Option<&[&str]>) -> Described {
    let mut request = DescribeUserScramCredentialsRequest::default();
    request.users = users.map(|users| {
        users
            .iter()
            .map(|user| {
                let mut name = UserName::default();
                name.name = StrBytes::from_string(user.to_string());
                name
            })
            .collect()
    });
    let response: DescribeUserScramCredentialsResponse =
        raw.call(ApiKey::DescribeUserScramCredentials, 0, &request);
    response
        .results
        .iter()
        .map(|r| {
            let infos = r
                .credential_infos
                .iter()
                .map(|i| (i.mechanism, i.iterations))
                .collect();
            (r.user.to_string(), r.error_code, infos)
        })
        .collect()
}

#[test]
fn a_user_set_on_one_broker_of_a_cluster_logs_in_on_every_broker() {
    use common::cluster::{eventually, Cluster};
    let mut cluster = Cluster::start(
        3,
        &[
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        ],
    );
    let listener = |cluster: &Cluster, index: usize, name: &str| -> String {
        cluster.nodes[index]
            .listeners
            .iter()
            .find(|(listener, _)| listener == name)
            .map(|(_, address)| address.clone())
            .expect("a listener")
    };
    let mut admin = Raw::connect(&listener(&cluster, 0, "PLAINTEXT"));
    set_user(&mut admin, "ivan", SHA512, "ivan-secret");
    for index in 0..3 {
        let address = listener(&cluster, index, "SASL_PLAINTEXT");
        eventually("the credential reaches every broker", || {
            let mut raw = Raw::connect(&address);
            scram_login(&mut raw, SHA512, "ivan", "ivan-secret").is_ok()
        });
    }
    // Replicated through the metadata quorum: a restarted broker still has it.
    cluster.stop(2);
    cluster.restart(2);
    let mut raw = Raw::connect(&listener(&cluster, 2, "SASL_PLAINTEXT"));
    assert_eq!(scram_login(&mut raw, SHA512, "ivan", "ivan-secret"), Ok(()));
    let mut raw = Raw::connect(&listener(&cluster, 1, "SASL_PLAINTEXT"));
    assert_eq!(scram_login(&mut raw, SHA512, "ivan", "wrong"), Err(58));
}

#[test]
fn sasl_ssl_runs_the_login_inside_tls() {
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = common::dev_certs(&temp.path().join("certs"), "");
    let args = common::tls_listener_args("PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0", &certs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Broker::start(&args);
    let mut admin = Raw::connect(broker.listener("PLAINTEXT"));
    set_user(&mut admin, "judy", SHA512, "judy-secret");
    let config = common::tls_client_config(&certs.join("ca.pem"), None);
    let address = broker.listener("SASL_SSL").to_string();
    let mut raw = Raw::connect_tls(&address, config.clone()).expect("TLS first");
    assert_eq!(scram_login(&mut raw, SHA512, "judy", "judy-secret"), Ok(()));
    assert!(metadata_works(&mut raw));
    let mut raw = Raw::connect_tls(&address, config).expect("TLS first");
    assert_eq!(scram_login(&mut raw, SHA512, "judy", "wrong"), Err(58));
    // SASL bytes in the clear to the SASL_SSL port: not TLS, closed.
    let mut clear = Raw::connect(&address);
    clear.send(ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default());
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut clear.stream, &mut answer);
    assert!(
        answer.first().is_none_or(|&byte| byte == 0x15),
        "at most a TLS alert"
    );
    broker.stop();
}

/// ApiVersions at a version newer than ours (franz-go asks v5 first) is answered in v0
/// with UNSUPPORTED_VERSION and our ranges during the login phase too, as outside it; the
/// client then logs in on the same connection.
#[test]
fn a_newer_api_versions_is_answered_with_our_ranges_before_logging_in() {
    use std::io::{Read, Write};
    let broker = sasl_broker(&[]);
    let mut admin = Raw::connect(broker.listener("PLAINTEXT"));
    set_user(&mut admin, "dave", SHA512, "dave-secret");
    let mut raw = Raw::connect(broker.listener("SASL_PLAINTEXT"));
    // Header v2: key 18, version 99, correlation 7, client id "x", no tags; empty body
    // fields (compact strings of length 0) and no tags.
    let mut frame = Vec::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&1i16.to_be_bytes());
    frame.push(b'x');
    frame.extend_from_slice(&[0, 1, 1, 0]);
    let mut sized = (frame.len() as u32).to_be_bytes().to_vec();
    sized.extend_from_slice(&frame);
    raw.stream.write_all(&sized).expect("write");
    let mut size = [0u8; 4];
    raw.stream
        .read_exact(&mut size)
        .expect("an answer, not a close");
    let mut answer = vec![0u8; u32::from_be_bytes(size) as usize];
    raw.stream.read_exact(&mut answer).expect("the answer");
    assert_eq!(&answer[..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(&answer[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    assert_eq!(scram_login(&mut raw, SHA512, "dave", "dave-secret"), Ok(()));
    assert!(metadata_works(&mut raw));
    broker.stop();
}

/// KIP-368 with `connections.max.reauth.ms`: the login tells the session's lifetime; the
/// client logs in again on the same connection (after the answers to what it sent before);
/// the new login must be the same user with the same mechanism, checked against the
/// credentials the cluster holds now, so a changed password ends old connections; a
/// request after the session's end closes the connection.
#[test]
fn sessions_end_and_re_authentication_checks_the_credentials_of_the_moment() {
    const LIFETIME_MS: i64 = 1500;
    let broker = sasl_broker(&["--connections-max-reauth-ms", &LIFETIME_MS.to_string()]);
    let sasl = broker.listener("SASL_PLAINTEXT").to_string();
    let mut admin = Raw::connect(broker.listener("PLAINTEXT"));
    set_user(&mut admin, "alice", SHA512, "one");
    set_user(&mut admin, "bob", SHA512, "bob-secret");

    // Renewed in place, pipelined behind a Metadata request whose answer comes first.
    let mut raw = Raw::connect(&sasl);
    assert_eq!(
        scram_session(&mut raw, SHA512, "alice", "one"),
        Ok(LIFETIME_MS)
    );
    let metadata = raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = StrBytes::from_static_str("SCRAM-SHA-512");
    let shake = raw.send(ApiKey::SaslHandshake, 1, &request);
    let answered: MetadataResponse = raw.receive(ApiKey::Metadata, 12, metadata);
    assert!(!answered.brokers.is_empty());
    let shook: kafka_protocol::messages::SaslHandshakeResponse =
        raw.receive(ApiKey::SaslHandshake, 1, shake);
    assert_eq!(shook.error_code, 0);
    let renewed = common::sasl::scram_exchange(&mut raw, SHA512, "alice", "one");
    assert_eq!(renewed, Ok(LIFETIME_MS));
    assert!(metadata_works(&mut raw), "the same connection goes on");

    // Another user, or another mechanism, on the same connection: refused and closed.
    assert_eq!(scram_login(&mut raw, SHA512, "bob", "bob-secret"), Err(58));
    assert!(raw.closed_by_peer());
    let mut raw = Raw::connect(&sasl);
    assert_eq!(scram_login(&mut raw, SHA512, "alice", "one"), Ok(()));
    assert_eq!(handshake(&mut raw, "PLAIN", 1).error_code, 33);
    assert!(raw.closed_by_peer());

    // The password changes: a session of the old one cannot be renewed.
    let mut old = Raw::connect(&sasl);
    assert_eq!(scram_login(&mut old, SHA512, "alice", "one"), Ok(()));
    set_user(&mut admin, "alice", SHA512, "two");
    assert_eq!(scram_login(&mut old, SHA512, "alice", "one"), Err(58));
    assert!(old.closed_by_peer());
    let mut new = Raw::connect(&sasl);
    assert_eq!(scram_login(&mut new, SHA512, "alice", "two"), Ok(()));

    // Not renewed in time: the next request closes the connection.
    std::thread::sleep(std::time::Duration::from_millis(LIFETIME_MS as u64 + 300));
    new.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(new.closed_by_peer(), "an expired session is not served");
    // A v0 handshake cannot renew a session (its tokens have no place for a lifetime).
    let mut raw = Raw::connect(&sasl);
    assert_eq!(scram_login(&mut raw, SHA512, "alice", "two"), Ok(()));
    assert_eq!(handshake(&mut raw, "SCRAM-SHA-512", 0).error_code, 33);
    assert!(raw.closed_by_peer());
    broker.stop();
}

#[test]
fn without_a_session_limit_the_login_says_no_lifetime() {
    let broker = sasl_broker(&[]);
    let mut admin = Raw::connect(broker.listener("PLAINTEXT"));
    set_user(&mut admin, "alice", SHA512, "one");
    let mut raw = Raw::connect(broker.listener("SASL_PLAINTEXT"));
    assert_eq!(scram_session(&mut raw, SHA512, "alice", "one"), Ok(0));
    broker.stop();
}
