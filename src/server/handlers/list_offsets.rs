//! ListOffsets (key 2): earliest, latest, max timestamp, and offset by timestamp.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::protocol::frame::Request;
use crate::protocol::records;
use crate::server::errors::storage_error_code;
use crate::server::registry::{self, HandlerResult};
use crate::shard::{Partition, Shard};
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
}

const NOT_FOUND: Answer = Answer {
    error: None,
    offset: -1,
    timestamp: -1,
};

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: ListOffsetsRequest = registry::decode(request)?;
    let metadata = shard.metadata();
    let mut answers: Vec<Option<Answer>> = Vec::new();
    let mut by_owner: BTreeMap<usize, Vec<(usize, String, i32, i64)>> = BTreeMap::new();
    for topic_request in &body.topics {
        let topic = metadata.topic(&topic_request.name);
        for partition in &topic_request.partitions {
            let position = answers.len();
            match topic {
                Some(topic) if (0..topic.partitions).contains(&partition.partition_index) => {
                    by_owner
                        .entry(shard.owner_of(topic, partition.partition_index))
                        .or_default()
                        .push((
                            position,
                            topic.name.clone(),
                            partition.partition_index,
                            partition.timestamp,
                        ));
                    answers.push(None);
                }
                _ => answers.push(Some(Answer {
                    error: Some(ResponseError::UnknownTopicOrPartition),
                    ..NOT_FOUND
                })),
            }
        }
    }
    let looked_up = shard
        .run_on_each(by_owner.into_iter().collect(), |target, items| async move {
            let mut results = Vec::with_capacity(items.len());
            for (position, topic, index, timestamp) in items {
                let answer = match target.partition(&topic, index) {
                    Some(partition) => {
                        lookup(&partition, timestamp)
                            .await
                            .unwrap_or_else(|error| Answer {
                                error: Some(storage_error_code(&error)),
                                ..NOT_FOUND
                            })
                    }
                    None => Answer {
                        error: Some(ResponseError::UnknownTopicOrPartition),
                        ..NOT_FOUND
                    },
                };
                results.push((position, answer));
            }
            results
        })
        .await?;
    for (position, answer) in looked_up.into_iter().flatten() {
        answers[position] = Some(answer);
    }
    let mut response = ListOffsetsResponse::default();
    let mut answers = answers.into_iter();
    for topic_request in &body.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic_request.name.clone();
        for partition in &topic_request.partitions {
            let answer = answers.next().flatten().unwrap_or(NOT_FOUND);
            let mut partition_response = ListOffsetsPartitionResponse::default();
            partition_response.partition_index = partition.partition_index;
            partition_response.error_code = answer.error.map_or(0, |e| e.code());
            partition_response.offset = answer.offset;
            partition_response.timestamp = answer.timestamp;
            if request.api_version >= 4 {
                partition_response.leader_epoch = 0;
            }
            topic_response.partitions.push(partition_response);
        }
        response.topics.push(topic_response);
    }
    registry::respond(request, &response)
}

async fn lookup(partition: &Partition, timestamp: i64) -> Result<Answer, StorageError> {
    let log = &partition.log;
    let high_watermark = partition.high_watermark();
    let found = |offset: i64| Answer {
        error: None,
        offset,
        timestamp: -1,
    };
    match timestamp {
        LATEST => Ok(found(high_watermark)),
        EARLIEST | EARLIEST_LOCAL => Ok(found(log.log_start_offset())),
        MAX_TIMESTAMP => {
            let max = log.max_timestamp();
            if max == i64::MIN {
                return Ok(NOT_FOUND);
            }
            by_time(partition, max, records::max_timestamp_record).await
        }
        timestamp if timestamp >= 0 => {
            by_time(partition, timestamp, |batch| {
                records::first_at_or_after(batch, timestamp)
            })
            .await
        }
        _ => Ok(NOT_FOUND),
    }
}

async fn by_time(
    partition: &Partition,
    timestamp: i64,
    pick: impl Fn(bytes::Bytes) -> Result<Option<(i64, i64)>, records::RecordsError>,
) -> Result<Answer, StorageError> {
    let Some(batch) = partition.log.find_batch_by_timestamp(timestamp).await? else {
        return Ok(NOT_FOUND);
    };
    match pick(batch) {
        Ok(Some((offset, timestamp))) if offset < partition.high_watermark() => Ok(Answer {
            error: None,
            offset,
            timestamp,
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
