//! Leader election when a broker is fenced or unfenced: the partition changes the
//! quorum's leader proposes together with the fence or unfence record, so no snapshot ever
//! names a fenced leader. Never unclean: a leader is only ever chosen from the in-sync
//! replicas, and the last in-sync replica stays in the ISR while it is away, so the
//! partition waits for it (offline) rather than losing what only it holds.

use super::metadata::{ClusterMetadata, PartitionState};
use super::records::MetadataRecord;

/// The partition changes for fencing broker `broker`: it leaves every ISR it is in (unless
/// it is the last member), and every partition it led gets the first live in-sync replica
/// as leader, or none.
pub fn on_fence(metadata: &ClusterMetadata, broker: i32) -> Vec<MetadataRecord> {
    let live = |id: i32| id != broker && metadata.is_live(id);
    let mut changes = Vec::new();
    for topic in metadata.topics().values() {
        for (index, state) in topic.states.iter().enumerate() {
            let replicas = topic.replicas_of(index as i32);
            if let Some(changed) = without(state, replicas, broker, live, false) {
                changes.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    state: changed,
                });
            }
        }
    }
    changes
}

/// The partition change for broker `broker`'s replica of one partition whose log failed
/// (a full disk, an I/O error) while its broker lives on: it leaves the ISR (unless it is
/// the last member) and, if it led, the first other live in-sync replica leads, with the
/// epoch bumped. If no other replica is in sync, it keeps leading (it is the only copy).
pub fn on_replica_failed(
    metadata: &ClusterMetadata,
    broker: i32,
    topic_id: &uuid::Uuid,
    partition: i32,
) -> Option<MetadataRecord> {
    let topic = metadata.topic_by_id(topic_id)?;
    let state = topic.state_of(partition)?;
    let live = |id: i32| id != broker && metadata.is_live(id);
    let changed = without(state, topic.replicas_of(partition), broker, live, true)?;
    Some(MetadataRecord::PartitionChange {
        topic_id: *topic_id,
        partition,
        state: changed,
    })
}

/// `state` without `broker`: out of the ISR unless it is the last member, and another
/// live in-sync replica (in replica order) leading if it led, or none (offline), or, with
/// `keep_if_alone`, still `broker`. `None` if nothing changes.
fn without(
    state: &PartitionState,
    replicas: &[i32],
    broker: i32,
    live: impl Fn(i32) -> bool,
    keep_if_alone: bool,
) -> Option<PartitionState> {
    if state.leader != broker && !state.isr.contains(&broker) {
        return None;
    }
    let mut isr = state.isr.clone();
    if isr.len() > 1 {
        isr.retain(|&id| id != broker);
    }
    let (leader, leader_epoch) = if state.leader == broker {
        let next = replicas
            .iter()
            .copied()
            .find(|&id| isr.contains(&id) && live(id));
        match next {
            Some(next) => (next, state.leader_epoch + 1),
            None if keep_if_alone => (broker, state.leader_epoch),
            None => (-1, state.leader_epoch + 1),
        }
    } else {
        (state.leader, state.leader_epoch)
    };
    let changed = PartitionState {
        leader,
        leader_epoch,
        isr,
        ..state.clone()
    };
    debug_assert!(
        changed.leader < 0 || changed.isr.contains(&changed.leader),
        "a leader chosen outside the ISR: {changed:?}"
    );
    (&changed != state).then_some(changed)
}

/// The partition changes for unfencing broker `broker`: every leaderless partition it is
/// in sync for gets it as leader.
pub fn on_unfence(metadata: &ClusterMetadata, broker: i32) -> Vec<MetadataRecord> {
    let mut changes = Vec::new();
    for topic in metadata.topics().values() {
        for (index, state) in topic.states.iter().enumerate() {
            if state.leader == -1 && state.isr.contains(&broker) {
                changes.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    state: PartitionState {
                        leader: broker,
                        leader_epoch: state.leader_epoch + 1,
                        ..state.clone()
                    },
                });
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::fixture;
    use crate::cluster::records::apply;

    fn cluster(replicas: Vec<Vec<i32>>) -> ClusterMetadata {
        let mut metadata = fixture::brokers(3, 0, |_| false);
        let states = replicas
            .iter()
            .map(|r| PartitionState::new(r, |_| true))
            .collect();
        metadata.insert_topic(fixture::topic(replicas, states));
        metadata
    }

    fn fence(metadata: &mut ClusterMetadata, broker: i32) {
        for record in on_fence(metadata, broker) {
            apply(metadata, 0, record);
        }
        metadata.brokers.get_mut(&broker).unwrap().fenced = true;
    }

    fn unfence(metadata: &mut ClusterMetadata, broker: i32) {
        metadata.brokers.get_mut(&broker).unwrap().fenced = false;
        for record in on_unfence(metadata, broker) {
            apply(metadata, 0, record);
        }
    }

    fn states(metadata: &ClusterMetadata) -> Vec<PartitionState> {
        metadata.topic("t").unwrap().states.clone()
    }

    #[test]
    fn a_single_replica_goes_offline_and_comes_back_with_a_new_epoch() {
        let mut metadata = cluster(vec![vec![1], vec![2]]);
        fence(&mut metadata, 1);
        let after = states(&metadata);
        assert_eq!(
            (after[0].leader, after[0].leader_epoch, after[0].isr.clone()),
            (-1, 1, vec![1])
        );
        assert_eq!(
            (after[1].leader, after[1].leader_epoch),
            (2, 0),
            "untouched"
        );
        unfence(&mut metadata, 1);
        let after = states(&metadata);
        assert_eq!((after[0].leader, after[0].leader_epoch), (1, 2));
    }

    #[test]
    fn leadership_moves_to_an_in_sync_replica_and_never_to_one_out_of_sync() {
        let mut metadata = cluster(vec![vec![1, 2, 3]]);
        fence(&mut metadata, 1);
        assert_eq!(
            states(&metadata)[0],
            PartitionState {
                leader: 2,
                leader_epoch: 1,
                isr: vec![2, 3],
                ..PartitionState::default()
            }
        );
        fence(&mut metadata, 2);
        assert_eq!(
            states(&metadata)[0],
            PartitionState {
                leader: 3,
                leader_epoch: 2,
                isr: vec![3],
                ..PartitionState::default()
            }
        );
        // The last in-sync replica stays in the ISR while away: no unclean election when
        // the others return.
        fence(&mut metadata, 3);
        assert_eq!(
            states(&metadata)[0],
            PartitionState {
                leader: -1,
                leader_epoch: 3,
                isr: vec![3],
                ..PartitionState::default()
            }
        );
        unfence(&mut metadata, 1);
        unfence(&mut metadata, 2);
        assert_eq!(states(&metadata)[0].leader, -1, "1 and 2 are not in sync");
        unfence(&mut metadata, 3);
        assert_eq!(
            states(&metadata)[0],
            PartitionState {
                leader: 3,
                leader_epoch: 4,
                isr: vec![3],
                ..PartitionState::default()
            }
        );
    }

    #[test]
    fn a_failed_replica_leaves_the_isr_and_hands_over_unless_it_is_the_only_copy() {
        let mut metadata = cluster(vec![vec![1, 2, 3], vec![2]]);
        let id = metadata.topic("t").unwrap().id;
        let failed = |metadata: &ClusterMetadata, broker, partition| {
            on_replica_failed(metadata, broker, &id, partition)
        };
        // A follower: out of the ISR, the leader stays.
        let record = failed(&metadata, 3, 0).expect("a change");
        apply(&mut metadata, 0, record);
        assert_eq!(
            states(&metadata)[0],
            PartitionState {
                leader: 1,
                leader_epoch: 0,
                isr: vec![1, 2],
                ..PartitionState::default()
            }
        );
        assert_eq!(failed(&metadata, 3, 0), None, "already out");
        // The leader: the next in-sync replica leads, at a new epoch.
        let record = failed(&metadata, 1, 0).expect("a change");
        apply(&mut metadata, 0, record);
        assert_eq!(
            states(&metadata)[0],
            PartitionState {
                leader: 2,
                leader_epoch: 1,
                isr: vec![2],
                ..PartitionState::default()
            }
        );
        // The only copy keeps leading (nothing else holds its records).
        assert_eq!(failed(&metadata, 2, 0), None);
        assert_eq!(failed(&metadata, 2, 1), None);
        assert_eq!(failed(&metadata, 2, 7), None, "no such partition");
    }
}
