//! DeleteGroups (key 42): removes empty groups and their committed offsets.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;

use super::on_coordinator;
use crate::group::coordinator::DeleteError;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DeleteGroupsRequest = exchange::decode(request)?;
    let mut response = DeleteGroupsResponse::default();
    let access = shard.access(request);
    for group_id in &body.groups_names {
        let id = group_id.to_string();
        let asked = id.clone();
        let mut result = DeletableGroupResult::default();
        result.group_id = group_id.clone();
        // Kafka: DELETE on the group.
        if !access.may_on_group(Operation::Delete, &id) {
            result.error_code = ResponseError::GroupAuthorizationFailed.code();
            response.results.push(result);
            continue;
        }
        let outcome = on_coordinator(shard, &id, move |coordinator| async move {
            coordinator.delete_group(&asked).await
        })
        .await?;
        result.error_code = match outcome {
            None => super::unavailable(shard, &id).code(),
            Some(Ok(())) => 0,
            Some(Err(DeleteError::NotEmpty)) => ResponseError::NonEmptyGroup.code(),
            Some(Err(DeleteError::NotFound)) => ResponseError::GroupIdNotFound.code(),
            Some(Err(DeleteError::Storage(message))) => {
                tracing::error!(%message, "deleting group offsets failed");
                ResponseError::CoordinatorNotAvailable.code()
            }
        };
        response.results.push(result);
    }
    exchange::respond(request, &response)
}
