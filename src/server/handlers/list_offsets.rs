//! ListOffsets (key 2): earliest, latest, max timestamp, and offset by timestamp.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::protocol::frame::Request;
use crate::protocol::records;
use crate::security::acl::Operation;
use crate::server::errors::{not_serving_code, storage_error_code};
use crate::server::exchange::{self, HandlerResult};
use crate::server::fanout::Fanout;
use crate::shard::partition::Partition;
use crate::shard::Shard;
use crate::storage::StorageError;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

#[derive(Clone, Copy)]
struct Answer {
    error: Option<ResponseError>,
    offset: i64,
    timestamp: i64,
    /// The partition's leader epoch (v4+; -1 when unknown).
    leader_epoch: i32,
}

const NOT_FOUND: Answer = Answer {
    error: None,
    offset: -1,
    timestamp: -1,
    leader_epoch: -1,
};

/// What the owning shard needs to answer one partition.
#[derive(Clone)]
struct Item {
    topic: String,
    partition: i32,
    timestamp: i64,
    /// The client's idea of the leader epoch (-1: unknown; KIP-320).
    leader_epoch: i32,
}

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: ListOffsetsRequest = exchange::decode(request)?;
    let metadata = shard.metadata();
    let access = shard.access(request);
    let mut fanout = Fanout::new();
    for topic_request in &body.topics {
        let topic = metadata.topic(&topic_request.name);
        // Kafka: DESCRIBE on the topic.
        let allowed = access.may_on_topic(Operation::Describe, &topic_request.name);
        for partition in &topic_request.partitions {
            match topic {
                _ if !allowed => fanout.answer(Answer {
                    error: Some(ResponseError::TopicAuthorizationFailed),
                    ..NOT_FOUND
                }),
                Some(topic) if (0..topic.partitions).contains(&partition.partition_index) => {
                    let item = Item {
                        topic: topic.name.clone(),
                        partition: partition.partition_index,
                        timestamp: partition.timestamp,
                        leader_epoch: partition.current_leader_epoch,
                    };
                    fanout.route(shard.owner_of(topic, partition.partition_index), item);
                }
                _ => fanout.answer(unknown_partition()),
            }
        }
    }
    fanout
        .run_once(shard, |target, items| async move {
            look_up_on_owner(&target, items).await
        })
        .await?;
    let mut response = ListOffsetsResponse::default();
    let mut answers = fanout.into_answers(|| NOT_FOUND);
    for topic_request in &body.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic_request.name.clone();
        for partition in &topic_request.partitions {
            let answer = answers.next().unwrap_or(NOT_FOUND);
            let mut partition_response = ListOffsetsPartitionResponse::default();
            partition_response.partition_index = partition.partition_index;
            partition_response.error_code = answer.error.map_or(0, |e| e.code());
            partition_response.offset = answer.offset;
            partition_response.timestamp = answer.timestamp;
            if request.api_version >= 4 {
                partition_response.leader_epoch = answer.leader_epoch;
            }
            topic_response.partitions.push(partition_response);
        }
        response.topics.push(topic_response);
    }
    exchange::respond(request, &response)
}

fn unknown_partition() -> Answer {
    Answer {
        error: Some(ResponseError::UnknownTopicOrPartition),
        ..NOT_FOUND
    }
}

/// Runs on the shard that owns `items`: looks each one up, in order.
async fn look_up_on_owner(shard: &Rc<Shard>, items: Vec<(usize, Item)>) -> Vec<(usize, Answer)> {
    let mut answers = Vec::with_capacity(items.len());
    for (position, item) in items {
        let answer = match shard.leading_partition(&item.topic, item.partition, item.leader_epoch) {
            Ok((partition, leader_epoch)) => match lookup(&partition, item.timestamp).await {
                Ok(found) => Answer {
                    leader_epoch,
                    ..found
                },
                Err(error) => Answer {
                    error: Some(storage_error_code(&error)),
                    ..NOT_FOUND
                },
            },
            Err(reason) => Answer {
                error: Some(not_serving_code(reason)),
                ..NOT_FOUND
            },
        };
        answers.push((position, answer));
    }
    answers
}

async fn lookup(partition: &Partition, timestamp: i64) -> Result<Answer, StorageError> {
    let log = &partition.log;
    let high_watermark = partition.high_watermark();
    let found = |offset: i64| Answer {
        error: None,
        offset,
        timestamp: -1,
        leader_epoch: -1,
    };
    let limits = log.config().record_limits();
    match timestamp {
        LATEST => Ok(found(high_watermark)),
        EARLIEST | EARLIEST_LOCAL => Ok(found(log.log_start_offset())),
        MAX_TIMESTAMP => {
            let max = log.max_timestamp();
            if max == i64::MIN {
                return Ok(NOT_FOUND);
            }
            by_time(partition, max, |batch| {
                records::max_timestamp_record(batch, limits)
            })
            .await
        }
        timestamp if timestamp >= 0 => {
            by_time(partition, timestamp, |batch| {
                records::first_at_or_after(batch, timestamp, limits)
            })
            .await
        }
        _ => Ok(NOT_FOUND),
    }
}

async fn by_time(
    partition: &Partition,
    timestamp: i64,
    pick: impl Fn(&[u8]) -> Result<Option<(i64, i64)>, records::RecordsError>,
) -> Result<Answer, StorageError> {
    let Some(batch) = partition.log.find_batch_by_timestamp(timestamp).await? else {
        return Ok(NOT_FOUND);
    };
    // A stored batch that cannot be walked (written by an older version, or damaged) is
    // answered CORRUPT_MESSAGE; the walk is bounded, so it cannot take the broker down.
    match pick(&batch) {
        Ok(Some((offset, timestamp))) if offset < partition.high_watermark() => Ok(Answer {
            error: None,
            offset,
            timestamp,
            leader_epoch: -1,
        }),
        Ok(_) => Ok(NOT_FOUND),
        Err(error) => {
            tracing::warn!(log = %partition.log.name(), %error, "cannot read records for a time lookup");
            Ok(Answer {
                error: Some(ResponseError::CorruptMessage),
                ..NOT_FOUND
            })
        }
    }
}
