//! The controller: topic creation, deletion, partition growth, config changes and producer
//! ids. One change at a time (`Controller::lock`); the broker runs the one controller on
//! shard 0 (`runtime::placement::CONTROLLER_SHARD`) and other shards reach it by message.
//!
//! The controller decides and persists; it does not know how partitions are spread over
//! shards. It acts on them through a [`TopicHost`], which the shard layer implements.
//!
//! Order of a creation (and of partition growth): open the new logs on their owning shards,
//! persist the metadata file, then give every shard the new snapshot. If a log cannot be
//! opened, the logs this change opened are closed and deleted again. A crash before the
//! persist leaves orphan directories, which a later creation of the same name moves aside
//! (`<data dir>/.orphans/`), never deletes. Deletion persists first, then deletes the logs,
//! so a deleted topic never comes back.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::metadata::REPLICATION_FACTOR_MAX;
use super::metadata::{
    is_internal_topic, validate_topic_name, ClusterMetadata, PartitionState, Topic, OFFSETS_TOPIC,
    PARTITIONS_PER_TOPIC_MAX,
};
use super::reassignment::{self, ElectionKind, ReassignmentError};
use super::topic_config::{self, TopicDefaults};

/// Why a topic operation failed. The server maps each to its Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(String),
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("no topic has id {0}")]
    UnknownTopicId(Uuid),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidConfig(String),
    /// The change is valid but would take the broker past one of its limits.
    #[error("{0}")]
    PolicyViolation(String),
    #[error("{0}")]
    UnknownPartition(String),
    #[error("{0}")]
    NoReassignmentInProgress(String),
    #[error("{0}")]
    ElectionNotNeeded(String),
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// Clients may not create, delete or grow an internal topic (`__consumer_offsets`).
    #[error("'{0}' is an internal topic: the brokers create and manage it")]
    InternalTopic(String),
    #[error("{0}")]
    Storage(String),
    /// No controller could be reached or it lost its leadership; clients retry.
    #[error("{0}")]
    NotController(String),
}

pub type Outcome<T> = Result<T, TopicError>;

impl From<ReassignmentError> for TopicError {
    fn from(error: ReassignmentError) -> TopicError {
        let text = error.to_string();
        match error {
            ReassignmentError::UnknownPartition(_) => TopicError::UnknownPartition(text),
            ReassignmentError::NoReassignmentInProgress(_) => {
                TopicError::NoReassignmentInProgress(text)
            }
            ReassignmentError::InvalidReplicaAssignment(_) => {
                TopicError::InvalidReplicaAssignment(text)
            }
            ReassignmentError::InvalidReplicationFactor(_) => {
                TopicError::InvalidReplicationFactor(text)
            }
            ReassignmentError::ElectionNotNeeded(_) => TopicError::ElectionNotNeeded(text),
            ReassignmentError::PreferredLeaderNotAvailable(_) => {
                TopicError::PreferredLeaderNotAvailable(text)
            }
            ReassignmentError::EligibleLeadersNotAvailable(_) => {
                TopicError::EligibleLeadersNotAvailable(text)
            }
        }
    }
}

/// What the controller acts on: the partitions' logs on their owning shards, and every
/// shard's metadata snapshot. Implemented by the shard layer.
#[allow(async_fn_in_trait)] // single-threaded: the futures never cross threads
pub trait TopicHost {
    /// The metadata snapshot the controller's shard holds (the latest published).
    fn metadata(&self) -> Arc<ClusterMetadata>;
    /// Opens partitions `range` of `topic` on their owning shards, each moving aside any
    /// leftover directory under its name.
    async fn open_logs(&self, topic: &Topic, range: Range<i32>) -> Result<(), String>;
    /// Closes and deletes every log of `topic`; failures are logged, not returned.
    async fn delete_logs(&self, topic: &Topic);
    /// Closes and deletes the logs of partitions `range` of `topic` that are open (the
    /// rollback of a growth that failed part way); failures are logged, not returned.
    async fn discard_logs(&self, topic: &Topic, range: Range<i32>);
    /// Gives the open logs of `topic` its current roll and retention limits.
    async fn reconfigure_logs(&self, topic: &Topic);
    /// Makes `metadata` the cluster's metadata: persisted (a single broker's metadata
    /// file, or committed by the metadata quorum), then given to every shard.
    async fn commit(&self, metadata: ClusterMetadata) -> Result<(), String>;
}

/// What the controller needs of the broker's settings.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// The one broker's id: every replica assignment must name it.
    pub node_id: i32,
    pub default_partitions: i32,
    pub topic_defaults: TopicDefaults,
    /// Partitions the broker may hold over all topics: each keeps a file open and memory.
    pub partitions_max: usize,
}

/// Producer ids reserved (persisted) at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Controller {
    settings: ControllerSettings,
    /// Serializes changes: each reads the snapshot, changes it and publishes it whole.
    lock: async_lock::Mutex<()>,
    /// The next producer id to hand out (`None` until the first).
    next_producer_id: Cell<Option<i64>>,
}

/// A topic to create, as requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionGrowth {
    pub topic: String,
    pub count: i32,
    /// Manual assignment of the new partitions: per new partition, its replicas.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// One operation of a topic config change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigEdit {
    Set(String, String),
    /// Back to the broker default.
    Delete(String),
}

/// A change to one topic's config overrides: IncrementalAlterConfigs edits the current
/// overrides; AlterConfigs (`replace_all`) replaces them with the set it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfigChange {
    pub topic: String,
    pub replace_all: bool,
    pub edits: Vec<ConfigEdit>,
}

/// One partition's reassignment: its target replicas, or `None` to cancel it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReassignment {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// A topic named by name or by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

impl Controller {
    pub fn new(settings: ControllerSettings) -> Controller {
        Controller {
            settings,
            lock: async_lock::Mutex::new(()),
            next_producer_id: Cell::new(None),
        }
    }

    /// Runs `work` as one controller change: no other change runs meanwhile, so a change
    /// computed from the catalogue it reads cannot overwrite another (e.g. a fencing's
    /// partition changes and a config change of the same topic).
    pub async fn exclusive<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let _one_change_at_a_time = self.lock.lock().await;
        work.await
    }

    /// Creates topics (or only validates them). Results are in request order.
    pub async fn create_topics(
        &self,
        host: &impl TopicHost,
        specs: Vec<TopicSpec>,
        validate_only: bool,
    ) -> Vec<Outcome<Topic>> {
        let refused = specs.iter().find(|spec| is_internal_topic(&spec.name));
        if let Some(spec) = refused {
            let name = spec.name.clone();
            return specs
                .iter()
                .map(|spec| match is_internal_topic(&spec.name) {
                    true => Err(TopicError::InternalTopic(spec.name.clone())),
                    false => Err(TopicError::InvalidConfig(format!(
                        "not created: the same request asks for internal topic '{name}'"
                    ))),
                })
                .collect();
        }
        self.create_any_topics(host, specs, validate_only).await
    }

    /// Creates `__consumer_offsets` (a broker's own call, when a group first needs a
    /// coordinator): `partitions`, `replication_factor` replicas, kept forever (the
    /// coordinators compact it themselves).
    pub async fn create_offsets_topic(
        &self,
        host: &impl TopicHost,
        partitions: i32,
        replication_factor: i16,
    ) -> Outcome<Topic> {
        let spec = TopicSpec {
            name: OFFSETS_TOPIC.to_string(),
            partitions,
            replication_factor,
            assignments: Vec::new(),
            configs: BTreeMap::from([
                ("retention.ms".to_string(), "-1".to_string()),
                ("retention.bytes".to_string(), "-1".to_string()),
            ]),
        };
        let created = self.create_any_topics(host, vec![spec], false).await;
        created.into_iter().next().unwrap_or_else(|| {
            Err(TopicError::Storage(
                "no outcome for the offsets topic".into(),
            ))
        })
    }

    async fn create_any_topics(
        &self,
        host: &impl TopicHost,
        specs: Vec<TopicSpec>,
        validate_only: bool,
    ) -> Vec<Outcome<Topic>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        // Counts the topics of this request created (or validated) so far too, and is
        // checked before any log is opened.
        let mut partitions_total = metadata.partition_count();
        let mut results = Vec::with_capacity(specs.len());
        for spec in specs {
            let checked = self.validate_spec(&spec, &metadata).and_then(|partitions| {
                let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
                let total = self.check_partitions_max(partitions_total, count, || {
                    format!("creating '{}' ({count} partitions)", spec.name)
                })?;
                Ok((partitions, total))
            });
            let outcome = match checked {
                Ok((partitions, total)) => {
                    partitions_total = total;
                    let topic = Topic {
                        name: spec.name.clone(),
                        id: Uuid::new_v4(),
                        partitions: i32::try_from(partitions.len()).unwrap_or(i32::MAX),
                        configs: spec.configs.clone(),
                        states: partitions
                            .iter()
                            .map(|replicas| {
                                PartitionState::new(replicas, |id| metadata.is_live(id))
                            })
                            .collect(),
                        replicas: partitions,
                    };
                    if validate_only {
                        Ok(topic)
                    } else {
                        match host.open_logs(&topic, 0..topic.partitions).await {
                            Ok(()) => {
                                metadata.insert_topic(topic.clone());
                                Ok(topic)
                            }
                            Err(message) => {
                                host.delete_logs(&topic).await;
                                partitions_total = metadata.partition_count();
                                Err(TopicError::Storage(message))
                            }
                        }
                    }
                }
                Err(error) => Err(error),
            };
            results.push(outcome);
        }
        if !validate_only && results.iter().any(Result::is_ok) {
            let created: Vec<Topic> = results.iter().filter_map(|r| r.clone().ok()).collect();
            let results = self.publish_or_fail(host, metadata, results).await;
            if results.iter().all(Result::is_err) {
                // Not persisted: the logs just opened belong to no topic.
                for topic in &created {
                    host.delete_logs(topic).await;
                }
            }
            return results;
        }
        results
    }

    /// The broker's partition count after adding `added` to `total`, or why it may not grow
    /// that far; `change` names the change for the message.
    fn check_partitions_max(
        &self,
        total: usize,
        added: i32,
        change: impl FnOnce() -> String,
    ) -> Outcome<usize> {
        let partitions_max = self.settings.partitions_max;
        let after = total.saturating_add(usize::try_from(added).unwrap_or(0));
        if after > partitions_max {
            return Err(TopicError::PolicyViolation(format!(
                "{} would bring this broker to {after} partitions; partitions-max is \
                 {partitions_max}",
                change()
            )));
        }
        Ok(after)
    }

    /// Checks `spec` and returns its partitions' replicas.
    fn validate_spec(
        &self,
        spec: &TopicSpec,
        metadata: &ClusterMetadata,
    ) -> Outcome<Vec<Vec<i32>>> {
        validate_topic_name(&spec.name).map_err(TopicError::InvalidName)?;
        if metadata.topic(&spec.name).is_some() {
            return Err(TopicError::AlreadyExists(spec.name.clone()));
        }
        let replicas = if spec.assignments.is_empty() {
            let partitions = if spec.partitions == -1 {
                self.settings.default_partitions
            } else {
                spec.partitions
            };
            check_partition_count(partitions)?;
            let factor = match spec.replication_factor {
                -1 => i16::try_from(self.settings.topic_defaults.replication_factor).unwrap_or(1),
                factor => factor,
            };
            assign_round_robin(metadata, &spec.name, 0..partitions, factor)?
        } else {
            if spec.replication_factor != -1 || spec.partitions != -1 {
                return Err(TopicError::InvalidReplicaAssignment(
                    "with assignments, partitions and replication factor must be -1".into(),
                ));
            }
            let mut assignments = spec.assignments.clone();
            assignments.sort_unstable_by_key(|(index, _)| *index);
            let contiguous = assignments
                .iter()
                .enumerate()
                .all(|(position, (index, _))| i32::try_from(position) == Ok(*index));
            if !contiguous {
                return Err(TopicError::InvalidReplicaAssignment(
                    "assignments must cover partitions 0..n".into(),
                ));
            }
            check_partition_count(i32::try_from(assignments.len()).unwrap_or(i32::MAX))?;
            let replicas: Vec<Vec<i32>> = assignments.into_iter().map(|(_, r)| r).collect();
            check_assignments(metadata, &replicas)?;
            replicas
        };
        topic_config::validate(&spec.configs).map_err(|(name, value, reason)| {
            TopicError::InvalidConfig(format!("{name}={value}: {reason}"))
        })?;
        Ok(replicas)
    }

    /// Deletes topics. Results are in request order and name the deleted topic.
    pub async fn delete_topics(
        &self,
        host: &impl TopicHost,
        refs: Vec<TopicRef>,
    ) -> Vec<Outcome<Topic>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let mut results = Vec::with_capacity(refs.len());
        for topic_ref in refs {
            let found = match &topic_ref {
                TopicRef::Name(name) => metadata
                    .topic(name)
                    .cloned()
                    .ok_or_else(|| TopicError::UnknownTopic(name.clone())),
                TopicRef::Id(id) => metadata
                    .topic_by_id(id)
                    .cloned()
                    .ok_or(TopicError::UnknownTopicId(*id)),
            };
            let found = found.and_then(|topic| match is_internal_topic(&topic.name) {
                true => Err(TopicError::InternalTopic(topic.name)),
                false => Ok(topic),
            });
            if let Ok(topic) = &found {
                metadata.remove_topic(&topic.name);
            }
            results.push(found);
        }
        if results.iter().all(Result::is_err) {
            return results;
        }
        // Persisted first, so a deleted topic never comes back; then its logs go.
        let results = self.publish_or_fail(host, metadata, results).await;
        for topic in results.iter().filter_map(|outcome| outcome.as_ref().ok()) {
            host.delete_logs(topic).await;
        }
        results
    }

    /// Grows topics to `count` partitions each. Results are in request order.
    pub async fn create_partitions(
        &self,
        host: &impl TopicHost,
        changes: Vec<PartitionGrowth>,
        validate_only: bool,
    ) -> Vec<Outcome<()>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let mut partitions_total = metadata.partition_count();
        let mut results = Vec::with_capacity(changes.len());
        let mut opened = Vec::new();
        for change in changes {
            let old_count = metadata
                .topic(&change.topic)
                .map_or(0, |topic| topic.partitions);
            let checked = self.validate_growth(&change, &metadata).and_then(|grown| {
                let added = grown.partitions - old_count;
                let total = self.check_partitions_max(partitions_total, added, || {
                    format!(
                        "growing '{}' to {} partitions (+{added})",
                        change.topic, grown.partitions
                    )
                })?;
                Ok((grown, total))
            });
            let (grown, total) = match checked {
                Ok(checked) => checked,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            partitions_total = total;
            if validate_only {
                results.push(Ok(()));
                continue;
            }
            let added = old_count..grown.partitions;
            match host.open_logs(&grown, added.clone()).await {
                Ok(()) => {
                    opened.push((grown.clone(), added));
                    metadata.insert_topic(grown);
                    results.push(Ok(()));
                }
                Err(message) => {
                    partitions_total = metadata.partition_count();
                    // Some owners may have opened their new partitions before another
                    // failed: the metadata will not name them, so they must not stay.
                    host.discard_logs(&grown, added).await;
                    results.push(Err(TopicError::Storage(message)));
                }
            }
        }
        if !validate_only && results.iter().any(Result::is_ok) {
            let results = self.publish_or_fail(host, metadata, results).await;
            if results.iter().all(Result::is_err) {
                // Not persisted: the partitions just opened belong to no topic.
                for (topic, added) in opened {
                    host.discard_logs(&topic, added).await;
                }
            }
            return results;
        }
        results
    }

    /// The topic as `change` would grow it, or why it cannot.
    fn validate_growth(
        &self,
        change: &PartitionGrowth,
        metadata: &ClusterMetadata,
    ) -> Outcome<Topic> {
        let (name, count) = (&change.topic, change.count);
        let topic = metadata
            .topic(name)
            .ok_or_else(|| TopicError::UnknownTopic(name.clone()))?;
        if is_internal_topic(name) {
            // Its partition count places every group: growing it would move them.
            return Err(TopicError::InternalTopic(name.clone()));
        }
        if count <= topic.partitions || count > PARTITIONS_PER_TOPIC_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "topic '{name}' has {} partitions; the new count must be larger and at most \
                 {PARTITIONS_PER_TOPIC_MAX}, got {count}",
                topic.partitions
            )));
        }
        let new = topic.partitions..count;
        let added = match &change.assignments {
            Some(assignments) => {
                if assignments.len() != new.len() {
                    return Err(TopicError::InvalidReplicaAssignment(format!(
                        "give one assignment per new partition ({}), got {}",
                        new.len(),
                        assignments.len()
                    )));
                }
                check_assignments(metadata, assignments)?;
                assignments.clone()
            }
            None => {
                let factor = topic.replicas.first().map_or(1, Vec::len);
                let factor = i16::try_from(factor).unwrap_or(i16::MAX);
                assign_round_robin(metadata, name, new, factor)?
            }
        };
        let mut states = topic.states.clone();
        states.extend(
            added
                .iter()
                .map(|replicas| PartitionState::new(replicas, |id| metadata.is_live(id))),
        );
        let mut replicas = topic.replicas.clone();
        replicas.extend(added);
        Ok(Topic {
            partitions: count,
            replicas,
            states,
            ..topic.clone()
        })
    }

    /// Changes topics' config overrides (or only validates the change). Results are in
    /// request order. The new overrides are persisted, then every owning shard applies the
    /// new roll and retention limits to its open logs.
    pub async fn alter_topic_configs(
        &self,
        host: &impl TopicHost,
        changes: Vec<TopicConfigChange>,
        validate_only: bool,
    ) -> Vec<Outcome<()>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let mut results = Vec::with_capacity(changes.len());
        let mut changed = Vec::new();
        for change in changes {
            let outcome = metadata
                .topic(&change.topic)
                .ok_or_else(|| TopicError::UnknownTopic(change.topic.clone()))
                .and_then(|topic| self.changed_overrides(topic, change.replace_all, change.edits));
            match outcome {
                Ok(overrides) if !validate_only => {
                    if let Some(topic) = metadata.set_topic_configs(&change.topic, overrides) {
                        changed.push(topic.clone());
                    }
                    results.push(Ok(()));
                }
                outcome => results.push(outcome.map(drop)),
            }
        }
        if changed.is_empty() {
            return results;
        }
        let results = self.publish_or_fail(host, metadata, results).await;
        if results.iter().any(Result::is_ok) {
            for topic in changed {
                host.reconfigure_logs(&topic).await;
            }
        }
        results
    }

    /// `topic`'s overrides after `edits`, validated.
    fn changed_overrides(
        &self,
        topic: &Topic,
        replace_all: bool,
        edits: Vec<ConfigEdit>,
    ) -> Outcome<BTreeMap<String, String>> {
        let defaults = &self.settings.topic_defaults;
        let mut overrides = if replace_all {
            BTreeMap::new()
        } else {
            topic.configs.clone()
        };
        for edit in edits {
            match edit {
                ConfigEdit::Set(name, value) => overrides.insert(name, value),
                ConfigEdit::Delete(name) => overrides.remove(&name),
            };
        }
        topic_config::validate(&overrides).map_err(|(name, value, reason)| {
            TopicError::InvalidConfig(format!("{name}={value}: {reason}"))
        })?;
        // The largest batch also bounds reads of what is stored (`LogConfig::batch_bytes_max`),
        // so open logs keep the limit they were opened with.
        let old = topic_config::resolve(&topic.configs, defaults).max_message_bytes;
        let new = topic_config::resolve(&overrides, defaults).max_message_bytes;
        if old != new {
            return Err(TopicError::InvalidConfig(format!(
                "max.message.bytes={new}: it can only be set when the topic is created (it is {old})"
            )));
        }
        Ok(overrides)
    }

    /// Hands out a new producer id, persisting a new block of ids first when the current
    /// one is used up, so no id is handed out twice, even across restarts.
    pub async fn allocate_producer_id(&self, host: &impl TopicHost) -> Outcome<i64> {
        let _one_change_at_a_time = self.lock.lock().await;
        let metadata = host.metadata();
        let next = self
            .next_producer_id
            .get()
            .unwrap_or(metadata.producer_id_block_end);
        if next >= metadata.producer_id_block_end {
            let mut updated = (*metadata).clone();
            updated.producer_id_block_end = next + PRODUCER_ID_BLOCK;
            self.publish(host, updated).await.map_err(|error| {
                TopicError::Storage(format!("cannot persist producer ids: {error}"))
            })?;
        }
        self.next_producer_id.set(Some(next + 1));
        Ok(next)
    }

    /// Publishes `metadata`; if it cannot be persisted, every change in `results` failed.
    /// Starts, replaces or cancels partition reassignments (`cluster/reassignment.rs`).
    /// Results are in request order.
    pub async fn reassign_partitions(
        &self,
        host: &impl TopicHost,
        changes: Vec<PartitionReassignment>,
        allow_factor_change: bool,
    ) -> Vec<Outcome<()>> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        // Changed in place: a request's cost stays linear in its partitions (a copy of
        // the topic per partition named would not).
        let registered: BTreeSet<i32> = metadata.brokers.keys().copied().collect();
        let live: BTreeSet<i32> = metadata.live_brokers().map(|b| b.id).collect();
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let outcome = match metadata.topic_mut(&change.topic) {
                None => Err(TopicError::UnknownTopic(change.topic.clone())),
                Some(topic) => reassignment::reassign(
                    topic,
                    change.partition,
                    change.target,
                    allow_factor_change,
                    |id| registered.contains(&id),
                    |id| live.contains(&id),
                )
                .map_err(TopicError::from),
            };
            results.push(outcome);
        }
        if results.iter().any(Result::is_ok) {
            return self.publish_or_fail(host, metadata, results).await;
        }
        results
    }

    /// ElectLeaders: `partitions`, or (`None`) every partition; then only the partitions
    /// where an election was due are answered, as Kafka does.
    pub async fn elect_leaders(
        &self,
        host: &impl TopicHost,
        kind: ElectionKind,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<(String, i32, Outcome<()>)> {
        let _one_change_at_a_time = self.lock.lock().await;
        let mut metadata = (*host.metadata()).clone();
        let every = partitions.is_none();
        let wanted = partitions.unwrap_or_else(|| {
            metadata
                .topics()
                .values()
                .flat_map(|topic| (0..topic.partitions).map(|p| (topic.name.clone(), p)))
                .collect()
        });
        let live: BTreeSet<i32> = metadata.live_brokers().map(|b| b.id).collect();
        let mut results = Vec::with_capacity(wanted.len());
        for (name, partition) in wanted {
            let outcome = match metadata.topic_mut(&name) {
                None => Err(TopicError::UnknownTopic(name.clone())),
                Some(topic) => reassignment::elect(topic, partition, kind, |id| live.contains(&id))
                    .map_err(TopicError::from),
            };
            if every && matches!(outcome, Err(TopicError::ElectionNotNeeded(_))) {
                continue;
            }
            results.push((name, partition, outcome));
        }
        if results.iter().any(|(_, _, outcome)| outcome.is_ok()) {
            let (names, outcomes): (Vec<_>, Vec<_>) = results
                .into_iter()
                .map(|(name, partition, outcome)| ((name, partition), outcome))
                .unzip();
            let outcomes = self.publish_or_fail(host, metadata, outcomes).await;
            return names
                .into_iter()
                .zip(outcomes)
                .map(|((name, partition), outcome)| (name, partition, outcome))
                .collect();
        }
        results
    }

    async fn publish_or_fail<T>(
        &self,
        host: &impl TopicHost,
        metadata: ClusterMetadata,
        results: Vec<Outcome<T>>,
    ) -> Vec<Outcome<T>> {
        match self.publish(host, metadata).await {
            Ok(()) => results,
            Err(error) => {
                let message = format!("cannot persist topic metadata: {error}");
                tracing::error!("{message}");
                results
                    .into_iter()
                    .map(|outcome| outcome.and_then(|_| Err(TopicError::Storage(message.clone()))))
                    .collect()
            }
        }
    }

    /// Commits `metadata` through the host (persisted, then given to every shard).
    async fn publish(
        &self,
        host: &impl TopicHost,
        metadata: ClusterMetadata,
    ) -> Result<(), String> {
        host.commit(metadata).await
    }
}

/// Partitions per topic are 1..=PARTITIONS_PER_TOPIC_MAX.
fn check_partition_count(partitions: i32) -> Outcome<()> {
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(TopicError::InvalidPartitions(format!(
            "partitions must be in 1..={PARTITIONS_PER_TOPIC_MAX}, got {partitions}"
        )));
    }
    Ok(())
}

/// Replicas of each partition in `range`, `factor` per partition, spread round robin over
/// the live brokers (Kafka's rack-unaware assignment): partition p's first replica is
/// broker (start + p) mod n, the others follow it. The start depends on the topic's name,
/// so topics do not all lead on the same broker.
fn assign_round_robin(
    metadata: &ClusterMetadata,
    topic: &str,
    range: Range<i32>,
    factor: i16,
) -> Outcome<Vec<Vec<i32>>> {
    let brokers: Vec<i32> = metadata.live_brokers().map(|broker| broker.id).collect();
    if factor < 1 {
        return Err(TopicError::InvalidReplicationFactor(format!(
            "replication factor must be at least 1, got {factor}"
        )));
    }
    if factor as usize > brokers.len() {
        return Err(TopicError::InvalidReplicationFactor(format!(
            "replication factor {factor} is larger than the {} available broker(s)",
            brokers.len()
        )));
    }
    check_factor_supported(factor as usize)?;
    let count = brokers.len();
    let start = (crate::runtime::placement::fnv1a64(topic.as_bytes()) % count as u64) as usize;
    Ok(range
        .map(|partition| {
            let first = start + partition as usize;
            (0..factor as usize)
                .map(|replica| brokers[(first + replica) % count])
                .collect()
        })
        .collect())
}

/// Each partition's replicas: distinct registered brokers, as many for every partition.
fn check_assignments(metadata: &ClusterMetadata, replicas: &[Vec<i32>]) -> Outcome<()> {
    let factor = replicas.first().map_or(0, Vec::len);
    for (index, brokers) in replicas.iter().enumerate() {
        if brokers.is_empty() || brokers.len() != factor {
            return Err(TopicError::InvalidReplicaAssignment(format!(
                "partition {index} has {} replicas; every partition needs the same number, \
                 at least 1",
                brokers.len()
            )));
        }
        let mut distinct = brokers.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != brokers.len() {
            return Err(TopicError::InvalidReplicaAssignment(format!(
                "partition {index} names a broker twice: {brokers:?}"
            )));
        }
        if let Some(unknown) = brokers.iter().find(|id| !metadata.brokers.contains_key(id)) {
            return Err(TopicError::InvalidReplicaAssignment(format!(
                "partition {index} names broker {unknown}, which is not registered"
            )));
        }
    }
    check_factor_supported(factor)
        .map_err(|error| TopicError::InvalidReplicaAssignment(error.to_string()))
}

fn check_factor_supported(factor: usize) -> Outcome<()> {
    if factor > REPLICATION_FACTOR_MAX {
        return Err(TopicError::InvalidReplicationFactor(format!(
            "replication factor {factor} exceeds {REPLICATION_FACTOR_MAX}"
        )));
    }
    Ok(())
}

/// The specs that auto-creation asks for: the `names` not in `metadata` that are valid
/// topic names, with default settings.
pub fn auto_create_specs(metadata: &ClusterMetadata, names: Vec<String>) -> Vec<TopicSpec> {
    names
        .into_iter()
        .filter(|name| {
            metadata.topic(name).is_none()
                && validate_topic_name(name).is_ok()
                && !is_internal_topic(name)
        })
        .map(|name| TopicSpec {
            name,
            partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;

    /// A host that opens partitions in order and fails at one of them, remembering which
    /// logs are open.
    struct FakeHost {
        metadata: RefCell<Arc<ClusterMetadata>>,
        fail_at: i32,
        open: RefCell<BTreeSet<(String, i32)>>,
        commit_fails: bool,
    }

    impl TopicHost for FakeHost {
        fn metadata(&self) -> Arc<ClusterMetadata> {
            self.metadata.borrow().clone()
        }

        async fn open_logs(&self, topic: &Topic, range: Range<i32>) -> Result<(), String> {
            for partition in range {
                if partition == self.fail_at {
                    return Err(format!("cannot open partition {partition}"));
                }
                self.open
                    .borrow_mut()
                    .insert((topic.name.clone(), partition));
            }
            Ok(())
        }

        async fn delete_logs(&self, topic: &Topic) {
            self.open
                .borrow_mut()
                .retain(|(name, _)| name != &topic.name);
        }

        async fn discard_logs(&self, topic: &Topic, range: Range<i32>) {
            self.open
                .borrow_mut()
                .retain(|(name, index)| name != &topic.name || !range.contains(index));
        }

        async fn reconfigure_logs(&self, _topic: &Topic) {}

        async fn commit(&self, metadata: ClusterMetadata) -> Result<(), String> {
            if self.commit_fails {
                return Err("the metadata cannot be persisted".into());
            }
            *self.metadata.borrow_mut() = Arc::new(metadata);
            Ok(())
        }
    }

    /// A catalogue with the one broker, 0, live.
    fn one_broker() -> ClusterMetadata {
        let mut metadata = ClusterMetadata::new();
        metadata.brokers.insert(
            0,
            crate::cluster::metadata::BrokerInfo {
                id: 0,
                host: "localhost".into(),
                port: 9092,
                incarnation: Uuid::nil(),
                epoch: 0,
                fenced: false,
            },
        );
        metadata
    }

    fn controller() -> Controller {
        Controller::new(ControllerSettings {
            node_id: 0,
            default_partitions: 1,
            topic_defaults: TopicDefaults {
                min_insync_replicas: 1,
                replication_factor: 1,
                retention_ms: -1,
                retention_bytes: -1,
                segment_bytes: 1 << 30,
                segment_ms: -1,
                max_message_bytes: 1 << 20,
            },
            partitions_max: 1000,
        })
    }

    #[test]
    fn a_failed_growth_closes_the_partitions_it_opened_and_keeps_the_old_ones() {
        let mut metadata = one_broker();
        let topic = Topic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 2,
            configs: BTreeMap::new(),
            replicas: vec![vec![0]; 2],
            states: vec![PartitionState::new(&[0], |_| true); 2],
        };
        metadata.insert_topic(topic);
        let host = FakeHost {
            metadata: RefCell::new(Arc::new(metadata)),
            fail_at: 3,
            open: RefCell::new([("t".to_string(), 0), ("t".to_string(), 1)].into()),
            commit_fails: false,
        };
        let grown = futures_lite::future::block_on(controller().create_partitions(
            &host,
            vec![PartitionGrowth {
                topic: "t".into(),
                count: 5,
                assignments: None,
            }],
            false,
        ));
        assert!(
            matches!(grown.as_slice(), [Err(TopicError::Storage(_))]),
            "{grown:?}"
        );
        let open: Vec<(String, i32)> = host.open.borrow().iter().cloned().collect();
        assert_eq!(open, [("t".to_string(), 0), ("t".to_string(), 1)]);
        assert_eq!(host.metadata().topic("t").map(|t| t.partitions), Some(2));
    }

    #[test]
    fn logs_of_a_change_that_cannot_be_persisted_are_deleted_again() {
        let temp = tempfile::tempdir().expect("temp dir");
        // The metadata file cannot be written (its directory does not exist).
        let outcome = crate::runtime::run_single("controller-test", temp.path().into(), || async {
            let host = FakeHost {
                metadata: RefCell::new(Arc::new(one_broker())),
                fail_at: i32::MAX,
                open: RefCell::new(BTreeSet::new()),
                commit_fails: true,
            };
            let spec = TopicSpec {
                name: "new".into(),
                partitions: 3,
                replication_factor: -1,
                assignments: Vec::new(),
                configs: BTreeMap::new(),
            };
            let created = controller().create_topics(&host, vec![spec], false).await;
            let open = host.open.borrow().len();
            (created, open)
        });
        let (created, open) = outcome.expect("executor");
        assert!(
            matches!(created.as_slice(), [Err(TopicError::Storage(_))]),
            "{created:?}"
        );
        assert_eq!(open, 0, "the opened logs stayed");
    }

    /// Only the brokers create `__consumer_offsets` (kept forever); clients can neither
    /// create, delete nor grow it, nor get it auto-created.
    #[test]
    fn the_offsets_topic_is_internal() {
        let host = FakeHost {
            metadata: RefCell::new(Arc::new(one_broker())),
            fail_at: i32::MAX,
            open: RefCell::new(BTreeSet::new()),
            commit_fails: false,
        };
        let spec = |name: &str| TopicSpec {
            name: name.into(),
            partitions: 2,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        };
        let controller = controller();
        use futures_lite::future::block_on;
        let refused = block_on(controller.create_topics(
            &host,
            vec![spec("plain"), spec(OFFSETS_TOPIC)],
            false,
        ));
        assert!(
            matches!(
                refused.as_slice(),
                [
                    Err(TopicError::InvalidConfig(_)),
                    Err(TopicError::InternalTopic(_))
                ]
            ),
            "{refused:?}"
        );
        assert!(
            host.metadata().topics().is_empty(),
            "nothing of that request created"
        );
        assert!(auto_create_specs(&host.metadata(), vec![OFFSETS_TOPIC.into()]).is_empty());
        let created = block_on(controller.create_offsets_topic(&host, 4, 1)).expect("created");
        assert_eq!(created.partitions, 4);
        assert_eq!(
            created.configs.get("retention.ms").map(String::as_str),
            Some("-1")
        );
        let deleted =
            block_on(controller.delete_topics(&host, vec![TopicRef::Name(OFFSETS_TOPIC.into())]));
        assert!(matches!(
            deleted.as_slice(),
            [Err(TopicError::InternalTopic(_))]
        ));
        let grown = block_on(controller.create_partitions(
            &host,
            vec![PartitionGrowth {
                topic: OFFSETS_TOPIC.into(),
                count: 8,
                assignments: None,
            }],
            false,
        ));
        assert!(matches!(
            grown.as_slice(),
            [Err(TopicError::InternalTopic(_))]
        ));
        assert_eq!(
            host.metadata().topic(OFFSETS_TOPIC).map(|t| t.partitions),
            Some(4)
        );
    }

    /// Three brokers, one fenced: new partitions spread round robin over the two live
    /// ones, explicit assignments must name registered brokers, and a replication factor
    /// above the live brokers is refused.
    #[test]
    fn partitions_are_assigned_round_robin_over_live_brokers() {
        let mut metadata = one_broker();
        for (id, fenced) in [(1, false), (2, true)] {
            let mut broker = metadata.brokers[&0].clone();
            broker.id = id;
            broker.fenced = fenced;
            metadata.brokers.insert(id, broker);
        }
        let replicas = assign_round_robin(&metadata, "t", 0..4, 1).expect("assign");
        let leaders: Vec<i32> = replicas.iter().map(|r| r[0]).collect();
        assert!(leaders.iter().all(|id| [0, 1].contains(id)), "{leaders:?}");
        assert_ne!(leaders[0], leaders[1]);
        assert_eq!(leaders[0], leaders[2]);
        // Two replicas each: both live brokers, the leaders still spread.
        let replicas = assign_round_robin(&metadata, "t", 0..2, 2).expect("assign");
        assert_eq!(replicas[0].len(), 2);
        assert_ne!(replicas[0][0], replicas[0][1]);
        assert_ne!(replicas[0][0], replicas[1][0]);
        assert!(matches!(
            assign_round_robin(&metadata, "t", 0..1, 3),
            Err(TopicError::InvalidReplicationFactor(_))
        ));
        assert!(check_assignments(&metadata, &[vec![2], vec![0]]).is_ok());
        for bad in [vec![vec![7]], vec![vec![0], vec![]], vec![vec![0, 0]]] {
            assert!(
                matches!(
                    check_assignments(&metadata, &bad),
                    Err(TopicError::InvalidReplicaAssignment(_))
                ),
                "{bad:?}"
            );
        }
        let mut topic_metadata = metadata.clone();
        topic_metadata.insert_topic(Topic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 2,
            configs: BTreeMap::new(),
            states: vec![
                PartitionState::new(&[1], |id| metadata.is_live(id)),
                PartitionState::new(&[2], |id| metadata.is_live(id)),
            ],
            replicas: vec![vec![1], vec![2]],
        });
        let topic = topic_metadata.topic("t").unwrap();
        assert_eq!(topic_metadata.leader_of(topic, 0), Some(1));
        assert_eq!(
            topic_metadata.leader_of(topic, 1),
            None,
            "its broker is fenced"
        );
        assert_eq!(
            topic_metadata.leader_of(topic, 2),
            None,
            "no such partition"
        );
    }
}
