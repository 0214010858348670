//! What the controller acts on, which the shard layer implements (a single broker's
//! shards, or a cluster node that commits through the metadata quorum).

use std::ops::Range;
use std::sync::Arc;

use crate::cluster::metadata::{ClusterMetadata, Topic};

/// What the controller acts on: the partitions' logs on their owning shards, and every
/// shard's metadata snapshot. Implemented by the shard layer.
#[allow(async_fn_in_trait)] // single-threaded: the futures never cross threads
pub trait TopicHost {
    /// The metadata snapshot the controller's shard holds (the latest published).
    fn metadata(&self) -> Arc<ClusterMetadata>;
    /// Opens partitions `range` of `topic` on their owning shards, each moving aside any
    /// leftover directory under its name.
    async fn open_logs(&self, topic: &Topic, range: Range<i32>) -> Result<(), String>;
    /// Closes and deletes every log of `topic`; failures are logged, not returned.
    async fn delete_logs(&self, topic: &Topic);
    /// Closes and deletes the logs of partitions `range` of `topic` that are open (the
    /// rollback of a growth that failed part way); failures are logged, not returned.
    async fn discard_logs(&self, topic: &Topic, range: Range<i32>);
    /// Gives the open logs of `topic` its current roll and retention limits.
    async fn reconfigure_logs(&self, topic: &Topic);
    /// Makes `metadata` the cluster's metadata: persisted (a single broker's metadata
    /// file, or committed by the metadata quorum), then given to every shard.
    async fn commit(&self, metadata: ClusterMetadata) -> Result<(), String>;
}
