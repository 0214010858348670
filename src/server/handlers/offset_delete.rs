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
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: OffsetDeleteRequest = exchange::decode(request)?;
    let group_id = body.group_id.to_string();
    let partitions: Vec<(String, i32)> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let group = group_id.clone();
    let answer = on_coordinator(shard, &group_id, move |coordinator| async move {
        coordinator.delete_offsets(&group, partitions).await
    })
    .await?;
    let mut response = OffsetDeleteResponse::default();
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
        // One outcome per partition, in request order.
        let mut outcomes = outcomes.into_iter();
        for topic in &body.topics {
            let mut answered = OffsetDeleteResponseTopic::default();
            answered.name = topic.name.clone();
            for partition in &topic.partitions {
                let mut result = OffsetDeleteResponsePartition::default();
                result.partition_index = partition.partition_index;
                let deleted = outcomes.next().unwrap_or(false);
                if !deleted {
                    result.error_code = ResponseError::GroupSubscribedToTopic.code();
                }
                answered.partitions.push(result);
            }
            response.topics.push(answered);
        }
    }
    exchange::respond(request, &response)
}
