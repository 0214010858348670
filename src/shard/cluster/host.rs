//! The controller's hands in a cluster: a change is committed as metadata records through
//! the quorum, and every node opens, deletes and reconfigures its own replicas once it
//! applies the change (`reconcile`), so the controller touches no log itself.

use std::ops::Range;
use std::sync::Arc;

use super::node::ClusterNode;
use crate::cluster::controller::TopicHost;
use crate::cluster::metadata::{ClusterMetadata, Topic};
use crate::cluster::records;

impl TopicHost for ClusterNode {
    /// The catalogue as applied (the shards' snapshot may trail it).
    fn metadata(&self) -> Arc<ClusterMetadata> {
        self.image()
    }

    async fn open_logs(&self, _topic: &Topic, _range: Range<i32>) -> Result<(), String> {
        Ok(())
    }

    async fn delete_logs(&self, _topic: &Topic) {}

    async fn discard_logs(&self, _topic: &Topic, _range: Range<i32>) {}

    async fn reconfigure_logs(&self, _topic: &Topic) {}

    /// The change as metadata records (what differs from the catalogue as applied),
    /// committed by the quorum and applied here (every node applies it on its own).
    async fn commit(&self, metadata: ClusterMetadata) -> Result<(), String> {
        let changes = records::diff(&self.catalogue.image(), &metadata);
        if changes.is_empty() {
            return Ok(());
        }
        self.propose(changes)
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }
}
