//! The group coordinator of one shard: the groups placed on it, their state machines, the
//! answers that wait for other members, and the committed-offsets log.
//!
//! **Placement.** Group `g` lives on shard `fnv1a64(g) mod shards`
//! (`runtime::placement::group_shard`); the connection's shard forwards every group request
//! there by message.
//!
//! JoinGroup and SyncGroup answers that depend on other members wait on a oneshot, fed by
//! the state machine's completions. A ticker applies session and rebalance timeouts.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;

use super::offsets::{self, Committed, OffsetRecord, OffsetStore};
use super::state::{
    Completion, Group, GroupError, GroupLimits, GroupState, JoinOutcome, JoinRequest, JoinResult,
    MemberView, SyncOutcome,
};
use crate::storage::{Log, LogConfig, ShardStorage, StorageError};

/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(100);
/// Records per batch in the offsets log (a snapshot is written in several batches).
const RECORDS_PER_BATCH_MAX: usize = 500;

/// A join's answer.
#[derive(Debug, Clone)]
pub enum JoinAnswer {
    Joined(JoinResult),
    MemberIdRequired(String),
    Failed(GroupError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    Group(GroupError),
    MetadataTooLarge,
    Storage(String),
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteError {
    NotFound,
    NotEmpty,
    Storage(String),
}

type Waiter<T> = oneshot::Sender<Result<T, GroupError>>;

pub struct GroupCoordinator {
    limits: GroupLimits,
    groups: RefCell<HashMap<String, Group>>,
    join_waiters: RefCell<HashMap<(String, String), Waiter<JoinResult>>>,
    sync_waiters: RefCell<HashMap<(String, String), Waiter<Bytes>>>,
    offsets: RefCell<OffsetStore>,
    log: Rc<Log>,
    stopped: Cell<bool>,
}

impl GroupCoordinator {
    /// Opens this shard's offsets log, replays it, and starts the timeout ticker.
    pub async fn open(
        storage: Rc<ShardStorage>,
        dir: PathBuf,
        limits: GroupLimits,
    ) -> Result<Rc<GroupCoordinator>, StorageError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let config = LogConfig {
            segment_bytes_max: 64 << 20,
            retention_age_max: None,
            ..LogConfig::default()
        };
        let log = Log::open(storage, dir, name, config).await?;
        let mut store = OffsetStore::default();
        let mut offset = log.log_start_offset();
        while offset < log.next_offset() {
            let read = log.read(offset, 1 << 20, i64::MAX, true).await?;
            if read.batches.is_empty() {
                break;
            }
            for batch in read.batches {
                if let Err(error) =
                    offsets::replay_batch(&batch, log.config().record_limits(), &mut store)
                {
                    tracing::warn!(%error, "skipping an undecodable offsets batch");
                }
            }
            offset = read.next_offset;
        }
        tracing::info!(offsets = store.live(), "committed offsets loaded");
        let coordinator = Rc::new(GroupCoordinator {
            limits,
            groups: RefCell::new(HashMap::new()),
            join_waiters: RefCell::new(HashMap::new()),
            sync_waiters: RefCell::new(HashMap::new()),
            offsets: RefCell::new(store),
            log,
            stopped: Cell::new(false),
        });
        glommio::spawn_local(ticker(Rc::downgrade(&coordinator))).detach();
        Ok(coordinator)
    }

    pub async fn close(&self) {
        self.stopped.set(true);
        if let Err(error) = self.log.close().await {
            tracing::error!(%error, "closing the offsets log failed");
        }
    }

    fn with_group<T>(&self, group_id: &str, act: impl FnOnce(&mut Group) -> T) -> T {
        let (result, completions) = self.act_on(group_id, act);
        self.deliver(group_id, completions);
        result
    }

    /// Runs `act` on the group (created if new) and returns the completions it produced,
    /// undelivered: a caller that will wait registers its waiter first.
    fn act_on<T>(&self, group_id: &str, act: impl FnOnce(&mut Group) -> T) -> (T, Vec<Completion>) {
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, &self.limits));
        let result = act(group);
        (result, group.take_completions())
    }

    fn deliver(&self, group_id: &str, completions: Vec<Completion>) {
        for completion in completions {
            match completion {
                Completion::Join { member_id, result } => {
                    if let Some(waiter) = self
                        .join_waiters
                        .borrow_mut()
                        .remove(&(group_id.to_string(), member_id))
                    {
                        let _ = waiter.send(result);
                    }
                }
                Completion::Sync { member_id, result } => {
                    if let Some(waiter) = self
                        .sync_waiters
                        .borrow_mut()
                        .remove(&(group_id.to_string(), member_id))
                    {
                        let _ = waiter.send(result);
                    }
                }
            }
        }
    }

    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinAnswer {
        let now = Instant::now();
        let (outcome, completions) =
            self.act_on(group_id, |group| group.join(now, request, &self.limits));
        match outcome {
            JoinOutcome::Done(result) => {
                self.deliver(group_id, completions);
                match result {
                    Ok(result) => JoinAnswer::Joined(result),
                    Err(error) => JoinAnswer::Failed(error),
                }
            }
            JoinOutcome::MemberIdRequired(member_id) => {
                self.deliver(group_id, completions);
                JoinAnswer::MemberIdRequired(member_id)
            }
            JoinOutcome::Pending { member_id } => {
                let (sender, receiver) = oneshot::channel();
                let replaced = self
                    .join_waiters
                    .borrow_mut()
                    .insert((group_id.to_string(), member_id.clone()), sender);
                if let Some(previous) = replaced {
                    let _ = previous.send(Err(GroupError::RebalanceInProgress));
                }
                // Registered first: this join may itself have completed the rebalance.
                self.deliver(group_id, completions);
                match receiver.await {
                    Ok(Ok(result)) => JoinAnswer::Joined(result),
                    Ok(Err(error)) => JoinAnswer::Failed(error),
                    Err(_) => JoinAnswer::Failed(GroupError::RebalanceInProgress),
                }
            }
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes, GroupError> {
        if !self.groups.borrow().contains_key(group_id) {
            return Err(GroupError::UnknownMemberId);
        }
        let now = Instant::now();
        let (outcome, completions) = self.act_on(group_id, |group| {
            group.sync(now, member_id, instance_id, generation, assignments)
        });
        match outcome {
            SyncOutcome::Done(result) => {
                self.deliver(group_id, completions);
                result
            }
            SyncOutcome::Pending => {
                let (sender, receiver) = oneshot::channel();
                if let Some(previous) = self
                    .sync_waiters
                    .borrow_mut()
                    .insert((group_id.to_string(), member_id.to_string()), sender)
                {
                    let _ = previous.send(Err(GroupError::RebalanceInProgress));
                }
                self.deliver(group_id, completions);
                receiver
                    .await
                    .unwrap_or(Err(GroupError::RebalanceInProgress))
            }
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if !self.groups.borrow().contains_key(group_id) {
            return Err(GroupError::UnknownMemberId);
        }
        let now = Instant::now();
        self.with_group(group_id, |group| {
            group.heartbeat(now, member_id, instance_id, generation)
        })
    }

    pub fn leave(
        &self,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Vec<Result<(), GroupError>> {
        if !self.groups.borrow().contains_key(group_id) {
            return members
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect();
        }
        let now = Instant::now();
        self.with_group(group_id, |group| {
            members
                .iter()
                .map(|(member_id, instance_id)| group.leave(now, member_id, instance_id.as_deref()))
                .collect()
        })
    }

    /// Validates the member, then persists the offsets (`fdatasync` per the flush policy)
    /// before answering. Each partition's outcome, in request order.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        entries: Vec<(String, i32, Committed)>,
    ) -> Result<(), CommitError> {
        let allowed = match self.groups.borrow().get(group_id) {
            Some(group) => group.check_commit(member_id, instance_id, generation),
            None if generation < 0 && member_id.is_empty() => Ok(()),
            None => Err(GroupError::UnknownMemberId),
        };
        allowed.map_err(CommitError::Group)?;
        if entries.iter().any(|(_, _, c)| {
            c.metadata
                .as_ref()
                .is_some_and(|m| m.len() > offsets::METADATA_BYTES_MAX)
        }) {
            return Err(CommitError::MetadataTooLarge);
        }
        let records: Vec<OffsetRecord> = entries
            .into_iter()
            .map(|(topic, partition, committed)| OffsetRecord {
                group: group_id.to_string(),
                topic,
                partition,
                committed: Some(committed),
            })
            .collect();
        self.persist(&records)
            .await
            .map_err(|e| CommitError::Storage(e.to_string()))?;
        self.groups
            .borrow_mut()
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, &self.limits));
        let compact = {
            let mut store = self.offsets.borrow_mut();
            for record in records {
                store.apply(record);
            }
            store.wants_compaction()
        };
        if compact {
            if let Err(error) = self.compact().await {
                tracing::warn!(%error, "compacting the offsets log failed; will retry on a later commit");
            }
        }
        Ok(())
    }

    async fn persist(&self, records: &[OffsetRecord]) -> Result<(), StorageError> {
        let mut last_end = self.log.next_offset();
        for chunk in records.chunks(RECORDS_PER_BATCH_MAX) {
            let values: Vec<Vec<u8>> = chunk.iter().map(offsets::encode).collect();
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let batch = crate::record_batch::build_batch(&refs, crate::runtime::clock::now_ms());
            let appended = self.log.append(Bytes::from(batch), 0).await?;
            last_end = appended.last_offset + 1;
        }
        self.log.wait_durable(last_end).await
    }

    /// Rolls the segment, appends every live offset, then moves the log start to that
    /// snapshot: every older segment is deleted whole.
    async fn compact(&self) -> Result<(), StorageError> {
        self.log.roll_segment().await?;
        let snapshot = self.offsets.borrow_mut().snapshot();
        let start = self.log.next_offset();
        self.persist(&snapshot).await?;
        self.log.delete_before(start).await?;
        Ok(())
    }

    /// Committed offsets of `group`, for the given partitions or all of them.
    pub fn fetch(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, i32)>>,
    ) -> Vec<(String, i32, Option<Committed>)> {
        let store = self.offsets.borrow();
        match wanted {
            Some(partitions) => partitions
                .into_iter()
                .map(|(topic, partition)| {
                    let committed = store.get(group_id, &topic, partition).cloned();
                    (topic, partition, committed)
                })
                .collect(),
            None => store
                .of_group(group_id)
                .into_iter()
                .map(|(t, p, c)| (t, p, Some(c)))
                .collect(),
        }
    }

    /// Removes committed offsets (OffsetDelete, DeleteGroups).
    async fn remove_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), StorageError> {
        let records: Vec<OffsetRecord> = partitions
            .into_iter()
            .map(|(topic, partition)| OffsetRecord {
                group: group_id.to_string(),
                topic,
                partition,
                committed: None,
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        self.persist(&records).await?;
        let mut store = self.offsets.borrow_mut();
        for record in records {
            store.apply(record);
        }
        Ok(())
    }

    /// OffsetDelete: refused for topics the group's active members subscribe to.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32, bool)>, DeleteError> {
        let subscribed: Vec<String> = match self.groups.borrow().get(group_id) {
            Some(group) => group
                .members()
                .iter()
                .flat_map(|m| subscribed_topics(&m.metadata))
                .collect(),
            None if self.offsets.borrow().of_group(group_id).is_empty() => {
                return Err(DeleteError::NotFound)
            }
            None => Vec::new(),
        };
        let (refused, allowed): (Vec<_>, Vec<_>) = partitions
            .into_iter()
            .partition(|(topic, _)| subscribed.contains(topic));
        self.remove_offsets(group_id, allowed.clone())
            .await
            .map_err(|e| DeleteError::Storage(e.to_string()))?;
        Ok(allowed
            .into_iter()
            .map(|(t, p)| (t, p, true))
            .chain(refused.into_iter().map(|(t, p)| (t, p, false)))
            .collect())
    }

    pub async fn delete_group(&self, group_id: &str) -> Result<(), DeleteError> {
        let known_offsets: Vec<(String, i32)> = self
            .offsets
            .borrow()
            .of_group(group_id)
            .into_iter()
            .map(|(t, p, _)| (t, p))
            .collect();
        match self.groups.borrow().get(group_id) {
            Some(group) if !group.is_empty() => return Err(DeleteError::NotEmpty),
            None if known_offsets.is_empty() => return Err(DeleteError::NotFound),
            _ => {}
        }
        self.remove_offsets(group_id, known_offsets)
            .await
            .map_err(|e| DeleteError::Storage(e.to_string()))?;
        self.groups.borrow_mut().remove(group_id);
        Ok(())
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.groups.borrow();
        match groups.get(group_id) {
            Some(group) => Some(GroupView {
                state: group.state().name(),
                protocol_type: group.protocol_type().unwrap_or_default().to_string(),
                protocol: group.protocol().unwrap_or_default().to_string(),
                members: group.members(),
            }),
            None if !self.offsets.borrow().of_group(group_id).is_empty() => Some(GroupView {
                state: GroupState::Empty.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            }),
            None => None,
        }
    }

    /// Every group this shard knows: (group id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups = self.groups.borrow();
        let mut listed: Vec<(String, String, &'static str)> = groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type().unwrap_or("consumer").to_string(),
                    g.state().name(),
                )
            })
            .collect();
        for id in self.offsets.borrow().groups() {
            if !groups.contains_key(&id) {
                listed.push((id, "consumer".to_string(), GroupState::Empty.name()));
            }
        }
        listed
    }

    fn tick(&self) {
        let now = Instant::now();
        let ids: Vec<String> = self.groups.borrow().keys().cloned().collect();
        for id in ids {
            self.with_group(&id, |group| group.tick(now));
        }
    }
}

/// The topics a consumer's subscription metadata names (ConsumerProtocolSubscription).
fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    use kafka_protocol::protocol::Decodable;
    let mut buffer = metadata.clone();
    if buffer.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buffer[0], buffer[1]]);
    let _ = bytes::Buf::get_i16(&mut buffer);
    kafka_protocol::messages::ConsumerProtocolSubscription::decode(&mut buffer, version.clamp(0, 3))
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

async fn ticker(coordinator: Weak<GroupCoordinator>) {
    loop {
        glommio::timer::sleep(TICK).await;
        let Some(coordinator) = coordinator.upgrade() else {
            return;
        };
        if coordinator.stopped.get() {
            return;
        }
        coordinator.tick();
    }
}
