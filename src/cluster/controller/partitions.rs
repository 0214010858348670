//! Growing topics, reassigning partitions (KIP-455) and electing leaders on request.

use std::collections::BTreeSet;

use super::assignment::{assign_round_robin, check_assignments};
use super::error::{Outcome, TopicError};
use super::frontend::Controller;
use super::host::TopicHost;
use super::requests::{PartitionGrowth, PartitionReassignment};
use crate::cluster::metadata::{
    is_internal_topic, ClusterMetadata, PartitionState, Topic, PARTITIONS_PER_TOPIC_MAX,
};
use crate::cluster::reassignment::{self, ElectionKind};

impl Controller {
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
    pub(super) fn validate_growth(
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
}
