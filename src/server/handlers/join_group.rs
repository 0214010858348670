//! JoinGroup (key 11), with the two-step join of KIP-394 (v4+) and static members (v5+).

use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ResponseError;

use super::{on_coordinator, str_bytes};
use crate::group::coordinator::JoinAnswer;
use crate::group::state::{GroupError, JoinRequest};
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::group_error_code;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: JoinGroupRequest = exchange::decode(request)?;
    let version = request.api_version;
    let group_id = body.group_id.to_string();
    let session_timeout = Duration::from_millis(body.session_timeout_ms.max(0) as u64);
    let join = JoinRequest {
        member_id: body.member_id.to_string(),
        instance_id: body.group_instance_id.as_ref().map(|id| id.to_string()),
        client_id: request.client_id.clone().unwrap_or_default(),
        client_host: request.client_host.clone(),
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        session_timeout,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout: if version >= 1 {
            Duration::from_millis(body.rebalance_timeout_ms.max(0) as u64)
        } else {
            session_timeout
        },
        require_known_member_id: version >= 4,
    };
    let group = group_id.clone();
    // Kafka: READ on the group.
    let answer = if !shard
        .access(request)
        .may_on_group(Operation::Read, &group_id)
    {
        Some(JoinAnswer::Failed(GroupError::NotAuthorized))
    } else {
        on_coordinator(shard, &group_id, move |coordinator| async move {
            coordinator.join(&group, join).await
        })
        .await?
    };
    let mut response = JoinGroupResponse::default();
    response.generation_id = -1;
    response.member_id = body.member_id.clone();
    if version < 7 {
        response.protocol_name = Some(str_bytes(""));
    }
    match answer {
        None => response.error_code = super::unavailable(shard, &group_id).code(),
        Some(JoinAnswer::MemberIdRequired(member_id)) => {
            response.error_code = ResponseError::MemberIdRequired.code();
            response.member_id = str_bytes(&member_id);
        }
        Some(JoinAnswer::Failed(error)) => response.error_code = group_error_code(&error).code(),
        Some(JoinAnswer::Joined(joined)) => {
            response.generation_id = joined.generation;
            if version >= 7 {
                response.protocol_type = joined.protocol_type.as_deref().map(str_bytes);
            }
            response.protocol_name =
                Some(str_bytes(joined.protocol.as_deref().unwrap_or_default()));
            response.leader = str_bytes(&joined.leader);
            response.member_id = str_bytes(&joined.member_id);
            response.members = joined
                .members
                .into_iter()
                .map(|member| {
                    let mut listed = JoinGroupResponseMember::default();
                    listed.member_id = str_bytes(&member.member_id);
                    if version >= 5 {
                        listed.group_instance_id = member.instance_id.as_deref().map(str_bytes);
                    }
                    listed.metadata = member.metadata;
                    listed
                })
                .collect();
        }
    }
    exchange::respond(request, &response)
}
