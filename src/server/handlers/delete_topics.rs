//! DeleteTopics (key 20): by name, or by topic id from v6.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::cluster::controller::TopicRef;
use crate::protocol::frame::Request;
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
    let outcomes = shard
        .control(ControlCall::DeleteTopics(refs.clone()))
        .await?
        .into_topics(refs.len());
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
        if let Err(error) = outcome {
            let failure = Failure::from(error);
            result.error_code = failure.code.code();
            if version >= 5 {
                result.error_message = Some(str_bytes(&failure.message));
            }
        }
        response.responses.push(result);
    }
    exchange::respond(request, &response)
}
