//! LeaveGroup (key 13): one member (v0-2) or a batch of members by id or instance id (v3+).

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;

use super::{on_coordinator, str_bytes};
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::group_error_code;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: LeaveGroupRequest = exchange::decode(request)?;
    let version = request.api_version;
    let group_id = body.group_id.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        body.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|id| id.to_string()),
                )
            })
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    if !shard
        .access(request)
        .may_on_group(Operation::Read, &group_id)
    {
        // Kafka: READ on the group; the whole request is refused.
        let mut response = LeaveGroupResponse::default();
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return exchange::respond(request, &response);
    }
    let asked = members.clone();
    let group = group_id.clone();
    let answer = on_coordinator(shard, &group_id, move |coordinator| async move {
        coordinator.leave(&group, members)
    })
    .await?;
    let mut response = LeaveGroupResponse::default();
    match answer {
        None => response.error_code = super::unavailable(shard, &group_id).code(),
        Some(results) if version >= 3 => {
            response.members = asked
                .iter()
                .zip(&results)
                .map(|((member_id, instance_id), result)| {
                    let mut member = MemberResponse::default();
                    member.member_id = str_bytes(member_id);
                    member.group_instance_id = instance_id.as_deref().map(str_bytes);
                    member.error_code = result
                        .as_ref()
                        .err()
                        .map_or(0, |e| group_error_code(e).code());
                    member
                })
                .collect();
        }
        Some(results) => {
            response.error_code = results
                .first()
                .and_then(|r| r.as_ref().err())
                .map_or(0, |e| group_error_code(e).code());
        }
    }
    exchange::respond(request, &response)
}
