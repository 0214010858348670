//! Fetch (key 1): reads whole stored batches and sends them without re-encoding.
//!
//! The connection's shard splits the request by owning shard and reads every part
//! concurrently. If the answer holds fewer than `min_bytes` and `max_wait_ms` has not
//! passed, it asks each owning shard to wait until one of its partitions' high watermark
//! passes what the last read saw (woken by the log's written-offset event), and reads again
//! as soon as the first does.
//!
//! Byte budgets (KIP-74, as Kafka): the response holds at most `limit = min(max_bytes,
//! fetch_bytes_max)`; each partition gets at most `min(partition_max_bytes, what is left)`.
//! The parts run at once on different shards, so the limit is split into equal shares, one
//! per owning shard, and each part spends its share in request order. Only the first batch
//! of the first non-empty partition may exceed the budgets (Kafka's minOneMessage), so a
//! consumer always makes progress however small its limits: that allowance goes to the part
//! holding the request's first partition, until one of its partitions returns data. If a
//! round returns nothing although a partition has data that did not fit its budget (its
//! first batch is larger, or it sits on another part than the allowance), the part holding
//! the first such partition reads again with the allowance. So the response exceeds `limit`
//! by at most one batch, and is never empty while a requested partition has data.
//!
//! Sessions (KIP-227): Petrel answers with session id 0 (no session), so clients keep
//! sending full fetch requests.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;

use crate::protocol::frame::Request;
use crate::runtime::time::{self, Deadline};
use crate::security::acl::Operation;
use crate::security::quota::CONSUMER_BYTE_RATE;
use crate::server::errors::{not_serving_code, storage_error_code};
use crate::server::exchange::{self, HandlerResult};
use crate::server::fanout::Fanout;
use crate::server::quota;
use crate::shard::partition::Partition;
use crate::shard::replication::leader::{self, FollowerFetch, Refused};
use crate::shard::{Shard, ShardGone};

/// Longest long-poll honoured, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// What the owning shard needs to read one partition.
#[derive(Clone)]
struct Item {
    topic: String,
    partition: i32,
    offset: i64,
    partition_max_bytes: usize,
    /// The client's idea of the leader epoch (-1: unknown; KIP-320).
    leader_epoch: i32,
    /// A follower's broker id (-1: a consumer).
    replica: i32,
    /// A follower's epoch of the last batch it holds (-1: none; KIP-595 divergence check).
    last_fetched_epoch: i32,
}

#[derive(Debug, Clone, Default)]
struct Outcome {
    error: Option<ResponseError>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
    /// The partition has data below its high watermark that this answer leaves out.
    more: bool,
    /// ... because the response's budget ran out (not the partition's own): the response
    /// cannot grow by waiting for new data.
    cut: bool,
    /// How far this reader may read: the high watermark, or for a follower the leader's
    /// written log end (what a long poll waits to move past).
    bound: i64,
    /// A follower's log diverges from the leader's: (epoch, end offset) to truncate to.
    diverging: Option<(i32, i64)>,
}

impl Outcome {
    fn failed(error: ResponseError) -> Outcome {
        Outcome {
            error: Some(error),
            high_watermark: -1,
            log_start_offset: -1,
            ..Outcome::default()
        }
    }
}

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: FetchRequest = exchange::decode(request)?;
    let version = request.api_version;
    let replica = replica_of(&body, version);
    let mut fanout = route(shard, request, &body, version);
    let max_wait = Duration::from_millis(body.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let limit = usize::try_from(body.max_bytes)
        .unwrap_or(0)
        .min(shard.config.fetch_bytes_max);
    let min_bytes = body.min_bytes.max(0) as usize;
    read_until_enough(
        shard,
        &mut fanout,
        limit,
        min_bytes,
        Deadline::after(max_wait),
    )
    .await?;
    let mut response = response(&body, version, fanout);
    if replica < 0 {
        // The consumer's byte rate (KIP-13): over its quota, the answer goes without its
        // data (not counted) and with the throttle, and the connection is muted (KIP-219).
        let bytes: usize = response
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
            .map(|partition| partition.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        let throttle = quota::record(shard, request, CONSUMER_BYTE_RATE, bytes);
        if !throttle.is_zero() {
            quota::unrecord(shard, request, CONSUMER_BYTE_RATE, bytes);
            quota::mute(request, throttle);
            response.responses.clear();
            response.throttle_time_ms = quota::throttle_ms(throttle);
        }
    }
    exchange::respond(request, &response)
}

/// The follower a fetch comes from (v15+ in `ReplicaState`), or -1 for a consumer.
fn replica_of(body: &FetchRequest, version: i16) -> i32 {
    if version >= 15 {
        body.replica_state.replica_id.0
    } else {
        body.replica_id.0
    }
}

/// Each partition of the request, routed to the shard that owns it (or answered at once:
/// unknown, or not authorized). As in Kafka, a consumer needs READ on each topic, and a
/// follower CLUSTER_ACTION on the cluster (without it every partition is refused).
fn route(
    shard: &Rc<Shard>,
    request: &Request,
    body: &FetchRequest,
    version: i16,
) -> Fanout<Item, Outcome> {
    let metadata = shard.metadata();
    let replica = replica_of(body, version);
    let access = shard.access(request);
    let follower_allowed = replica < 0 || access.may_on_cluster(Operation::ClusterAction);
    if !follower_allowed {
        tracing::info!(
            principal = access.principal(),
            peer = %request.client_host,
            replica,
            "a follower fetch without CLUSTER_ACTION on the cluster is refused"
        );
    }
    // KIP-903: a follower names its registration epoch (v15+); only the broker's current
    // registration counts as that follower, not a stranger using its id nor a stale
    // fetcher of a restarted broker.
    let current = replica < 0
        || (version >= 15
            && metadata.brokers.get(&replica).is_some_and(|broker| {
                i64::try_from(broker.epoch)
                    .is_ok_and(|epoch| epoch == body.replica_state.replica_epoch)
            }));
    if follower_allowed && !current {
        tracing::info!(
            peer = %request.client_host,
            replica,
            epoch = body.replica_state.replica_epoch,
            "a follower fetch without the broker's current registration epoch is refused"
        );
    }
    let mut fanout = Fanout::new();
    for fetch_topic in &body.topics {
        let topic = if version >= 13 {
            metadata.topic_by_id(&fetch_topic.topic_id)
        } else {
            metadata.topic(&fetch_topic.topic)
        };
        let allowed = follower_allowed
            && topic.is_none_or(|t| replica >= 0 || access.may_on_topic(Operation::Read, &t.name));
        for fetch_partition in &fetch_topic.partitions {
            match topic {
                _ if !allowed => {
                    fanout.answer(Outcome::failed(ResponseError::TopicAuthorizationFailed))
                }
                _ if !current => fanout.answer(Outcome::failed(ResponseError::StaleBrokerEpoch)),
                Some(topic) if (0..topic.partitions).contains(&fetch_partition.partition) => {
                    let item = Item {
                        topic: topic.name.clone(),
                        partition: fetch_partition.partition,
                        offset: fetch_partition.fetch_offset,
                        partition_max_bytes: fetch_partition.partition_max_bytes.max(0) as usize,
                        leader_epoch: fetch_partition.current_leader_epoch,
                        replica,
                        last_fetched_epoch: fetch_partition.last_fetched_epoch,
                    };
                    fanout.route(shard.owner_of(topic, fetch_partition.partition), item);
                }
                _ if version >= 13 => fanout.answer(Outcome::failed(ResponseError::UnknownTopicId)),
                _ => fanout.answer(Outcome::failed(ResponseError::UnknownTopicOrPartition)),
            }
        }
    }
    fanout
}

/// Reads every part on its owning shard, round after round, until the answer holds
/// `min_bytes`, an error, a part cut by the budget, or `deadline` passes; between rounds
/// it waits for new data anywhere (the long poll). `limit` is shared equally by the parts.
async fn read_until_enough(
    shard: &Rc<Shard>,
    fanout: &mut Fanout<Item, Outcome>,
    limit: usize,
    min_bytes: usize,
    deadline: Deadline,
) -> Result<(), ShardGone> {
    let share = limit / fanout.owner_count().max(1);
    // The part holding the request's first partition gets the first-batch allowance.
    let allowance_owner = first_owner(fanout, |_| true);
    loop {
        fanout
            .run(shard, move |target, items| async move {
                let min_one = allowance_owner == Some(target.id);
                read_on_owner(&target, items, share, min_one).await
            })
            .await?;
        if routed_bytes(fanout) == 0 {
            // Data exists but did not fit: the part holding the first such partition reads
            // it again with the first-batch allowance, so the answer is not empty.
            if let Some(owner) = first_owner(fanout, |outcome| outcome.more) {
                fanout
                    .run_where(
                        shard,
                        |candidate| candidate == owner,
                        move |target, items| async move {
                            read_on_owner(&target, items, share, true).await
                        },
                    )
                    .await?;
            }
        }
        let (mut bytes, mut errors, mut cut) = (0, false, false);
        for outcome in fanout.routed_answers() {
            bytes += outcome.records.len();
            errors |= outcome.error.is_some();
            cut |= outcome.cut;
        }
        if fanout.owner_count() == 0
            || bytes >= min_bytes.max(1)
            || errors
            || cut
            || deadline.passed()
            || shard.shutdown.is_started()
        {
            return Ok(());
        }
        wait_anywhere(shard, fanout, deadline.left()).await;
        if shard.shutdown.is_started() {
            // Answered at once with what the last round read: the broker is stopping.
            return Ok(());
        }
    }
}

/// The response, in request order.
fn response(body: &FetchRequest, version: i16, fanout: Fanout<Item, Outcome>) -> FetchResponse {
    let mut response = FetchResponse::default();
    let mut outcomes = fanout.into_answers(Outcome::default);
    for fetch_topic in &body.topics {
        let mut topic_response = FetchableTopicResponse::default();
        if version >= 13 {
            topic_response.topic_id = fetch_topic.topic_id;
        } else {
            topic_response.topic = TopicName(fetch_topic.topic.0.clone());
        }
        for fetch_partition in &fetch_topic.partitions {
            let outcome = outcomes.next().unwrap_or_default();
            let mut partition = PartitionData::default();
            partition.partition_index = fetch_partition.partition;
            partition.error_code = outcome.error.map_or(0, |e| e.code());
            partition.high_watermark = outcome.high_watermark;
            partition.last_stable_offset = outcome.high_watermark;
            if version >= 5 {
                partition.log_start_offset = outcome.log_start_offset;
            }
            if let Some((epoch, end_offset)) = outcome.diverging.filter(|_| version >= 12) {
                partition.diverging_epoch.epoch = epoch;
                partition.diverging_epoch.end_offset = end_offset;
            }
            partition.records = Some(outcome.records);
            topic_response.partitions.push(partition);
        }
        response.responses.push(topic_response);
    }
    response
}

/// Bytes of records the owning shards returned in the last round.
fn routed_bytes(fanout: &Fanout<Item, Outcome>) -> usize {
    fanout.routed_answers().map(|o| o.records.len()).sum()
}

/// The owning shard of the first partition, in request order, whose answer so far passes
/// `test` (before any round, every answer passes as the empty default).
fn first_owner(fanout: &Fanout<Item, Outcome>, test: impl Fn(&Outcome) -> bool) -> Option<usize> {
    fanout
        .parts()
        .filter_map(|(owner, items)| {
            items
                .iter()
                .map(|(position, _)| *position)
                .find(|&position| fanout.answer_at(position).is_none_or(&test))
                .map(|position| (position, owner))
        })
        .min()
        .map(|(_, owner)| owner)
}

/// Reads this shard's partitions of a fetch in request order, spending at most `share`
/// bytes, except that with `min_one` the first partition with data returns its first batch
/// whatever the budgets.
async fn read_on_owner(
    shard: &Rc<Shard>,
    items: Vec<(usize, Item)>,
    share: usize,
    min_one: bool,
) -> Vec<(usize, Outcome)> {
    let mut budget = Budget {
        left: share,
        min_one,
    };
    let mut results = Vec::with_capacity(items.len());
    for (position, item) in items {
        results.push((position, read_one(shard, &item, &mut budget).await));
    }
    results
}

/// What is left of a part's byte share, and whether its first non-empty partition may
/// still exceed it by one batch.
struct Budget {
    left: usize,
    min_one: bool,
}

/// Reads one partition for a fetch, spending from `budget`.
async fn read_one(shard: &Rc<Shard>, item: &Item, budget: &mut Budget) -> Outcome {
    let (partition, leader_epoch) =
        match shard.leading_partition(&item.topic, item.partition, item.leader_epoch) {
            Ok(led) => led,
            Err(reason) => return Outcome::failed(not_serving_code(reason)),
        };
    // A follower reads up to what the leader has written; a consumer up to the high
    // watermark, which the followers' progress moves.
    let bound = if item.replica >= 0 {
        match follower_fetch(shard, &partition, item) {
            Ok(bound) => bound,
            Err(rejected) => return rejected,
        }
    } else {
        partition.high_watermark()
    };
    let mut outcome = Outcome {
        high_watermark: partition.high_watermark(),
        log_start_offset: partition.log.log_start_offset(),
        bound,
        ..Outcome::default()
    };
    let allowed = item.partition_max_bytes.min(budget.left);
    let mut next_offset = item.offset;
    if item.offset != bound && (allowed > 0 || budget.min_one) {
        let read = partition
            .log
            .read(item.offset, allowed, bound, budget.min_one)
            .await;
        match read {
            // Leadership lost during the read: the log may have been cut and refilled from
            // the new leader meanwhile, so what was read is not this leadership's log (a
            // follower would take batches that do not line up with its own).
            Ok(_) if !still_leading(shard, &partition, item, leader_epoch) => {
                return Outcome::failed(ResponseError::NotLeaderOrFollower)
            }
            Ok(read) => {
                if !read.batches.is_empty() {
                    budget.min_one = false;
                    next_offset = read.next_offset;
                }
                budget.left = budget.left.saturating_sub(read.bytes);
                outcome.records = concat(read.batches, read.bytes);
            }
            Err(error) => {
                outcome.error = Some(storage_error_code(&error));
                return outcome;
            }
        }
    }
    outcome.more = next_offset < bound;
    outcome.cut = outcome.more && allowed < item.partition_max_bytes;
    outcome
}

/// Whether this shard still leads `partition` at `leader_epoch`, as when the read started.
fn still_leading(shard: &Shard, partition: &Rc<Partition>, item: &Item, leader_epoch: i32) -> bool {
    shard
        .leading_partition(&item.topic, item.partition, item.leader_epoch)
        .is_ok_and(|(now, epoch)| epoch == leader_epoch && Rc::ptr_eq(&now, partition))
}

/// Stored batches, contiguous for the response encoder. A single batch (the common case
/// for a tailing consumer) is passed through without a copy; several are joined once.
fn concat(batches: Vec<Bytes>, bytes: usize) -> Bytes {
    if batches.len() == 1 {
        return batches.into_iter().next().unwrap_or_default();
    }
    let mut joined = BytesMut::with_capacity(bytes);
    for batch in batches {
        joined.extend_from_slice(&batch);
    }
    joined.freeze()
}

/// A follower's fetch on the leader (`replication::leader`): how far it may read, or the
/// answer when it may not read.
fn follower_fetch(
    shard: &Rc<Shard>,
    partition: &Rc<Partition>,
    item: &Item,
) -> Result<i64, Outcome> {
    let fetch = FollowerFetch {
        replica: item.replica,
        fetch_offset: item.offset,
        last_fetched_epoch: item.last_fetched_epoch,
    };
    leader::follower_fetch(shard, partition, &fetch).map_err(|refused| match refused {
        Refused::NotReplica => Outcome::failed(ResponseError::NotLeaderOrFollower),
        Refused::Diverging { epoch, end_offset } => Outcome {
            high_watermark: partition.high_watermark(),
            log_start_offset: partition.log.log_start_offset(),
            bound: partition.log.written_offset(),
            diverging: Some((epoch, end_offset)),
            ..Outcome::default()
        },
    })
}

/// Waits until any owning shard reports new data for its part, or `within` passes.
async fn wait_anywhere(shard: &Rc<Shard>, fanout: &Fanout<Item, Outcome>, within: Duration) {
    let (signal, woken) = async_channel::bounded::<()>(fanout.owner_count().max(1));
    for (owner, items) in fanout.parts() {
        // New data means a high watermark past the one the last read saw (or past the fetch
        // offset): waiting for one past the fetch offset alone would return at once, again
        // and again, while the data there is not enough for `min_bytes`.
        let watched: Vec<(String, i32, i64, bool)> = items
            .iter()
            .map(|(position, item)| {
                let seen = fanout
                    .answer_at(*position)
                    .map_or(item.offset, |outcome| outcome.bound);
                (
                    item.topic.clone(),
                    item.partition,
                    seen.max(item.offset),
                    item.replica >= 0,
                )
            })
            .collect();
        let (shard, signal) = (shard.clone(), signal.clone());
        crate::runtime::spawn(async move {
            let _ = shard
                .run_on(owner, move |target| async move {
                    wait_on_owner(&target, watched, within).await
                })
                .await;
            let _ = signal.try_send(());
        })
        .detach();
    }
    drop(signal);
    // A stopping broker answers long polls at once.
    let _ = shard
        .shutdown
        .or_stopped(time::timeout(within, woken.recv()))
        .await;
}

/// Resolves when any watched partition's bound (high watermark, or a follower's written
/// log end) passes the one given for it, or `within` passes. A wake-up is only a reason to
/// look again: `replicated` also fires for other fetches' progress, and returning on it
/// made two followers' waiting fetches wake each other in a loop that held the core.
async fn wait_on_owner(
    shard: &Rc<Shard>,
    watched: Vec<(String, i32, i64, bool)>,
    within: Duration,
) {
    let deadline = Deadline::after(within);
    loop {
        let mut listeners = Vec::new();
        for (topic, index, seen, follower) in &watched {
            if let Some(partition) = shard.partition(topic, *index) {
                // Listening before looking: a change between the two still wakes us.
                listeners.push(partition.log.on_written());
                listeners.push(partition.on_replicated());
                let bound = if *follower {
                    partition.log.written_offset()
                } else {
                    partition.high_watermark()
                };
                if bound > *seen {
                    return;
                }
            }
        }
        let left = deadline.left();
        if left.is_zero() {
            return;
        }
        if listeners.is_empty() {
            time::sleep(left).await;
            return;
        }
        let any = futures_lite::future::poll_fn(|context| {
            for listener in listeners.iter_mut() {
                if std::pin::Pin::new(listener).poll(context).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        });
        let _ = time::timeout(left, any).await;
    }
}

use std::future::Future as _;
