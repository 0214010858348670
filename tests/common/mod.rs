//! Shared helpers for black-box tests: start the real `petrel` binary on an ephemeral port
//! with its own data directory, and talk raw Kafka protocol to it.
#![allow(dead_code)]

pub mod acls;
pub mod cluster;
pub mod proxy;
pub mod sasl;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Broker {
    pub child: Child,
    /// The first listener's address.
    pub address: String,
    /// Every listener's name and address (`petrel listening on ..., listeners N://A,...`).
    pub listeners: Vec<(String, String)>,
    pub data_dir: PathBuf,
    /// Where its log goes (`start_logged`), else the test's stderr.
    log: Option<PathBuf>,
    _temp: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker with a fresh data directory and `extra` flags.
    pub fn start(extra: &[&str]) -> Broker {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("data");
        let mut broker = Broker::start_in(&dir, extra);
        broker._temp = Some(temp);
        broker
    }

    /// [`Broker::start`] with its log (info and up) in a file, for [`Broker::log`].
    pub fn start_logged(extra: &[&str]) -> Broker {
        let temp = tempfile::tempdir().expect("temp dir");
        let log = temp.path().join("broker.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut broker = Broker::spawn(&temp.path().join("data"), extra, file.into(), "info");
        broker.log = Some(log);
        broker._temp = Some(temp);
        broker
    }

    /// What a [`Broker::start_logged`] broker logged so far.
    pub fn log(&self) -> String {
        let path = self.log.as_ref().expect("started with start_logged");
        std::fs::read_to_string(path).expect("read the log")
    }

    /// Sends the broker process `signal` (e.g. `libc::SIGHUP`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Starts a broker on an existing data directory (on one PLAINTEXT listener at an
    /// ephemeral port unless `extra` gives `--listeners`).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Broker {
        Broker::spawn(data_dir, extra, Stdio::inherit(), "warn")
    }

    fn spawn(data_dir: &Path, extra: &[&str], stderr: Stdio, level: &str) -> Broker {
        let listen: &[&str] = if extra.contains(&"--listeners") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
            .arg("serve")
            .args(listen)
            .args(["--shards", "2", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("PETREL_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn petrel");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("petrel printed nothing")
            .expect("read stdout");
        let address = first
            .strip_prefix("petrel listening on ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        let listeners = listeners_of(&first);
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Broker {
            child,
            address,
            listeners,
            data_dir: data_dir.to_path_buf(),
            log: None,
            _temp: None,
        }
    }

    /// The address of listener `name`.
    pub fn listener(&self, name: &str) -> &str {
        self.listeners
            .iter()
            .find(|(listener, _)| listener == name)
            .map(|(_, address)| address.as_str())
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
    }

    pub fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// SIGTERM, then waits: a graceful stop must exit 0.
    pub fn stop(mut self) -> Option<tempfile::TempDir> {
        let pid = self.child.id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "petrel exited with {status} on SIGTERM");
        self._temp.take()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `petrel dev-certs` into `dir`, with client certificates for `clients` (comma-separated,
/// may be empty); returns `dir`.
pub fn dev_certs(dir: &Path, clients: &str) -> PathBuf {
    let mut command = Command::new(env!("CARGO_BIN_EXE_petrel"));
    command.args(["dev-certs", "--dir"]).arg(dir);
    if !clients.is_empty() {
        command.args(["--clients", clients]);
    }
    let status = command.status().expect("run petrel dev-certs");
    assert!(status.success(), "petrel dev-certs failed");
    for file in ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem"] {
        assert!(dir.join(file).exists(), "{file} written");
    }
    dir.to_path_buf()
}

/// `petrel serve` flags for `listeners` (`NAME://host:port,...`) with the server
/// certificate and key of a `dev_certs` directory.
pub fn tls_listener_args(listeners: &str, certs: &Path) -> Vec<String> {
    let path = |file: &str| certs.join(file).to_str().expect("a UTF-8 path").to_string();
    vec![
        "--listeners".into(),
        listeners.into(),
        "--ssl-certificate-location".into(),
        path("server.pem"),
        "--ssl-key-location".into(),
        path("server-key.pem"),
    ]
}

/// The listeners a `petrel listening on ..., listeners N://A,...` line names.
pub fn listeners_of(line: &str) -> Vec<(String, String)> {
    line.rsplit_once(", listeners ")
        .map(|(_, list)| {
            list.split(',')
                .filter_map(|entry| entry.split_once("://"))
                .map(|(name, address)| (name.to_string(), address.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A raw Kafka protocol connection, over TLS once `connect_tls` set it up.
pub struct Raw {
    pub stream: TcpStream,
    /// The client id every request names (`petrel-test` unless set).
    pub client_id: String,
    tls: Option<rustls::ClientConnection>,
    correlation_id: i32,
}

/// A TLS client configuration that trusts the CA in `ca` (PEM) and presents `identity`
/// (certificate and key PEM files) if given.
#[allow(deprecated)] // rustls's ring provider, as the broker uses (runtime/tls.rs)
pub fn tls_client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).expect("ca.pem") {
        roots
            .add(certificate.expect("a CA certificate"))
            .expect("trusted");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((certificate, key)) => {
            let chain = CertificateDer::pem_file_iter(certificate)
                .expect("certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
    };
    std::sync::Arc::new(config)
}

impl Raw {
    pub fn connect(address: &str) -> Raw {
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            client_id: "petrel-test".into(),
            tls: None,
            correlation_id: 0,
        }
    }

    /// Connects and completes a TLS handshake as `localhost` (the dev certificate's name):
    /// an error if the server refuses it.
    pub fn connect_tls(
        address: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Raw> {
        let mut raw = Raw::connect(address);
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut raw.stream)?;
        }
        raw.tls = Some(tls);
        Ok(raw)
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.tls {
            Some(tls) => rustls::Stream::new(tls, &mut self.stream).write_all(bytes),
            None => self.stream.write_all(bytes),
        }
    }

    fn read_bytes(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.tls {
            Some(tls) => rustls::Stream::new(tls, &mut self.stream).read(buffer),
            None => self.stream.read(buffer),
        }
    }

    fn read_all(&mut self, mut buffer: &mut [u8]) -> std::io::Result<()> {
        while !buffer.is_empty() {
            match self.read_bytes(buffer)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                read => buffer = &mut buffer[read..],
            }
        }
        Ok(())
    }

    /// Sends one request and returns its correlation id.
    pub fn send<T: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &T) -> i32 {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_string(self.client_id.clone()));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, api_key.request_header_version(version))
            .expect("header");
        body.encode(&mut frame, version).expect("body");
        let mut out = BytesMut::with_capacity(frame.len() + 4);
        out.put_i32(frame.len() as i32);
        out.put_slice(&frame);
        self.write_bytes(&out).expect("write");
        self.correlation_id
    }

    /// Reads one response frame (after the size prefix).
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut size = [0u8; 4];
        self.read_all(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.read_all(&mut body)?;
        Ok(Bytes::from(body))
    }

    pub fn receive<T: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> T {
        let mut frame = self.read_frame().expect("response");
        let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
            .expect("header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "responses arrive in request order"
        );
        T::decode(&mut frame, version).expect("decode response")
    }

    pub fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &Q,
    ) -> R {
        let id = self.send(api_key, version, body);
        self.receive(api_key, version, id)
    }

    /// Writes bytes as they are (over TLS once set up): frames of other protocols.
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_bytes(bytes)
    }

    /// True if the broker closed this connection (EOF or reset) within the read timeout.
    pub fn closed_by_peer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.read_bytes(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            ),
        }
    }
}

/// ApiVersions v3 round trip: proves the broker is alive and serving.
/// False if the connection is refused or closed instead of answered.
pub fn api_versions_ok(address: &str) -> bool {
    let mut raw = Raw::connect(address);
    let id = raw.send(
        ApiKey::ApiVersions,
        3,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    );
    let Ok(mut frame) = raw.read_frame() else {
        return false;
    };
    let header = ResponseHeader::decode(&mut frame, 0).expect("header");
    let response =
        kafka_protocol::messages::ApiVersionsResponse::decode(&mut frame, 3).expect("body");
    header.correlation_id == id && response.error_code == 0 && !response.api_keys.is_empty()
}

pub fn get_i32(bytes: &mut Bytes) -> i32 {
    bytes.get_i32()
}

/// Recomputes a hand-edited batch's `batch_length` (bytes 8..12) and CRC-32C (bytes 17..21,
/// over `attributes..end`), so that only the checks after framing and CRC can refuse it.
pub fn reseal(batch: &mut [u8]) {
    let length = i32::try_from(batch.len() - 12).expect("batch fits i32");
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Kafka's zig-zag varint.
pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// A record body (without its length prefix): no key, `value`, `header_count` as given
/// (no header bytes follow it).
pub fn record_body(offset_delta: i64, value: &[u8], header_count: i64) -> Vec<u8> {
    let mut body = vec![0]; // attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, -1); // null key
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    put_varint(&mut body, header_count);
    body
}

/// A resealed batch of `records` bytes (length-prefixed records, or a compressed stream)
/// whose header claims `records_count` and `last_offset_delta` and carries `attributes`.
pub fn batch_with(
    records: &[u8],
    records_count: i32,
    last_offset_delta: i32,
    attributes: i16,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut batch = petrel::record_batch::build_batch(&[b"x"], timestamp_ms);
    batch.truncate(petrel::record_batch::HEADER_BYTES);
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    batch[57..61].copy_from_slice(&records_count.to_be_bytes());
    batch.extend_from_slice(records);
    reseal(&mut batch);
    batch
}

/// Length-prefixes record bodies as a batch holds them.
pub fn length_prefixed(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for body in bodies {
        put_varint(&mut out, body.len() as i64);
        out.extend_from_slice(body);
    }
    out
}

/// The batch that used to abort the broker: a valid CRC over a header that claims 2^31 - 1
/// records (and a matching last offset delta) with no record bytes at all.
pub fn poison_batch(timestamp_ms: i64) -> Vec<u8> {
    batch_with(&[], 0x7FFF_FFFF, 0x7FFF_FFFE, 0, timestamp_ms)
}

pub fn topic_name(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(name.to_string()))
}

/// CreateTopics v7 of one topic with `partitions` and default configs.
pub fn create_topic(
    raw: &mut Raw,
    name: &str,
    partitions: i32,
) -> kafka_protocol::messages::CreateTopicsResponse {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(name);
    topic.num_partitions = partitions;
    topic.replication_factor = -1;
    let mut request = kafka_protocol::messages::CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    raw.call(ApiKey::CreateTopics, 7, &request)
}

/// Produce v9 to `topic`: one batch per (partition, records).
pub fn produce(
    raw: &mut Raw,
    topic: &str,
    batches: Vec<(i32, Bytes)>,
    acks: i16,
) -> kafka_protocol::messages::ProduceResponse {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let mut topic_data = TopicProduceData::default();
    topic_data.name = topic_name(topic);
    topic_data.partition_data = batches
        .into_iter()
        .map(|(index, records)| {
            let mut partition = PartitionProduceData::default();
            partition.index = index;
            partition.records = Some(records);
            partition
        })
        .collect();
    let mut request = kafka_protocol::messages::ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 10_000;
    request.topic_data = vec![topic_data];
    raw.call(ApiKey::Produce, 9, &request)
}

/// One batch to partition 0 of `topic` with acks=-1: (error code, base offset).
pub fn produce_one(raw: &mut Raw, topic: &str, batch: Bytes) -> (i16, i64) {
    let response = produce(raw, topic, vec![(0, batch)], -1);
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}
