//! Followers: every shard copies the partitions it owns and does not lead from their
//! leaders, with Kafka's replica Fetch (v12: replica id, `LastFetchedEpoch`, answered with
//! `DivergingEpoch`). One session per leader broker per shard carries all of that shard's
//! partitions led there (thread-per-core: a partition's replication runs on the shard that
//! owns it). A session appends what it gets as it is (`Log::append_replica`), waits until
//! it is written to the device, and only then fetches again: the fetch offset it reports
//! is the leader's proof that everything below is written here. A diverging log is cut to
//! where the leader says it diverges (KIP-101, KIP-279). An answer is applied to a
//! partition only while its leader and leader epoch are still the ones the fetch was made
//! for (checked again before every change, under the partition's `replica_writes`): an
//! answer that arrives after the leadership moved is dropped, as Kafka's fetcher does.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{Partition, Shard};
use crate::storage::{Durability, StorageError};

/// Fetch version used between brokers: replica id at the top, `LastFetchedEpoch` and
/// `DivergingEpoch`, topics by name.
const REPLICA_FETCH_VERSION: i16 = 12;
/// How long a leader may hold a replica fetch with nothing new (Kafka's
/// `replica.fetch.wait.max.ms`).
const FETCH_WAIT_MS: i32 = 500;
const PARTITION_BYTES_MAX: i32 = 1 << 20;
const RESPONSE_BYTES_MAX: i32 = 8 << 20;
/// A response larger than this is refused before allocation (a few partitions' worth).
const FRAME_BYTES_MAX: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// How often the leader side looks for followers that fell behind (ISR shrink).
const LAG_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Kafka's OFFSET_OUT_OF_RANGE, in a replica fetch's answer.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Runs on every shard of a cluster node until shutdown: starts a session per leader this
/// shard follows, and asks for lagging followers to leave the ISRs of what it leads.
pub async fn run(shard: Rc<Shard>) {
    let sessions: Rc<RefCell<HashSet<i32>>> = Rc::new(RefCell::new(HashSet::new()));
    loop {
        let changed = shard.metadata_changed.listen();
        for leader in followed_leaders(&shard) {
            if sessions.borrow_mut().insert(leader) {
                let (shard, sessions) = (shard.clone(), sessions.clone());
                glommio::spawn_local(async move {
                    session(&shard, leader).await;
                    sessions.borrow_mut().remove(&leader);
                })
                .detach();
            }
        }
        let now = Instant::now();
        for partition in shard.owned_partitions() {
            let change = partition.replica.borrow_mut().lagging_change(now);
            if let Some(change) = change {
                tracing::info!(topic = %partition.topic, partition = partition.index, isr = ?change.isr, "a follower fell behind; shrinking the ISR");
                shard.request_isr_change(&partition, change);
            }
        }
        let waited = shard
            .shutdown
            .or_stopped(futures_lite::future::or(
                changed,
                glommio::timer::sleep(LAG_CHECK_INTERVAL),
            ))
            .await;
        if waited.is_none() {
            return;
        }
    }
}

/// The leaders of the partitions this shard follows.
fn followed_leaders(shard: &Shard) -> HashSet<i32> {
    shard
        .owned_partitions()
        .iter()
        .filter_map(|partition| {
            let replica = partition.replica.borrow();
            (replica.leader >= 0
                && !replica.is_leader()
                && replica.replicas.contains(&replica.node))
            .then_some(replica.leader)
        })
        .collect()
}

/// A partition a session fetches, and the leader epoch it was fetched at.
struct Followed {
    partition: Rc<Partition>,
    leader_epoch: i32,
}

impl Followed {
    /// Whether the partition is still followed from `leader` at the fetch's epoch.
    fn current(&self, leader: i32) -> bool {
        let replica = self.partition.replica.borrow();
        replica.leader == leader
            && replica.leader_epoch == self.leader_epoch
            && !replica.is_leader()
            && replica.replicas.contains(&replica.node)
    }
}

/// This shard's partitions led by `leader`, except failed logs (a full disk: every append
/// would fail until the shard reopens the log).
fn followed_from(shard: &Shard, leader: i32) -> Vec<Followed> {
    shard
        .owned_partitions()
        .into_iter()
        .filter(|partition| partition.log.failure().is_none())
        .filter_map(|partition| {
            let leader_epoch = {
                let replica = partition.replica.borrow();
                (replica.leader == leader
                    && !replica.is_leader()
                    && replica.replicas.contains(&replica.node))
                .then_some(replica.leader_epoch)
            }?;
            Some(Followed {
                partition,
                leader_epoch,
            })
        })
        .collect()
}

/// Fetches from `leader` for as long as this shard follows anything there.
async fn session(shard: &Rc<Shard>, leader: i32) {
    let mut connection: Option<TcpStream> = None;
    let mut correlation = 0i32;
    while !shard.shutdown.is_started() {
        let followed = followed_from(shard, leader);
        if followed.is_empty() {
            return;
        }
        let address = shard
            .metadata()
            .brokers
            .get(&leader)
            .filter(|broker| !broker.fenced)
            .map(|broker| format!("{}:{}", broker.host, broker.port));
        let Some(address) = address else {
            glommio::timer::sleep(RETRY_DELAY).await;
            continue;
        };
        if connection.is_none() {
            connection = connect(&address).await;
            if connection.is_none() {
                glommio::timer::sleep(RETRY_DELAY).await;
                continue;
            }
        }
        correlation = correlation.wrapping_add(1);
        let request = fetch_request(shard.config.node_id, &followed);
        let stream = connection.as_mut().expect("connected above");
        let answer = futures_lite::future::or(
            async { Some(exchange(stream, correlation, &request).await) },
            async {
                glommio::timer::sleep(ANSWER_TIMEOUT).await;
                None
            },
        )
        .await;
        let response = match answer {
            Some(Ok(response)) => response,
            Some(Err(error)) => {
                tracing::debug!(leader, %error, "replica fetch failed; reconnecting");
                connection = None;
                glommio::timer::sleep(RETRY_DELAY).await;
                continue;
            }
            None => {
                connection = None;
                continue;
            }
        };
        if !apply(leader, &followed, response).await {
            // Some partition was refused (the leader moved on): wait for the metadata.
            let changed = shard.metadata_changed.listen();
            futures_lite::future::or(changed, glommio::timer::sleep(RETRY_DELAY * 5)).await;
        }
    }
}

async fn connect(address: &str) -> Option<TcpStream> {
    let connected =
        futures_lite::future::or(async { Some(TcpStream::connect(address).await) }, async {
            glommio::timer::sleep(CONNECT_TIMEOUT).await;
            None
        })
        .await;
    match connected {
        Some(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Some(stream)
        }
        _ => None,
    }
}

fn fetch_request(node: i32, followed: &[Followed]) -> FetchRequest {
    let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for Followed {
        partition,
        leader_epoch,
    } in followed
    {
        let mut wanted = FetchPartition::default();
        wanted.partition = partition.index;
        wanted.current_leader_epoch = *leader_epoch;
        wanted.fetch_offset = partition.log.next_offset();
        wanted.last_fetched_epoch = partition.log.latest_epoch().unwrap_or(-1);
        wanted.log_start_offset = partition.log.log_start_offset();
        wanted.partition_max_bytes = PARTITION_BYTES_MAX;
        by_topic.entry(&partition.topic).or_default().push(wanted);
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(node);
    request.max_wait_ms = FETCH_WAIT_MS;
    request.min_bytes = 1;
    request.max_bytes = RESPONSE_BYTES_MAX;
    request.session_epoch = -1; // no fetch sessions: every request names every partition
    request.topics = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut fetch_topic = FetchTopic::default();
            fetch_topic.topic =
                kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_string()));
            fetch_topic.partitions = partitions;
            fetch_topic
        })
        .collect();
    request
}

/// Sends `request` and reads its answer on `stream`.
async fn exchange(
    stream: &mut TcpStream,
    correlation: i32,
    request: &FetchRequest,
) -> Result<FetchResponse, String> {
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Fetch as i16;
    header.request_api_version = REPLICA_FETCH_VERSION;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_static_str("petrel-replica"));
    let mut frame = BytesMut::new();
    header
        .encode(
            &mut frame,
            ApiKey::Fetch.request_header_version(REPLICA_FETCH_VERSION),
        )
        .map_err(|e| e.to_string())?;
    request
        .encode(&mut frame, REPLICA_FETCH_VERSION)
        .map_err(|e| e.to_string())?;
    let mut out = BytesMut::with_capacity(frame.len() + 4);
    out.put_i32(i32::try_from(frame.len()).map_err(|_| "request too large")?);
    out.put_slice(&frame);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .await
        .map_err(|e| e.to_string())?;
    let size = usize::try_from(i32::from_be_bytes(size)).map_err(|_| "negative frame size")?;
    if size > FRAME_BYTES_MAX {
        return Err(format!("answer of {size} bytes exceeds {FRAME_BYTES_MAX}"));
    }
    let mut body = vec![0u8; size];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(
        &mut body,
        ApiKey::Fetch.response_header_version(REPLICA_FETCH_VERSION),
    )
    .map_err(|e| e.to_string())?;
    if header.correlation_id != correlation {
        return Err("answer to another request".into());
    }
    FetchResponse::decode(&mut body, REPLICA_FETCH_VERSION).map_err(|e| e.to_string())
}

/// Applies `leader`'s answer to the followed partitions. Returns false if the leader
/// refused any of them (it no longer leads them at that epoch).
async fn apply(leader: i32, followed: &[Followed], response: FetchResponse) -> bool {
    let by_name: HashMap<(&str, i32), &Followed> = followed
        .iter()
        .map(|f| ((f.partition.topic.as_str(), f.partition.index), f))
        .collect();
    let mut accepted = true;
    for topic in response.responses {
        for answer in topic.partitions {
            let Some(followed) = by_name
                .get(&(topic.topic.as_str(), answer.partition_index))
                .copied()
            else {
                continue;
            };
            if answer.error_code != 0 && answer.error_code != OFFSET_OUT_OF_RANGE {
                accepted = false;
                tracing::debug!(topic = %followed.partition.topic, partition = followed.partition.index, code = answer.error_code, "replica fetch refused");
                continue;
            }
            let _writes = followed.partition.replica_writes.lock().await;
            if !followed.current(leader) {
                tracing::debug!(topic = %followed.partition.topic, partition = followed.partition.index, leader, epoch = followed.leader_epoch, "leadership moved while fetching; answer dropped");
                continue;
            }
            if !apply_partition(leader, followed, answer).await {
                accepted = false;
            }
        }
    }
    accepted
}

/// Applies one partition's answer, under its `replica_writes`, while it is current.
/// Returns false if the leader refused it.
async fn apply_partition(leader: i32, followed: &Followed, answer: PartitionData) -> bool {
    let partition = &followed.partition;
    if answer.error_code == OFFSET_OUT_OF_RANGE {
        if answer.log_start_offset > partition.log.next_offset() {
            // The leader's log now starts past this one's end (retention, or the offsets
            // log's compaction, while this replica was away): what is here can never be
            // continued, so start again at the leader's start.
            tracing::info!(topic = %partition.topic, partition = partition.index, start = answer.log_start_offset, "replica is below the leader's log start; starting over there");
            if let Err(error) = partition.log.restart_at(answer.log_start_offset).await {
                tracing::warn!(%error, "restarting a replica's log failed");
            }
            return true;
        }
        tracing::debug!(topic = %partition.topic, partition = partition.index, "replica fetch out of range");
        return false;
    }
    let diverging = &answer.diverging_epoch;
    if diverging.epoch >= 0 || diverging.end_offset >= 0 {
        let end = diverging.end_offset.max(0).min(partition.log.next_offset());
        tracing::info!(topic = %partition.topic, partition = partition.index, end, epoch = diverging.epoch, "log diverges from the leader's; truncating");
        if let Err(error) = partition.log.truncate_to(end).await {
            tracing::warn!(%error, "truncating a diverging replica failed");
        }
        return true;
    }
    if let Some(records) = answer.records {
        if let Err(error) = append_all(leader, followed, records).await {
            // A failed log (a full disk) is not fetched for again until the shard has
            // reopened it (`followed_from`).
            tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "appending replicated batches failed");
            return true;
        }
    }
    if !followed.current(leader) {
        return true;
    }
    // Follow the leader's log start (retention, DeleteRecords, the offsets log's
    // compaction), never past what this replica holds.
    let leader_start = answer.log_start_offset.min(partition.log.next_offset());
    if leader_start > partition.log.log_start_offset() {
        if let Err(error) = partition.log.delete_before(leader_start).await {
            tracing::warn!(%error, "moving a replica's log start failed");
        }
    }
    let written = partition.log.written_offset();
    if followed.current(leader) {
        partition
            .replica
            .borrow_mut()
            .learn_high_watermark(answer.high_watermark, written);
    }
    partition.replicated.notify(usize::MAX);
    true
}

/// Appends every whole batch of `records` and waits until they are written.
/// Stops early, keeping what it appended, if the leadership moves meanwhile.
async fn append_all(
    leader: i32,
    followed: &Followed,
    mut records: Bytes,
) -> Result<(), StorageError> {
    let partition = &followed.partition;
    let batch_bytes_max = partition.log.config().batch_bytes_max;
    let mut appended = false;
    while records.remaining() >= crate::record_batch::HEADER_BYTES && followed.current(leader) {
        let total = match crate::record_batch::frame(&records, batch_bytes_max) {
            Ok(view) => view.bytes.len(),
            // A partial last batch (the leader cut at its byte budget) is fetched again.
            Err(_) => break,
        };
        let batch = records.split_to(total);
        match partition.log.append_replica(batch.clone()).await {
            Ok(_) => {}
            // The leader's batch starts inside what this replica holds: its records there
            // came from another leader and were never committed under this one (committed
            // records are on the leader, in the leader's batches). The leader's log is the
            // truth: cut back to its batch and take it. (The epoch check should have found
            // this divergence first; the warning names it so the cause can be traced.)
            Err(StorageError::ReplicaGap { expected, got }) if got < expected => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, leader_batch = got, log_end = expected, "replica holds records the leader's log does not; truncating to the leader's batch");
                partition.log.truncate_to(got).await?;
                partition.log.append_replica(batch).await?;
            }
            Err(error) => return Err(error),
        }
        appended = true;
    }
    if appended {
        let end = partition.log.next_offset();
        partition.log.wait(Durability::Written, end).await?;
    }
    Ok(())
}
