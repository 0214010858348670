//! The follower's side of replication: every shard copies the partitions it owns and
//! does not lead from their leaders, with Kafka's replica Fetch (`protocol::replica_fetch`:
//! replica id, `LastFetchedEpoch`, answered with `DivergingEpoch`). One session per leader
//! broker per shard carries all of that shard's partitions led there (thread-per-core: a
//! partition's replication runs on the shard that owns it). A session appends what it gets
//! as it is (`Log::append_replica`), waits until it is written to the device, and only
//! then fetches again: the fetch offset it reports is the leader's proof that everything
//! below is written here. A diverging log is cut to where the leader says it diverges
//! (KIP-101, KIP-279). An answer is applied to a partition only while its leader and
//! leader epoch are still the ones the fetch was made for (checked again before every
//! change, under the partition's replica-write lock): an answer that arrives after the
//! leadership moved is dropped, as Kafka's fetcher does.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes};

use crate::protocol::replica_fetch::{self, Answer, Limits, Replica, Wanted, OFFSET_OUT_OF_RANGE};
use crate::runtime::net::{self, Stream};
use crate::runtime::time;
use crate::shard::partition::Partition;
use crate::shard::Shard;
use crate::storage::{Durability, StorageError};

/// What a replica fetch may wait for and return (Kafka's `replica.fetch.wait.max.ms`,
/// `replica.fetch.max.bytes`, `replica.fetch.response.max.bytes`).
const LIMITS: Limits = Limits {
    max_wait_ms: 500,
    partition_bytes_max: 1 << 20,
    response_bytes_max: 8 << 20,
};
/// A response larger than this is refused before allocation (a few partitions' worth).
const FRAME_BYTES_MAX: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// How often a shard looks for leaders it follows without a session.
const SESSION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Runs on every shard of a cluster node until shutdown: starts a session per leader this
/// shard follows, when the metadata changes and every `SESSION_CHECK_INTERVAL` (a failed
/// log that the shard reopened changes no metadata, but is followed again).
pub async fn run(shard: Rc<Shard>) {
    let sessions: Rc<RefCell<HashSet<i32>>> = Rc::new(RefCell::new(HashSet::new()));
    loop {
        let changed = shard.metadata_changed.listen();
        for leader in followed_leaders(&shard) {
            if sessions.borrow_mut().insert(leader) {
                let (shard, sessions) = (shard.clone(), sessions.clone());
                crate::runtime::spawn(async move {
                    session(&shard, leader).await;
                    sessions.borrow_mut().remove(&leader);
                })
                .detach();
            }
        }
        let waited = shard
            .shutdown
            .or_stopped(time::timeout(SESSION_CHECK_INTERVAL, changed))
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
        .map(|partition| partition.role())
        .filter(|role| role.follows)
        .map(|role| role.leader)
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
        let role = self.partition.role();
        role.follows && role.leader == leader && role.leader_epoch == self.leader_epoch
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
            let role = partition.role();
            (role.follows && role.leader == leader).then_some(Followed {
                partition,
                leader_epoch: role.leader_epoch,
            })
        })
        .collect()
}

/// Fetches from `leader` for as long as this shard follows anything there.
async fn session(shard: &Rc<Shard>, leader: i32) {
    let mut connection: Option<Stream> = None;
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
            time::sleep(RETRY_DELAY).await;
            continue;
        };
        if connection.is_none() {
            // Over SSL the leader checks this node's certificate (its principal needs
            // CLUSTER_ACTION) and this node checks the leader's against the cluster's CAs.
            let connected = match &shard.config.inter_broker_tls {
                None => Stream::connect(&address, CONNECT_TIMEOUT).await,
                Some(tls) => Stream::connect_tls(&address, CONNECT_TIMEOUT, tls).await,
            };
            match connected {
                Ok(stream) => connection = Some(stream),
                Err(error) => {
                    tracing::debug!(leader, %error, "cannot reach the leader; retrying");
                    time::sleep(RETRY_DELAY).await;
                    continue;
                }
            }
        }
        correlation = correlation.wrapping_add(1);
        let stream = connection.as_mut().expect("connected above");
        // KIP-903: the fetch names this broker's registration epoch, so the leader counts
        // only the current incarnation of this broker as a follower.
        let node = shard.config.node_id;
        let epoch = shard
            .metadata()
            .brokers
            .get(&node)
            .map_or(-1, |me| i64::try_from(me.epoch).unwrap_or(i64::MAX));
        let replica = Replica { id: node, epoch };
        let answer = time::timeout(
            ANSWER_TIMEOUT,
            exchange(stream, replica, correlation, &followed),
        )
        .await;
        let answers = match answer {
            Ok(Ok(answers)) => answers,
            Ok(Err(error)) => {
                tracing::debug!(leader, %error, "replica fetch failed; reconnecting");
                connection = None;
                time::sleep(RETRY_DELAY).await;
                continue;
            }
            Err(time::Elapsed) => {
                connection = None;
                continue;
            }
        };
        if !apply(leader, &followed, answers).await {
            // Some partition was refused (the leader moved on): wait for the metadata.
            let changed = shard.metadata_changed.listen();
            let _ = time::timeout(RETRY_DELAY * 5, changed).await;
        }
    }
}

/// Sends the fetch of `followed` and reads its answer on `stream`.
async fn exchange(
    stream: &mut Stream,
    replica: Replica,
    correlation: i32,
    followed: &[Followed],
) -> Result<Vec<Answer>, String> {
    let wanted: Vec<Wanted> = followed
        .iter()
        .map(
            |Followed {
                 partition,
                 leader_epoch,
             }| Wanted {
                topic: partition.topic.clone(),
                topic_id: partition.topic_id,
                partition: partition.index,
                current_leader_epoch: *leader_epoch,
                fetch_offset: partition.log.next_offset(),
                last_fetched_epoch: partition.log.latest_epoch().unwrap_or(-1),
                log_start_offset: partition.log.log_start_offset(),
            },
        )
        .collect();
    let frame = replica_fetch::encode_request(replica, correlation, &wanted, LIMITS)
        .map_err(|error| error.to_string())?;
    net::write_frame(stream, &frame)
        .await
        .map_err(|e| e.to_string())?;
    let body = net::read_frame(stream, FRAME_BYTES_MAX)
        .await
        .map_err(|e| e.to_string())?;
    replica_fetch::decode_response(body, correlation, &wanted).map_err(|error| error.to_string())
}

/// Applies `leader`'s answers to the followed partitions. Returns false if the leader
/// refused any of them (it no longer leads them at that epoch).
async fn apply(leader: i32, followed: &[Followed], answers: Vec<Answer>) -> bool {
    let by_name: BTreeMap<(&str, i32), &Followed> = followed
        .iter()
        .map(|f| ((f.partition.topic.as_str(), f.partition.index), f))
        .collect();
    let mut accepted = true;
    for answer in answers {
        let Some(followed) = by_name
            .get(&(answer.topic.as_str(), answer.partition))
            .copied()
        else {
            continue;
        };
        let partition = &followed.partition;
        if answer.error_code != 0 && answer.error_code != OFFSET_OUT_OF_RANGE {
            accepted = false;
            tracing::debug!(topic = %partition.topic, partition = partition.index, code = answer.error_code, "replica fetch refused");
            continue;
        }
        let _writes = partition.lock_replica_writes().await;
        if !followed.current(leader) {
            tracing::debug!(topic = %partition.topic, partition = partition.index, leader, epoch = followed.leader_epoch, "leadership moved while fetching; answer dropped");
            continue;
        }
        if !apply_partition(leader, followed, answer).await {
            accepted = false;
        }
    }
    accepted
}

/// Applies one partition's answer, under its replica-write lock, while it is current.
/// Returns false if the leader refused it.
async fn apply_partition(leader: i32, followed: &Followed, answer: Answer) -> bool {
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
    if let Some((epoch, end_offset)) = answer.diverging {
        let end = end_offset.max(0).min(partition.log.next_offset());
        tracing::info!(topic = %partition.topic, partition = partition.index, end, epoch, "log diverges from the leader's; truncating");
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
    if followed.current(leader) {
        partition.learn_high_watermark(answer.high_watermark);
    }
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
