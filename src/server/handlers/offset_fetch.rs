//! OffsetFetch (key 9): committed offsets of one group (v1-7) or several (v8+), for given
//! partitions or all of them. A partition without a commit answers offset -1.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{on_coordinator, str_bytes};
use crate::group::offsets::Committed;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::access::Access;
use crate::shard::Shard;

/// A partition's committed offset, if any.
type Fetched = (String, i32, Option<Committed>);
type Answer = Option<Vec<Fetched>>;
/// A topic's partitions with their committed offsets.
type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

/// Why a group's offsets are not answered at all.
enum Refusal {
    /// No DESCRIBE on the group.
    Group,
    /// Another broker coordinates it, or it is loading.
    Unavailable,
}

/// The group's committed offsets the principal may see (Kafka: DESCRIBE on the group and
/// on each topic), and the topics asked for that it may not (their partitions answer
/// TOPIC_AUTHORIZATION_FAILED; unasked ones are left out).
async fn fetch(
    shard: &Rc<Shard>,
    access: &Access<'_>,
    group_id: String,
    wanted: Option<Vec<(String, i32)>>,
) -> Result<Result<(Vec<Fetched>, HashSet<String>), Refusal>, crate::shard::ShardGone> {
    if !access.may_on_group(Operation::Describe, &group_id) {
        return Ok(Err(Refusal::Group));
    }
    let may_see = |topic: &str| access.may_on_topic(Operation::Describe, topic);
    let mut denied = HashSet::new();
    let mut denied_partitions = Vec::new();
    let wanted = wanted.map(|wanted| {
        wanted
            .into_iter()
            .filter(|(topic, partition)| {
                let allowed = may_see(topic);
                if !allowed {
                    denied.insert(topic.clone());
                    denied_partitions.push((topic.clone(), *partition, None));
                }
                allowed
            })
            .collect::<Vec<_>>()
    });
    let group = group_id.clone();
    let answer: Answer = if wanted.as_ref().is_some_and(|w| w.is_empty()) {
        Some(Vec::new())
    } else {
        on_coordinator(shard, &group_id, move |coordinator| async move {
            coordinator.fetch(&group, wanted)
        })
        .await?
    };
    let Some(mut answer) = answer else {
        return Ok(Err(Refusal::Unavailable));
    };
    answer.retain(|(topic, _, _)| may_see(topic));
    answer.extend(denied_partitions);
    Ok(Ok((answer, denied)))
}

/// Groups the answer by topic, in first-seen order.
fn by_topic(answer: Vec<Fetched>) -> Vec<TopicOffsets> {
    let mut order = Vec::new();
    let mut topics: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
    for (topic, partition, committed) in answer {
        if !topics.contains_key(&topic) {
            order.push(topic.clone());
        }
        topics
            .entry(topic)
            .or_default()
            .push((partition, committed));
    }
    order
        .into_iter()
        .map(|t| {
            let parts = topics.remove(&t).unwrap_or_default();
            (t, parts)
        })
        .collect()
}

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: OffsetFetchRequest = exchange::decode(request)?;
    let version = request.api_version;
    let mut response = OffsetFetchResponse::default();
    let access = shard.access(request);
    if version >= 8 {
        for group in &body.groups {
            let wanted = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
                    .collect()
            });
            let answer = fetch(shard, &access, group.group_id.to_string(), wanted).await?;
            let mut answered = OffsetFetchResponseGroup::default();
            answered.group_id = group.group_id.clone();
            match answer {
                Err(Refusal::Group) => {
                    answered.error_code = ResponseError::GroupAuthorizationFailed.code()
                }
                Err(Refusal::Unavailable) => {
                    answered.error_code = super::unavailable(shard, &group.group_id).code()
                }
                Ok((answer, denied)) => answered.topics = group_topics(answer, &denied),
            }
            response.groups.push(answered);
        }
        return exchange::respond(request, &response);
    }
    let wanted = body.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect()
    });
    match fetch(shard, &access, body.group_id.to_string(), wanted).await? {
        Err(Refusal::Group) if version >= 2 => {
            response.error_code = ResponseError::GroupAuthorizationFailed.code();
        }
        Err(Refusal::Unavailable) if version >= 2 => {
            response.error_code = super::unavailable(shard, &body.group_id).code();
        }
        Err(_) => {}
        Ok((answer, denied)) => response.topics = topics(answer, &denied, version),
    }
    exchange::respond(request, &response)
}

/// A group's committed offsets in the v8+ layout (groups in one request).
fn group_topics(answer: Vec<Fetched>, denied: &HashSet<String>) -> Vec<OffsetFetchResponseTopics> {
    by_topic(answer)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = OffsetFetchResponseTopics::default();
            t.name = TopicName(str_bytes(&topic));
            t.partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let mut p = OffsetFetchResponsePartitions::default();
                    p.partition_index = index;
                    p.committed_offset = committed.as_ref().map_or(-1, |c| c.offset);
                    p.committed_leader_epoch = committed.as_ref().map_or(-1, |c| c.leader_epoch);
                    p.metadata = Some(str_bytes(metadata_of(&committed)));
                    if denied.contains(&topic) {
                        p.error_code = ResponseError::TopicAuthorizationFailed.code();
                    }
                    p
                })
                .collect();
            t
        })
        .collect()
}

/// A group's committed offsets in the layout before v8 (one group per request).
fn topics(
    answer: Vec<Fetched>,
    denied: &HashSet<String>,
    version: i16,
) -> Vec<OffsetFetchResponseTopic> {
    by_topic(answer)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = OffsetFetchResponseTopic::default();
            t.name = TopicName(str_bytes(&topic));
            t.partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = index;
                    p.committed_offset = committed.as_ref().map_or(-1, |c| c.offset);
                    if version >= 5 {
                        p.committed_leader_epoch =
                            committed.as_ref().map_or(-1, |c| c.leader_epoch);
                    }
                    p.metadata = Some(str_bytes(metadata_of(&committed)));
                    if denied.contains(&topic) {
                        p.error_code = ResponseError::TopicAuthorizationFailed.code();
                    }
                    p
                })
                .collect();
            t
        })
        .collect()
}

/// A commit's metadata ("" when none).
fn metadata_of(committed: &Option<Committed>) -> &str {
    committed
        .as_ref()
        .and_then(|c| c.metadata.as_deref())
        .unwrap_or("")
}
