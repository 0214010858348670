//! SSL listeners beside PLAINTEXT ones (`--listeners`), with certificates from
//! `petrel dev-certs`: each listener advertises its own address, records go through TLS
//! unchanged, the wrong protocol on either port is refused, and with
//! `--ssl-client-auth required` only clients with a certificate from the truststore's CA
//! get in (not with an expired certificate); SIGHUP reloads the certificates. The stock
//! clients over SSL are in the interop matrix (`tests/interop/run`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::{
    create_topic, dev_certs, produce_one, tls_client_config, tls_listener_args, Broker, Raw,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse,
};

fn ssl_broker(certs: &Path, extra: &[&str]) -> Broker {
    let mut args = tls_listener_args("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0", certs);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Broker::start(&args)
}

/// An SSL listener that requires client certificates signed by `truststore`'s CAs.
fn mtls_broker(certs: &Path, truststore: &Path) -> Broker {
    let truststore = truststore.to_str().expect("a UTF-8 path");
    let required = ["--ssl-client-auth", "required"];
    ssl_broker(
        certs,
        &[&required[..], &["--ssl-truststore-location", truststore]].concat(),
    )
}

fn api_versions(raw: &mut Raw) -> std::io::Result<ApiVersionsResponse> {
    let id = raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let _ = id;
    let mut frame = raw.read_frame()?;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Decodable;
    ResponseHeader::decode(&mut frame, 0).map_err(std::io::Error::other)?;
    ApiVersionsResponse::decode(&mut frame, 3).map_err(std::io::Error::other)
}

fn advertised_ports(raw: &mut Raw) -> Vec<i32> {
    let response: MetadataResponse = raw.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    response.brokers.iter().map(|broker| broker.port).collect()
}

fn port_of(address: &str) -> i32 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .expect("a port")
}

#[test]
fn each_listener_advertises_itself_and_records_cross_tls_unchanged() {
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = dev_certs(&temp.path().join("certs"), "");
    let broker = ssl_broker(&certs, &[]);
    let (plain, ssl) = (broker.listener("PLAINTEXT"), broker.listener("SSL"));
    assert_ne!(plain, ssl);
    let config = tls_client_config(&certs.join("ca.pem"), None);
    let mut secure = Raw::connect_tls(ssl, config).expect("TLS handshake");
    let versions = api_versions(&mut secure).expect("ApiVersions over TLS");
    assert_eq!(versions.error_code, 0);
    assert_eq!(advertised_ports(&mut secure), vec![port_of(ssl)]);
    let mut plaintext = Raw::connect(plain);
    assert_eq!(advertised_ports(&mut plaintext), vec![port_of(plain)]);

    // A batch larger than a TLS record (16 KiB) goes in over TLS and comes back over both.
    assert_eq!(
        create_topic(&mut secure, "secure", 1).topics[0].error_code,
        0
    );
    let values: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("record {i:05} ").repeat(20).into_bytes())
        .collect();
    let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let batch = Bytes::from(petrel::record_batch::build_batch(
        &slices,
        1_700_000_000_000,
    ));
    assert!(batch.len() > 3 * 16 * 1024, "{} bytes", batch.len());
    assert_eq!(produce_one(&mut secure, "secure", batch.clone()), (0, 0));
    for raw in [&mut secure, &mut plaintext] {
        let response: FetchResponse = raw.call(ApiKey::Fetch, 12, &fetch("secure"));
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.high_watermark, 300);
        assert_eq!(
            partition.records.as_ref(),
            Some(&batch),
            "the stored batch, byte for byte"
        );
    }
    broker.stop();
}

fn fetch(topic: &str) -> FetchRequest {
    let mut partition = FetchPartition::default();
    partition.fetch_offset = 0;
    partition.partition_max_bytes = 1 << 20;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = common::topic_name(topic);
    fetch_topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.max_wait_ms = 100;
    request.max_bytes = 4 << 20;
    request.topics = vec![fetch_topic];
    request
}

#[test]
fn the_wrong_protocol_on_either_port_is_refused_and_the_broker_serves_on() {
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = dev_certs(&temp.path().join("certs"), "");
    let broker = ssl_broker(&certs, &[]);
    let (plain, ssl) = (broker.listener("PLAINTEXT"), broker.listener("SSL"));

    // Kafka requests in the clear to the SSL port: not a TLS hello; a TLS alert, then the
    // connection closes.
    let mut clear = Raw::connect(ssl);
    clear.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let mut answer = Vec::new();
    let ended = std::io::Read::read_to_end(&mut clear.stream, &mut answer);
    assert!(ended.is_ok(), "closed: {ended:?}");
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "a TLS alert record: {answer:?}"
    );
    assert!(answer.len() < 64, "and nothing else: {answer:?}");

    // A TLS hello to the PLAINTEXT port: read as a frame far above the request cap, closed.
    let config = tls_client_config(&certs.join("ca.pem"), None);
    assert!(Raw::connect_tls(plain, config.clone()).is_err());

    // A server certificate the client does not trust: the client gives up.
    let other = dev_certs(&temp.path().join("other"), "");
    let untrusting = tls_client_config(&other.join("ca.pem"), None);
    assert!(Raw::connect_tls(ssl, untrusting).is_err());

    let mut secure = Raw::connect_tls(ssl, config).expect("TLS handshake");
    assert_eq!(api_versions(&mut secure).expect("served").error_code, 0);
    assert!(common::api_versions_ok(plain));
    broker.stop();
}

/// With TLS 1.3 the client finishes its handshake before the server checks its
/// certificate: a refusal shows on the first request.
fn first_request(address: &str, config: std::sync::Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut raw) = Raw::connect_tls(address, config) else {
        return false;
    };
    raw.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    api_versions(&mut raw).is_ok_and(|response| response.error_code == 0)
}

#[test]
fn required_client_certificates_admit_only_clients_the_ca_signed() {
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = dev_certs(&temp.path().join("certs"), "alice");
    let other = dev_certs(&temp.path().join("other"), "mallory");
    let truststore = certs.join("ca.pem");
    let broker = mtls_broker(&certs, &truststore);
    let ssl = broker.listener("SSL");
    let ca = certs.join("ca.pem");
    let alice = (
        certs.join("client-alice.pem"),
        certs.join("client-alice-key.pem"),
    );
    let mallory = (
        other.join("client-mallory.pem"),
        other.join("client-mallory-key.pem"),
    );

    let anonymous = tls_client_config(&ca, None);
    assert!(!first_request(ssl, anonymous), "no certificate: refused");
    let stranger = tls_client_config(&ca, Some((&mallory.0, &mallory.1)));
    assert!(
        !first_request(ssl, stranger),
        "another CA's certificate: refused"
    );
    let member = tls_client_config(&ca, Some((&alice.0, &alice.1)));
    assert!(first_request(ssl, member), "the CA's client: admitted");
    broker.stop();
}

#[test]
fn dev_certs_refuses_to_overwrite_a_ca() {
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = dev_certs(&temp.path().join("certs"), "");
    let status = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["dev-certs", "--dir"])
        .arg(&certs)
        .status()
        .expect("run");
    assert!(!status.success(), "a second CA over the first is refused");
}

#[test]
fn a_cluster_tells_ssl_clients_every_brokers_ssl_address_and_replicates_meanwhile() {
    use common::cluster::{create_topic_with, eventually, isrs, Cluster};
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = dev_certs(&temp.path().join("certs"), "");
    let args = tls_listener_args("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0", &certs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start(3, &args);
    let listener = |index: usize, name: &str| -> String {
        let node = &cluster.nodes[index];
        node.listeners
            .iter()
            .find(|(listener, _)| listener == name)
            .map(|(_, address)| address.clone())
            .expect("a listener")
    };
    let ssl_ports: std::collections::BTreeSet<i32> = (0..3)
        .map(|index| port_of(&listener(index, "SSL")))
        .collect();
    let plain_ports: std::collections::BTreeSet<i32> = (0..3)
        .map(|index| port_of(&listener(index, "PLAINTEXT")))
        .collect();
    let plain = listener(0, "PLAINTEXT");
    create_topic_with(&plain, "replicated", 1, 3, &[("min.insync.replicas", "3")]);
    eventually("all three in the ISR", || {
        isrs(&plain, "replicated")
            .first()
            .is_some_and(|(_, isr)| isr.len() == 3)
    });
    let config = tls_client_config(&certs.join("ca.pem"), None);
    let mut secure = Raw::connect_tls(&listener(0, "SSL"), config.clone()).expect("TLS");
    let mut request = MetadataRequest::default();
    request.topics = None;
    let metadata: MetadataResponse = secure.call(ApiKey::Metadata, 12, &request);
    let advertised: std::collections::BTreeSet<i32> =
        metadata.brokers.iter().map(|broker| broker.port).collect();
    assert_eq!(advertised, ssl_ports, "each broker's SSL listener");
    let plain_metadata = common::cluster::metadata(&plain);
    let advertised: std::collections::BTreeSet<i32> = plain_metadata
        .brokers
        .iter()
        .map(|broker| broker.port)
        .collect();
    assert_eq!(advertised, plain_ports, "each broker's PLAINTEXT listener");

    // acks=all with min.insync.replicas 3: answered only once both followers (fetching
    // over PLAINTEXT, the inter-broker listener) have the batch.
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "replicated"))
        .expect("the topic");
    let leader = topic.partitions[0].leader_id;
    let broker = metadata
        .brokers
        .iter()
        .find(|broker| broker.node_id == leader)
        .expect("the leader's address");
    let address = format!("{}:{}", broker.host.as_str(), broker.port);
    let mut to_leader = Raw::connect_tls(&address, config).expect("TLS to the leader");
    let batch = Bytes::from(petrel::record_batch::build_batch(&[b"over tls"], 1));
    assert_eq!(produce_one(&mut to_leader, "replicated", batch), (0, 0));
}

/// Half a TLS ClientHello, then silence: the broker closes the connection once the
/// handshake's time (the request read timeout) is up, and serves other clients meanwhile.
#[test]
fn a_truncated_handshake_holds_only_its_own_connection_for_its_time() {
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = dev_certs(&temp.path().join("certs"), "");
    let broker = ssl_broker(&certs, &["--request-read-timeout-ms", "500"]);
    let ssl = broker.listener("SSL");
    // A TLS record header announcing a 512-byte handshake message, and 16 bytes of it.
    let mut stalled = Raw::connect(ssl);
    let mut partial = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    partial.extend_from_slice(&[0x01; 16]);
    std::io::Write::write_all(&mut stalled.stream, &partial).expect("write");
    let config = tls_client_config(&certs.join("ca.pem"), None);
    let mut other = Raw::connect_tls(ssl, config).expect("another client's handshake");
    assert_eq!(api_versions(&mut other).expect("served").error_code, 0);
    let mut rest = Vec::new();
    let ended = std::io::Read::read_to_end(&mut stalled.stream, &mut rest);
    assert!(
        ended.is_ok() || stalled.closed_by_peer(),
        "the stalled handshake is closed: {ended:?}"
    );
    broker.stop();
}

/// Certificates rotated on disk, then SIGHUP: new handshakes present the new certificate,
/// a connection opened before keeps its session, and files that make no configuration are
/// refused with a log line while the certificates in use stay.
#[test]
fn sighup_reloads_the_certificates_without_a_restart() {
    let temp = tempfile::tempdir().expect("temp dir");
    let first = dev_certs(&temp.path().join("first"), "");
    let second = dev_certs(&temp.path().join("second"), "");
    let live = temp.path().join("live");
    std::fs::create_dir(&live).expect("mkdir");
    let install = |from: &Path| {
        for file in ["server.pem", "server-key.pem"] {
            // Renamed into place, as certificate managers do, so a reload never reads half.
            let staged = live.join(format!("{file}.new"));
            std::fs::copy(from.join(file), &staged).expect("copy");
            std::fs::rename(&staged, live.join(file)).expect("rename");
        }
    };
    install(&first);
    let args = tls_listener_args("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0", &live);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Broker::start_logged(&args);
    let ssl = broker.listener("SSL").to_string();
    let trusts_first = tls_client_config(&first.join("ca.pem"), None);
    let trusts_second = tls_client_config(&second.join("ca.pem"), None);
    let mut opened_before = Raw::connect_tls(&ssl, trusts_first.clone()).expect("first CA");
    assert!(!first_request(&ssl, trusts_second.clone()), "not yet");

    install(&second);
    broker.signal(libc::SIGHUP);
    wait_for_log(&broker, "TLS certificates reloaded", 1);
    assert!(
        first_request(&ssl, trusts_second.clone()),
        "the new certificate"
    );
    assert!(!first_request(&ssl, trusts_first), "the old one is gone");
    let versions = api_versions(&mut opened_before).expect("the old session goes on");
    assert_eq!(versions.error_code, 0);

    std::fs::write(live.join("server.pem"), "not a certificate").expect("write");
    broker.signal(libc::SIGHUP);
    wait_for_log(&broker, "TLS reload failed", 1);
    assert!(
        first_request(&ssl, trusts_second),
        "a failed reload keeps the certificates in use"
    );
    broker.stop();
}

/// Waits (at most 10 s) until `broker`'s log holds `needle` `times` times.
fn wait_for_log(broker: &Broker, needle: &str, times: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.log().matches(needle).count() < times {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client certificate the truststore's CA signed but whose validity ended is refused;
/// the same CA's current certificate is admitted.
#[test]
fn an_expired_client_certificate_is_refused() {
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyPair, KeyUsagePurpose,
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let certs = dev_certs(&temp.path().join("certs"), "");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "client CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let truststore = temp.path().join("client-ca.pem");
    std::fs::write(&truststore, ca.pem()).expect("write");
    let issuer = Issuer::new(ca_params, ca_key);
    let client = |name: &str, until: Option<(i32, u8, u8)>| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some((year, month, day)) = until {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(year, month, day);
        }
        let certificate = params.signed_by(&key, &issuer).expect("sign");
        let (cert_path, key_path) = (
            temp.path().join(format!("{name}.pem")),
            temp.path().join(format!("{name}-key.pem")),
        );
        std::fs::write(&cert_path, certificate.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        tls_client_config(&certs.join("ca.pem"), Some((&cert_path, &key_path)))
    };
    let broker = mtls_broker(&certs, &truststore);
    let ssl = broker.listener("SSL");
    assert!(
        !first_request(ssl, client("late", Some((2021, 1, 1)))),
        "expired in 2021: refused"
    );
    assert!(first_request(ssl, client("current", None)), "admitted");
    broker.stop();
}
