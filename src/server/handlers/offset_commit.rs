//! OffsetCommit (key 8): validated against the member's generation, persisted in the
//! coordinator's offsets log (and synced) before the answer. Offsets past the log end are
//! accepted, as Kafka does: the consumer's next fetch gets OFFSET_OUT_OF_RANGE and its
//! `auto.offset.reset` applies.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::on_coordinator;
use crate::group::coordinator::CommitError;
use crate::group::offsets::Committed;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::group_error_code;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: OffsetCommitRequest = exchange::decode(request)?;
    let metadata = shard.metadata();
    let now = crate::runtime::time::now_ms();
    let mut entries = Vec::new();
    let access = shard.access(request);
    // Kafka: READ on the group, and READ on each topic.
    let group_allowed = access.may_on_group(Operation::Read, &body.group_id);
    // Per partition, in request order: why it is refused, if it is (the answer walks the
    // same order).
    let mut refused = Vec::new();
    for topic in &body.topics {
        let known = metadata.topic(&topic.name);
        let topic_allowed = access.may_on_topic(Operation::Read, &topic.name);
        for partition in &topic.partitions {
            let found =
                known.is_some_and(|t| (0..t.partitions).contains(&partition.partition_index));
            let refusal = if !group_allowed {
                Some(ResponseError::GroupAuthorizationFailed)
            } else if !topic_allowed {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if !found {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                None
            };
            refused.push(refusal);
            if refusal.is_some() {
                continue;
            }
            entries.push((
                topic.name.to_string(),
                partition.partition_index,
                Committed {
                    offset: partition.committed_offset,
                    leader_epoch: partition.committed_leader_epoch,
                    metadata: partition.committed_metadata.as_ref().map(|m| m.to_string()),
                    timestamp_ms: now,
                },
            ));
        }
    }
    let group_id = body.group_id.to_string();
    let member_id = body.member_id.to_string();
    let instance_id = body.group_instance_id.as_ref().map(|id| id.to_string());
    let generation = body.generation_id_or_member_epoch;
    let group = group_id.clone();
    let answer = if entries.is_empty() {
        Some(Ok(()))
    } else {
        on_coordinator(shard, &group_id, move |coordinator| async move {
            coordinator
                .commit(
                    &group,
                    &member_id,
                    instance_id.as_deref(),
                    generation,
                    entries,
                )
                .await
        })
        .await?
    };
    let code = match answer {
        None => super::unavailable(shard, &group_id).code(),
        Some(Ok(())) => 0,
        Some(Err(CommitError::Group(error))) => group_error_code(&error).code(),
        Some(Err(CommitError::MetadataTooLarge)) => ResponseError::OffsetMetadataTooLarge.code(),
        Some(Err(CommitError::Storage(message))) => {
            tracing::error!(%message, "persisting committed offsets failed");
            ResponseError::CoordinatorNotAvailable.code()
        }
    };
    let mut response = OffsetCommitResponse::default();
    let mut refused = refused.into_iter();
    for topic in &body.topics {
        let mut answered = OffsetCommitResponseTopic::default();
        answered.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut result = OffsetCommitResponsePartition::default();
            result.partition_index = partition.partition_index;
            result.error_code = match refused.next().flatten() {
                None => code,
                Some(refusal) => refusal.code(),
            };
            answered.partitions.push(result);
        }
        response.topics.push(answered);
    }
    exchange::respond(request, &response)
}
