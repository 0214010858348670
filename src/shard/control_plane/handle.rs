//! How any shard reaches the control plane: one bounded inbox of requests, each answered
//! through its own reply channel. `Send` data only, like every cross-shard message.

use futures_channel::oneshot;
use uuid::Uuid;

use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::node::rpc::NodeError;
use crate::runtime::mesh::INBOX_CAPACITY;

/// What a shard asks the control plane.
pub enum Request {
    /// A controller operation (topics, configs, producer ids, reassignment, elections).
    Control {
        call: ControlCall,
        reply: oneshot::Sender<ControlReply>,
    },
    /// A partition this broker leads needs a new ISR.
    AlterPartition {
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// This broker's replica of a partition failed.
    ReportFailedReplica {
        topic_id: Uuid,
        partition: i32,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
}

/// The control plane's inbox, as every shard holds it. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlaneHandle {
    inbox: async_channel::Sender<Request>,
}

/// The control plane is gone: its shard is shutting down.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the broker's control plane is gone (shutting down)")]
pub struct ControlPlaneGone;

/// A handle and the inbox the control plane serves once it is built (requests sent before
/// wait there).
pub fn channel() -> (ControlPlaneHandle, async_channel::Receiver<Request>) {
    let (inbox, receiver) = async_channel::bounded(INBOX_CAPACITY);
    (ControlPlaneHandle { inbox }, receiver)
}

impl ControlPlaneHandle {
    pub async fn control(&self, call: ControlCall) -> Result<ControlReply, ControlPlaneGone> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Control { call, reply }).await?;
        answer.await.map_err(|_| ControlPlaneGone)
    }

    pub async fn alter_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::AlterPartition {
            topic_id,
            partition,
            leader_epoch,
            isr,
            reply,
        };
        self.send(request).await.map_err(gone)?;
        answer.await.map_err(gone)?
    }

    pub async fn report_failed_replica(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::ReportFailedReplica {
            topic_id,
            partition,
            reply,
        };
        self.send(request).await.map_err(gone)?;
        answer.await.map_err(gone)?
    }

    async fn send(&self, request: Request) -> Result<(), ControlPlaneGone> {
        self.inbox.send(request).await.map_err(|_| ControlPlaneGone)
    }
}

fn gone(_: impl std::any::Any) -> NodeError {
    NodeError::Failed(ControlPlaneGone.to_string())
}
