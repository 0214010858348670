//! Where a new topic's (or partition's) replicas go, and the checks of an assignment a
//! request names.

use std::ops::Range;

use super::error::{Outcome, TopicError};
use crate::cluster::metadata::{ClusterMetadata, PARTITIONS_PER_TOPIC_MAX, REPLICATION_FACTOR_MAX};

/// Partitions per topic are 1..=PARTITIONS_PER_TOPIC_MAX.
pub(super) fn check_partition_count(partitions: i32) -> Outcome<()> {
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
pub(super) fn assign_round_robin(
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
pub(super) fn check_assignments(metadata: &ClusterMetadata, replicas: &[Vec<i32>]) -> Outcome<()> {
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

pub(super) fn check_factor_supported(factor: usize) -> Outcome<()> {
    if factor > REPLICATION_FACTOR_MAX {
        return Err(TopicError::InvalidReplicationFactor(format!(
            "replication factor {factor} exceeds {REPLICATION_FACTOR_MAX}"
        )));
    }
    Ok(())
}
