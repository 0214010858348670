//! OffsetForLeaderEpoch (key 23): for each partition, the largest leader epoch not above
//! the one asked for and the offset where the next epoch starts (`storage::epochs`).
//! Consumers use it to detect that their position was truncated away after a leader
//! change (KIP-320); replicas to find where their log diverges from the leader's
//! (KIP-101, KIP-279). Answered by the partition's leader only.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::not_serving_code;
use crate::server::exchange::{self, HandlerResult};
use crate::server::fanout::Fanout;
use crate::shard::Shard;

#[derive(Clone)]
struct Item {
    topic: String,
    partition: i32,
    /// The client's idea of the current leader epoch (-1: none; v2+).
    current_leader_epoch: i32,
    /// The epoch whose end is asked for.
    leader_epoch: i32,
}

#[derive(Debug, Clone, Copy)]
struct Answer {
    error: Option<ResponseError>,
    leader_epoch: i32,
    end_offset: i64,
}

const UNDEFINED: Answer = Answer {
    error: None,
    leader_epoch: -1,
    end_offset: -1,
};

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: OffsetForLeaderEpochRequest = exchange::decode(request)?;
    let metadata = shard.metadata();
    let access = shard.access(request);
    // Kafka: a follower (replica id set, v3+) needs CLUSTER_ACTION, a consumer DESCRIBE on
    // the topic.
    let follower = request.api_version >= 3 && body.replica_id.0 >= 0;
    let follower_allowed = !follower || access.may_on_cluster(Operation::ClusterAction);
    let mut fanout = Fanout::new();
    for topic_request in &body.topics {
        let topic = metadata.topic(&topic_request.topic);
        let allowed = follower_allowed
            && (follower || access.may_on_topic(Operation::Describe, &topic_request.topic));
        for partition in &topic_request.partitions {
            match topic {
                _ if !allowed => fanout.answer(Answer {
                    error: Some(ResponseError::TopicAuthorizationFailed),
                    ..UNDEFINED
                }),
                Some(topic) if (0..topic.partitions).contains(&partition.partition) => {
                    let item = Item {
                        topic: topic.name.clone(),
                        partition: partition.partition,
                        current_leader_epoch: partition.current_leader_epoch,
                        leader_epoch: partition.leader_epoch,
                    };
                    fanout.route(shard.owner_of(topic, partition.partition), item);
                }
                _ => fanout.answer(Answer {
                    error: Some(ResponseError::UnknownTopicOrPartition),
                    ..UNDEFINED
                }),
            }
        }
    }
    fanout
        .run_once(shard, |target, items| async move {
            items
                .into_iter()
                .map(|(position, item)| (position, end_offset_on_owner(&target, &item)))
                .collect()
        })
        .await?;
    let mut answers = fanout.into_answers(|| UNDEFINED);
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic_request in &body.topics {
        let mut topic = OffsetForLeaderTopicResult::default();
        topic.topic = topic_request.topic.clone();
        for partition in &topic_request.partitions {
            let answer = answers.next().unwrap_or(UNDEFINED);
            let mut result = EpochEndOffset::default();
            result.partition = partition.partition;
            result.error_code = answer.error.map_or(0, |e| e.code());
            result.leader_epoch = answer.leader_epoch;
            result.end_offset = answer.end_offset;
            topic.partitions.push(result);
        }
        response.topics.push(topic);
    }
    exchange::respond(request, &response)
}

fn end_offset_on_owner(shard: &Shard, item: &Item) -> Answer {
    match shard.leading_partition(&item.topic, item.partition, item.current_leader_epoch) {
        Ok((partition, _)) => {
            let (leader_epoch, end_offset) = partition.log.end_offset_for_epoch(item.leader_epoch);
            Answer {
                error: None,
                leader_epoch,
                end_offset,
            }
        }
        Err(reason) => Answer {
            error: Some(not_serving_code(reason)),
            ..UNDEFINED
        },
    }
}
