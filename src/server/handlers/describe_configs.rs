//! DescribeConfigs (key 32): topic configs (overrides and defaults) and broker configs.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::cluster::topic_config::{self, ConfigType, Described};
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config sources (Kafka `ConfigSource`).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DescribeConfigsRequest = exchange::decode(request)?;
    let metadata = shard.metadata();
    let defaults = &shard.config.topic_defaults;
    let mut response = DescribeConfigsResponse::default();
    let access = shard.access(request);
    for resource in body.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.to_string();
        let entries: Result<Vec<(Described, i8)>, (ResponseError, String)> =
            match resource.resource_type {
                // Kafka: DESCRIBE_CONFIGS on the topic, or on the cluster for a broker.
                RESOURCE_TOPIC if !access.may_on_topic(Operation::DescribeConfigs, &name) => Err((
                    ResponseError::TopicAuthorizationFailed,
                    "the principal may not DESCRIBE_CONFIGS on this topic".into(),
                )),
                RESOURCE_BROKER if !access.may_on_cluster(Operation::DescribeConfigs) => Err((
                    ResponseError::ClusterAuthorizationFailed,
                    "the principal may not DESCRIBE_CONFIGS on the cluster".into(),
                )),
                RESOURCE_TOPIC => match metadata.topic(&name) {
                    Some(topic) => Ok(topic_config::describe(&topic.configs, defaults)
                        .into_iter()
                        .map(|d| {
                            let source = if d.is_default {
                                SOURCE_DEFAULT
                            } else {
                                SOURCE_TOPIC
                            };
                            (d, source)
                        })
                        .collect()),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )),
                },
                RESOURCE_BROKER => {
                    if name.is_empty() {
                        // The cluster-wide dynamic defaults: Petrel has none (no
                        // IncrementalAlterConfigs), so the list is empty, as on a fresh Kafka.
                        Ok(Vec::new())
                    } else if name == shard.config.node_id.to_string() {
                        Ok(broker_configs(shard))
                    } else {
                        Err((
                            ResponseError::InvalidRequest,
                            format!("this is broker {}, not {name}", shard.config.node_id),
                        ))
                    }
                }
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
        match entries {
            Ok(entries) => {
                // Null or empty: every config.
                let wanted: Option<Vec<String>> = resource
                    .configuration_keys
                    .filter(|keys| !keys.is_empty())
                    .map(|keys| keys.iter().map(|k| k.to_string()).collect());
                result.configs = entries
                    .into_iter()
                    .filter(|(entry, _)| {
                        wanted
                            .as_ref()
                            .is_none_or(|keys| keys.contains(&entry.name))
                    })
                    .map(|(entry, source)| {
                        config_entry(entry, source, body.include_synonyms, request.api_version)
                    })
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(&message));
            }
        }
        response.results.push(result);
    }
    exchange::respond(request, &response)
}

fn config_entry(
    entry: Described,
    source: i8,
    include_synonyms: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default();
    result.name = str_bytes(&entry.name);
    result.value = Some(str_bytes(&entry.value));
    result.read_only = source == SOURCE_STATIC_BROKER;
    result.config_source = source;
    if version >= 3 {
        result.config_type = entry.config_type as i8;
    }
    if include_synonyms && version >= 1 {
        result.synonyms = synonyms(&entry, source);
    }
    result
}

/// Kafka's synonyms, in order of precedence: the value's own source first, then the
/// broker-level default a topic config falls back to (`tools` such as `kafka-configs
/// --describe --all` print them).
fn synonyms(entry: &Described, source: i8) -> Vec<DescribeConfigsSynonym> {
    let synonym = |name: &str, value: &str, source: i8| {
        let mut synonym = DescribeConfigsSynonym::default();
        synonym.name = str_bytes(name);
        synonym.value = Some(str_bytes(value));
        synonym.source = source;
        synonym
    };
    let mut list = Vec::with_capacity(2);
    if source != SOURCE_DEFAULT {
        list.push(synonym(&entry.name, &entry.value, source));
    }
    if let Some((broker_name, default)) = &entry.broker_default {
        list.push(synonym(broker_name, default, SOURCE_DEFAULT));
    }
    list
}

fn broker_configs(shard: &Shard) -> Vec<(Described, i8)> {
    let config = &shard.config;
    let defaults = &config.topic_defaults;
    // Kafka's nearest equivalents: fsync before every acks=all answer is
    // `log.flush.interval.messages=1`; a background fdatasync every N ms is
    // `log.flush.interval.ms=N` with no per-message flush.
    let flush = match config.flush {
        crate::storage::FlushPolicy::EveryAppend => vec![(
            "log.flush.interval.messages",
            "1".to_string(),
            ConfigType::Long,
        )],
        crate::storage::FlushPolicy::Interval(every) => vec![
            (
                "log.flush.interval.messages",
                i64::MAX.to_string(),
                ConfigType::Long,
            ),
            (
                "log.flush.interval.ms",
                every.as_millis().to_string(),
                ConfigType::Long,
            ),
        ],
    };
    let mut entries: Vec<(&str, String, ConfigType)> = vec![
        ("broker.id", config.node_id.to_string(), ConfigType::Int),
        ("node.id", config.node_id.to_string(), ConfigType::Int),
        (
            "log.dirs",
            config.data_dir.display().to_string(),
            ConfigType::String,
        ),
        (
            "num.partitions",
            config.default_partitions.to_string(),
            ConfigType::Int,
        ),
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::Boolean,
        ),
        (
            "log.retention.ms",
            defaults.retention_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.retention.bytes",
            defaults.retention_bytes.to_string(),
            ConfigType::Long,
        ),
        (
            "log.segment.bytes",
            defaults.segment_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "log.roll.ms",
            defaults.segment_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "message.max.bytes",
            defaults.max_message_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "socket.request.max.bytes",
            config.request_bytes_max.to_string(),
            ConfigType::Int,
        ),
        (
            "fetch.max.bytes",
            config.fetch_bytes_max.to_string(),
            ConfigType::Int,
        ),
        (
            "connections.max.idle.ms",
            config.connection_idle.as_millis().to_string(),
            ConfigType::Long,
        ),
        ("log.cleanup.policy", "delete".into(), ConfigType::String),
        ("compression.type", "producer".into(), ConfigType::String),
        ("min.insync.replicas", "1".into(), ConfigType::Int),
    ];
    entries.extend(flush);
    entries
        .into_iter()
        .map(|(name, value, config_type)| {
            (
                Described {
                    name: name.into(),
                    value,
                    is_default: false,
                    config_type,
                    broker_default: None,
                },
                SOURCE_STATIC_BROKER,
            )
        })
        .collect()
}
