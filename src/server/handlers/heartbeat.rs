//! Heartbeat (key 12): keeps a member's session alive; tells it when to rejoin.

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::on_coordinator;
use crate::group::state::GroupError;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::group_error_code;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: HeartbeatRequest = exchange::decode(request)?;
    let group_id = body.group_id.to_string();
    let member_id = body.member_id.to_string();
    let instance_id = body.group_instance_id.as_ref().map(|id| id.to_string());
    let generation = body.generation_id;
    let group = group_id.clone();
    // Kafka: READ on the group.
    let answer = if !shard
        .access(request)
        .may_on_group(Operation::Read, &group_id)
    {
        Some(Err(GroupError::NotAuthorized))
    } else {
        on_coordinator(shard, &group_id, move |coordinator| async move {
            coordinator.heartbeat(&group, &member_id, instance_id.as_deref(), generation)
        })
        .await?
    };
    let mut response = HeartbeatResponse::default();
    response.error_code = match answer {
        None => super::unavailable(shard, &group_id).code(),
        Some(Ok(())) => 0,
        Some(Err(error)) => group_error_code(&error).code(),
    };
    exchange::respond(request, &response)
}
