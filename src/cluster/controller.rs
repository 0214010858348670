//! The controller: topic creation, deletion, partition growth and config changes. Runs on
//! shard 0 only, one
//! change at a time (`Shard::controller_lock`); other shards reach it with `run_on(0, ..)`.
//!
//! Order of a creation (and of partition growth): open the new logs on their owning shards
//! (removing any leftover directory of a deleted namesake), persist the metadata file, then
//! send every shard the new snapshot. A crash before the persist leaves only orphan
//! directories, which a later creation of the same name removes. Deletion persists first,
//! then deletes the logs, so a deleted topic never comes back.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::metadata::{validate_topic_name, ClusterMetadata, Topic};
use super::topic_config;
use crate::config::PARTITIONS_PER_TOPIC_MAX;
use crate::shard::Shard;

pub const CONTROLLER_SHARD: usize = 0;

/// Why a topic operation failed, as a Kafka error code and message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: ResponseError,
    pub message: String,
}

fn failure(code: ResponseError, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

pub type Outcome<T> = Result<T, Failure>;

/// A topic to create, as requested.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    /// -1 for the broker default.
    pub partitions: i32,
    /// -1 for the default (1: this is a single broker).
    pub replication_factor: i16,
    /// Manual assignment: per partition, its replicas' broker ids.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: BTreeMap<String, String>,
}

/// A request to grow a topic to `count` partitions.
#[derive(Debug, Clone)]
pub struct PartitionGrowth {
    pub topic: String,
    pub count: i32,
    /// Manual assignment of the new partitions: per new partition, its replicas.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// One operation of a topic config change.
#[derive(Debug, Clone)]
pub enum ConfigEdit {
    Set(String, String),
    /// Back to the broker default.
    Delete(String),
}

/// A change to one topic's config overrides: IncrementalAlterConfigs edits the current
/// overrides; AlterConfigs (`replace_all`) replaces them with the set it names.
#[derive(Debug, Clone)]
pub struct TopicConfigChange {
    pub topic: String,
    pub replace_all: bool,
    pub edits: Vec<ConfigEdit>,
}

/// A topic named by name or by id.
#[derive(Debug, Clone)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

fn validate_spec(spec: &TopicSpec, metadata: &ClusterMetadata, shard: &Shard) -> Outcome<i32> {
    validate_topic_name(&spec.name)
        .map_err(|m| failure(ResponseError::InvalidTopicException, m))?;
    if metadata.topic(&spec.name).is_some() {
        return Err(failure(
            ResponseError::TopicAlreadyExists,
            format!("topic '{}' already exists", spec.name),
        ));
    }
    let node = shard.config.node_id;
    let partitions = if spec.assignments.is_empty() {
        if !matches!(spec.replication_factor, -1 | 1) {
            return Err(failure(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {} is larger than the 1 available broker",
                    spec.replication_factor
                ),
            ));
        }
        if spec.partitions == -1 {
            shard.config.default_partitions
        } else {
            spec.partitions
        }
    } else {
        let mut indexes: Vec<i32> = spec.assignments.iter().map(|(index, _)| *index).collect();
        indexes.sort_unstable();
        let contiguous = indexes
            .iter()
            .enumerate()
            .all(|(position, &index)| index == position as i32);
        let local = spec
            .assignments
            .iter()
            .all(|(_, brokers)| brokers.as_slice() == [node]);
        if !contiguous || !local || spec.replication_factor != -1 || !matches!(spec.partitions, -1)
        {
            return Err(failure(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "assignments must cover partitions 0..n, each with the single replica [{node}]"
                ),
            ));
        }
        spec.assignments.len() as i32
    };
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(failure(
            ResponseError::InvalidPartitions,
            format!("partitions must be in 1..={PARTITIONS_PER_TOPIC_MAX}, got {partitions}"),
        ));
    }
    topic_config::validate(&spec.configs).map_err(|(name, value, reason)| {
        failure(
            ResponseError::InvalidConfig,
            format!("{name}={value}: {reason}"),
        )
    })?;
    Ok(partitions)
}

/// Creates topics (or only validates them). Results are in request order.
pub async fn create_topics(
    shard: &Rc<Shard>,
    specs: Vec<TopicSpec>,
    validate_only: bool,
) -> Vec<Outcome<Topic>> {
    let _one_change_at_a_time = shard.controller_lock.lock().await;
    let mut metadata = (*shard.metadata()).clone();
    let mut results = Vec::with_capacity(specs.len());
    for spec in specs {
        let outcome = match validate_spec(&spec, &metadata, shard) {
            Ok(partitions) => {
                let topic = Topic {
                    name: spec.name.clone(),
                    id: Uuid::new_v4(),
                    partitions,
                    configs: spec.configs.clone(),
                };
                if validate_only {
                    Ok(topic)
                } else {
                    match open_logs(shard, &topic, 0..partitions).await {
                        Ok(()) => {
                            metadata.topics.insert(topic.name.clone(), topic.clone());
                            Ok(topic)
                        }
                        Err(message) => {
                            delete_logs(shard, &topic).await;
                            Err(failure(ResponseError::KafkaStorageError, message))
                        }
                    }
                }
            }
            Err(error) => Err(error),
        };
        results.push(outcome);
    }
    if !validate_only && results.iter().any(Result::is_ok) {
        return publish_or_fail(shard, metadata, results).await;
    }
    results
}

/// Deletes topics. Results are in request order and name the deleted topic.
pub async fn delete_topics(shard: &Rc<Shard>, refs: Vec<TopicRef>) -> Vec<Outcome<Topic>> {
    let _one_change_at_a_time = shard.controller_lock.lock().await;
    let mut metadata = (*shard.metadata()).clone();
    let mut results = Vec::with_capacity(refs.len());
    for topic_ref in refs {
        let found = match &topic_ref {
            TopicRef::Name(name) => metadata.topic(name).cloned().ok_or_else(|| {
                failure(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )
            }),
            TopicRef::Id(id) => metadata.topic_by_id(id).cloned().ok_or_else(|| {
                failure(
                    ResponseError::UnknownTopicId,
                    format!("no topic has id {id}"),
                )
            }),
        };
        if let Ok(topic) = &found {
            metadata.topics.remove(&topic.name);
        }
        results.push(found);
    }
    if results.iter().all(Result::is_err) {
        return results;
    }
    // Persisted first, so a deleted topic never comes back; then its logs go.
    let results = publish_or_fail(shard, metadata, results).await;
    for topic in results.iter().filter_map(|outcome| outcome.as_ref().ok()) {
        delete_logs(shard, topic).await;
    }
    results
}

/// Grows topics to `count` partitions each. Results are in request order.
pub async fn create_partitions(
    shard: &Rc<Shard>,
    changes: Vec<PartitionGrowth>,
    validate_only: bool,
) -> Vec<Outcome<()>> {
    let _one_change_at_a_time = shard.controller_lock.lock().await;
    let mut metadata = (*shard.metadata()).clone();
    let mut results = Vec::with_capacity(changes.len());
    let node = shard.config.node_id;
    for PartitionGrowth {
        topic: name,
        count,
        assignments,
    } in changes
    {
        let Some(topic) = metadata.topic(&name).cloned() else {
            results.push(Err(failure(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )));
            continue;
        };
        if count <= topic.partitions || count > PARTITIONS_PER_TOPIC_MAX {
            results.push(Err(failure(
                ResponseError::InvalidPartitions,
                format!("topic '{name}' has {} partitions; the new count must be larger and at most {PARTITIONS_PER_TOPIC_MAX}, got {count}", topic.partitions),
            )));
            continue;
        }
        if let Some(assignments) = &assignments {
            let added = (count - topic.partitions) as usize;
            if assignments.len() != added
                || assignments
                    .iter()
                    .any(|brokers| brokers.as_slice() != [node])
            {
                results.push(Err(failure(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "give one assignment per new partition, each the single replica [{node}]"
                    ),
                )));
                continue;
            }
        }
        if validate_only {
            results.push(Ok(()));
            continue;
        }
        let grown = Topic {
            partitions: count,
            ..topic.clone()
        };
        match open_logs(shard, &grown, topic.partitions..count).await {
            Ok(()) => {
                metadata.topics.insert(name, grown);
                results.push(Ok(()));
            }
            Err(message) => results.push(Err(failure(ResponseError::KafkaStorageError, message))),
        }
    }
    if !validate_only && results.iter().any(Result::is_ok) {
        return publish_or_fail(shard, metadata, results).await;
    }
    results
}

/// Changes topics' config overrides (or only validates the change). Results are in request
/// order. The new overrides are persisted, then every owning shard applies the new roll and
/// retention limits to its open logs.
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    changes: Vec<TopicConfigChange>,
    validate_only: bool,
) -> Vec<Outcome<()>> {
    let _one_change_at_a_time = shard.controller_lock.lock().await;
    let mut metadata = (*shard.metadata()).clone();
    let defaults = &shard.config.topic_defaults;
    let mut results = Vec::with_capacity(changes.len());
    let mut changed = Vec::new();
    for change in changes {
        let Some(topic) = metadata.topic(&change.topic).cloned() else {
            results.push(Err(failure(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{}' does not exist", change.topic),
            )));
            continue;
        };
        let mut overrides = if change.replace_all {
            BTreeMap::new()
        } else {
            topic.configs.clone()
        };
        for edit in change.edits {
            match edit {
                ConfigEdit::Set(name, value) => overrides.insert(name, value),
                ConfigEdit::Delete(name) => overrides.remove(&name),
            };
        }
        let invalid = topic_config::validate(&overrides).map_err(|(name, value, reason)| {
            failure(
                ResponseError::InvalidConfig,
                format!("{name}={value}: {reason}"),
            )
        });
        // The largest batch also bounds reads of what is stored (`LogConfig::batch_bytes_max`),
        // so open logs keep the limit they were opened with.
        let old = topic_config::resolve(&topic.configs, defaults).max_message_bytes;
        let new = topic_config::resolve(&overrides, defaults).max_message_bytes;
        let outcome = invalid.and_then(|()| {
            if old == new {
                Ok(())
            } else {
                Err(failure(
                    ResponseError::InvalidConfig,
                    format!(
                        "max.message.bytes={new}: it can only be set when the topic is created \
                         (it is {old})"
                    ),
                ))
            }
        });
        if outcome.is_ok() && !validate_only {
            let updated = Topic {
                configs: overrides,
                ..topic
            };
            metadata.topics.insert(change.topic, updated.clone());
            changed.push(updated);
        }
        results.push(outcome);
    }
    if changed.is_empty() {
        return results;
    }
    let results = publish_or_fail(shard, metadata, results).await;
    if results.iter().any(Result::is_ok) {
        for topic in changed {
            reconfigure_logs(shard, &topic).await;
        }
    }
    results
}

/// Producer ids reserved (persisted) at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Hands out a new producer id, persisting a new block of ids first when the current one
/// is used up, so no id is handed out twice, even across restarts.
pub async fn allocate_producer_id(shard: &Rc<Shard>) -> Outcome<i64> {
    let _one_change_at_a_time = shard.controller_lock.lock().await;
    let metadata = shard.metadata();
    let next = shard
        .next_producer_id
        .get()
        .unwrap_or(metadata.producer_id_block_end);
    if next >= metadata.producer_id_block_end {
        let mut updated = (*metadata).clone();
        updated.producer_id_block_end = next + PRODUCER_ID_BLOCK;
        publish(shard, updated).await.map_err(|error| {
            failure(
                ResponseError::KafkaStorageError,
                format!("cannot persist producer ids: {error}"),
            )
        })?;
    }
    shard.next_producer_id.set(Some(next + 1));
    Ok(next)
}

/// Opens partitions `range` of `topic` on their owning shards, in parallel.
async fn open_logs(
    shard: &Rc<Shard>,
    topic: &Topic,
    range: std::ops::Range<i32>,
) -> Result<(), String> {
    let mut by_owner: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for partition in range {
        by_owner
            .entry(shard.owner_of(topic, partition))
            .or_default()
            .push(partition);
    }
    let topic = topic.clone();
    let opened = shard
        .run_on_each(by_owner.into_iter().collect(), move |target, partitions| {
            let topic = topic.clone();
            async move {
                target
                    .open_partitions(&topic, &partitions, true)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    opened
        .into_iter()
        .collect::<Result<Vec<()>, String>>()
        .map(drop)
}

/// Gives the owning shards' open logs of `topic` its (new) roll and retention limits.
async fn reconfigure_logs(shard: &Rc<Shard>, topic: &Topic) {
    for owner in shard.owners(topic) {
        let topic = topic.clone();
        if let Err(error) = shard
            .run_on(owner, move |target| async move {
                target.reconfigure_partitions(&topic)
            })
            .await
        {
            tracing::error!(shard = owner, %error, "a shard missed a topic config change");
        }
    }
}

async fn delete_logs(shard: &Rc<Shard>, topic: &Topic) {
    for owner in shard.owners(topic) {
        let name = topic.name.clone();
        let deleted = shard
            .run_on(owner, move |target| async move {
                target
                    .delete_partitions(&name)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        if let Err(error) = deleted.map_err(|e| e.to_string()).and_then(|d| d) {
            tracing::error!(topic = %topic.name, shard = owner, %error, "deleting partition logs failed");
        }
    }
}

/// Publishes `metadata`; if it cannot be persisted, every change in `results` failed.
async fn publish_or_fail<T>(
    shard: &Rc<Shard>,
    metadata: ClusterMetadata,
    results: Vec<Outcome<T>>,
) -> Vec<Outcome<T>> {
    match publish(shard, metadata).await {
        Ok(()) => results,
        Err(error) => {
            let message = format!("cannot persist topic metadata: {error}");
            tracing::error!("{message}");
            results
                .into_iter()
                .map(|outcome| {
                    outcome.and_then(|_| {
                        Err(failure(ResponseError::KafkaStorageError, message.clone()))
                    })
                })
                .collect()
        }
    }
}

/// Persists `metadata`, then gives every shard the new snapshot.
async fn publish(
    shard: &Rc<Shard>,
    metadata: ClusterMetadata,
) -> Result<(), crate::storage::StorageError> {
    crate::storage::io::write_file_atomic(&shard.config.metadata_path(), &metadata.encode())
        .await?;
    let snapshot = Arc::new(metadata);
    let sent = shard
        .run_on_all(move |target| {
            let snapshot = snapshot.clone();
            async move { target.set_metadata(snapshot) }
        })
        .await;
    if let Err(error) = sent {
        tracing::error!(%error, "a shard missed a metadata update");
    }
    Ok(())
}

/// From any shard: creates `names` with default settings if they do not exist yet (topic
/// auto-creation). Names that are invalid or fail to create are left out.
pub async fn ensure_topics(shard: &Rc<Shard>, names: Vec<String>) {
    let metadata = shard.metadata();
    let missing: Vec<TopicSpec> = names
        .into_iter()
        .filter(|name| metadata.topic(name).is_none() && validate_topic_name(name).is_ok())
        .map(|name| TopicSpec {
            name,
            partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let created = shard
        .run_on(CONTROLLER_SHARD, move |controller| async move {
            create_topics(&controller, missing, false)
                .await
                .into_iter()
                .filter_map(|outcome| {
                    outcome
                        .err()
                        .filter(|f| f.code != ResponseError::TopicAlreadyExists)
                })
                .map(|f| f.message)
                .collect::<Vec<_>>()
        })
        .await;
    match created {
        Ok(errors) if errors.is_empty() => {}
        Ok(errors) => tracing::warn!(?errors, "auto-creating topics failed"),
        Err(error) => tracing::warn!(%error, "auto-creating topics failed"),
    }
}
