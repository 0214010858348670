//! Produce (key 0), acks 0/1/-1.
//!
//! The connection's shard resolves topics (creating unknown ones if allowed), splits the
//! request by owning shard, runs each part there concurrently, and reassembles one reply in
//! request order. Per partition: exactly one v2 batch, CRC-32C checked, every record walked
//! and checked as Kafka's `LogValidator` does (compressed ones inflated within
//! `--batch-decompressed-bytes-max`), within `max.message.bytes`; a bad batch gets its Kafka
//! error and nothing of it is written.
//!
//! What an acknowledgement promises (ARCHITECTURE.md, Durability):
//! - acks=0: no answer. The write to disk is started right away.
//! - acks=1: the batch is written to the device (survives a crash of the broker process).
//! - acks=-1: the batch is `fdatasync`ed (survives power loss) under the default flush
//!   policy; with `--flush-interval-ms`, as acks=1 plus a sync within the interval.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::cluster::metadata::is_internal_topic;
use crate::protocol::frame::Request;
use crate::record_batch;
use crate::security::acl::Operation;
use crate::security::quota::PRODUCER_BYTE_RATE;
use crate::server::errors::{batch_error_code, not_serving_code, storage_error_code};
use crate::server::exchange::{self, HandlerResult};
use crate::server::fanout::Fanout;
use crate::server::quota;
use crate::server::turn::Turn;
use crate::shard::access::Access;
use crate::shard::Shard;
use crate::storage::{Durability, StorageError};

/// One partition's part of the request, sent to its owning shard.
#[derive(Clone)]
struct Item {
    topic: String,
    partition: i32,
    records: Option<Bytes>,
}

#[derive(Debug, Clone)]
struct Outcome {
    error: Option<(ResponseError, String)>,
    base_offset: i64,
    log_start_offset: i64,
}

impl Outcome {
    fn failed(code: ResponseError, message: impl Into<String>) -> Outcome {
        Outcome {
            error: Some((code, message.into())),
            base_offset: -1,
            log_start_offset: -1,
        }
    }

    fn lost() -> Outcome {
        Outcome::failed(ResponseError::UnknownServerError, "lost")
    }
}

/// A partition's answer after its append: the outcome, and for an appended batch what its
/// acknowledgement waits for.
struct Appended {
    outcome: Outcome,
    wait: Option<Wait>,
}

/// An appended batch whose acknowledgement waits for durability, on the shard that owns it.
#[derive(Clone)]
struct Wait {
    owner: usize,
    topic: String,
    partition: i32,
    end_offset: i64,
}

pub async fn handle(shard: &Rc<Shard>, request: &Request, mut turn: Turn) -> HandlerResult {
    let body: ProduceRequest = exchange::decode(request)?;
    let version = request.api_version;
    let acks = body.acks;
    // The producer's byte rate (KIP-13): throttled (and muted) if over its quota; the
    // produce itself goes ahead, as in Kafka.
    let throttle = quota::record(shard, request, PRODUCER_BYTE_RATE, request.body.len());
    quota::mute(request, throttle);
    let access = shard.access(request);
    if version < 13 && shard.config.auto_create_topics {
        // Only topics the producer may write to, and may create (Kafka's rule for
        // auto-creation: CREATE on the cluster or on the topic).
        let names = body
            .topic_data
            .iter()
            .filter(|t| access.may_on_topic(Operation::Write, &t.name))
            .filter(|t| {
                access.may_on_cluster(Operation::Create)
                    || access.may_on_topic(Operation::Create, &t.name)
            })
            .map(|t| t.name.to_string())
            .collect();
        crate::shard::topics::ensure_topics(shard, names).await;
    }
    let mut appends = route(shard, &access, &body, version);
    let timeout = Duration::from_millis(body.timeout_ms.max(0) as u64);
    // Phase 1, in this connection's request order: validate and append on every owner.
    appends
        .run_once(shard, move |target, items| async move {
            append_on_owner(&target, items, acks).await
        })
        .await?;
    turn.release();
    if acks == 0 {
        return Ok(None);
    }
    let outcomes = await_acknowledgements(shard, appends, acks, timeout).await?;
    let mut response = response(shard, request, &body, outcomes);
    response.throttle_time_ms = quota::throttle_ms(throttle);
    exchange::respond(request, &response)
}

/// Each partition of the request: refused at once (bad acks, transactions, no WRITE on
/// the topic, unknown partition), or routed to the shard that owns it.
fn route(
    shard: &Rc<Shard>,
    access: &Access<'_>,
    body: &ProduceRequest,
    version: i16,
) -> Fanout<Item, Appended> {
    let metadata = shard.metadata();
    let acks = body.acks;
    let unknown = if version >= 13 {
        ResponseError::UnknownTopicId
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    let mut appends = Fanout::new();
    for topic_data in &body.topic_data {
        let topic = if version >= 13 {
            metadata.topic_by_id(&topic_data.topic_id)
        } else {
            metadata.topic(&topic_data.name)
        };
        let name = topic.map_or(topic_data.name.as_str(), |t| t.name.as_str());
        let writable =
            (version >= 13 && topic.is_none()) || access.may_on_topic(Operation::Write, name);
        for partition_data in &topic_data.partition_data {
            let refused = |code, message: &str| Appended {
                outcome: Outcome::failed(code, message),
                wait: None,
            };
            if !matches!(acks, -1..=1) {
                let message = format!("acks must be -1, 0 or 1, got {acks}");
                appends.answer(refused(ResponseError::InvalidRequiredAcks, &message));
            } else if !writable {
                let message = "the principal may not WRITE to this topic";
                appends.answer(refused(ResponseError::TopicAuthorizationFailed, message));
            } else if body.transactional_id.is_some() {
                let message = "transactions are not supported";
                appends.answer(refused(
                    ResponseError::TransactionalIdAuthorizationFailed,
                    message,
                ));
            } else {
                match topic {
                    Some(topic) if (0..topic.partitions).contains(&partition_data.index) => {
                        let item = Item {
                            topic: topic.name.clone(),
                            partition: partition_data.index,
                            records: partition_data.records.clone(),
                        };
                        appends.route(shard.owner_of(topic, partition_data.index), item);
                    }
                    _ => appends.answer(refused(
                        unknown,
                        "this server does not host this topic-partition",
                    )),
                }
            }
        }
    }
    appends
}

/// Phase 2: waits for durability as acks asks; overlaps with later requests. Each position
/// keeps its append outcome unless its wait fails.
async fn await_acknowledgements(
    shard: &Rc<Shard>,
    appends: Fanout<Item, Appended>,
    acks: i16,
    timeout: Duration,
) -> Result<Vec<Outcome>, crate::shard::ShardGone> {
    let mut waits: Fanout<Wait, Option<Outcome>> = Fanout::new();
    let mut outcomes = Vec::new();
    for appended in appends.into_answers(|| Appended {
        outcome: Outcome::lost(),
        wait: None,
    }) {
        match appended.wait {
            Some(wait) => waits.route(wait.owner, wait),
            None => waits.answer(None),
        }
        outcomes.push(appended.outcome);
    }
    waits
        .run_once(shard, move |target, owner_waits| async move {
            wait_on_owner(&target, owner_waits, acks, timeout).await
        })
        .await?;
    for (outcome, failure) in outcomes.iter_mut().zip(waits.into_answers(|| None)) {
        if let Some(failure) = failure {
            *outcome = failure;
        }
    }
    Ok(outcomes)
}

/// The response, in request order. KIP-951: a partition this broker does not lead names
/// its current leader (v10+), and the response carries those leaders' endpoints, so the
/// client retries there without a Metadata round trip.
fn response(
    shard: &Shard,
    request: &Request,
    body: &ProduceRequest,
    outcomes: Vec<Outcome>,
) -> ProduceResponse {
    let version = request.api_version;
    let listener = shard.listener_name(request);
    let mut response = ProduceResponse::default();
    let mut outcomes = outcomes.into_iter();
    let latest = shard.metadata();
    let mut leaders = std::collections::BTreeSet::new();
    for topic_data in &body.topic_data {
        let mut topic_response = TopicProduceResponse::default();
        if version >= 13 {
            topic_response.topic_id = topic_data.topic_id;
        } else {
            topic_response.name = TopicName(topic_data.name.0.clone());
        }
        for partition_data in &topic_data.partition_data {
            let outcome = outcomes.next().unwrap_or_else(Outcome::lost);
            let mut partition = PartitionProduceResponse::default();
            partition.index = partition_data.index;
            partition.base_offset = outcome.base_offset;
            if version >= 5 {
                partition.log_start_offset = outcome.log_start_offset;
            }
            if let Some((code, message)) = outcome.error {
                partition.error_code = code.code();
                if version >= 8 {
                    partition.error_message = Some(str_bytes(&message));
                }
                if version >= 10 && code == ResponseError::NotLeaderOrFollower {
                    let topic = if version >= 13 {
                        latest.topic_by_id(&topic_data.topic_id)
                    } else {
                        latest.topic(&topic_data.name)
                    };
                    if let Some(state) = topic.and_then(|t| t.state_of(partition_data.index)) {
                        partition.current_leader.leader_id = BrokerId(state.leader);
                        partition.current_leader.leader_epoch = state.leader_epoch;
                        if state.leader >= 0 {
                            leaders.insert(state.leader);
                        }
                    }
                }
            }
            topic_response.partition_responses.push(partition);
        }
        response.responses.push(topic_response);
    }
    response.node_endpoints = leaders
        .into_iter()
        .filter_map(|id| latest.brokers.get(&id))
        .filter_map(|broker| {
            let (host, port) = broker.endpoint(listener)?;
            let mut endpoint = NodeEndpoint::default();
            endpoint.node_id = BrokerId(broker.id);
            endpoint.host = str_bytes(host);
            endpoint.port = i32::from(port);
            Some(endpoint)
        })
        .collect();
    response
}

/// Runs on the shard that owns `items`: validates and appends each batch, in order.
async fn append_on_owner(
    shard: &Rc<Shard>,
    items: Vec<(usize, Item)>,
    acks: i16,
) -> Vec<(usize, Appended)> {
    let mut results = Vec::with_capacity(items.len());
    for (position, item) in items {
        results.push((position, append_one(shard, item, acks).await));
    }
    results
}

/// Validates and appends one partition's batch on its owning shard.
async fn append_one(shard: &Rc<Shard>, item: Item, acks: i16) -> Appended {
    let refused = |outcome| Appended {
        outcome,
        wait: None,
    };
    if is_internal_topic(&item.topic) {
        // Only the group coordinators write there (Kafka: "cannot append to internal
        // topic").
        return refused(Outcome::failed(
            ResponseError::InvalidTopicException,
            "clients cannot produce to an internal topic",
        ));
    }
    let (partition, leader_epoch) = match shard.leading_partition(&item.topic, item.partition, -1) {
        Ok(leading) => leading,
        Err(reason) => {
            return refused(Outcome::failed(
                not_serving_code(reason),
                "this broker does not lead the partition",
            ))
        }
    };
    if acks == -1 {
        let min_insync = shard.min_insync_replicas(&item.topic);
        let in_sync = partition.in_sync_replicas();
        if (in_sync as i64) < min_insync {
            return refused(Outcome::failed(
                ResponseError::NotEnoughReplicas,
                format!("{in_sync} in-sync replicas; min.insync.replicas is {min_insync}"),
            ));
        }
    }
    let batch = match check_batch(item.records, partition.log.config().batch_bytes_max) {
        Ok(batch) => batch,
        Err((code, message)) => {
            tracing::debug!(topic = %item.topic, partition = item.partition, %message, "rejected batch");
            return refused(Outcome::failed(code, message));
        }
    };
    // The leader epoch goes into the batch (KIP-101: followers truncate by it).
    let batch_bytes = batch.len() as u64;
    let appended = match partition.log.append(batch, leader_epoch).await {
        Ok(appended) => appended,
        Err(error) => return refused(storage_failure(&error)),
    };
    let end_offset = appended.last_offset + 1;
    if !appended.duplicate {
        let records = appended.last_offset - appended.base_offset + 1;
        partition.produced.records.add(records.max(0) as u64);
        partition.produced.bytes.add(batch_bytes);
    }
    if acks == 0 {
        // Nobody waits for the answer, but the data goes to disk now.
        let log = partition.log.clone();
        crate::runtime::spawn(async move {
            if let Err(error) = log.wait(Durability::Written, end_offset).await {
                tracing::error!(log = %log.name(), %error, "flush after acks=0 produce failed");
            }
        })
        .detach();
    }
    Appended {
        outcome: Outcome {
            error: None,
            base_offset: appended.base_offset,
            log_start_offset: partition.log.log_start_offset(),
        },
        wait: Some(Wait {
            owner: shard.id,
            topic: item.topic,
            partition: item.partition,
            end_offset,
        }),
    }
}

/// Runs on the owning shard: waits for every appended batch at once (group commit shares
/// the flushes); a batch whose wait failed or timed out gets its failure as its answer.
async fn wait_on_owner(
    shard: &Rc<Shard>,
    waits: Vec<(usize, Wait)>,
    acks: i16,
    timeout: Duration,
) -> Vec<(usize, Option<Outcome>)> {
    let waiting: Vec<_> = waits
        .into_iter()
        .filter_map(|(position, wait)| {
            let partition = shard.partition(&wait.topic, wait.partition)?;
            let log = partition.log.clone();
            let shard_of_wait = shard.clone();
            Some(crate::runtime::spawn(async move {
                let done = async {
                    if acks == 1 {
                        log.wait(Durability::Written, wait.end_offset).await
                    } else {
                        log.wait_durable(wait.end_offset).await?;
                        let min_insync = shard_of_wait.min_insync_replicas(&wait.topic);
                        let epoch = partition.role().leader_epoch;
                        partition
                            .wait_replicated(wait.end_offset, epoch, min_insync)
                            .await
                    }
                };
                let outcome = crate::runtime::time::timeout(timeout, done).await.ok();
                (position, outcome)
            }))
        })
        .collect();
    let mut failures = Vec::new();
    for wait in waiting {
        let (position, outcome) = wait.await;
        match outcome {
            Some(Ok(())) => {}
            Some(Err(error)) => failures.push((position, Some(storage_failure(&error)))),
            None => failures.push((
                position,
                Some(Outcome::failed(
                    ResponseError::RequestTimedOut,
                    "durability wait exceeded timeout_ms",
                )),
            )),
        }
    }
    failures
}

fn storage_failure(error: &StorageError) -> Outcome {
    Outcome::failed(storage_error_code(error), error.to_string())
}

/// The checks Kafka applies to a v2 produce batch, before anything is written.
fn check_batch(
    records: Option<Bytes>,
    batch_bytes_max: usize,
) -> Result<Bytes, (ResponseError, String)> {
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or((ResponseError::InvalidRecord, "no records".to_string()))?;
    if records.len() > batch_bytes_max {
        return Err((
            ResponseError::MessageTooLarge,
            format!(
                "batch of {} bytes exceeds max.message.bytes {batch_bytes_max}",
                records.len()
            ),
        ));
    }
    // Framing only: the CRC-32C and every record are checked once, by the log's append
    // (`record_batch::validate`: its guarantee that no invalid batch is ever stored), and
    // map to the same codes.
    let view = record_batch::frame(&records, batch_bytes_max)
        .map_err(|e| (batch_error_code(&e), e.to_string()))?;
    if view.bytes.len() != records.len() {
        return Err((
            ResponseError::InvalidRecord,
            "a produce request must hold exactly one batch per partition".into(),
        ));
    }
    let header = view.header;
    if header.is_control() {
        return Err((
            ResponseError::InvalidRecord,
            "clients may not write control batches".into(),
        ));
    }
    if header.is_transactional() {
        return Err((
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported".into(),
        ));
    }
    // Idempotent batches (producer id >= 0) are sequence-checked by the log, atomically
    // with the append.
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_checks_give_the_codes_clients_expect() {
        let good = Bytes::from(crate::testkit::uniform_batch(2, 10, 1));
        assert!(check_batch(Some(good.clone()), 1 << 20).is_ok());
        let mut two = good.to_vec();
        two.extend_from_slice(&good);
        let mut corrupt = good.to_vec();
        *corrupt.last_mut().unwrap() ^= 1;
        let cases = [
            (None, ResponseError::InvalidRecord),
            (Some(Bytes::from(two)), ResponseError::InvalidRecord),
            (
                Some(Bytes::from_static(b"short")),
                ResponseError::CorruptMessage,
            ),
        ];
        for (records, code) in cases {
            assert_eq!(check_batch(records, 1 << 20).unwrap_err().0, code);
        }
        // A CRC mismatch passes framing and is refused by the log's append, whose error
        // answers CORRUPT_MESSAGE (end to end: tests/broker_protocol.rs).
        assert!(check_batch(Some(Bytes::from(corrupt.clone())), 1 << 20).is_ok());
        let refused = record_batch::verify(&corrupt, 1 << 20).unwrap_err();
        assert_eq!(
            storage_error_code(&StorageError::InvalidBatch(refused)),
            ResponseError::CorruptMessage
        );
        assert_eq!(
            check_batch(Some(good), 20).unwrap_err().0,
            ResponseError::MessageTooLarge
        );
    }
}
