//! Partition reassignment (KIP-455) and leader election on request (KIP-460), as changes
//! to a topic that the controller then commits. Sans-I/O.
//!
//! Reassigning a partition with replicas `R` to the target `T`: its replicas become `T`
//! followed by `R - T`, with `adding = T - R` (new followers, out of the ISR, copying the
//! log from the leader) and `removing = R - T`. The leader adds each new follower to the
//! ISR once it has caught up (AlterPartition), and `complete_if_caught_up`, run with every
//! ISR change, finishes the move once all of `T` is in sync: the replicas become `T`, the
//! removed ones leave the ISR (their brokers delete their copy), and a leader outside `T`
//! hands over to the first in-sync replica of `T` (epoch bumped). Producers and consumers
//! keep going throughout: only a leader change makes them look the partition up again.
//! Cancelling (no target) returns to `R`.

use super::metadata::{PartitionState, Topic, REPLICATION_FACTOR_MAX};

/// Why a reassignment or an election is refused (each a Kafka error code at the edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassignmentError {
    #[error("partition {0} does not exist")]
    UnknownPartition(String),
    #[error("no reassignment of {0} is in progress")]
    NoReassignmentInProgress(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}: no election needed (it has a leader, or its preferred one)")]
    ElectionNotNeeded(String),
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
}

/// ElectLeaders' election types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ElectionKind {
    /// The first replica, if it is in sync (`kafka-leader-election --election-type
    /// PREFERRED`).
    Preferred,
    /// A leaderless partition gets any live replica, in sync or not (data since its last
    /// sync may be lost): only when an operator asks for it.
    Unclean,
}

/// The replicas and state of partition `index`, or UNKNOWN_TOPIC_OR_PARTITION.
fn partition_mut(
    topic: &mut Topic,
    index: i32,
) -> Result<(&mut Vec<i32>, &mut PartitionState), ReassignmentError> {
    let unknown = || ReassignmentError::UnknownPartition(format!("{}-{index}", topic.name));
    let slot = usize::try_from(index).map_err(|_| unknown())?;
    if slot >= topic.replicas.len() || slot >= topic.states.len() {
        return Err(unknown());
    }
    Ok((&mut topic.replicas[slot], &mut topic.states[slot]))
}

/// Starts, replaces or (with `None`) cancels the reassignment of partition `index`.
/// `registered` says which broker ids exist, `live` which are unfenced.
///
/// Replacing or cancelling a reassignment drops at once only the replicas the old one was
/// adding that are still copying; an added replica already in sync stays until the new
/// target is in sync (it is removed then), so the ISR stays within the replicas and
/// its leader keeps leading meanwhile (found by the control-plane simulation: dropping it
/// at once left it in the ISR, or leading, outside the replicas).
pub fn reassign(
    topic: &mut Topic,
    index: i32,
    target: Option<Vec<i32>>,
    allow_factor_change: bool,
    registered: impl Fn(i32) -> bool,
    live: impl Fn(i32) -> bool,
) -> Result<(), ReassignmentError> {
    let name = format!("{}-{index}", topic.name);
    let (replicas, state) = partition_mut(topic, index)?;
    let original: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|id| !state.adding.contains(id))
        .collect();
    // What this partition holds in full: its original replicas and the added ones that
    // caught up.
    let kept: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|id| original.contains(id) || state.isr.contains(id))
        .collect();
    let target = match target {
        None => {
            if state.adding.is_empty() && state.removing.is_empty() {
                return Err(ReassignmentError::NoReassignmentInProgress(name));
            }
            original
        }
        Some(target) => {
            check_target(&target, &registered)?;
            if !allow_factor_change && target.len() != original.len() {
                return Err(ReassignmentError::InvalidReplicationFactor(format!(
                    "the target has {} replicas, the partition {}, and the request does not \
                     allow changing it",
                    target.len(),
                    original.len()
                )));
            }
            target
        }
    };
    let removing: Vec<i32> = kept
        .iter()
        .copied()
        .filter(|id| !target.contains(id))
        .collect();
    state.adding = target
        .iter()
        .copied()
        .filter(|id| !kept.contains(id))
        .collect();
    state.removing = removing.clone();
    *replicas = target.into_iter().chain(removing).collect();
    debug_assert!(
        state.isr.iter().all(|id| replicas.contains(id)),
        "every in-sync replica is kept"
    );
    complete_if_caught_up(topic, index, live);
    Ok(())
}

fn check_target(target: &[i32], registered: impl Fn(i32) -> bool) -> Result<(), ReassignmentError> {
    let invalid = |reason: String| Err(ReassignmentError::InvalidReplicaAssignment(reason));
    if target.is_empty() {
        return invalid("the target replicas are empty".into());
    }
    if target.len() > REPLICATION_FACTOR_MAX {
        return invalid(format!(
            "{} target replicas exceed {REPLICATION_FACTOR_MAX}",
            target.len()
        ));
    }
    for (position, id) in target.iter().enumerate() {
        if target[..position].contains(id) {
            return invalid(format!("broker {id} is named twice"));
        }
        if !registered(*id) {
            return invalid(format!("broker {id} is not registered"));
        }
    }
    Ok(())
}

/// Finishes the reassignment of partition `index` if every added replica is in sync:
/// returns whether the topic changed.
pub fn complete_if_caught_up(topic: &mut Topic, index: i32, live: impl Fn(i32) -> bool) -> bool {
    let Ok((replicas, state)) = partition_mut(topic, index) else {
        return false;
    };
    if state.adding.is_empty() && state.removing.is_empty() {
        return false;
    }
    if !state.adding.iter().all(|id| state.isr.contains(id)) {
        return false;
    }
    let target: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|id| !state.removing.contains(id))
        .collect();
    let isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|id| target.contains(id))
        .collect();
    let leader_stays = target.contains(&state.leader);
    let successor = target
        .iter()
        .copied()
        .find(|&id| isr.contains(&id) && live(id));
    if isr.is_empty() || (!leader_stays && successor.is_none()) {
        // No in-sync replica of the target can lead yet: wait for one.
        return false;
    }
    if !leader_stays {
        state.leader = successor.unwrap_or(-1);
        state.leader_epoch += 1;
    }
    state.isr = isr;
    state.adding.clear();
    state.removing.clear();
    *replicas = target;
    true
}

/// Elects a leader for partition `index` as ElectLeaders asks.
pub fn elect(
    topic: &mut Topic,
    index: i32,
    kind: ElectionKind,
    live: impl Fn(i32) -> bool,
) -> Result<(), ReassignmentError> {
    let name = format!("{}-{index}", topic.name);
    let (replicas, state) = partition_mut(topic, index)?;
    match kind {
        ElectionKind::Preferred => {
            let preferred = replicas.first().copied().unwrap_or(-1);
            if state.leader == preferred {
                return Err(ReassignmentError::ElectionNotNeeded(name));
            }
            if !(state.isr.contains(&preferred) && live(preferred)) {
                return Err(ReassignmentError::PreferredLeaderNotAvailable(format!(
                    "{name}: broker {preferred} is not a live in-sync replica"
                )));
            }
            state.leader = preferred;
            state.leader_epoch += 1;
        }
        ElectionKind::Unclean => {
            if state.leader >= 0 {
                return Err(ReassignmentError::ElectionNotNeeded(name));
            }
            let clean = replicas
                .iter()
                .copied()
                .find(|&id| state.isr.contains(&id) && live(id));
            let chosen = clean
                .or_else(|| replicas.iter().copied().find(|&id| live(id)))
                .ok_or_else(|| {
                    ReassignmentError::EligibleLeadersNotAvailable(format!(
                        "{name}: no live replica"
                    ))
                })?;
            if clean.is_none() {
                // What only the old in-sync replicas held is given up, as asked.
                state.isr = vec![chosen];
            }
            state.leader = chosen;
            state.leader_epoch += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;

    fn topic(replicas: Vec<i32>) -> Topic {
        Topic {
            name: "t".into(),
            id: Uuid::nil(),
            partitions: 1,
            configs: BTreeMap::new(),
            states: vec![PartitionState::new(&replicas, |_| true)],
            replicas: vec![replicas],
        }
    }

    fn all(_: i32) -> bool {
        true
    }

    fn brokers_1_to_5(id: i32) -> bool {
        (1..=5).contains(&id)
    }

    /// {1,2,3} to {4,5,3}: 4 catches up and leads, 5 does not, and 1, 2, 3 fall out of
    /// the ISR. Replaced by {1,2,3} again (or cancelled), 4 stays until the move completes:
    /// it is the ISR and leads; 5, still copying, goes at once. Once 1 is back in sync the
    /// move completes and 1 leads.
    #[test]
    fn replacing_a_reassignment_keeps_the_added_replicas_that_caught_up() {
        for replacement in [Some(vec![1, 2, 3]), None] {
            let mut t = topic(vec![1, 2, 3]);
            reassign(&mut t, 0, Some(vec![4, 5, 3]), false, brokers_1_to_5, all).expect("start");
            t.states[0].isr = vec![1, 2, 3, 4];
            elect(&mut t, 0, ElectionKind::Preferred, all).expect("4 leads");
            t.states[0].isr = vec![4];
            reassign(&mut t, 0, replacement.clone(), false, brokers_1_to_5, all).expect("replace");
            let state = &t.states[0];
            // (A cancel keeps the original replicas in their current order.)
            let mut replicas = t.replicas[0].clone();
            replicas.sort_unstable();
            assert_eq!(
                replicas,
                [1, 2, 3, 4],
                "{replacement:?}: 5 was still copying"
            );
            assert_eq!((state.leader, state.isr.clone()), (4, vec![4]));
            assert_eq!(
                (state.adding.clone(), state.removing.clone()),
                (vec![], vec![4])
            );
            t.states[0].isr = vec![4, 1];
            assert!(complete_if_caught_up(&mut t, 0, all));
            let mut replicas = t.replicas[0].clone();
            replicas.sort_unstable();
            assert_eq!(replicas, [1, 2, 3]);
            assert_eq!((t.states[0].leader, t.states[0].isr.clone()), (1, vec![1]));
        }
    }

    /// {1,2,3} to {2,3,4}: 4 copies first (out of the ISR), the move completes when it is in
    /// sync, and leadership leaves 1 for the first in-sync target replica.
    #[test]
    fn a_reassignment_completes_once_every_added_replica_is_in_sync() {
        let mut t = topic(vec![1, 2, 3]);
        reassign(&mut t, 0, Some(vec![2, 3, 4]), true, brokers_1_to_5, all).expect("start");
        assert_eq!(t.replicas[0], [2, 3, 4, 1]);
        assert_eq!(
            (t.states[0].adding.clone(), t.states[0].removing.clone()),
            (vec![4], vec![1])
        );
        assert_eq!(t.states[0].leader, 1, "the old leader leads while 4 copies");
        assert!(
            !complete_if_caught_up(&mut t, 0, all),
            "4 is not in sync yet"
        );
        t.states[0].isr.push(4);
        assert!(complete_if_caught_up(&mut t, 0, all));
        assert_eq!(t.replicas[0], [2, 3, 4]);
        let state = &t.states[0];
        assert_eq!((state.leader, state.leader_epoch), (2, 1));
        assert_eq!(state.isr, [2, 3, 4]);
        assert!(state.adding.is_empty() && state.removing.is_empty());
    }

    #[test]
    fn a_reassignment_can_be_cancelled_and_bad_targets_are_refused() {
        let mut t = topic(vec![1, 2, 3]);
        let cancel = reassign(&mut t, 0, None, true, brokers_1_to_5, all);
        assert!(matches!(
            cancel,
            Err(ReassignmentError::NoReassignmentInProgress(_))
        ));
        for bad in [vec![], vec![1, 1, 2], vec![1, 2, 9]] {
            let refused = reassign(&mut t, 0, Some(bad.clone()), true, brokers_1_to_5, all);
            assert!(
                matches!(refused, Err(ReassignmentError::InvalidReplicaAssignment(_))),
                "{bad:?}"
            );
        }
        let shrink = reassign(&mut t, 0, Some(vec![1, 2]), false, brokers_1_to_5, all);
        assert!(matches!(
            shrink,
            Err(ReassignmentError::InvalidReplicationFactor(_))
        ));
        reassign(&mut t, 0, Some(vec![4, 5, 1]), true, brokers_1_to_5, all).expect("start");
        assert_eq!(t.replicas[0], [4, 5, 1, 2, 3]);
        reassign(&mut t, 0, None, true, brokers_1_to_5, all).expect("cancel");
        assert_eq!(t.replicas[0], [1, 2, 3]);
        assert_eq!(t.states[0], PartitionState::new(&[1, 2, 3], all));
        assert!(matches!(
            partition_mut(&mut t, 1),
            Err(ReassignmentError::UnknownPartition(_))
        ));
    }

    /// Removing a replica needs no copy: it completes at once.
    #[test]
    fn shrinking_completes_at_once() {
        let mut t = topic(vec![1, 2, 3]);
        reassign(&mut t, 0, Some(vec![2, 3]), true, brokers_1_to_5, all).expect("shrink");
        assert_eq!(t.replicas[0], [2, 3]);
        assert_eq!(
            (t.states[0].leader, t.states[0].isr.clone()),
            (2, vec![2, 3])
        );
    }

    #[test]
    fn preferred_and_unclean_elections() {
        let mut t = topic(vec![1, 2, 3]);
        assert!(matches!(
            elect(&mut t, 0, ElectionKind::Preferred, all),
            Err(ReassignmentError::ElectionNotNeeded(_))
        ));
        t.states[0].leader = 2;
        t.states[0].isr = vec![2, 3];
        assert!(matches!(
            elect(&mut t, 0, ElectionKind::Preferred, all),
            Err(ReassignmentError::PreferredLeaderNotAvailable(_))
        ));
        t.states[0].isr = vec![2, 3, 1];
        elect(&mut t, 0, ElectionKind::Preferred, all).expect("preferred");
        assert_eq!((t.states[0].leader, t.states[0].leader_epoch), (1, 1));
        assert!(matches!(
            elect(&mut t, 0, ElectionKind::Unclean, all),
            Err(ReassignmentError::ElectionNotNeeded(_))
        ));
        // Offline: only 1 was in sync, and it is gone; 3 is live but out of sync.
        t.states[0].leader = -1;
        t.states[0].isr = vec![1];
        elect(&mut t, 0, ElectionKind::Unclean, |id| id == 3).expect("unclean");
        assert_eq!((t.states[0].leader, t.states[0].isr.clone()), (3, vec![3]));
        t.states[0].leader = -1;
        assert!(matches!(
            elect(&mut t, 0, ElectionKind::Unclean, |_| false),
            Err(ReassignmentError::EligibleLeadersNotAvailable(_))
        ));
    }
}
