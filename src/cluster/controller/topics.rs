//! Creating (and auto-creating) and deleting topics.

use super::assignment::{assign_round_robin, check_assignments, check_partition_count};
use super::error::{Outcome, TopicError};
use super::frontend::Controller;
use super::host::TopicHost;
use super::requests::{TopicRef, TopicSpec};
use crate::cluster::metadata::{
    is_internal_topic, validate_topic_name, ClusterMetadata, PartitionState, Topic, OFFSETS_TOPIC,
};
use crate::cluster::topic_config;
use std::collections::BTreeMap;

impl Controller {
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

    pub(super) async fn create_any_topics(
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
                        id: (self.topic_ids.borrow_mut())(),
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
    pub(super) fn check_partitions_max(
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
    pub(super) fn validate_spec(
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
