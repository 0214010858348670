//! ListPartitionReassignments (key 46, KIP-455): the reassignments in progress, from this
//! broker's catalogue snapshot (every broker applies the same records): each partition's
//! replicas, and those being added and removed. Partitions asked for that are not moving
//! are left out, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::str_bytes;
use crate::cluster::metadata::Topic;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;
use kafka_protocol::ResponseError;

pub fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: ListPartitionReassignmentsRequest = exchange::decode(request)?;
    if !shard.access(request).may_on_cluster(Operation::Describe) {
        let mut response = ListPartitionReassignmentsResponse::default();
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = Some(str_bytes("listing needs DESCRIBE on the cluster"));
        return exchange::respond(request, &response);
    }
    let metadata = shard.metadata();
    let wanted: Vec<(&Topic, Option<&[i32]>)> = match &body.topics {
        None => metadata.topics().values().map(|t| (t, None)).collect(),
        Some(topics) => topics
            .iter()
            .filter_map(|asked| {
                let topic = metadata.topic(asked.name.as_str())?;
                Some((topic, Some(asked.partition_indexes.as_slice())))
            })
            .collect(),
    };
    let mut response = ListPartitionReassignmentsResponse::default();
    for (topic, partitions) in wanted {
        // The partitions asked for (each once), or all: linear in the request or the topic.
        let indexes: Vec<i32> = match partitions {
            None => (0..topic.partitions).collect(),
            Some(asked) => {
                let mut asked = asked.to_vec();
                asked.sort_unstable();
                asked.dedup();
                asked
            }
        };
        let moving: Vec<OngoingPartitionReassignment> = indexes
            .into_iter()
            .filter_map(|p| {
                let state = topic.state_of(p)?;
                if state.adding.is_empty() && state.removing.is_empty() {
                    return None;
                }
                let ids = |list: &[i32]| list.iter().map(|&id| BrokerId(id)).collect();
                let mut ongoing = OngoingPartitionReassignment::default();
                ongoing.partition_index = p;
                ongoing.replicas = ids(topic.replicas_of(p));
                ongoing.adding_replicas = ids(&state.adding);
                ongoing.removing_replicas = ids(&state.removing);
                Some(ongoing)
            })
            .collect();
        if !moving.is_empty() {
            let mut ongoing = OngoingTopicReassignment::default();
            ongoing.name = TopicName(str_bytes(&topic.name));
            ongoing.partitions = moving;
            response.topics.push(ongoing);
        }
    }
    exchange::respond(request, &response)
}
