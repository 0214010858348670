//! What cluster nodes say to each other outside Raft: a broker's calls to the metadata
//! quorum's leader (registration, heartbeats, ISR changes, controller operations) and a
//! broker-only node's catalogue requests to any voter, with their replies. JSON between
//! nodes (`encode` / `decode`), bounded by the quorum link's frame cap; decoding never
//! panics.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::metadata::BrokerInfo;

/// What a node asks the quorum's leader (or, `Catalogue`, any voter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeCall {
    /// A broker-only node asks for the catalogue once a voter has applied past `after`.
    Catalogue {
        after: u64,
    },
    Control(ControlCall),
    Register(BrokerInfo),
    /// `applied`: the catalogue index the broker has applied (it is unfenced once that
    /// reaches its own registration).
    Heartbeat {
        id: i32,
        epoch: u64,
        applied: u64,
    },
    /// The broker is shutting down: fence it now rather than after its session times out.
    Leave {
        id: i32,
        epoch: u64,
    },
    /// A partition's leader asks for a new ISR (a follower caught up, or fell behind), as
    /// the leader at `leader_epoch`.
    AlterPartition {
        broker: i32,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// A live broker's replica of a partition failed (its log's write or sync failed: a
    /// full disk, an I/O error): it leaves the ISR and hands its leadership over.
    ReplicaFailed {
        broker: i32,
        /// The broker's registration: a report from an earlier life is refused.
        epoch: u64,
        topic_id: Uuid,
        partition: i32,
    },
}

impl NodeCall {
    /// The call's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            NodeCall::Catalogue { .. } => "catalogue",
            NodeCall::Control(_) => "controller operation",
            NodeCall::Register(_) => "registration",
            NodeCall::Heartbeat { .. } => "heartbeat",
            NodeCall::Leave { .. } => "leave",
            NodeCall::AlterPartition { .. } => "ISR change",
            NodeCall::ReplicaFailed { .. } => "failed replica",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeReply {
    /// The catalogue as applied at `index` (`None`: nothing newer than asked), and the
    /// quorum's leader as this voter knows it.
    Catalogue {
        index: u64,
        leader: u64,
        image: Option<String>,
    },
    /// The controller's answer, and the index this node must apply before answering.
    Control {
        reply: ControlReply,
        index: u64,
    },
    Registered {
        epoch: u64,
    },
    /// `stale`: the epoch named is not the broker's current registration.
    Heartbeat {
        fenced: bool,
        stale: bool,
    },
    /// The change asked for is made (or was already so).
    Done,
    NotLeader {
        leader: u64,
    },
    /// The request cannot be granted (e.g. a node id in use by a live broker, an ISR
    /// change of an older leader epoch).
    Refused(String),
    /// The leader could not do it (the quorum did not commit in time, ...).
    Failed(String),
}

/// Why a call to the quorum's leader got no useful answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("no metadata quorum leader answered in time")]
    NoLeader,
    #[error("refused: {0}")]
    Refused(String),
    #[error("the quorum's leader failed: {0}")]
    Failed(String),
    /// A majority of the voters refused this node (another cluster, another id).
    #[error("{0}")]
    NotInCluster(String),
    #[error("undecodable message from node {node}: {reason}")]
    Undecodable { node: u64, reason: String },
    #[error("unexpected answer to a {call}: {reply}")]
    Unexpected { call: &'static str, reply: String },
    #[error("this broker is not registered yet")]
    NotRegistered,
    #[error("this broker is not a cluster node")]
    NotClustered,
    #[error("the quorum's leader did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl NodeError {
    pub fn unexpected(call: &'static str, reply: &NodeReply) -> NodeError {
        NodeError::Unexpected {
            call,
            reply: format!("{reply:?}"),
        }
    }
}

pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).expect("node calls and replies always serialize")
}

pub fn decode<'a, T: Deserialize<'a>>(node: u64, bytes: &'a [u8]) -> Result<T, NodeError> {
    serde_json::from_slice(bytes).map_err(|error| NodeError::Undecodable {
        node,
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_replies_round_trip_and_garbage_is_an_error() {
        let call = NodeCall::AlterPartition {
            broker: 2,
            topic_id: Uuid::nil(),
            partition: 3,
            leader_epoch: 4,
            isr: vec![2, 1],
        };
        assert_eq!(decode::<NodeCall>(1, &encode(&call)), Ok(call));
        let reply = NodeReply::Heartbeat {
            fenced: false,
            stale: true,
        };
        assert_eq!(decode::<NodeReply>(1, &encode(&reply)), Ok(reply));
        assert!(matches!(
            decode::<NodeCall>(7, b"{\"Nope\":1}"),
            Err(NodeError::Undecodable { node: 7, .. })
        ));
        assert!(decode::<NodeReply>(7, &[0xff; 3]).is_err());
    }
}
