//! DescribeGroups (key 15): state, protocol and members of each group.

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ResponseError;

use super::{on_coordinator, str_bytes};
use crate::protocol::frame::Request;
use crate::security::acl::{Operation, ResourceType};
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DescribeGroupsRequest = exchange::decode(request)?;
    let version = request.api_version;
    let mut response = DescribeGroupsResponse::default();
    let access = shard.access(request);
    for group_id in &body.groups {
        let id = group_id.to_string();
        let asked = id.clone();
        let mut described = DescribedGroup::default();
        described.group_id = group_id.clone();
        if version >= 3 {
            described.authorized_operations = if body.include_authorized_operations {
                access.operations_on(ResourceType::Group, &id)
            } else {
                i32::MIN
            };
        }
        // Kafka: DESCRIBE on the group.
        if !access.may_on_group(Operation::Describe, &id) {
            described.error_code = ResponseError::GroupAuthorizationFailed.code();
            response.groups.push(described);
            continue;
        }
        let view = on_coordinator(shard, &id, move |coordinator| async move {
            coordinator.describe(&asked)
        })
        .await?;
        match view {
            None => described.error_code = super::unavailable(shard, &id).code(),
            Some(None) => {
                // Unknown groups: GROUP_ID_NOT_FOUND from v6, the Dead state before.
                described.group_state = str_bytes("Dead");
                if version >= 6 {
                    described.error_code = ResponseError::GroupIdNotFound.code();
                }
            }
            Some(Some(view)) => {
                described.group_state = str_bytes(view.state);
                described.protocol_type = str_bytes(&view.protocol_type);
                described.protocol_data = str_bytes(&view.protocol);
                described.members = view
                    .members
                    .into_iter()
                    .map(|member| {
                        let mut listed = DescribedGroupMember::default();
                        listed.member_id = str_bytes(&member.member_id);
                        if version >= 4 {
                            listed.group_instance_id = member.instance_id.as_deref().map(str_bytes);
                        }
                        listed.client_id = str_bytes(&member.client_id);
                        listed.client_host = str_bytes(&member.client_host);
                        listed.member_metadata = member.metadata;
                        listed.member_assignment = member.assignment;
                        listed
                    })
                    .collect();
            }
        }
        response.groups.push(described);
    }
    exchange::respond(request, &response)
}
