//! DeleteTopics (key 20): by name, or by topic id from v6. Needs DELETE on each topic.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{str_bytes, with_denied};
use crate::cluster::control::ControlCall;
use crate::cluster::controller::TopicRef;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DeleteTopicsRequest = exchange::decode(request)?;
    let version = request.api_version;
    let refs: Vec<TopicRef> = if version >= 6 {
        body.topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => TopicRef::Name(name.to_string()),
                None => TopicRef::Id(t.topic_id),
            })
            .collect()
    } else {
        body.topic_names
            .iter()
            .map(|n| TopicRef::Name(n.to_string()))
            .collect()
    };
    // Kafka: DELETE on the topic (one named by an id this broker does not know goes on,
    // to be answered UNKNOWN_TOPIC_ID).
    let metadata = shard.metadata();
    let access = shard.access(request);
    let allowed: Vec<bool> = refs
        .iter()
        .map(|topic_ref| {
            let name = match topic_ref {
                TopicRef::Name(name) => Some(name.as_str()),
                TopicRef::Id(id) => metadata.topic_by_id(id).map(|t| t.name.as_str()),
            };
            name.is_none_or(|name| access.may_on_topic(Operation::Delete, name))
        })
        .collect();
    let asked: Vec<TopicRef> = refs
        .iter()
        .zip(&allowed)
        .filter(|(_, &ok)| ok)
        .map(|(topic_ref, _)| topic_ref.clone())
        .collect();
    let outcomes = if asked.is_empty() {
        Vec::new()
    } else {
        let count = asked.len();
        shard
            .control(ControlCall::DeleteTopics(asked))
            .await?
            .into_topics(count)
            .into_iter()
            .map(|outcome| outcome.map_err(Failure::from))
            .collect()
    };
    let outcomes = with_denied(&allowed, outcomes, || {
        Err(Failure::new(
            ResponseError::TopicAuthorizationFailed,
            "the principal may not DELETE this topic",
        ))
    });
    let mut response = DeleteTopicsResponse::default();
    for (topic_ref, outcome) in refs.into_iter().zip(outcomes) {
        let mut result = DeletableTopicResult::default();
        match (&outcome, &topic_ref) {
            (Ok(topic), _) => {
                result.name = Some(TopicName(str_bytes(&topic.name)));
                if version >= 6 {
                    result.topic_id = topic.id;
                }
            }
            (Err(_), TopicRef::Name(name)) => result.name = Some(TopicName(str_bytes(name))),
            (Err(_), TopicRef::Id(id)) => {
                result.topic_id = *id;
            }
        }
        if let Err(failure) = outcome {
            result.error_code = failure.code.code();
            if version >= 5 {
                result.error_message = Some(str_bytes(&failure.message));
            }
        }
        response.responses.push(result);
    }
    exchange::respond(request, &response)
}
