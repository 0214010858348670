//! A shard's services: the partitions it owns (their logs), its metadata snapshot, its
//! consumer-group coordinators, and its handle on the broker's control plane. One `Shard`
//! per executor; handlers receive it, and every cross-shard job runs with the target's
//! `Shard`.
//!
//! This layer wires the services (storage, cluster, group) to one shard and to the others
//! (`runtime::mesh`); it speaks the Kafka wire protocol only through `protocol`
//! (a follower's replica fetch). Started and stopped by `broker`.
//!
//! - `partition`: a partition this shard owns (its log and replication state);
//! - `replication`: leaders' and followers' sides of replication;
//! - `topics`: topic changes fanned out to the owning shards; topic auto-creation;
//! - `groups`: where consumer groups live, and their coordinators on this shard;
//! - `access`: what a request's principal may do (the ACLs, indexed per shard);
//! - `control_plane`: the controller and the cluster node, on the controller shard;
//! - `cluster`: this broker as a node of a cluster (the control plane's adapter).
//!
//! **Architecture invariant: this file uses only its leaf children** (`partition`,
//! `replication::state`, `control_plane::handle`), never those that use `Shard`, so the
//! module has no import circle.

pub mod access;
pub mod cluster;
pub mod control_plane;
pub mod groups;
pub mod partition;
pub mod replication;
pub mod topics;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use event_listener::Event;
use uuid::Uuid;

use control_plane::handle::ControlPlaneHandle;
use partition::{Partition, ProduceMeasures};

use crate::cluster::metadata::{ClusterMetadata, Topic};
use crate::cluster::topic_config;
use crate::config::BrokerConfig;
use crate::group::coordinator::GroupCoordinator;
use crate::runtime::mesh::{Job, Mesh};
use crate::runtime::placement;
use crate::runtime::shutdown::Shutdown;
use crate::security::acl::Authorizer;
use crate::storage::{Log, LogConfig, ShardStorage, StorageError};

pub use crate::runtime::mesh::ShardGone;

/// A job for a shard.
pub type ShardJob = Job<Shard>;

/// `<data dir>/.orphans/`: directories a new topic found under its partitions' names
/// (`<dir>.<uuid>`), moved aside instead of deleted: no topic in the metadata owned them,
/// but they may be someone's data.
pub const ORPHANS_DIR: &str = ".orphans";
/// `<data dir>/.deleted/`: partition directories of deleted topics
/// (`<dir>.<topic id>`), renamed here before they are removed; emptied on start.
pub const DELETED_DIR: &str = ".deleted";
/// A coordinator as loaded in a slot (`groups`): its slot's leader epoch (-1 for a
/// local log) and itself.
pub struct Loaded {
    pub leader_epoch: i32,
    pub coordinator: Rc<GroupCoordinator>,
}

/// Why this broker cannot serve a partition's data (produce, fetch, offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotServing {
    /// The catalogue names no such partition.
    Unknown,
    /// Another broker leads it, none does, or its log is not open here.
    NotLeader,
    /// The client's leader epoch is older than the partition's (KIP-320).
    FencedLeaderEpoch,
    /// The client's leader epoch is newer than this broker knows of.
    UnknownLeaderEpoch,
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<BrokerConfig>,
    mesh: Mesh<Shard>,
    pub storage: Rc<ShardStorage>,
    partitions: RefCell<HashMap<String, Vec<Option<Rc<Partition>>>>>,
    metadata: RefCell<Arc<ClusterMetadata>>,
    /// The ACLs of `metadata`, indexed (`--authorizer standard`; `None`: everyone may do
    /// everything). Rebuilt when the catalogue's bindings change.
    authorizer: RefCell<Option<Rc<Authorizer>>>,
    /// The broker's control plane (controller, cluster node), on the controller shard.
    pub control_plane: ControlPlaneHandle,
    /// The group coordinators on this shard, by slot (`groups.rs`): one for a single
    /// broker, one per led `__consumer_offsets` partition in a cluster.
    pub groups: RefCell<BTreeMap<i32, Loaded>>,
    /// A cluster: this shard asked the controller for `__consumer_offsets` and awaits it.
    pub offsets_topic_asked: Cell<bool>,
    /// Open client connections on this shard.
    pub connections: Cell<usize>,
    pub shutdown: Shutdown,
    /// Fired when a connection closes (shutdown waits for the last).
    pub connection_closed: Event,
    /// Fired when the metadata snapshot changes (followers re-plan their fetches).
    pub metadata_changed: Event,
}

impl Shard {
    /// The name of the listener `request` came in on.
    pub fn listener_name(&self, request: &crate::protocol::frame::Request) -> &str {
        &self.config.listeners.all[request.listener].name
    }

    pub fn new(
        id: usize,
        config: Arc<BrokerConfig>,
        peers: Vec<async_channel::Sender<ShardJob>>,
        metadata: Arc<ClusterMetadata>,
        control_plane: ControlPlaneHandle,
    ) -> Rc<Shard> {
        let storage = ShardStorage::new(&config.shard_storage());
        let authorizer = config
            .authorizer
            .clone()
            .map(|settings| Rc::new(Authorizer::new(settings, &metadata.acls)));
        Rc::new(Shard {
            id,
            count: peers.len(),
            config,
            mesh: Mesh::new(id, peers),
            storage,
            partitions: RefCell::new(HashMap::new()),
            metadata: RefCell::new(metadata),
            authorizer: RefCell::new(authorizer),
            control_plane,
            groups: RefCell::new(BTreeMap::new()),
            offsets_topic_asked: Cell::new(false),
            connections: Cell::new(0),
            shutdown: Shutdown::new(),
            connection_closed: Event::new(),
            metadata_changed: Event::new(),
        })
    }

    /// Runs `job` on shard `target` and returns its result. On this shard it runs inline.
    pub async fn run_on<T, F, Fut>(self: &Rc<Self>, target: usize, job: F) -> Result<T, ShardGone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        self.mesh.run_on(self, target, job).await
    }

    /// Runs `job` on every shard (this one included) and collects the results in shard order.
    pub async fn run_on_all<T, F, Fut>(self: &Rc<Self>, job: F) -> Result<Vec<T>, ShardGone>
    where
        T: Send + 'static,
        F: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let parts = (0..self.count).map(|target| (target, ())).collect();
        self.run_on_each(parts, move |shard, ()| job(shard)).await
    }

    /// Runs `job(shard, part)` for every `(shard id, part)` on that shard, all at once (the
    /// split of a request over the shards owning its partitions), and returns the results
    /// in the order of `parts`.
    pub async fn run_on_each<P, T, F, Fut>(
        self: &Rc<Self>,
        parts: Vec<(usize, P)>,
        job: F,
    ) -> Result<Vec<T>, ShardGone>
    where
        P: Send + 'static,
        T: Send + 'static,
        F: Fn(Rc<Shard>, P) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        self.mesh.run_on_each(self, parts, job).await
    }

    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    /// Takes a new catalogue snapshot, and gives this shard's partitions their new role,
    /// leader epoch and ISR from it.
    pub fn set_metadata(&self, metadata: Arc<ClusterMetadata>) {
        for partition in self.owned_partitions() {
            let Some(topic) = metadata
                .topic(&partition.topic)
                .filter(|t| t.id == partition.topic_id)
            else {
                continue;
            };
            if let Some(state) = topic.state_of(partition.index) {
                partition.take_catalogue(topic.replicas_of(partition.index), state);
            }
        }
        if let Some(settings) = &self.config.authorizer {
            if self.metadata.borrow().acls != metadata.acls {
                let authorizer = Authorizer::new(settings.clone(), &metadata.acls);
                *self.authorizer.borrow_mut() = Some(Rc::new(authorizer));
            }
        }
        *self.metadata.borrow_mut() = metadata;
        self.metadata_changed.notify(usize::MAX);
    }

    pub fn owner_of(&self, topic: &Topic, partition: i32) -> usize {
        placement::partition_shard(&topic.id, partition, self.count)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Rc<Partition>> {
        let partitions = self.partitions.borrow();
        let slot = usize::try_from(index).ok()?;
        partitions.get(topic)?.get(slot)?.clone()
    }

    /// Partition `index` of `topic` if this broker leads it and its log is open here, with
    /// its leader epoch; `client_epoch` (-1: none) is checked against that epoch.
    pub fn leading_partition(
        &self,
        topic: &str,
        index: i32,
        client_epoch: i32,
    ) -> Result<(Rc<Partition>, i32), NotServing> {
        let leader_epoch = {
            let metadata = self.metadata.borrow();
            let state = metadata
                .topic(topic)
                .and_then(|topic| topic.state_of(index))
                .ok_or(NotServing::Unknown)?;
            if state.leader != self.config.node_id {
                return Err(NotServing::NotLeader);
            }
            state.leader_epoch
        };
        if client_epoch >= 0 && client_epoch < leader_epoch {
            return Err(NotServing::FencedLeaderEpoch);
        }
        if client_epoch > leader_epoch {
            return Err(NotServing::UnknownLeaderEpoch);
        }
        let partition = self.partition(topic, index).ok_or(NotServing::NotLeader)?;
        Ok((partition, leader_epoch))
    }

    /// Whether this shard's metadata snapshot names partition `index` of `topic` (whether
    /// or not its log is open here).
    pub fn knows_partition(&self, topic: &str, index: i32) -> bool {
        self.metadata
            .borrow()
            .topic(topic)
            .is_some_and(|topic| (0..topic.partitions).contains(&index))
    }

    /// Every partition this shard owns.
    pub fn owned_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|slots| slots.iter().flatten().cloned())
            .collect()
    }

    /// Opens (creating if needed) the logs of `partitions` of `topic` that this shard owns.
    /// `fresh` (a topic or partitions being created): a directory already under a new
    /// partition's name belongs to no topic in the metadata (a crash before a creation was
    /// persisted, a partition restored by hand); it is moved to `ORPHANS_DIR`, never
    /// deleted, and the new log starts empty. If a fresh log cannot be opened, the
    /// directory this call made for it is removed again.
    pub async fn open_partitions(
        &self,
        topic: &Topic,
        partitions: &[i32],
        fresh: bool,
    ) -> Result<(), StorageError> {
        let log_config = self.log_config_of(topic);
        for &index in partitions {
            let dir = self.config.partition_dir(&topic.name, index);
            if fresh {
                self.move_to_orphans(&dir).await?;
            }
            let opened = self.open_log(topic, index, log_config.clone()).await;
            let log = match opened {
                Ok(log) => log,
                Err(error) => {
                    if fresh {
                        if let Err(cleanup) = crate::storage::io::remove_dir_all(&dir).await {
                            tracing::warn!(dir = %dir.display(), error = %cleanup, "cannot remove the directory of a log that failed to open");
                        }
                    }
                    return Err(error);
                }
            };
            let produced = ProduceMeasures::of(&topic.name);
            let partition = Rc::new(Partition::new(
                topic,
                index,
                self.config.node_id,
                log,
                produced,
            ));
            let mut table = self.partitions.borrow_mut();
            let slots = table.entry(topic.name.clone()).or_default();
            let slot = index as usize;
            if slots.len() <= slot {
                slots.resize(slot + 1, None);
            }
            slots[slot] = Some(partition);
        }
        Ok(())
    }

    /// The log settings of `topic`: its overrides over the broker defaults.
    fn log_config_of(&self, topic: &Topic) -> LogConfig {
        let resolved = topic_config::resolve(&topic.configs, &self.config.topic_defaults);
        self.config.log_config(&resolved)
    }

    /// Opens (recovering) the log of partition `index` of `topic`.
    async fn open_log(
        &self,
        topic: &Topic,
        index: i32,
        config: LogConfig,
    ) -> Result<Rc<Log>, StorageError> {
        let dir = self.config.partition_dir(&topic.name, index);
        Log::open(
            self.storage.clone(),
            dir,
            format!("{}-{index}", topic.name),
            config,
        )
        .await
    }

    /// Reopens every failed log of this shard. A log fails when a write or sync fails (a
    /// full disk, an I/O error) and then refuses work, because its unsynced tail is
    /// unknown; reopening runs the recovery scan, which keeps exactly what is valid on
    /// disk (every acknowledged batch), so the partition takes appends again once the
    /// disk does, without a restart. A log that fails to reopen is tried again next time.
    pub async fn reopen_failed_logs(self: &Rc<Self>) {
        let failed: Vec<Rc<Partition>> = self
            .owned_partitions()
            .into_iter()
            .filter(|partition| partition.log.failure().is_some())
            .collect();
        for partition in failed {
            self.report_failed_replica(&partition).await;
            let name = partition.log.name().to_string();
            if let Err(error) = partition.log.close().await {
                tracing::warn!(log = %name, %error, "closing a failed log");
            }
            let Some(topic) = self.metadata().topic(&partition.topic).cloned() else {
                continue; // deleted meanwhile
            };
            let config = self.log_config_of(&topic);
            let log = match self.open_log(&topic, partition.index, config).await {
                Ok(log) => log,
                Err(error) => {
                    tracing::warn!(log = %name, %error, "reopening a failed log failed; will retry");
                    continue;
                }
            };
            // The partition's role as of now, not as of before the reopen: a catalogue
            // published meanwhile (this replica's own report moving its leadership) updated
            // only the failed partition.
            let current = self.metadata();
            let Some(topic) = current
                .topic(&partition.topic)
                .filter(|topic| topic.id == partition.topic_id)
            else {
                let _ = log.close().await;
                continue; // deleted meanwhile
            };
            let replacement = Rc::new(Partition::new(
                topic,
                partition.index,
                self.config.node_id,
                log.clone(),
                partition.produced.clone(),
            ));
            // Only if the slot still holds the failed partition (not deleted or recreated
            // while the log reopened).
            let replaced = {
                let mut table = self.partitions.borrow_mut();
                let slot = table
                    .get_mut(&partition.topic)
                    .and_then(|slots| slots.get_mut(usize::try_from(partition.index).ok()?));
                match slot {
                    Some(slot) if slot.as_ref().is_some_and(|p| Rc::ptr_eq(p, &partition)) => {
                        *slot = Some(replacement);
                        true
                    }
                    _ => false,
                }
            };
            if replaced {
                tracing::info!(log = %name, next_offset = log.next_offset(), "reopened a failed log");
            } else {
                let _ = log.close().await;
            }
        }
    }

    /// Moves `dir`, if it exists, to `<data dir>/.orphans/<name>.<uuid>` (rename, then
    /// fsync of both parents).
    async fn move_to_orphans(&self, dir: &std::path::Path) -> Result<(), StorageError> {
        use crate::storage::io;
        if !io::exists(dir).await? {
            return Ok(());
        }
        let orphans = self.config.data_dir.join(ORPHANS_DIR);
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let target = orphans.join(format!("{name}.{}", Uuid::new_v4().simple()));
        io::create_dir_all(&orphans).await?;
        io::rename(dir, &target).await?;
        io::sync_dir(&self.config.data_dir).await?;
        io::sync_dir(&orphans).await?;
        tracing::warn!(
            from = %dir.display(),
            to = %target.display(),
            "a new partition's directory already existed, owned by no topic; moved it aside"
        );
        Ok(())
    }

    /// Applies `topic`'s current configs to this shard's open logs of it (roll and
    /// retention limits; see `Log::set_limits`).
    pub fn reconfigure_partitions(&self, topic: &Topic) {
        let limits = self.log_config_of(topic).limits();
        let partitions = self.partitions.borrow();
        for partition in partitions.get(&topic.name).into_iter().flatten().flatten() {
            partition.log.set_limits(limits);
        }
    }

    /// Closes and deletes this shard's logs of `topic`.
    pub async fn delete_partitions(&self, topic: &str) -> Result<(), StorageError> {
        self.delete_partitions_in(topic, 0..i32::MAX).await
    }

    /// Closes and deletes this shard's logs of partitions `range` of `topic` (each through
    /// `DELETED_DIR`, see `Log::delete`). Tries every one; returns the first error.
    pub async fn delete_partitions_in(
        &self,
        topic: &str,
        range: std::ops::Range<i32>,
    ) -> Result<(), StorageError> {
        let removed: Vec<Rc<Partition>> = {
            let mut table = self.partitions.borrow_mut();
            let Some(slots) = table.get_mut(topic) else {
                return Ok(());
            };
            let removed = slots
                .iter_mut()
                .filter(|slot| slot.as_ref().is_some_and(|p| range.contains(&p.index)))
                .filter_map(Option::take)
                .collect();
            if slots.iter().all(Option::is_none) {
                table.remove(topic);
            }
            removed
        };
        let mut first_error = None;
        for partition in removed {
            let dir = self.config.partition_dir(&partition.topic, partition.index);
            let dir_name = dir.file_name().unwrap_or_default().to_string_lossy();
            let trash = self
                .config
                .data_dir
                .join(DELETED_DIR)
                .join(format!("{dir_name}.{}", partition.topic_id.simple()));
            if let Err(error) = partition.log.delete(&trash).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// In a cluster, a failed log's replica leaves the ISR and hands its leadership over
    /// (`NodeCall::ReplicaFailed`) before it is reopened: clients then write to a working
    /// replica instead of getting storage errors here until the disk recovers. Once
    /// reopened, it catches up and rejoins the ISR as any follower does. Bounded by the
    /// cluster call's own timeout; a lost report is made again at the next reopen.
    async fn report_failed_replica(self: &Rc<Self>, partition: &Partition) {
        if self.config.quorum.is_none() || !partition.involves(self.config.node_id) {
            return;
        }
        let (topic_id, index) = (partition.topic_id, partition.index);
        let reported = self
            .control_plane
            .report_failed_replica(topic_id, index)
            .await;
        if let Err(error) = reported {
            tracing::warn!(topic = %partition.topic, partition = index, %error, "reporting a failed replica failed");
        }
    }

    /// Closes every log (final sync). Called once, at shutdown.
    pub async fn close_all(&self) {
        let loaded = std::mem::take(&mut *self.groups.borrow_mut());
        for loaded in loaded.into_values() {
            loaded.coordinator.close().await;
        }
        let table = std::mem::take(&mut *self.partitions.borrow_mut());
        for partition in table.into_values().flatten().flatten() {
            if let Err(error) = partition.log.close().await {
                tracing::error!(log = %partition.log.name(), %error, "closing log failed");
            }
        }
    }

    /// The topic's `min.insync.replicas` (its override, or the broker default).
    pub fn min_insync_replicas(&self, topic: &str) -> i64 {
        self.metadata()
            .topic(topic)
            .and_then(|t| t.configs.get("min.insync.replicas"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(self.config.topic_defaults.min_insync_replicas)
    }

    /// The shards that own at least one partition of `topic`.
    pub fn owners(&self, topic: &Topic) -> Vec<usize> {
        let mut owners: Vec<usize> = (0..topic.partitions.min(self.count as i32))
            .map(|p| self.owner_of(topic, p))
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }
}
