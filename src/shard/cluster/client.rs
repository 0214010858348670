//! Calls to the metadata quorum's leader: sent over the quorum links to whichever node
//! this one knows as leader, retried while no leader is known or the one asked has moved
//! on, and answered right here when this node is the leader.

use std::time::Duration;

use super::node::{ClusterNode, RETRY_DELAY};
use crate::cluster::node::rpc::{self, NodeCall, NodeError, NodeReply};
use crate::cluster::quorum::transport::CallError;
use crate::runtime::time::{self, Deadline};

/// How long a call to the quorum's leader may take.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a call went.
enum Routed {
    /// The leader (another node) answered.
    Answered(NodeReply),
    /// This node leads: answer it here.
    Here,
}

impl ClusterNode {
    /// Sends `call` to the quorum's leader, or answers it here if this node leads.
    pub(super) async fn ask(&self, call: NodeCall) -> Result<NodeReply, NodeError> {
        let deadline = Deadline::after(CALL_TIMEOUT);
        loop {
            if self.status().is_leader {
                return Ok(self.lead(call).await);
            }
            match self.call_leader(&call, deadline).await? {
                Routed::Answered(reply) => return Ok(reply),
                Routed::Here => continue,
            }
        }
    }

    /// Calls the leader this node knows of, trying the next one it learns of while the
    /// asked one does not answer, until `deadline`.
    async fn call_leader(&self, call: &NodeCall, deadline: Deadline) -> Result<Routed, NodeError> {
        let body = rpc::encode(call);
        let mut leader = self.status().leader;
        loop {
            if let Some(refusal) = self.peers.refused_by_majority() {
                return Err(NodeError::NotInCluster(refusal));
            }
            if deadline.passed() {
                return Err(NodeError::NoLeader);
            }
            let status = self.status();
            if status.is_leader {
                return Ok(Routed::Here);
            }
            if leader == 0 || leader == self.node_id {
                time::sleep(RETRY_DELAY).await;
                leader = self.status().leader;
                continue;
            }
            // A call to a leader that died waits for no reply: give up on it as soon as
            // this node learns of another leader.
            let left = deadline.left();
            let moved = self.wait_for(left, move |status| status.leader != leader);
            let answer = futures_lite::future::or(self.peers.call(leader, &body, left), async {
                let _ = moved.await;
                Err(CallError::Timeout(leader))
            })
            .await;
            let reply = match answer {
                Ok(bytes) => rpc::decode::<NodeReply>(leader, &bytes)?,
                Err(error) => {
                    tracing::debug!(%error, call = call.name(), "calling the quorum leader failed; retrying");
                    time::sleep(RETRY_DELAY).await;
                    leader = self.status().leader;
                    continue;
                }
            };
            match reply {
                NodeReply::NotLeader { leader: known } => {
                    time::sleep(RETRY_DELAY).await;
                    leader = if known != 0 && known != leader {
                        known
                    } else {
                        self.status().leader
                    };
                }
                other => return Ok(Routed::Answered(other)),
            }
        }
    }
}
