//! The control plane on its shard: a single broker's controller, or this broker's node
//! of a cluster; it serves the requests of every shard (`handle`), each as its own task.

use std::rc::Rc;

use uuid::Uuid;

use super::handle::Request;
use super::single::SingleBroker;
use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::node::rpc::NodeError;
use crate::shard::cluster::ClusterNode;

pub enum ControlPlane {
    Single(SingleBroker),
    Cluster(Rc<ClusterNode>),
}

impl ControlPlane {
    /// Runs a controller operation where the controller is: here for a single broker, on
    /// the metadata quorum's leader in a cluster.
    pub async fn control(&self, call: ControlCall) -> ControlReply {
        match self {
            ControlPlane::Single(broker) => broker.control(call).await,
            ControlPlane::Cluster(node) => node.control(call).await,
        }
    }

    /// Asks for a new ISR of a partition this broker leads.
    pub async fn alter_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<(), NodeError> {
        self.node()?
            .alter_partition(topic_id, partition, leader_epoch, isr)
            .await
    }

    /// Reports this broker's replica of a partition as failed.
    pub async fn report_failed_replica(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<(), NodeError> {
        self.node()?
            .report_failed_replica(topic_id, partition)
            .await
    }

    /// Waits until the control plane has stopped after shutdown (a cluster node: fenced,
    /// or given up on, then its journal closed).
    pub async fn stopped(&self) {
        if let ControlPlane::Cluster(node) = self {
            node.stopped().await;
        }
    }

    fn node(&self) -> Result<&ClusterNode, NodeError> {
        match self {
            ControlPlane::Cluster(node) => Ok(node),
            ControlPlane::Single(_) => Err(NodeError::NotClustered),
        }
    }
}

/// Serves `inbox` until every handle is gone: each request runs as its own task (the
/// loop awaits nothing else, so no shard waiting on the control plane can block another's
/// request).
pub async fn serve(plane: Rc<ControlPlane>, inbox: async_channel::Receiver<Request>) {
    while let Ok(request) = inbox.recv().await {
        let plane = plane.clone();
        crate::runtime::spawn(async move { plane.answer(request).await }).detach();
    }
}

impl ControlPlane {
    async fn answer(&self, request: Request) {
        // A requester that gave up (its connection closed) drops its reply channel.
        match request {
            Request::Control { call, reply } => {
                let _ = reply.send(self.control(call).await);
            }
            Request::AlterPartition {
                topic_id,
                partition,
                leader_epoch,
                isr,
                reply,
            } => {
                let altered = self
                    .alter_partition(topic_id, partition, leader_epoch, isr)
                    .await;
                let _ = reply.send(altered);
            }
            Request::ReportFailedReplica {
                topic_id,
                partition,
                reply,
            } => {
                let reported = self.report_failed_replica(topic_id, partition).await;
                let _ = reply.send(reported);
            }
        }
    }
}
