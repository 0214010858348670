//! The quorum leader's answer to a node's call, decided without I/O: either an answer at
//! once, or records to propose and how to answer once they are committed. The caller
//! (`shard::cluster` on a real node, `simulation` under simulated time) proposes one
//! decision at a time, deciding again from the catalogue once it has its turn, so no
//! decision is taken on a catalogue another proposal is about to change.
//!
//! Controller operations (`NodeCall::Control`) are the controller's (`cluster::controller`),
//! and catalogue requests any voter's; neither is decided here.

use std::time::Instant;

use super::isr::{self, IsrRequest};
use super::members::{self, Heartbeat, Members, MembershipConfig};
use super::rpc::{NodeCall, NodeReply};
use crate::cluster::metadata::ClusterMetadata;
use crate::cluster::quorum::core::QuorumError;
use crate::cluster::records::MetadataRecord;

/// What to do with a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer now; nothing changes.
    Answer(NodeReply),
    /// Propose `records` as one entry, then answer as `then` says.
    Propose {
        records: Vec<MetadataRecord>,
        then: Then,
    },
}

/// How to answer once the proposal is committed and applied here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// A registration: its epoch is the entry's index.
    Registered {
        id: i32,
    },
    /// A heartbeat that unfenced: the broker's status as applied.
    Heartbeat {
        id: i32,
    },
    /// A broker that left is fenced.
    Fenced,
    /// A failed replica left the ISR (and its leadership).
    ReplicaFailed {
        broker: i32,
        topic_id: uuid::Uuid,
        partition: i32,
    },
    Done,
}

/// Notes a call's news before anything is decided: a heartbeat or a registration is
/// proof of life; a broker that leaves gives up its session.
pub fn observe(members: &mut Members, call: &NodeCall, now: Instant) {
    match call {
        NodeCall::Heartbeat { id, .. } => members.heard_from(*id, now),
        NodeCall::Leave { id, .. } => members.forget(*id),
        _ => {}
    }
}

/// The decision on `call` given the catalogue as applied.
pub fn decide(
    image: &ClusterMetadata,
    members: &Members,
    call: &NodeCall,
    now: Instant,
    config: &MembershipConfig,
) -> Decision {
    match call {
        NodeCall::Register(info) => match members.registration_conflict(image, info, now, config) {
            Some(reason) => Decision::Answer(NodeReply::Refused(reason)),
            None => Decision::Propose {
                records: members::register(image, info),
                then: Then::Registered { id: info.id },
            },
        },
        NodeCall::Heartbeat { id, epoch, applied } => heartbeat(image, *id, *epoch, *applied),
        NodeCall::Leave { id, epoch } => leave(image, *id, *epoch),
        NodeCall::AlterPartition {
            broker,
            topic_id,
            partition,
            leader_epoch,
            isr,
        } => {
            let request = IsrRequest {
                broker: *broker,
                topic_id: *topic_id,
                partition: *partition,
                leader_epoch: *leader_epoch,
                isr: isr.clone(),
            };
            match isr::alter_partition(image, &request) {
                Ok(records) if records.is_empty() => Decision::Answer(NodeReply::Done),
                Ok(records) => Decision::Propose {
                    records,
                    then: Then::Done,
                },
                Err(refusal) => Decision::Answer(NodeReply::Refused(refusal.to_string())),
            }
        }
        NodeCall::ReplicaFailed {
            broker,
            epoch,
            topic_id,
            partition,
        } => replica_failed(image, *broker, *epoch, *topic_id, *partition),
        NodeCall::Control(_) | NodeCall::Catalogue { .. } => Decision::Answer(NodeReply::Failed(
            format!("a {} is not decided by the quorum's leader", call.name()),
        )),
    }
}

fn heartbeat(image: &ClusterMetadata, id: i32, epoch: u64, applied: u64) -> Decision {
    match members::heartbeat(image, id, epoch, applied) {
        Heartbeat::Stale => Decision::Answer(NodeReply::Heartbeat {
            fenced: true,
            stale: true,
        }),
        Heartbeat::Status { fenced } => Decision::Answer(NodeReply::Heartbeat {
            fenced,
            stale: false,
        }),
        Heartbeat::Unfence(records) => Decision::Propose {
            records,
            then: Then::Heartbeat { id },
        },
    }
}

fn leave(image: &ClusterMetadata, id: i32, epoch: u64) -> Decision {
    match members::fence(image, id, epoch) {
        Some(records) => Decision::Propose {
            records,
            then: Then::Fenced,
        },
        None => Decision::Answer(NodeReply::Heartbeat {
            fenced: true,
            stale: image.brokers.get(&id).is_none_or(|b| b.epoch != epoch),
        }),
    }
}

fn replica_failed(
    image: &ClusterMetadata,
    broker: i32,
    epoch: u64,
    topic_id: uuid::Uuid,
    partition: i32,
) -> Decision {
    match isr::replica_failed(image, broker, epoch, &topic_id, partition) {
        Ok(Some(record)) => Decision::Propose {
            records: vec![record],
            then: Then::ReplicaFailed {
                broker,
                topic_id,
                partition,
            },
        },
        Ok(None) => Decision::Answer(NodeReply::Done),
        Err(refusal) => Decision::Answer(NodeReply::Refused(refusal.to_string())),
    }
}

/// The answer once the proposal of a decision is done: `outcome` is the entry's index, or
/// why it was not committed; `image` is the catalogue as applied after it.
pub fn conclude(
    image: &ClusterMetadata,
    members: &mut Members,
    then: Then,
    outcome: Result<u64, QuorumError>,
    now: Instant,
) -> NodeReply {
    let index = match outcome {
        Ok(index) => index,
        Err(error) => return NodeReply::Failed(error.to_string()),
    };
    match then {
        Then::Registered { id } => {
            members.heard_from(id, now);
            NodeReply::Registered { epoch: index }
        }
        Then::Heartbeat { id } => NodeReply::Heartbeat {
            fenced: members::is_fenced(image, id),
            stale: false,
        },
        Then::Fenced => NodeReply::Heartbeat {
            fenced: true,
            stale: false,
        },
        Then::ReplicaFailed {
            broker,
            topic_id,
            partition,
        } => {
            tracing::warn!(broker, %topic_id, partition, "a replica's log failed; it left the ISR and leads no more");
            NodeReply::Done
        }
        Then::Done => NodeReply::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::fixture;
    use crate::cluster::records;

    /// Runs a decision as the leader would, committing at `index`.
    fn run(
        image: &mut ClusterMetadata,
        members: &mut Members,
        call: NodeCall,
        index: u64,
        now: Instant,
    ) -> NodeReply {
        observe(members, &call, now);
        match decide(
            image,
            members,
            &call,
            now,
            &MembershipConfig::kafka_defaults(),
        ) {
            Decision::Answer(reply) => reply,
            Decision::Propose { records, then } => {
                for record in records {
                    records::apply(image, index, record);
                }
                conclude(image, members, then, Ok(index), now)
            }
        }
    }

    #[test]
    fn a_broker_registers_fenced_is_unfenced_when_caught_up_and_leaves_fenced() {
        let now = Instant::now();
        let (mut image, mut members) = (ClusterMetadata::new(), Members::default());
        let reply = run(
            &mut image,
            &mut members,
            NodeCall::Register(fixture::broker(1, 0, true)),
            5,
            now,
        );
        assert_eq!(reply, NodeReply::Registered { epoch: 5 });
        assert!(image.brokers[&1].fenced);
        let heartbeat = |applied| NodeCall::Heartbeat {
            id: 1,
            epoch: 5,
            applied,
        };
        let reply = run(&mut image, &mut members, heartbeat(4), 6, now);
        assert_eq!(
            reply,
            NodeReply::Heartbeat {
                fenced: true,
                stale: false
            }
        );
        let reply = run(&mut image, &mut members, heartbeat(5), 6, now);
        assert_eq!(
            reply,
            NodeReply::Heartbeat {
                fenced: false,
                stale: false
            }
        );
        let stale = NodeCall::Heartbeat {
            id: 1,
            epoch: 4,
            applied: 9,
        };
        let reply = run(&mut image, &mut members, stale, 7, now);
        assert_eq!(
            reply,
            NodeReply::Heartbeat {
                fenced: true,
                stale: true
            }
        );
        let reply = run(
            &mut image,
            &mut members,
            NodeCall::Leave { id: 1, epoch: 5 },
            8,
            now,
        );
        assert_eq!(
            reply,
            NodeReply::Heartbeat {
                fenced: true,
                stale: false
            }
        );
        assert!(image.brokers[&1].fenced);
    }

    #[test]
    fn a_failed_proposal_is_answered_as_failed_and_control_calls_are_not_decided_here() {
        let now = Instant::now();
        let mut members = Members::default();
        let reply = conclude(
            &ClusterMetadata::new(),
            &mut members,
            Then::Done,
            Err(QuorumError::Timeout),
            now,
        );
        assert!(matches!(reply, NodeReply::Failed(_)));
        let decision = decide(
            &ClusterMetadata::new(),
            &members,
            &NodeCall::Catalogue { after: 0 },
            now,
            &MembershipConfig::kafka_defaults(),
        );
        assert!(matches!(decision, Decision::Answer(NodeReply::Failed(_))));
    }
}
