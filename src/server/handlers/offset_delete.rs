//! OffsetDelete (key 47): removes committed offsets of topics the group does not consume.

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use super::on_coordinator;
use crate::group::coordinator::DeleteError;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: OffsetDeleteRequest = exchange::decode(request)?;
    let group_id = body.group_id.to_string();
    let access = shard.access(request);
    // Kafka: DELETE on the group, and READ on each topic (per partition).
    let mut response = OffsetDeleteResponse::default();
    if !access.may_on_group(Operation::Delete, &group_id) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return exchange::respond(request, &response);
    }
    let readable: Vec<bool> = body
        .topics
        .iter()
        .flat_map(|t| {
            let allowed = access.may_on_topic(Operation::Read, &t.name);
            t.partitions.iter().map(move |_| allowed)
        })
        .collect();
    let partitions: Vec<(String, i32)> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .zip(&readable)
        .filter(|(_, &ok)| ok)
        .map(|(partition, _)| partition)
        .collect();
    let group = group_id.clone();
    let answer = on_coordinator(shard, &group_id, move |coordinator| async move {
        coordinator.delete_offsets(&group, partitions).await
    })
    .await?;
    let outcomes = match answer {
        None => {
            response.error_code = super::unavailable(shard, &group_id).code();
            Vec::new()
        }
        Some(Err(DeleteError::NotFound)) => {
            response.error_code = ResponseError::GroupIdNotFound.code();
            Vec::new()
        }
        Some(Err(DeleteError::NotEmpty | DeleteError::Storage(_))) => {
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
            Vec::new()
        }
        Some(Ok(outcomes)) => outcomes,
    };
    if response.error_code == 0 {
        // One outcome per readable partition, in request order.
        let outcomes =
            super::with_denied(&readable, outcomes.into_iter().map(Some).collect(), || None);
        let mut outcomes = outcomes.into_iter();
        for topic in &body.topics {
            let mut answered = OffsetDeleteResponseTopic::default();
            answered.name = topic.name.clone();
            for partition in &topic.partitions {
                let mut result = OffsetDeleteResponsePartition::default();
                result.partition_index = partition.partition_index;
                match outcomes.next().flatten() {
                    None => result.error_code = ResponseError::TopicAuthorizationFailed.code(),
                    Some(false) => result.error_code = ResponseError::GroupSubscribedToTopic.code(),
                    Some(true) => {}
                }
                answered.partitions.push(result);
            }
            response.topics.push(answered);
        }
    }
    exchange::respond(request, &response)
}
