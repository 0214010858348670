//! Keeps this broker in step with the catalogue (Redpanda's `controller_backend`): opens
//! the partitions newly assigned here, deletes those of removed topics and those moved
//! away, applies config changes, and gives every shard the new snapshot.

use std::rc::Rc;
use std::sync::Arc;

use super::node::ClusterNode;
use crate::cluster::metadata::{ClusterMetadata, Topic};

/// Reconciles after every change of the catalogue, until shutdown.
pub(super) async fn reconcile_loop(node: Rc<ClusterNode>, mut published: Arc<ClusterMetadata>) {
    loop {
        let listener = node.catalogue.changed().listen();
        if *node.catalogue.image() != *published {
            published = reconcile(&node, &published, true).await;
            continue;
        }
        if node.shutdown.or_stopped(listener).await.is_none() {
            return;
        }
    }
}

/// Brings this broker from `published` to the node's current catalogue: deletes the
/// local logs of removed topics, opens the partitions newly assigned here (`fresh`: as
/// new logs, moving any leftover directory aside), deletes replicas moved away,
/// reconfigures changed topics, and gives every shard the snapshot. Returns the snapshot
/// published.
pub(super) async fn reconcile(
    node: &ClusterNode,
    published: &ClusterMetadata,
    fresh: bool,
) -> Arc<ClusterMetadata> {
    let shard = &node.shard;
    // The index first: the catalogue taken next holds at least what it names.
    let index = node.status().applied;
    let current = node.image();
    let me = shard.config.node_id;
    for (name, old) in published.topics() {
        let kept = current.topic(name).is_some_and(|topic| topic.id == old.id);
        if !kept && holds_any(old, me) {
            shard.delete_topic_logs(old).await;
        }
    }
    for (name, topic) in current.topics() {
        let old = published.topic(name).filter(|old| old.id == topic.id);
        let opened: Vec<i32> = (0..topic.partitions)
            .filter(|&p| topic.replicas_of(p).contains(&me))
            .filter(|&p| old.is_none_or(|old| !old.replicas_of(p).contains(&me)))
            .collect();
        if !opened.is_empty() {
            if let Err(error) = shard.open_topic_partitions(topic, opened, fresh).await {
                tracing::error!(topic = %name, %error, "opening partitions assigned here failed");
            }
        }
        // Replicas moved away (a completed reassignment): this broker's copy goes.
        let dropped: Vec<i32> = old.map_or_else(Vec::new, |old| {
            (0..old.partitions)
                .filter(|&p| old.replicas_of(p).contains(&me))
                .filter(|&p| !topic.replicas_of(p).contains(&me))
                .collect()
        });
        if !dropped.is_empty() {
            tracing::info!(topic = %name, partitions = ?dropped, "replicas moved away; deleting them here");
            shard.delete_topic_partitions(topic, dropped).await;
        }
        if old.is_some_and(|old| old.configs != topic.configs) && holds_any(topic, me) {
            shard.reconfigure_topic_logs(topic).await;
        }
    }
    shard.publish(current.clone()).await;
    node.published.set(node.published.get().max(index));
    node.published_changed.notify(usize::MAX);
    current
}

fn holds_any(topic: &Topic, broker: i32) -> bool {
    topic
        .replicas
        .iter()
        .any(|replicas| replicas.contains(&broker))
}
