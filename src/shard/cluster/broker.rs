//! This broker's side of membership and replication, as the quorum's leader sees it: it
//! registers (retrying while an old session of its id lingers), heartbeats, asks for ISR
//! changes of the partitions it leads, reports failed replicas, and leaves on shutdown.

use std::rc::Rc;
use std::time::Duration;

use uuid::Uuid;

use super::node::{ClusterNode, RETRY_DELAY};
use crate::cluster::metadata::BrokerInfo;
use crate::cluster::node::rpc::{NodeCall, NodeError, NodeReply};
use crate::runtime::time::{self, Deadline};

/// How long a stopping broker waits for the quorum to fence it.
const LEAVE_WAIT: Duration = Duration::from_secs(3);

impl ClusterNode {
    /// Registers this broker (retrying until a leader answers) and records its epoch.
    /// A broker restarted right after a crash finds its old registration still live until
    /// that session ends (as in Kafka, DUPLICATE_BROKER_REGISTRATION is retried); a
    /// refusal that outlasts a whole session is another live broker with this id.
    pub(super) async fn register(&self) -> Result<(), NodeError> {
        let info = BrokerInfo {
            id: self.broker_id,
            host: self
                .shard
                .config
                .inter_broker_listener()
                .advertised
                .0
                .clone(),
            port: self.shard.config.inter_broker_listener().advertised.1,
            incarnation: self.incarnation,
            epoch: 0,
            fenced: true,
            listeners: self.shard.config.endpoints(),
        };
        let mut refused_until: Option<Deadline> = None;
        loop {
            if self.shutdown.is_started() {
                return Err(NodeError::Refused("shut down while registering".into()));
            }
            match self.ask(NodeCall::Register(info.clone())).await? {
                NodeReply::Registered { epoch } => {
                    self.epoch.set(Some(epoch));
                    tracing::info!(
                        broker = self.broker_id,
                        epoch,
                        "registered with the metadata quorum"
                    );
                    return Ok(());
                }
                NodeReply::Refused(reason) => {
                    let patience = self.membership.registration_patience();
                    if refused_until
                        .get_or_insert_with(|| Deadline::after(patience))
                        .passed()
                    {
                        return Err(NodeError::Refused(reason));
                    }
                    tracing::info!(%reason, "registration refused; retrying until the old session ends");
                }
                other => tracing::debug!(?other, "registration not granted yet; retrying"),
            }
            time::sleep(RETRY_DELAY).await;
        }
    }

    /// Heartbeats to the leader every interval; registers again if the quorum forgot this
    /// registration (e.g. it was fenced and its epoch replaced).
    pub(super) async fn heartbeat_loop(self: Rc<Self>) {
        let interval = self.config.heartbeat_interval;
        // The first heartbeat goes at once: the broker is fenced until one arrives.
        let mut pause = Duration::ZERO;
        while self.shutdown.or_stopped(time::sleep(pause)).await.is_some() {
            pause = interval;
            let Some(epoch) = self.epoch.get() else {
                continue;
            };
            let call = NodeCall::Heartbeat {
                id: self.broker_id,
                epoch,
                applied: self.status().applied,
            };
            match self.ask(call).await {
                Ok(NodeReply::Heartbeat { stale: true, .. }) => {
                    tracing::warn!(
                        broker = self.broker_id,
                        "registration lost; registering again"
                    );
                    if let Err(error) = self.register().await {
                        tracing::error!(%error, "registering again failed");
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "heartbeat failed"),
            }
        }
    }

    /// Controlled shutdown: asks the quorum to fence this broker at once, so clients stop
    /// being sent here now instead of after the session timeout. Best effort, bounded.
    pub(super) async fn leave(&self) {
        let Some(epoch) = self.epoch.get() else {
            return;
        };
        let call = NodeCall::Leave {
            id: self.broker_id,
            epoch,
        };
        match time::timeout(LEAVE_WAIT, self.ask(call)).await {
            Ok(Ok(_)) => tracing::info!(broker = self.broker_id, "fenced for shutdown"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not fence this broker before stopping")
            }
            Err(time::Elapsed) => {
                tracing::warn!("the quorum did not fence this broker in time before stopping")
            }
        }
    }

    /// Reports this broker's replica of a partition as failed (its log refuses work), so
    /// that it leaves the ISR and another in-sync replica leads instead of clients getting
    /// storage errors from it (Kafka moves leaders off a failed log dir too).
    pub async fn report_failed_replica(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<(), NodeError> {
        let epoch = self.epoch.get().ok_or(NodeError::NotRegistered)?;
        let call = NodeCall::ReplicaFailed {
            broker: self.broker_id,
            epoch,
            topic_id,
            partition,
        };
        let name = call.name();
        expect_done(name, self.ask(call).await?)
    }

    /// Asks the quorum's leader for a new ISR of a partition this broker leads.
    pub async fn alter_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<(), NodeError> {
        let call = NodeCall::AlterPartition {
            broker: self.broker_id,
            topic_id,
            partition,
            leader_epoch,
            isr,
        };
        let name = call.name();
        expect_done(name, self.ask(call).await?)
    }
}

fn expect_done(call: &'static str, reply: NodeReply) -> Result<(), NodeError> {
    match reply {
        NodeReply::Done => Ok(()),
        NodeReply::Refused(reason) => Err(NodeError::Refused(reason)),
        NodeReply::Failed(reason) => Err(NodeError::Failed(reason)),
        other => Err(NodeError::unexpected(call, &other)),
    }
}
