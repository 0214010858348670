//! The quorum leader's side of a node: answering other nodes' calls (and this broker's
//! own, when it leads), and fencing brokers that fell silent. The decisions are
//! `cluster::node::leader` and `members`; here they run one at a time through the
//! controller's turn (`Controller::exclusive`), each decided again once it has the turn,
//! so no decision is taken on a catalogue another proposal is about to change.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::node::ClusterNode;
use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::controller::TopicError;
use crate::cluster::node::leader::{self, Decision, Then};
use crate::cluster::node::members::{self, SilentBroker};
use crate::cluster::node::rpc::{self, NodeCall, NodeReply};
use crate::runtime::time;

/// How long a new leader may take to apply earlier entries before it decides anything.
const LEADER_READY_WAIT: Duration = Duration::from_secs(10);
/// How long a voter holds a broker-only node's catalogue request when it has nothing newer.
pub(super) const CATALOGUE_WAIT: Duration = Duration::from_secs(2);

impl ClusterNode {
    /// Answers peers' calls on this voter's quorum links. The handler holds the node
    /// weakly: the links belong to the node.
    pub(super) fn answer_peers(self: &Rc<Self>) {
        let node = Rc::downgrade(self);
        self.peers.set_call_handler(Rc::new(move |caller, body| {
            let node = node.clone();
            Box::pin(async move {
                let reply = match node.upgrade() {
                    Some(node) => node.answer(caller, body).await,
                    None => NodeReply::Failed("this node's quorum has stopped".into()),
                };
                Bytes::from(rpc::encode(&reply))
            })
        }));
    }

    /// Answers peer `caller`'s call.
    async fn answer(&self, caller: u64, body: Bytes) -> NodeReply {
        let call = match rpc::decode::<NodeCall>(caller, &body) {
            Ok(call) => call,
            Err(error) => return NodeReply::Failed(error.to_string()),
        };
        match call {
            NodeCall::Catalogue { after } => self.answer_catalogue(after).await,
            call if self.status().is_leader => self.lead(call).await,
            _ => NodeReply::NotLeader {
                leader: self.status().leader,
            },
        }
    }

    /// Any voter answers a catalogue request, from what it has applied: a committed
    /// prefix, and never older than asked (`after`), so the asker's catalogue only moves
    /// forward. Held up to `CATALOGUE_WAIT` for something newer (a long poll).
    async fn answer_catalogue(&self, after: u64) -> NodeReply {
        let status = match self
            .wait_for(CATALOGUE_WAIT, |status| status.applied > after)
            .await
        {
            Ok(status) | Err(status) => status,
        };
        let image = (status.applied > after)
            .then(|| serde_json::to_string(&*self.catalogue.image()).ok())
            .flatten();
        NodeReply::Catalogue {
            index: status.applied,
            leader: status.leader,
            image,
        }
    }

    /// Runs `call` as the quorum's leader, once every entry of earlier terms is applied.
    pub(super) async fn lead(&self, call: NodeCall) -> NodeReply {
        let ready = self
            .wait_for(LEADER_READY_WAIT, |status| {
                status.leader_ready || !status.is_leader
            })
            .await;
        match ready {
            Ok(status) if status.leader_ready => {}
            Ok(status) | Err(status) => {
                return NodeReply::NotLeader {
                    leader: status.leader,
                }
            }
        }
        if let NodeCall::Control(call) = call {
            // The controller decides on the catalogue as applied, which must hold every
            // entry this leader appended (`TopicHost::commit` refuses a change read
            // before them).
            if let Err(error) = self.settle().await {
                return NodeReply::Failed(error.to_string());
            }
            let reply = self.controller.execute(self, call).await;
            return NodeReply::Control {
                reply,
                index: self.status().applied,
            };
        }
        let now = time::now();
        leader::observe(&mut self.members.borrow_mut(), &call, now);
        // A decision that proposes nothing needs no turn: heartbeats never queue behind a
        // slow controller operation (a queued heartbeat would cost its broker its session).
        if let Decision::Answer(reply) = self.decide(&call) {
            return reply;
        }
        // One unfence per broker in flight: its other heartbeats meanwhile answer at once.
        let unfencing = match call {
            NodeCall::Heartbeat { id, .. } => {
                if !self.members.borrow_mut().begin_unfence(id) {
                    return NodeReply::Heartbeat {
                        fenced: true,
                        stale: false,
                    };
                }
                Some(id)
            }
            _ => None,
        };
        let reply = self
            .controller
            .exclusive(async {
                if let Err(error) = self.settle().await {
                    return NodeReply::Failed(error.to_string());
                }
                match self.decide(&call) {
                    Decision::Answer(reply) => reply,
                    Decision::Propose { records, then } => {
                        let outcome = self.propose(records).await;
                        self.conclude(then, outcome)
                    }
                }
            })
            .await;
        if let Some(id) = unfencing {
            self.members.borrow_mut().end_unfence(id);
        }
        reply
    }

    fn decide(&self, call: &NodeCall) -> Decision {
        leader::decide(
            &self.catalogue.image(),
            &self.members.borrow(),
            call,
            time::now(),
            &self.membership,
        )
    }

    fn conclude(
        &self,
        then: Then,
        outcome: Result<u64, crate::cluster::quorum::core::QuorumError>,
    ) -> NodeReply {
        leader::conclude(
            &self.catalogue.image(),
            &mut self.members.borrow_mut(),
            then,
            outcome,
            time::now(),
        )
    }

    /// Runs a controller operation on the quorum's leader (wherever it is), and answers
    /// once this broker's shards see its result too (a Metadata request right after a
    /// CreateTopics must list the topic).
    pub async fn control(&self, call: ControlCall) -> ControlReply {
        let failed = |message: String| ControlReply::Failed(TopicError::NotController(message));
        match self.ask(NodeCall::Control(call)).await {
            Ok(NodeReply::Control { reply, index }) => {
                self.wait_published(index).await;
                reply
            }
            Ok(other) => failed(format!("the controller could not run it: {other:?}")),
            Err(error) => failed(error.to_string()),
        }
    }

    /// On the leader, every `duty_interval`: fences brokers that fell silent (see
    /// `cluster::node::members`).
    pub(super) async fn leader_duties(self: Rc<Self>) {
        let tick = self.membership.duty_interval();
        while self.shutdown.or_stopped(time::sleep(tick)).await.is_some() {
            let silent = self.members.borrow_mut().duties(
                self.status().leader_ready,
                &self.catalogue.image(),
                time::now(),
                self.broker_id,
                &self.membership,
                |id| {
                    u64::try_from(id)
                        .ok()
                        .and_then(|id| self.peers.disconnected_for(id))
                },
            );
            for broker in silent {
                self.fence_silent(broker).await;
            }
        }
    }

    /// Fences `broker` and moves what it led, in one entry, if that registration is still
    /// current and unfenced once this fence has the controller's turn.
    async fn fence_silent(&self, broker: SilentBroker) {
        let SilentBroker { id, epoch, why } = broker;
        let fenced = self
            .controller
            .exclusive(async {
                if let Err(error) = self.settle().await {
                    return Some(Err(error));
                }
                let records = members::fence(&self.catalogue.image(), id, epoch)?;
                tracing::warn!(broker = id, "broker {}; fencing it", why.describe());
                Some(self.propose(records).await)
            })
            .await;
        if let Some(Err(error)) = fenced {
            tracing::warn!(%error, "fencing a broker failed");
        }
    }
}
