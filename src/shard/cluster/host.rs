//! The controller's hands in a cluster: a change is committed as metadata records through
//! the quorum, and every node opens, deletes and reconfigures its own replicas once it
//! applies the change (`reconcile`), so the controller touches no log itself.

use std::ops::Range;
use std::sync::Arc;

use super::node::ClusterNode;
use crate::cluster::controller::TopicHost;
use crate::cluster::metadata::{ClusterMetadata, Topic};
use crate::cluster::quorum::core::QuorumError;
use crate::cluster::records;

impl TopicHost for ClusterNode {
    /// The catalogue as applied (the shards' snapshot may trail it). Noted for `commit`:
    /// where it was read, if this leader was settled then.
    fn metadata(&self) -> Arc<ClusterMetadata> {
        let status = self.status();
        self.read_at.set(status.settled.then_some(status.applied));
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
    /// Refused if the controller read the catalogue while an entry of this leader was
    /// still to commit, or the catalogue moved since: a change decided without that
    /// entry would undo it (the controller reads once per change, under its lock).
    async fn commit(&self, metadata: ClusterMetadata) -> Result<(), String> {
        let changes = records::diff(&self.catalogue.image(), &metadata);
        if changes.is_empty() {
            return Ok(());
        }
        if self.read_at.get() != Some(self.status().applied) {
            return Err(QuorumError::Unsettled.to_string());
        }
        self.propose(changes)
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }
}
