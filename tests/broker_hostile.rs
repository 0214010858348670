//! Hostile input at the socket: every abuse gets an error or a closed connection, never a
//! crash, and the broker keeps serving everyone else.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{api_versions_ok, create_topic, produce_one, Broker, Raw};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ListOffsetsRequest, ListOffsetsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn send_raw(address: &str, bytes: &[u8]) -> Raw {
    let mut raw = Raw::connect(address);
    raw.stream.write_all(bytes).expect("write");
    raw
}

/// A request header (v1) followed by `body`, with a correct size prefix.
fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&1i32.to_be_bytes());
    payload.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    payload.extend_from_slice(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let broker = Broker::start(&["--request-bytes-max", "65536"]);
    let address = broker.address.clone();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: petrel\r\n\r\n".to_vec(),
        ),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("size below a header", 3i32.to_be_bytes().to_vec()),
        ("size above the cap", 1_000_000i32.to_be_bytes().to_vec()),
        ("size at i32::MAX", i32::MAX.to_be_bytes().to_vec()),
        ("unknown api key", frame(999, 0, b"")),
        (
            "unsupported api (Envelope: brokers' forwarding, not a client's)",
            frame(ApiKey::Envelope as i16, 2, b""),
        ),
        (
            "produce v2 (removed in Kafka 4)",
            frame(0, 2, &[0, 1, 0, 0, 0, 100, 0, 0, 0, 0]),
        ),
        (
            "metadata with 2^31-1 topics",
            frame(3, 1, &i32::MAX.to_be_bytes()),
        ),
        (
            "create topics with 2^31-1 topics",
            frame(19, 2, &i32::MAX.to_be_bytes()),
        ),
        (
            "produce with 2^31-1 topics",
            frame(
                0,
                3,
                &[0xff, 0xff, 0, 1, 0, 0, 0x27, 0x10, 0x7f, 0xff, 0xff, 0xff],
            ),
        ),
        (
            "fetch with a huge compact array",
            frame(
                1,
                12,
                &[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f],
            ),
        ),
        ("client id longer than the frame", {
            let mut bytes = frame(18, 0, b"");
            let at = bytes.len() - 2;
            bytes[at..].copy_from_slice(&i16::MAX.to_be_bytes());
            bytes
        }),
    ];
    for (name, bytes) in cases {
        let mut raw = send_raw(&address, &bytes);
        assert!(
            raw.closed_by_peer(),
            "{name}: the broker must close the connection"
        );
        assert!(
            api_versions_ok(&address),
            "{name}: the broker must keep serving"
        );
    }
    // A frame cut short by the client.
    let mut truncated = frame(18, 3, &[0, 0, 0]);
    truncated.truncate(truncated.len() - 2);
    drop(send_raw(&address, &truncated));
    assert!(api_versions_ok(&address));
}

#[test]
fn slow_and_idle_connections_are_closed_on_time() {
    let broker = Broker::start(&[
        "--request-read-timeout-ms",
        "500",
        "--connection-idle-ms",
        "1500",
    ]);
    let address = broker.address.clone();
    // Slow-loris: a request that starts but never finishes.
    let started = Instant::now();
    let mut slow = send_raw(&address, &[0, 0]);
    assert!(slow.closed_by_peer(), "a stalled request must be cut off");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    // Idle: a connection that sends nothing.
    let started = Instant::now();
    let mut idle = Raw::connect(&address);
    let response: ApiVersionsResponse =
        idle.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    assert!(idle.closed_by_peer(), "an idle connection must be closed");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // Many slow connections at once do not stall a healthy client.
    let stalled: Vec<Raw> = (0..50).map(|_| send_raw(&address, &[0])).collect();
    let started = Instant::now();
    assert!(api_versions_ok(&address));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a healthy request waited {:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn the_connection_limit_is_enforced_and_frees_up() {
    // Two shards, each with half of the limit.
    let broker = Broker::start(&["--connections-max", "8"]);
    let address = broker.address.clone();
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let mut raw = Raw::connect(&address);
        raw.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let id = raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        match raw.read_frame() {
            Ok(_) => {
                let _ = id;
                open.push(raw);
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        open.len() <= 8,
        "{} connections served with a limit of 8",
        open.len()
    );
    assert!(refused >= 32);
    drop(open);
    // Closed connections give their slots back.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !api_versions_ok(&address) {
        assert!(Instant::now() < deadline, "slots were not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_flood_of_garbage_does_not_disturb_a_working_client() {
    let broker = Broker::start(&[]);
    let address = broker.address.clone();
    let flood_address = address.clone();
    let flood = std::thread::spawn(move || {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..300 {
            let Ok(mut stream) = TcpStream::connect(&flood_address) else {
                continue;
            };
            let length: i32 = rng.gen_range(1..2000);
            let mut bytes: Vec<u8> = (0..length).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.5) && bytes.len() > 8 {
                // A plausible size prefix and header, then garbage.
                bytes[..4].copy_from_slice(&(length - 4).to_be_bytes());
                bytes[4..6].copy_from_slice(&rng.gen_range(0i16..70).to_be_bytes());
                bytes[6..8].copy_from_slice(&rng.gen_range(0i16..15).to_be_bytes());
            }
            let _ = stream.write_all(&bytes);
        }
    });
    let mut raw = Raw::connect(&address);
    let mut answered = 0;
    while !flood.is_finished() || answered < 50 {
        let response: ApiVersionsResponse =
            raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(response.error_code, 0);
        answered += 1;
    }
    flood.join().expect("flood thread");
    assert!(api_versions_ok(&address));
}

/// ListOffsets v7 for partition 0: (error code, offset, timestamp).
fn list_offsets(raw: &mut Raw, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.timestamp = timestamp;
    let mut topic_request = ListOffsetsTopic::default();
    topic_request.name = TopicName(StrBytes::from_string(topic.to_string()));
    topic_request.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.topics = vec![topic_request];
    let response: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, 7, &request);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset, answer.timestamp)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn poison_batches_are_refused_and_cannot_crash() {
    use common::{batch_with, length_prefixed, poison_batch, record_body};
    let flags = ["--batch-decompressed-bytes-max", "1048576"];
    let broker = Broker::start(&flags);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(create_topic(&mut raw, "poison", 1).topics[0].error_code, 0);
    let valid = petrel::record_batch::build_batch(&[b"a", b"b"], 1_000);
    assert_eq!(produce_one(&mut raw, "poison", valid.into()), (0, 0));
    let one = length_prefixed(&[record_body(0, b"v", 0)]);
    let mut past_the_end = Vec::new();
    common::put_varint(&mut past_the_end, 100);
    past_the_end.extend_from_slice(&record_body(0, b"v", 0));
    let mut trailing = one.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    // Decompresses to 2 MiB: a single record whose value is zeros.
    let bomb = gzip(&length_prefixed(&[record_body(0, &vec![0; 2 << 20], 0)]));
    assert!(bomb.len() < 10_000, "the bomb is small on the wire");
    let cases: Vec<(&str, Vec<u8>, i16)> = vec![
        ("2^31-1 records in no bytes", poison_batch(1_000), 87),
        (
            "2^31-1 headers",
            batch_with(
                &length_prefixed(&[record_body(0, b"v", 0x7FFF_FFFF)]),
                1,
                0,
                0,
                1,
            ),
            87,
        ),
        (
            "offset deltas 0, 2",
            batch_with(
                &length_prefixed(&[record_body(0, b"v", 0), record_body(2, b"v", 0)]),
                2,
                1,
                0,
                1,
            ),
            87,
        ),
        (
            "record length past the end",
            batch_with(&past_the_end, 1, 0, 0, 1),
            87,
        ),
        (
            "bytes after the last record",
            batch_with(&trailing, 1, 0, 0, 1),
            87,
        ),
        ("gzip bomb", batch_with(&bomb, 1, 0, 1, 1), 10),
        ("unknown codec 5", batch_with(&one, 1, 0, 5, 1), 76),
    ];
    for (name, batch, code) in cases {
        assert_eq!(
            produce_one(&mut raw, "poison", batch.into()).0,
            code,
            "{name}"
        );
        assert_eq!(
            list_offsets(&mut raw, "poison", -1).1,
            2,
            "{name}: high watermark moved"
        );
        assert_eq!(list_offsets(&mut raw, "poison", 0), (0, 0, 1_000), "{name}");
        assert_eq!(
            list_offsets(&mut raw, "poison", -3),
            (0, 0, 1_000),
            "{name}"
        );
    }
    // A poison batch already on disk (written by an older version): readers refuse it
    // with CORRUPT_MESSAGE and the broker stays up, after every restart.
    assert_eq!(create_topic(&mut raw, "stored", 1).topics[0].error_code, 0);
    drop(raw);
    let data_dir = broker.data_dir.clone();
    let temp = broker.stop();
    let segment = data_dir.join("stored-0").join("00000000000000000000.log");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open segment");
    file.write_all(&poison_batch(5_000)).expect("append poison");
    drop(file);
    let mut broker = Broker::start_in(&data_dir, &flags);
    let mut raw = Raw::connect(&broker.address);
    assert_eq!(list_offsets(&mut raw, "stored", 0).0, 2, "CORRUPT_MESSAGE");
    assert_eq!(list_offsets(&mut raw, "stored", -3).0, 2, "CORRUPT_MESSAGE");
    assert_eq!(list_offsets(&mut raw, "poison", 0), (0, 0, 1_000));
    assert!(broker.is_running());
    assert!(api_versions_ok(&broker.address));
    drop(raw);
    broker.stop();
    // The dump tool reports the batch instead of aborting on it.
    let dump = std::process::Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["log", "dump", "--batches"])
        .arg(data_dir.join("stored-0"))
        .output()
        .expect("run petrel log dump");
    let stdout = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.code() == Some(1),
        "dump must exit 1 (not by a signal) on an invalid batch: {:?}\n{stdout}",
        dump.status
    );
    assert!(
        stdout.contains("INVALID"),
        "the dump names the bad batch:\n{stdout}"
    );
    drop(temp);
}
