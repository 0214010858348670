//! CreateTopics (key 19), including validate-only. The work happens on the controller.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::cluster::controller::TopicSpec;
use crate::cluster::metadata::Topic;
use crate::cluster::topic_config::{self, TopicDefaults};
use crate::protocol::frame::Request;
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: CreateTopicsRequest = exchange::decode(request)?;
    let version = request.api_version;
    let specs: Vec<TopicSpec> = body.topics.iter().map(spec).collect();
    let validate_only = body.validate_only;
    let count = specs.len();
    let outcomes = shard
        .control(ControlCall::CreateTopics {
            specs,
            validate_only,
        })
        .await?
        .into_topics(count);
    let defaults = &shard.config.topic_defaults;
    let mut response = CreateTopicsResponse::default();
    for (requested, outcome) in body.topics.iter().zip(outcomes) {
        let mut result = CreatableTopicResult::default();
        result.name = requested.name.clone();
        match outcome {
            Ok(topic) => created(&mut result, &topic, defaults, version),
            Err(error) => {
                let failure = Failure::from(error);
                result.error_code = failure.code.code();
                result.error_message = Some(str_bytes(&failure.message));
                if version >= 5 {
                    result.num_partitions = -1;
                    result.replication_factor = -1;
                }
            }
        }
        response.topics.push(result);
    }
    exchange::respond(request, &response)
}

/// The controller's spec of a requested topic.
fn spec(topic: &CreatableTopic) -> TopicSpec {
    TopicSpec {
        name: topic.name.to_string(),
        partitions: topic.num_partitions,
        replication_factor: topic.replication_factor,
        assignments: topic
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect(),
        // A null value means "use the default": no override.
        configs: topic
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A created (or validated) topic's answer: its id, partitions, factor and configs.
fn created(
    result: &mut CreatableTopicResult,
    topic: &Topic,
    defaults: &TopicDefaults,
    version: i16,
) {
    if version >= 7 {
        result.topic_id = topic.id;
    }
    if version < 5 {
        return;
    }
    result.num_partitions = topic.partitions;
    result.replication_factor = topic.replicas.first().map_or(1, |r| r.len() as i16);
    result.configs = Some(
        topic_config::describe(&topic.configs, defaults)
            .into_iter()
            .map(|entry| {
                let mut config = CreatableTopicConfigs::default();
                config.name = str_bytes(&entry.name);
                config.value = Some(str_bytes(&entry.value));
                config.config_source = if entry.is_default {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_TOPIC
                };
                config
            })
            .collect(),
    );
}
