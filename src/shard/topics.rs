//! How topic changes reach the shards that own the partitions: the controller
//! (`cluster::controller`) decides and persists, and the control plane's hosts
//! (`control_plane::SingleBroker`, `cluster::reconcile`) fan its decisions out with these.

use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use super::Shard;
use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::controller::{self, TopicError};
use crate::cluster::metadata::{ClusterMetadata, Topic};
use crate::runtime::mesh::ShardGone;
use crate::runtime::placement::CONTROLLER_SHARD;

impl Shard {
    /// Opens `partitions` of `topic` on their owning shards, in parallel.
    pub async fn open_topic_partitions(
        self: &Rc<Self>,
        topic: &Topic,
        partitions: Vec<i32>,
        fresh: bool,
    ) -> Result<(), String> {
        let mut by_owner: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
        for partition in partitions {
            by_owner
                .entry(self.owner_of(topic, partition))
                .or_default()
                .push(partition);
        }
        let topic = topic.clone();
        let opened = self
            .run_on_each(by_owner.into_iter().collect(), move |target, partitions| {
                let topic = topic.clone();
                async move {
                    target
                        .open_partitions(&topic, &partitions, fresh)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        opened
            .into_iter()
            .collect::<Result<Vec<()>, String>>()
            .map(drop)
    }

    /// Closes and deletes every log of `topic` on every shard; failures are logged.
    pub async fn delete_topic_logs(self: &Rc<Self>, topic: &Topic) {
        for owner in self.owners(topic) {
            let name = topic.name.clone();
            let deleted = self
                .run_on(owner, move |target| async move {
                    target
                        .delete_partitions(&name)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await;
            if let Err(error) = deleted.map_err(|e| e.to_string()).and_then(|d| d) {
                tracing::error!(topic = %topic.name, shard = owner, %error, "deleting partition logs failed");
            }
        }
    }

    /// Closes and deletes this broker's logs of `partitions` of `topic` on their owning
    /// shards; failures are logged.
    pub async fn delete_topic_partitions(self: &Rc<Self>, topic: &Topic, partitions: Vec<i32>) {
        for partition in partitions {
            let name = topic.name.clone();
            let owner = self.owner_of(topic, partition);
            let deleted = self
                .run_on(owner, move |target| async move {
                    target
                        .delete_partitions_in(&name, partition..partition + 1)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await;
            if let Err(error) = deleted.map_err(|e| e.to_string()).and_then(|d| d) {
                tracing::error!(topic = %topic.name, partition, %error, "deleting a partition log failed");
            }
        }
    }

    /// Closes and deletes the logs of partitions `range` of `topic` that are open (the
    /// rollback of a growth that failed part way); failures are logged.
    pub async fn discard_topic_partitions(self: &Rc<Self>, topic: &Topic, range: Range<i32>) {
        // Consecutive partitions land on consecutive shards: the first `count` of the range
        // name every owner.
        let mut owners: Vec<usize> = range
            .clone()
            .take(self.count)
            .map(|partition| self.owner_of(topic, partition))
            .collect();
        owners.sort_unstable();
        owners.dedup();
        let name = topic.name.clone();
        let parts = owners.into_iter().map(|owner| (owner, ())).collect();
        let discarded = self
            .run_on_each(parts, move |target, ()| {
                let (name, range) = (name.clone(), range.clone());
                async move {
                    target
                        .delete_partitions_in(&name, range)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await;
        let errors: Vec<String> = match discarded {
            Ok(results) => results.into_iter().filter_map(Result::err).collect(),
            Err(error) => vec![error.to_string()],
        };
        for error in errors {
            tracing::error!(topic = %topic.name, %error, "discarding partition logs failed");
        }
    }

    /// Gives the open logs of `topic` its current roll and retention limits.
    pub async fn reconfigure_topic_logs(self: &Rc<Self>, topic: &Topic) {
        for owner in self.owners(topic) {
            let topic = topic.clone();
            if let Err(error) = self
                .run_on(owner, move |target| async move {
                    target.reconfigure_partitions(&topic)
                })
                .await
            {
                tracing::error!(shard = owner, %error, "a shard missed a topic config change");
            }
        }
    }
}

impl Shard {
    /// Gives every shard `snapshot`.
    pub async fn publish(self: &Rc<Self>, snapshot: Arc<ClusterMetadata>) {
        let sent = self
            .run_on_all(move |target| {
                let snapshot = snapshot.clone();
                async move { target.set_metadata(snapshot) }
            })
            .await;
        if let Err(error) = sent {
            tracing::error!(%error, "a shard missed a metadata update");
        }
    }

    /// Runs a controller operation where the controller is: this broker's control plane,
    /// or in a cluster the metadata quorum's leader. Callable from any shard.
    /// The control plane gone means its shard is shutting down.
    pub async fn control(&self, call: ControlCall) -> Result<ControlReply, ShardGone> {
        self.control_plane
            .control(call)
            .await
            .map_err(|_| ShardGone(CONTROLLER_SHARD))
    }
}

/// From any shard: creates `names` with default settings if they do not exist yet (topic
/// auto-creation). Names that are invalid or fail to create are left out.
pub async fn ensure_topics(shard: &Rc<Shard>, names: Vec<String>) {
    let missing = controller::auto_create_specs(&shard.metadata(), names);
    if missing.is_empty() {
        return;
    }
    let count = missing.len();
    let created = shard
        .control(ControlCall::CreateTopics {
            specs: missing,
            validate_only: false,
        })
        .await
        .map(|reply| {
            reply
                .into_topics(count)
                .into_iter()
                .filter_map(Result::err)
                .filter(|error| !matches!(error, TopicError::AlreadyExists(_)))
                .map(|error| error.to_string())
                .collect::<Vec<_>>()
        });
    match created {
        Ok(errors) if errors.is_empty() => {}
        Ok(errors) => tracing::warn!(?errors, "auto-creating topics failed"),
        Err(error) => tracing::warn!(%error, "auto-creating topics failed"),
    }
}
