//! ISR changes as the quorum's leader decides them: a partition leader's request to add
//! a caught-up follower or drop a lagging one, and a live broker's report that its
//! replica's log failed. Pure: each takes the catalogue and returns the record to
//! propose, or why not.
//!
//! A request is current only if the asking broker leads the partition at the leader
//! epoch it names (an older leadership's request is refused: its view of the followers is
//! stale), and sound only if the leader stays in the ISR, every member is a replica, and
//! every member added is live. An ISR change that brings every replica a reassignment
//! adds in sync completes that reassignment in the same entry.

use uuid::Uuid;

use crate::cluster::election;
use crate::cluster::metadata::{ClusterMetadata, PartitionState};
use crate::cluster::reassignment;
use crate::cluster::records::MetadataRecord;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsrRefusal {
    #[error("no topic has id {0}")]
    UnknownTopic(Uuid),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error(
        "stale ISR change: broker {broker} at epoch {asked}, but the partition is led by \
         {leader} at epoch {current}"
    )]
    StaleLeader {
        broker: i32,
        asked: i32,
        leader: i32,
        current: i32,
    },
    #[error("ISR {0:?} is not the leader and live replicas")]
    Unsound(Vec<i32>),
    #[error("broker {broker} at registration {epoch} is not registered so")]
    StaleRegistration { broker: i32, epoch: u64 },
}

/// A partition leader's request for a new ISR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrRequest {
    pub broker: i32,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// The records for `request` (`[]` if the ISR already is that).
pub fn alter_partition(
    image: &ClusterMetadata,
    request: &IsrRequest,
) -> Result<Vec<MetadataRecord>, IsrRefusal> {
    let IsrRequest {
        broker,
        topic_id,
        partition,
        leader_epoch,
        ref isr,
    } = *request;
    let topic = image
        .topic_by_id(&topic_id)
        .ok_or(IsrRefusal::UnknownTopic(topic_id))?;
    let state = topic
        .state_of(partition)
        .ok_or_else(|| IsrRefusal::UnknownPartition {
            topic: topic.name.clone(),
            partition,
        })?;
    if state.leader != broker || state.leader_epoch != leader_epoch {
        return Err(IsrRefusal::StaleLeader {
            broker,
            asked: leader_epoch,
            leader: state.leader,
            current: state.leader_epoch,
        });
    }
    let replicas = topic.replicas_of(partition);
    let sound = isr.contains(&broker)
        && isr.iter().all(|id| replicas.contains(id))
        && isr
            .iter()
            .all(|id| state.isr.contains(id) || image.is_live(*id));
    if !sound {
        return Err(IsrRefusal::Unsound(isr.clone()));
    }
    if state.isr == *isr {
        return Ok(Vec::new());
    }
    let changed = PartitionState {
        isr: isr.clone(),
        ..state.clone()
    };
    Ok(with_completed_reassignment(
        image, topic_id, partition, changed,
    ))
}

/// The ISR change as a record, or, if it brings every replica a reassignment adds in
/// sync, the partition's topic with that reassignment completed
/// (`cluster::reassignment`).
fn with_completed_reassignment(
    image: &ClusterMetadata,
    topic_id: Uuid,
    partition: i32,
    state: PartitionState,
) -> Vec<MetadataRecord> {
    let change = |state| {
        vec![MetadataRecord::PartitionChange {
            topic_id,
            partition,
            state,
        }]
    };
    let Some(topic) = image.topic_by_id(&topic_id) else {
        return change(state);
    };
    let moving = topic
        .state_of(partition)
        .is_some_and(|current| !current.adding.is_empty() || !current.removing.is_empty());
    let slot = usize::try_from(partition)
        .ok()
        .filter(|&slot| moving && slot < topic.states.len());
    let Some(slot) = slot else {
        return change(state);
    };
    let mut topic = topic.clone();
    topic.states[slot] = state.clone();
    if reassignment::complete_if_caught_up(&mut topic, partition, |id| image.is_live(id)) {
        tracing::info!(topic = %topic.name, partition, replicas = ?topic.replicas[slot], "reassignment complete");
        vec![MetadataRecord::PutTopic(topic)]
    } else {
        change(state)
    }
}

/// The record for broker `broker`'s report (at registration `epoch`) that its replica of
/// the partition failed: it leaves the ISR and hands its leadership over (`None` if that
/// changes nothing, e.g. it is the only copy).
pub fn replica_failed(
    image: &ClusterMetadata,
    broker: i32,
    epoch: u64,
    topic_id: &Uuid,
    partition: i32,
) -> Result<Option<MetadataRecord>, IsrRefusal> {
    let current = image.brokers.get(&broker).map(|b| b.epoch);
    if current != Some(epoch) {
        return Err(IsrRefusal::StaleRegistration { broker, epoch });
    }
    Ok(election::on_replica_failed(
        image, broker, topic_id, partition,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::fixture;

    fn image(fenced: &[i32]) -> ClusterMetadata {
        let mut image = fixture::brokers(4, 1, |id| fenced.contains(&id));
        image.insert_topic(fixture::topic(
            vec![vec![1, 2, 3]],
            vec![PartitionState {
                leader: 1,
                leader_epoch: 3,
                isr: vec![1, 2],
                ..PartitionState::default()
            }],
        ));
        image
    }

    fn request(broker: i32, leader_epoch: i32, isr: Vec<i32>) -> IsrRequest {
        IsrRequest {
            broker,
            topic_id: fixture::TOPIC_ID,
            partition: 0,
            leader_epoch,
            isr,
        }
    }

    #[test]
    fn only_the_current_leader_changes_the_isr_and_only_soundly() {
        let image = image(&[4]);
        let added = alter_partition(&image, &request(1, 3, vec![1, 2, 3])).expect("current");
        assert!(
            matches!(&added[..], [MetadataRecord::PartitionChange { state, .. }] if state.isr == vec![1, 2, 3] && state.leader_epoch == 3)
        );
        assert!(matches!(
            alter_partition(&image, &request(1, 2, vec![1])),
            Err(IsrRefusal::StaleLeader {
                asked: 2,
                current: 3,
                ..
            })
        ));
        assert!(matches!(
            alter_partition(&image, &request(2, 3, vec![2])),
            Err(IsrRefusal::StaleLeader { broker: 2, .. })
        ));
        for unsound in [vec![2], vec![1, 4], vec![1, 2, 9]] {
            assert_eq!(
                alter_partition(&image, &request(1, 3, unsound.clone())),
                Err(IsrRefusal::Unsound(unsound))
            );
        }
        assert_eq!(
            alter_partition(&image, &request(1, 3, vec![1, 2])),
            Ok(Vec::new())
        );
        let mut missing = request(1, 3, vec![1]);
        missing.partition = 5;
        assert!(matches!(
            alter_partition(&image, &missing),
            Err(IsrRefusal::UnknownPartition { .. })
        ));
        // A fenced member may stay (it is the leader's to drop), not join.
        let fenced_two = self::image(&[2]);
        assert!(alter_partition(&fenced_two, &request(1, 3, vec![1, 2])).is_ok());
        assert!(alter_partition(&fenced_two, &request(1, 3, vec![1, 2, 3])).is_ok());
    }

    #[test]
    fn the_isr_change_that_catches_the_last_added_replica_up_completes_the_move() {
        let mut image = image(&[]);
        let topic = image.topic_mut("t").expect("topic");
        topic.replicas = vec![vec![1, 2, 3, 4]];
        topic.states[0].adding = vec![4];
        topic.states[0].removing = vec![3];
        let records = alter_partition(&image, &request(1, 3, vec![1, 2, 4])).expect("current");
        let [MetadataRecord::PutTopic(topic)] = &records[..] else {
            panic!("the move completes: {records:?}");
        };
        assert_eq!(topic.replicas[0].len(), 3);
        assert!(!topic.replicas[0].contains(&3));
        assert!(topic.states[0].adding.is_empty() && topic.states[0].removing.is_empty());
    }

    #[test]
    fn a_failed_replica_report_needs_the_current_registration() {
        let image = image(&[]);
        let id = Uuid::from_u128(1);
        assert_eq!(
            replica_failed(&image, 2, 0, &id, 0),
            Err(IsrRefusal::StaleRegistration {
                broker: 2,
                epoch: 0
            })
        );
        let record = replica_failed(&image, 2, 1, &id, 0).expect("current");
        assert!(
            matches!(record, Some(MetadataRecord::PartitionChange { state, .. }) if state.isr == vec![1])
        );
    }
}
