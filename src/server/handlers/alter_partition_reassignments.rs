//! AlterPartitionReassignments (key 45, KIP-455): starts, replaces or cancels (null
//! replicas) partition reassignments. The work happens on the controller
//! (`cluster/reassignment.rs`); the answer comes once the reassignment is started, and
//! ListPartitionReassignments shows it until every new replica is in sync.

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::cluster::controller::PartitionReassignment;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;
use kafka_protocol::ResponseError;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: AlterPartitionReassignmentsRequest = exchange::decode(request)?;
    if !shard.access(request).may_on_cluster(Operation::Alter) {
        let mut response = AlterPartitionReassignmentsResponse::default();
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = Some(str_bytes("reassignments need ALTER on the cluster"));
        return exchange::respond(request, &response);
    }
    let changes: Vec<PartitionReassignment> = body
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| PartitionReassignment {
                    topic: topic.name.to_string(),
                    partition: partition.partition_index,
                    target: partition
                        .replicas
                        .as_ref()
                        .map(|replicas| replicas.iter().map(|id| id.0).collect()),
                })
        })
        .collect();
    let count = changes.len();
    // v0 requests cannot forbid a change of replication factor (KIP-860 added the flag).
    let allow_factor_change = request.api_version < 1 || body.allow_replication_factor_change;
    let mut outcomes = shard
        .control(ControlCall::ReassignPartitions {
            changes,
            allow_factor_change,
        })
        .await?
        .into_done(count)
        .into_iter();
    let mut response = AlterPartitionReassignmentsResponse::default();
    response.allow_replication_factor_change = allow_factor_change;
    for topic in &body.topics {
        let mut answered = ReassignableTopicResponse::default();
        answered.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut result = ReassignablePartitionResponse::default();
            result.partition_index = partition.partition_index;
            if let Some(Err(error)) = outcomes.next() {
                let failure = Failure::from(error);
                result.error_code = failure.code.code();
                result.error_message = Some(str_bytes(&failure.message));
            }
            answered.partitions.push(result);
        }
        response.responses.push(answered);
    }
    exchange::respond(request, &response)
}
