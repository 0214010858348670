//! The broker's control plane: the per-broker services that live on the controller shard
//! (`runtime::placement::CONTROLLER_SHARD`): the controller and, in a cluster, this node
//! of it. Every shard reaches it through the same `Service` handle (`Shard::control_plane`),
//! never through a field of its own that is empty on every shard but one.
//!
//! A single broker's controller acts on the shards directly (`SingleBroker`: it opens the
//! logs of a new topic, persists the metadata file, then publishes); a cluster's through
//! the metadata quorum (`ClusterNode`).

use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use uuid::Uuid;

use super::cluster::ClusterNode;
use super::Shard;
use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::controller::{Controller, ControllerSettings, TopicHost};
use crate::cluster::metadata::{ClusterMetadata, Topic};
use crate::cluster::node::rpc::NodeError;
use crate::config::BrokerConfig;

pub enum ControlPlane {
    Single(SingleBroker),
    Cluster(Rc<ClusterNode>),
}

impl ControlPlane {
    /// Runs a controller operation where the controller is: here for a single broker, on
    /// the metadata quorum's leader in a cluster.
    pub async fn control(&self, call: ControlCall) -> ControlReply {
        match self {
            ControlPlane::Single(broker) => broker.controller.execute(broker, call).await,
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

/// The one controller of a broker, with its settings.
pub fn controller_of(config: &BrokerConfig) -> Controller {
    Controller::new(ControllerSettings {
        node_id: config.node_id,
        default_partitions: config.default_partitions,
        topic_defaults: config.topic_defaults.clone(),
        partitions_max: config.partitions_max,
    })
}

/// A single broker's control plane: the controller and the shards it acts on.
pub struct SingleBroker {
    shard: Rc<Shard>,
    controller: Controller,
}

impl SingleBroker {
    /// `shard`: the controller shard.
    pub fn new(shard: Rc<Shard>, controller: Controller) -> SingleBroker {
        SingleBroker { shard, controller }
    }
}

impl TopicHost for SingleBroker {
    fn metadata(&self) -> Arc<ClusterMetadata> {
        self.shard.metadata()
    }

    /// Opened before the change is persisted; a crash in between leaves orphan
    /// directories, which a later creation moves aside.
    async fn open_logs(&self, topic: &Topic, range: Range<i32>) -> Result<(), String> {
        self.shard
            .open_topic_partitions(topic, range.collect(), true)
            .await
    }

    async fn delete_logs(&self, topic: &Topic) {
        self.shard.delete_topic_logs(topic).await;
    }

    async fn discard_logs(&self, topic: &Topic, range: Range<i32>) {
        self.shard.discard_topic_partitions(topic, range).await;
    }

    async fn reconfigure_logs(&self, topic: &Topic) {
        self.shard.reconfigure_topic_logs(topic).await;
    }

    /// The metadata file (temp file, `fdatasync`, rename, directory fsync), then every
    /// shard's snapshot.
    async fn commit(&self, metadata: ClusterMetadata) -> Result<(), String> {
        crate::storage::io::write_file_atomic(
            &self.shard.config.metadata_path(),
            &metadata.encode(),
        )
        .await
        .map_err(|error| error.to_string())?;
        self.shard.publish(Arc::new(metadata)).await;
        Ok(())
    }
}
