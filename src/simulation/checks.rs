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

use std::cell::RefCell;
use std::collections::BTreeMap;
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

    /// Before node `node` applies `list` to `image`: partition changes keep to their epoch.
    fn changes(&mut self, node: u64, index: u64, image: &ClusterMetadata, list: &[MetadataRecord]) {
        // Records of one entry apply in order: check each against the image as it stands
        // after the ones before it.
        let mut image = image.clone();
        for record in list {
            self.performed += 1;
            let changed: Vec<(Uuid, i32, PartitionState)> = match record {
                MetadataRecord::PartitionChange {
                    topic_id,
                    partition,
                    state,
                } => vec![(*topic_id, *partition, state.clone())],
                MetadataRecord::PutTopic(topic) => topic
                    .states
                    .iter()
                    .enumerate()
                    .map(|(p, state)| (topic.id, p as i32, state.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            for (topic_id, partition, new) in changed {
                let current = image
                    .topic_by_id(&topic_id)
                    .and_then(|topic| topic.state_of(partition));
                let Some(current) = current else { continue };
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
                checks.changes(self.node, index, &self.catalogue.image(), &list);
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
            &image(),
            &[change(1, 5, vec![1]), change(2, 6, vec![2])],
        );
        assert_eq!(checks.violation, None, "same leadership, then a new epoch");
        checks.changes(1, 9, &image(), &[change(1, 4, vec![1, 2])]);
        assert!(checks
            .violation
            .take()
            .is_some_and(|v| v.contains("decided at leader epoch 4")));
        checks.changes(1, 9, &image(), &[change(2, 5, vec![2])]);
        assert!(checks.violation.is_some());
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
