//! CreatePartitions (key 37): grows topics, including validate-only.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::cluster::controller::PartitionGrowth;
use crate::protocol::frame::Request;
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: CreatePartitionsRequest = exchange::decode(request)?;
    let changes: Vec<PartitionGrowth> = body
        .topics
        .iter()
        .map(|t| {
            // Null or empty: no manual assignment.
            let assignments = t
                .assignments
                .as_ref()
                .filter(|list| !list.is_empty())
                .map(|list| {
                    list.iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                });
            PartitionGrowth {
                topic: t.name.to_string(),
                count: t.count,
                assignments,
            }
        })
        .collect();
    let validate_only = body.validate_only;
    let count = changes.len();
    let outcomes = shard
        .control(ControlCall::CreatePartitions {
            growths: changes,
            validate_only,
        })
        .await?
        .into_done(count);
    let mut response = CreatePartitionsResponse::default();
    for (topic, outcome) in body.topics.iter().zip(outcomes) {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        if let Err(error) = outcome {
            let failure = Failure::from(error);
            result.error_code = failure.code.code();
            result.error_message = Some(str_bytes(&failure.message));
        }
        response.results.push(result);
    }
    exchange::respond(request, &response)
}
