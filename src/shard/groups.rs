//! Where consumer groups live, and their coordinators on this shard.
//!
//! - A single broker: each shard has one coordinator (slot `LOCAL_SLOT`) with its own
//!   local offsets log; group `g` lives on shard `group_shard(g)`.
//! - A cluster: group `g` lives in partition `p = offsets_partition(g)` of the replicated
//!   `__consumer_offsets` topic. The shard owning `p` runs one coordinator for it (slot
//!   `p`) while this broker leads `p`: `run` loads it from the partition's log when
//!   leadership arrives (at a new leader epoch) and unloads it when leadership goes, so the
//!   group moves with the partition and keeps every committed offset. The topic is
//!   created on first need (`ensure_offsets_topic`), as Kafka does.

use std::rc::Rc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use super::partition::Partition;
use super::{Loaded, Shard};
use crate::cluster::control::ControlCall;
use crate::cluster::controller::TopicError;
use crate::cluster::metadata::{offsets_partition, BrokerInfo, OFFSETS_TOPIC};
use crate::group::coordinator::{GroupCoordinator, LeaderLog};
use crate::runtime::placement::group_shard;
use crate::storage::StorageError;

/// A single broker's coordinator slot on each shard.
pub const LOCAL_SLOT: i32 = 0;
/// How often coordinators are reconciled with leadership even without a metadata change
/// (a partition's log may open after the change that made this broker its leader).
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// Where group requests for one group go: the shard, and the coordinator slot there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHome {
    pub shard: usize,
    pub slot: i32,
}

impl Shard {
    /// The broker coordinating `group`: this one for a single broker; in a cluster the
    /// live leader of the group's `__consumer_offsets` partition (`None`: no such leader,
    /// or the topic does not exist yet).
    pub fn group_coordinator(&self, group: &str) -> Option<BrokerInfo> {
        let metadata = self.metadata();
        if self.config.quorum.is_none() {
            return metadata.brokers.get(&self.config.node_id).cloned();
        }
        metadata.group_coordinator(group).cloned()
    }

    /// Whether this broker coordinates `group`.
    pub fn coordinates(&self, group: &str) -> bool {
        self.group_coordinator(group)
            .is_some_and(|broker| broker.id == self.config.node_id)
    }

    /// The shard and slot of `group`'s coordinator on this broker (`None`: a cluster
    /// without `__consumer_offsets` yet).
    pub fn group_home(&self, group: &str) -> Option<GroupHome> {
        if self.config.quorum.is_none() {
            return Some(GroupHome {
                shard: group_shard(group, self.count),
                slot: LOCAL_SLOT,
            });
        }
        let metadata = self.metadata();
        let topic = metadata.topic(OFFSETS_TOPIC)?;
        let slot = offsets_partition(group, topic.partitions);
        Some(GroupHome {
            shard: self.owner_of(topic, slot),
            slot,
        })
    }

    /// The coordinator loaded in `slot` on this shard.
    pub fn coordinator(&self, slot: i32) -> Option<Rc<GroupCoordinator>> {
        self.groups
            .borrow()
            .get(&slot)
            .map(|loaded| loaded.coordinator.clone())
    }

    /// Every coordinator loaded on this shard.
    pub fn coordinators(&self) -> Vec<Rc<GroupCoordinator>> {
        self.groups
            .borrow()
            .values()
            .map(|loaded| loaded.coordinator.clone())
            .collect()
    }

    /// A single broker: installs this shard's coordinator (its local log is loaded).
    pub fn install_local_coordinator(&self, coordinator: Rc<GroupCoordinator>) {
        self.groups.borrow_mut().insert(
            LOCAL_SLOT,
            Loaded {
                leader_epoch: -1,
                coordinator,
            },
        );
    }
}

/// From any shard of a cluster node: asks the controller to create `__consumer_offsets`
/// unless it exists or this shard already asked. Refused while fewer brokers are live
/// than its replication factor (the voters, at most `--offsets-topic-replication-factor`);
/// the client keeps getting COORDINATOR_NOT_AVAILABLE meanwhile and retries.
pub fn ensure_offsets_topic(shard: &Rc<Shard>) {
    let Some(quorum) = &shard.config.quorum else {
        return;
    };
    if shard.metadata().topic(OFFSETS_TOPIC).is_some() || shard.offsets_topic_asked.get() {
        return;
    }
    let voters = i16::try_from(quorum.voters.len()).unwrap_or(i16::MAX);
    let settings = shard.config.offsets_topic;
    let replication_factor = settings.replication_factor.min(voters);
    let live = shard.metadata().live_brokers().count();
    if live < usize::try_from(replication_factor).unwrap_or(usize::MAX) {
        tracing::debug!(
            live,
            replication_factor,
            "waiting for brokers before creating {OFFSETS_TOPIC}"
        );
        return;
    }
    shard.offsets_topic_asked.set(true);
    let shard = shard.clone();
    crate::runtime::spawn(async move {
        let created = shard
            .control(ControlCall::CreateOffsetsTopic {
                partitions: settings.partitions,
                replication_factor,
            })
            .await
            .map(|reply| reply.into_topics(1).into_iter().next());
        match created {
            Ok(Some(Ok(_))) => {
                tracing::info!(
                    partitions = settings.partitions,
                    replication_factor,
                    "created {OFFSETS_TOPIC}"
                )
            }
            Ok(Some(Err(TopicError::AlreadyExists(_)))) => {}
            Ok(Some(Err(error))) => tracing::warn!(%error, "creating {OFFSETS_TOPIC} failed"),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "creating {OFFSETS_TOPIC} failed"),
        }
        shard.offsets_topic_asked.set(false);
    })
    .detach();
}

/// Runs on every shard of a cluster node until shutdown: keeps one coordinator per
/// `__consumer_offsets` partition this shard owns and this broker leads.
pub async fn run(shard: Rc<Shard>) {
    loop {
        let changed = shard.metadata_changed.listen();
        reconcile(&shard).await;
        let waited = shard
            .shutdown
            .or_stopped(crate::runtime::time::timeout(RECONCILE_INTERVAL, changed))
            .await;
        if waited.is_none() {
            return;
        }
    }
}

/// Unloads coordinators whose partition this broker no longer leads at their epoch, then
/// loads one for each led partition without.
async fn reconcile(shard: &Rc<Shard>) {
    let led = led_offsets_partitions(shard);
    let stale: Vec<(i32, Loaded)> = {
        let mut groups = shard.groups.borrow_mut();
        let slots: Vec<i32> = groups
            .iter()
            .filter(|(slot, loaded)| {
                led.iter()
                    .all(|(p, epoch, _)| (*p, *epoch) != (**slot, loaded.leader_epoch))
            })
            .map(|(slot, _)| *slot)
            .collect();
        slots
            .into_iter()
            .filter_map(|slot| groups.remove(&slot).map(|loaded| (slot, loaded)))
            .collect()
    };
    for (slot, loaded) in stale {
        tracing::info!(partition = slot, "no longer leading; unloading its groups");
        loaded.coordinator.unload().await;
    }
    for (slot, leader_epoch, partition) in led {
        if shard.groups.borrow().contains_key(&slot) {
            continue;
        }
        let min_insync = shard.min_insync_replicas(OFFSETS_TOPIC);
        let leader = Rc::new(PartitionLeader {
            partition: partition.clone(),
            leader_epoch,
            min_insync,
        });
        let limits = shard.config.group_limits.clone();
        let loaded = GroupCoordinator::load(partition.log.clone(), Some(leader), limits).await;
        match loaded {
            Ok(coordinator) => {
                // Leadership may have moved while the log was read.
                let still = led_offsets_partitions(shard)
                    .iter()
                    .any(|(p, epoch, _)| (*p, *epoch) == (slot, leader_epoch));
                if still {
                    shard.groups.borrow_mut().insert(
                        slot,
                        Loaded {
                            leader_epoch,
                            coordinator,
                        },
                    );
                } else {
                    coordinator.unload().await;
                }
            }
            Err(error) => {
                tracing::warn!(partition = slot, %error, "loading groups failed; will retry")
            }
        }
    }
}

/// (partition, leader epoch, its log) for each `__consumer_offsets` partition this shard
/// owns and this broker leads.
fn led_offsets_partitions(shard: &Shard) -> Vec<(i32, i32, Rc<Partition>)> {
    let metadata = shard.metadata();
    let Some(topic) = metadata.topic(OFFSETS_TOPIC) else {
        return Vec::new();
    };
    (0..topic.partitions)
        .filter(|&p| shard.owner_of(topic, p) == shard.id)
        .filter_map(|p| {
            let state = topic.state_of(p)?;
            if state.leader != shard.config.node_id {
                return None;
            }
            let partition = shard.partition(OFFSETS_TOPIC, p)?;
            if partition.topic_id != topic.id || !partition.role().is_leader {
                return None;
            }
            Some((p, state.leader_epoch, partition))
        })
        .collect()
}

/// A led `__consumer_offsets` partition as a coordinator's log.
struct PartitionLeader {
    partition: Rc<Partition>,
    leader_epoch: i32,
    min_insync: i64,
}

impl LeaderLog for PartitionLeader {
    fn leader_epoch(&self) -> Option<i32> {
        self.partition
            .leads_at(self.leader_epoch)
            .then_some(self.leader_epoch)
    }

    fn committed(
        &self,
        end_offset: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), StorageError>> + '_>> {
        Box::pin(async move {
            self.partition.log.wait_durable(end_offset).await?;
            self.partition
                .wait_replicated(end_offset, self.leader_epoch, self.min_insync)
                .await
        })
    }
}
