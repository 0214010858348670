//! CreatePartitions (key 37): grows topics, including validate-only. Needs ALTER on each
//! topic.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, with_denied};
use crate::cluster::control::ControlCall;
use crate::cluster::controller::PartitionGrowth;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
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
    // Kafka: ALTER on the topic.
    let access = shard.access(request);
    let allowed: Vec<bool> = changes
        .iter()
        .map(|change| access.may_on_topic(Operation::Alter, &change.topic))
        .collect();
    let changes: Vec<PartitionGrowth> = changes
        .into_iter()
        .zip(&allowed)
        .filter(|(_, &ok)| ok)
        .map(|(change, _)| change)
        .collect();
    let validate_only = body.validate_only;
    let count = changes.len();
    let outcomes = if count == 0 {
        Vec::new()
    } else {
        shard
            .control(ControlCall::CreatePartitions {
                growths: changes,
                validate_only,
            })
            .await?
            .into_done(count)
            .into_iter()
            .map(|outcome| outcome.map_err(Failure::from))
            .collect()
    };
    let outcomes = with_denied(&allowed, outcomes, || {
        Err(Failure::new(
            ResponseError::TopicAuthorizationFailed,
            "the principal may not ALTER this topic",
        ))
    });
    let mut response = CreatePartitionsResponse::default();
    for (topic, outcome) in body.topics.iter().zip(outcomes) {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        if let Err(failure) = outcome {
            result.error_code = failure.code.code();
            result.error_message = Some(str_bytes(&failure.message));
        }
        response.results.push(result);
    }
    exchange::respond(request, &response)
}
