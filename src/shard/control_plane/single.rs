//! A single broker's controller and the shards it acts on directly: a new topic's logs
//! are opened, then the metadata file is persisted, then every shard is given the snapshot.

use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::controller::{Controller, ControllerSettings, TopicHost};
use crate::cluster::metadata::{ClusterMetadata, Topic};
use crate::config::BrokerConfig;
use crate::shard::Shard;

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

    pub async fn control(&self, call: ControlCall) -> ControlReply {
        self.controller.execute(self, call).await
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
