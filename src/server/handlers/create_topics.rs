//! CreateTopics (key 19), including validate-only. The work happens on the controller.
//! Needs CREATE on the cluster or the topic (TOPIC_AUTHORIZATION_FAILED otherwise); the
//! created topic's configs are shown only with DESCRIBE_CONFIGS on it.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, with_denied};
use crate::cluster::control::ControlCall;
use crate::cluster::controller::TopicSpec;
use crate::cluster::metadata::Topic;
use crate::cluster::topic_config::{self, TopicDefaults};
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: CreateTopicsRequest = exchange::decode(request)?;
    let version = request.api_version;
    let access = shard.access(request);
    // Kafka: CREATE on the cluster, or on the topic.
    let on_cluster = access.may_on_cluster(Operation::Create);
    let allowed: Vec<bool> = body
        .topics
        .iter()
        .map(|t| on_cluster || access.may_on_topic(Operation::Create, &t.name))
        .collect();
    let specs: Vec<TopicSpec> = body
        .topics
        .iter()
        .zip(&allowed)
        .filter(|(_, &ok)| ok)
        .map(|(topic, _)| spec(topic))
        .collect();
    let validate_only = body.validate_only;
    let count = specs.len();
    let outcomes = if count == 0 {
        Vec::new()
    } else {
        shard
            .control(ControlCall::CreateTopics {
                specs,
                validate_only,
            })
            .await?
            .into_topics(count)
    };
    let outcomes = with_denied(&allowed, outcomes.into_iter().map(Ok).collect(), || {
        Err(Failure::new(
            ResponseError::TopicAuthorizationFailed,
            "the principal may not CREATE this topic",
        ))
    });
    let defaults = &shard.config.topic_defaults;
    let mut response = CreateTopicsResponse::default();
    for (requested, outcome) in body.topics.iter().zip(outcomes) {
        let mut result = CreatableTopicResult::default();
        result.name = requested.name.clone();
        match outcome.and_then(|outcome| outcome.map_err(Failure::from)) {
            Ok(topic) => {
                created(&mut result, &topic, defaults, version);
                if version >= 5 && !access.may_on_topic(Operation::DescribeConfigs, &topic.name) {
                    result.configs = None;
                    result.topic_config_error_code = ResponseError::TopicAuthorizationFailed.code();
                }
            }
            Err(failure) => {
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
