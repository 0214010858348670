//! ElectLeaders (key 43, KIP-460): a preferred-leader election (the first replica takes
//! over if it is in sync), or, asked explicitly, an unclean one for a leaderless
//! partition. The work happens on the controller (`cluster/reassignment.rs`).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::cluster::reassignment::ElectionKind;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

const ELECTION_PREFERRED: i8 = 0;
const ELECTION_UNCLEAN: i8 = 1;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: ElectLeadersRequest = exchange::decode(request)?;
    let mut response = ElectLeadersResponse::default();
    // v0 has no election type: preferred.
    let kind = match body.election_type {
        _ if request.api_version == 0 => Some(ElectionKind::Preferred),
        ELECTION_PREFERRED => Some(ElectionKind::Preferred),
        ELECTION_UNCLEAN => Some(ElectionKind::Unclean),
        _ => None,
    };
    if !shard.access(request).may_on_cluster(Operation::Alter) {
        response.error_code = kafka_protocol::ResponseError::ClusterAuthorizationFailed.code();
        return exchange::respond(request, &response);
    }
    let Some(kind) = kind else {
        response.error_code = kafka_protocol::ResponseError::InvalidRequest.code();
        return exchange::respond(request, &response);
    };
    let asked: Option<Vec<(String, i32)>> = body.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.to_string(), p)))
            .collect()
    });
    let reply = shard
        .control(ControlCall::ElectLeaders {
            kind,
            partitions: asked.clone(),
        })
        .await?;
    let results = match reply.into_elected(asked.as_deref().unwrap_or_default()) {
        Ok(results) => results,
        Err(error) => {
            let failure = Failure::from(error);
            response.error_code = failure.code.code();
            return exchange::respond(request, &response);
        }
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic, partition, outcome) in results {
        let mut result = PartitionResult::default();
        result.partition_id = partition;
        if let Err(error) = outcome {
            let failure = Failure::from(error);
            result.error_code = failure.code.code();
            result.error_message = Some(str_bytes(&failure.message));
        }
        by_topic.entry(topic).or_default().push(result);
    }
    response.replica_election_results = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut result = ReplicaElectionResult::default();
            result.topic = TopicName(str_bytes(&topic));
            result.partition_result = partitions;
            result
        })
        .collect();
    exchange::respond(request, &response)
}
