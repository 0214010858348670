//! SyncGroup (key 14): the leader's assignments, handed to every member.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::on_coordinator;
use crate::group::state::GroupError;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::group_error_code;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: SyncGroupRequest = exchange::decode(request)?;
    let group_id = body.group_id.to_string();
    let member_id = body.member_id.to_string();
    let instance_id = body.group_instance_id.as_ref().map(|id| id.to_string());
    let generation = body.generation_id;
    let assignments: Vec<(String, bytes::Bytes)> = body
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let group = group_id.clone();
    // Kafka: READ on the group.
    let answer = if !shard
        .access(request)
        .may_on_group(Operation::Read, &group_id)
    {
        Some(Err(GroupError::NotAuthorized))
    } else {
        on_coordinator(shard, &group_id, move |coordinator| async move {
            coordinator
                .sync(
                    &group,
                    &member_id,
                    instance_id.as_deref(),
                    generation,
                    assignments,
                )
                .await
        })
        .await?
    };
    let mut response = SyncGroupResponse::default();
    if request.api_version >= 5 {
        response.protocol_type = body.protocol_type.clone();
        response.protocol_name = body.protocol_name.clone();
    }
    match answer {
        None => response.error_code = super::unavailable(shard, &group_id).code(),
        Some(Ok(assignment)) => response.assignment = assignment,
        Some(Err(error)) => response.error_code = group_error_code(&error).code(),
    }
    exchange::respond(request, &response)
}
