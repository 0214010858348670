//! ListGroups (key 16): every group on every shard, optionally filtered by state (v4+) and
//! type (v5+; all of Petrel's groups are classic).

use std::collections::HashSet;
use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: ListGroupsRequest = exchange::decode(request)?;
    let version = request.api_version;
    let per_shard = shard
        .run_on_all(|owner| async move {
            owner
                .coordinators()
                .iter()
                .flat_map(|coordinator| coordinator.list())
                .collect::<Vec<_>>()
        })
        .await?;
    let states: HashSet<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    // Every group is classic: the type filter keeps all of them or none.
    let excluded_by_type = version >= 5
        && !body.types_filter.is_empty()
        && !body
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    let mut response = ListGroupsResponse::default();
    if excluded_by_type {
        return exchange::respond(request, &response);
    }
    // Kafka: every group with DESCRIBE on the cluster, else those the principal may
    // DESCRIBE.
    let access = shard.access(request);
    let all = access.may_on_cluster(Operation::Describe);
    for (group_id, protocol_type, state) in per_shard.into_iter().flatten() {
        if version >= 4 && !states.is_empty() && !states.contains(&state.to_lowercase()) {
            continue;
        }
        if !all && !access.may_on_group(Operation::Describe, &group_id) {
            continue;
        }
        let mut listed = ListedGroup::default();
        listed.group_id = GroupId(str_bytes(&group_id));
        listed.protocol_type = str_bytes(&protocol_type);
        if version >= 4 {
            listed.group_state = str_bytes(state);
        }
        if version >= 5 {
            listed.group_type = str_bytes("classic");
        }
        response.groups.push(listed);
    }
    exchange::respond(request, &response)
}
