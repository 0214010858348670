//! The invariants the simulation checks after every step. Each node's applied entries and
//! catalogue are checked as they change (the state machine below wraps the real
//! `Catalogue`), and every node's Raft status after each of its steps:
//!
//! - **Committed metadata is never lost or rewritten**: every node applies, at each index,
//!   the entry every other node applied there.
//! - **At most one leader per Raft term**, and **at most one partition leader per leader
//!   epoch**.
//! - **No fenced broker leads**, **the leader is in the ISR**, **the ISR is a subset of
//!   the replicas**.
//! - **A partition change applies only to the leader epoch it was decided at**: it moves
//!   to a new epoch, or keeps the epoch and its leader (an ISR change of an older epoch,
//!   or of another leader's, must not land).
//! - **No decision overwrites a change it did not see**: the records a leader proposes
//!   were decided on its catalogue at some index; a partition's replicas or state they
//!   set must not undo a change committed after that index (a lost update, e.g. a stale
//!   ISR bringing back a replica that was dropped).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use bytes::Bytes;
use uuid::Uuid;

use crate::cluster::metadata::{ClusterMetadata, PartitionState};
use crate::cluster::node::catalogue::Catalogue;
use crate::cluster::quorum::core::{QuorumStatus, StateMachine};
use crate::cluster::records::{self, MetadataRecord};

/// What the checks saw, shared by every node's state machine and the world.
#[derive(Default)]
pub struct Checks {
    /// Index -> the entry first applied there (its bytes' hash) and by which node.
    committed: BTreeMap<u64, (u64, u64)>,
    /// (topic, partition, leader epoch) -> its leader.
    epoch_leaders: BTreeMap<(Uuid, i32, i32), i32>,
    /// Raft term -> its leader.
    term_leaders: BTreeMap<u64, u64>,
    /// An entry (its bytes' hash) -> the node that decided its records and the index of
    /// the catalogue it decided them on. Identical bytes decided again (a retried call, or
    /// a stale leader deciding what the current one did) keep the larger index: a check
    /// may miss, never accuse wrongly.
    decided_on: HashMap<u64, (u64, u64)>,
    /// Partition -> the indexes of the entries that changed its replicas or state.
    changed_at: BTreeMap<(Uuid, i32), BTreeSet<u64>>,
    /// Checks performed.
    pub performed: u64,
    /// The first violation seen.
    pub violation: Option<String>,
}

pub type SharedChecks = Rc<RefCell<Checks>>;

impl Checks {
    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(what);
        }
    }

    /// Node `node` applied `data` at `index`.
    fn entry(&mut self, node: u64, index: u64, data: &[u8]) {
        self.performed += 1;
        let hash = fnv1a64(data);
        match self.committed.get(&index) {
            Some(&(first, by)) if first != hash => self.fail(format!(
                "committed metadata rewritten: node {node} applied another entry at index \
                 {index} than node {by} did"
            )),
            Some(_) => {}
            None => {
                self.committed.insert(index, (hash, node));
            }
        }
    }

    /// Leader `node` proposes `data`, decided on its catalogue at index `base`.
    pub fn decided(&mut self, node: u64, data: &[u8], base: u64) {
        let decided = self.decided_on.entry(fnv1a64(data)).or_insert((node, base));
        if base > decided.1 {
            *decided = (node, base);
        }
    }

    /// Node `node`'s Raft status after one of its steps.
    pub fn status(&mut self, node: u64, status: &QuorumStatus) {
        self.performed += 1;
        if !status.is_leader {
            return;
        }
        match self.term_leaders.get(&status.term) {
            Some(&other) if other != node => self.fail(format!(
                "two Raft leaders in term {}: nodes {other} and {node}",
                status.term
            )),
            Some(_) => {}
            None => {
                self.term_leaders.insert(status.term, node);
            }
        }
    }

    /// Before node `node` applies `list` (decided by a node on its catalogue at `base`, if
    /// known) to
    /// `image`: partition changes keep to their epoch and lose no update.
    fn changes(
        &mut self,
        node: u64,
        index: u64,
        base: Option<(u64, u64)>,
        image: &ClusterMetadata,
        list: &[MetadataRecord],
    ) {
        // Records of one entry apply in order: check each against the image as it stands
        // after the ones before it.
        let mut image = image.clone();
        for record in list {
            self.performed += 1;
            // (topic, partition, its replicas if the record sets them, its state)
            type Change = (Uuid, i32, Option<Vec<i32>>, PartitionState);
            let changed: Vec<Change> = match record {
                MetadataRecord::PartitionChange {
                    topic_id,
                    partition,
                    state,
                } => vec![(*topic_id, *partition, None, state.clone())],
                MetadataRecord::PutTopic(topic) => topic
                    .states
                    .iter()
                    .enumerate()
                    .map(|(p, state)| {
                        let replicas = topic.replicas_of(p as i32).to_vec();
                        (topic.id, p as i32, Some(replicas), state.clone())
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for (topic_id, partition, replicas, new) in changed {
                let Some(topic) = image.topic_by_id(&topic_id) else {
                    continue;
                };
                let Some(current) = topic.state_of(partition) else {
                    continue;
                };
                let replicas_change = replicas
                    .as_deref()
                    .is_some_and(|replicas| replicas != topic.replicas_of(partition));
                if replicas_change || new != *current {
                    self.lost_update(node, index, base, topic_id, partition, record);
                    self.changed_at
                        .entry((topic_id, partition))
                        .or_default()
                        .insert(index);
                }
                let moves_on = new.leader_epoch > current.leader_epoch;
                let same_leadership =
                    new.leader_epoch == current.leader_epoch && new.leader == current.leader;
                if !moves_on && !same_leadership {
                    self.fail(format!(
                        "node {node}, entry {index}: a change of partition {topic_id}/{partition} \
                         decided at leader epoch {} (leader {}) applied at epoch {} (leader {}): \
                         {record:?}",
                        new.leader_epoch, new.leader, current.leader_epoch, current.leader
                    ));
                }
            }
            records::apply(&mut image, index, record.clone());
        }
    }

    /// A change of `topic_id`/`partition` at `index`, decided at `base`: no change of it
    /// committed after `base` may come between.
    fn lost_update(
        &mut self,
        node: u64,
        index: u64,
        base: Option<(u64, u64)>,
        topic_id: Uuid,
        partition: i32,
        record: &MetadataRecord,
    ) {
        let Some((decider, base)) = base.filter(|&(_, base)| base + 1 < index) else {
            return;
        };
        let unseen = self
            .changed_at
            .get(&(topic_id, partition))
            .and_then(|at| at.range(base + 1..index).next_back().copied());
        if let Some(unseen) = unseen {
            self.fail(format!(
                "node {node}, entry {index}: a change of partition {topic_id}/{partition} \
                 decided by node {decider} on the catalogue at index {base} overwrites the \
                 change at index {unseen} it did not see: {record:?}"
            ));
        }
    }

    /// After node `node` changed its catalogue: the catalogue's own invariants.
    fn catalogue(&mut self, node: u64, image: &ClusterMetadata) {
        for topic in image.topics().values() {
            for (p, state) in topic.states.iter().enumerate() {
                self.performed += 1;
                let partition = p as i32;
                let replicas = topic.replicas_of(partition);
                if !state.isr.iter().all(|id| replicas.contains(id)) {
                    self.fail(format!(
                        "node {node}: {}/{partition} has ISR {:?} outside its replicas {replicas:?}",
                        topic.name, state.isr
                    ));
                }
                if state.leader < 0 {
                    continue;
                }
                if !state.isr.contains(&state.leader) {
                    self.fail(format!(
                        "node {node}: {}/{partition} is led by {} outside its ISR {:?}",
                        topic.name, state.leader, state.isr
                    ));
                }
                let fenced = image.brokers.get(&state.leader).is_none_or(|b| b.fenced);
                if fenced {
                    self.fail(format!(
                        "node {node}: {}/{partition} is led by broker {}, which is fenced or \
                         unregistered",
                        topic.name, state.leader
                    ));
                }
                let key = (topic.id, partition, state.leader_epoch);
                match self.epoch_leaders.get(&key) {
                    Some(&other) if other != state.leader => self.fail(format!(
                        "{}/{partition} has two leaders at epoch {}: {other} and {}",
                        topic.name, state.leader_epoch, state.leader
                    )),
                    Some(_) => {}
                    None => {
                        self.epoch_leaders.insert(key, state.leader);
                    }
                }
            }
        }
    }

    /// Distinct Raft terms that had a leader.
    pub fn terms_led(&self) -> usize {
        self.term_leaders.len()
    }

    /// The highest index any node applied.
    pub fn committed_index(&self) -> u64 {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }
}

/// A node's state machine: the real catalogue, checked as it changes.
#[derive(Clone)]
pub struct CheckedCatalogue {
    pub node: u64,
    pub catalogue: Catalogue,
    pub checks: SharedChecks,
}

impl StateMachine for CheckedCatalogue {
    fn apply(&self, index: u64, data: &[u8]) {
        {
            let mut checks = self.checks.borrow_mut();
            checks.entry(self.node, index, data);
            if let Ok(list) = records::decode_entry(data) {
                let base = checks.decided_on.get(&fnv1a64(data)).copied();
                checks.changes(self.node, index, base, &self.catalogue.image(), &list);
            }
        }
        self.catalogue.apply(index, data);
        self.checks
            .borrow_mut()
            .catalogue(self.node, &self.catalogue.image());
    }

    fn snapshot(&self) -> Bytes {
        StateMachine::snapshot(&self.catalogue)
    }

    fn restore(&self, index: u64, data: &[u8]) {
        self.catalogue.restore(index, data);
        self.checks
            .borrow_mut()
            .catalogue(self.node, &self.catalogue.image());
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    crate::runtime::placement::fnv1a64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::fixture::{self, TOPIC_ID};

    fn image() -> ClusterMetadata {
        let mut image = fixture::brokers(3, 1, |id| id == 3);
        image.insert_topic(fixture::topic(
            vec![vec![1, 2, 3]],
            vec![PartitionState {
                leader: 1,
                leader_epoch: 5,
                isr: vec![1, 2],
                ..PartitionState::default()
            }],
        ));
        image
    }

    fn change(leader: i32, leader_epoch: i32, isr: Vec<i32>) -> MetadataRecord {
        MetadataRecord::PartitionChange {
            topic_id: TOPIC_ID,
            partition: 0,
            state: PartitionState {
                leader,
                leader_epoch,
                isr,
                ..PartitionState::default()
            },
        }
    }

    #[test]
    fn a_change_of_an_older_epoch_or_another_leader_is_a_violation() {
        let mut checks = Checks::default();
        checks.changes(
            1,
            9,
            None,
            &image(),
            &[change(1, 5, vec![1]), change(2, 6, vec![2])],
        );
        assert_eq!(checks.violation, None, "same leadership, then a new epoch");
        checks.changes(1, 9, None, &image(), &[change(1, 4, vec![1, 2])]);
        assert!(checks
            .violation
            .take()
            .is_some_and(|v| v.contains("decided at leader epoch 4")));
        checks.changes(1, 9, None, &image(), &[change(2, 5, vec![2])]);
        assert!(checks.violation.is_some());
    }

    #[test]
    fn a_change_that_undoes_one_committed_after_its_decision_is_a_violation() {
        let mut checks = Checks::default();
        let shrink = change(1, 5, vec![1]);
        checks.changes(1, 10, Some((1, 9)), &image(), std::slice::from_ref(&shrink));
        assert_eq!(checks.violation, None);
        let mut shrunk = image();
        records::apply(&mut shrunk, 10, shrink);
        // Decided on index 9, before the shrink: it brings 2 back into the ISR.
        checks.changes(1, 12, Some((1, 9)), &shrunk, &[change(1, 5, vec![1, 2, 3])]);
        let violation = checks.violation.take().expect("a lost update");
        assert!(
            violation.contains("overwrites the change at index 10"),
            "{violation}"
        );
        // Decided on index 10, having seen it: a change like any other.
        checks.changes(
            1,
            12,
            Some((1, 10)),
            &shrunk,
            &[change(1, 5, vec![1, 2, 3])],
        );
        assert_eq!(checks.violation, None);
    }

    #[test]
    fn fenced_leaders_leaders_outside_the_isr_and_two_leaders_per_epoch_are_violations() {
        let mut checks = Checks::default();
        checks.catalogue(1, &image());
        assert_eq!(checks.violation, None);
        let mut fenced = image();
        fenced.set_partition_state(
            &TOPIC_ID,
            0,
            PartitionState {
                leader: 3,
                leader_epoch: 6,
                isr: vec![3],
                ..PartitionState::default()
            },
        );
        checks.catalogue(1, &fenced);
        assert!(checks
            .violation
            .take()
            .is_some_and(|v| v.contains("fenced")));
        let mut outside = image();
        outside.set_partition_state(
            &TOPIC_ID,
            0,
            PartitionState {
                leader: 2,
                leader_epoch: 5,
                isr: vec![1],
                ..PartitionState::default()
            },
        );
        checks.catalogue(2, &outside);
        let violation = checks.violation.take().expect("violations");
        assert!(violation.contains("outside its ISR"), "{violation}");
        let mut second = image();
        second.set_partition_state(
            &TOPIC_ID,
            0,
            PartitionState {
                leader: 2,
                leader_epoch: 5,
                isr: vec![2],
                ..PartitionState::default()
            },
        );
        checks.catalogue(2, &second);
        assert!(checks
            .violation
            .is_some_and(|v| v.contains("two leaders at epoch 5")));
    }

    #[test]
    fn a_rewritten_entry_and_two_leaders_of_a_term_are_violations() {
        let mut checks = Checks::default();
        checks.entry(1, 4, b"a");
        checks.entry(2, 4, b"a");
        assert_eq!(checks.violation, None);
        checks.entry(3, 4, b"b");
        assert!(checks
            .violation
            .take()
            .is_some_and(|v| v.contains("rewritten")));
        let leading = |term| QuorumStatus {
            leader: 0,
            term,
            is_leader: true,
            leader_ready: true,
            settled: true,
            applied: 0,
        };
        checks.status(1, &leading(3));
        checks.status(1, &leading(3));
        checks.status(2, &leading(4));
        assert_eq!(checks.violation, None);
        checks.status(2, &leading(3));
        assert!(checks.violation.is_some());
    }
}
