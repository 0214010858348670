//! The group coordinator of one shard: the groups placed on it, their state machines, the
//! answers that wait for other members, and the committed-offsets log.
//!
//! **Placement.** A single broker: group `g` lives on shard `fnv1a64(g) mod shards`
//! (`runtime::placement::group_shard`), whose own local log holds its offsets. A cluster:
//! `g` lives in partition `fnv1a64(g) mod partitions` of the replicated `__consumer_offsets`
//! topic, coordinated by that partition's leader on the shard owning the partition (one
//! coordinator per led partition, loaded from its log when leadership arrives and unloaded
//! when it goes: `shard/groups.rs`). Either way the connection's shard forwards every group
//! request there by message.
//!
//! **Replicated offsets.** A cluster's coordinator writes with the partition's leader epoch
//! and counts a record only once every in-sync replica holds it ([`LeaderLog`]), so a commit
//! that was answered survives the loss of the coordinator's broker: the next leader replays
//! the same records.
//!
//! JoinGroup and SyncGroup answers that depend on other members wait on a oneshot, fed by
//! the state machine's completions. A ticker applies session and rebalance timeouts and,
//! every `offsets_retention_check_interval`, expires offsets (Kafka's
//! `offsets.retention.minutes`) and forgets empty groups that have none left.
//!
//! **Groups are created only by a join that succeeds, or a standalone commit.** A JoinGroup
//! refused by the state machine leaves no group behind, so refused joins cannot fill the
//! shard with groups.
//!
//! **The offsets log and the table agree.** Commits and removals append their records, wait
//! for them to be durable, then apply them to the in-memory table. Compaction snapshots the
//! table and deletes every segment before the snapshot, so a record appended but not yet
//! applied when the snapshot is taken would be lost from the log (and come back wrong after
//! a restart). `gate` orders them: appending and applying hold it shared, compaction and
//! expiry hold it exclusively.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;

use super::offsets::{self, Committed, Expiry, OffsetRecord, OffsetStore};
use super::state::{
    Completion, Group, GroupError, GroupLimits, GroupState, JoinOutcome, JoinRequest, JoinResult,
    MemberView, SyncOutcome,
};
use crate::protocol::consumer;
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

/// A coordinator's offsets log when it is a replicated partition this broker leads (a
/// cluster): leadership decides whether the coordinator may still write, and a record
/// counts once every in-sync replica holds it.
pub trait LeaderLog {
    /// The leader epoch appends carry; `None` once this broker no longer leads at the
    /// epoch the coordinator was loaded for.
    fn leader_epoch(&self) -> Option<i32>;
    /// Waits until the records below `end_offset` are durable here and held by every
    /// in-sync replica (the high watermark passed them).
    fn committed(
        &self,
        end_offset: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), StorageError>> + '_>>;
}

pub struct GroupCoordinator {
    limits: GroupLimits,
    groups: RefCell<HashMap<String, Group>>,
    join_waiters: RefCell<HashMap<(String, String), Waiter<JoinResult>>>,
    sync_waiters: RefCell<HashMap<(String, String), Waiter<Bytes>>>,
    offsets: RefCell<OffsetStore>,
    log: Rc<Log>,
    /// A cluster's replicated partition (the log belongs to the partition, not to this
    /// coordinator); `None`: the shard's own local log.
    replicated: Option<Rc<dyn LeaderLog>>,
    /// Shared while records are appended and applied; exclusive for compaction and expiry,
    /// which must see every appended record applied (see the module comment).
    gate: async_lock::RwLock<()>,
    stopped: Cell<bool>,
    /// Tests: the next commit or removal stops between its append and its apply.
    #[cfg(test)]
    pause_before_apply: RefCell<Option<PausePoint>>,
}

/// Where a paused commit or removal tells the test it arrived, and waits to be released.
#[cfg(test)]
struct PausePoint {
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
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
        Self::load(log, None, limits).await
    }

    /// Replays `log` (the local log, or the `__consumer_offsets` partition this broker
    /// now leads) and starts the timeout ticker.
    pub async fn load(
        log: Rc<Log>,
        replicated: Option<Rc<dyn LeaderLog>>,
        limits: GroupLimits,
    ) -> Result<Rc<GroupCoordinator>, StorageError> {
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
        tracing::info!(log = %log.name(), offsets = store.live(), "committed offsets loaded");
        let coordinator = Rc::new(GroupCoordinator {
            limits,
            groups: RefCell::new(HashMap::new()),
            join_waiters: RefCell::new(HashMap::new()),
            sync_waiters: RefCell::new(HashMap::new()),
            offsets: RefCell::new(store),
            log,
            replicated,
            gate: async_lock::RwLock::new(()),
            stopped: Cell::new(false),
            #[cfg(test)]
            pause_before_apply: RefCell::new(None),
        });
        crate::runtime::spawn(ticker(Rc::downgrade(&coordinator))).detach();
        Ok(coordinator)
    }

    pub async fn close(&self) {
        self.stopped.set(true);
        self.fail_waiters();
        if self.replicated.is_some() {
            // The partition owns its log.
            return;
        }
        if let Err(error) = self.log.close().await {
            tracing::error!(%error, "closing the offsets log failed");
        }
    }

    /// Leadership of the partition moved away: every waiting join and sync, and every
    /// later call, gets NOT_COORDINATOR (the client finds the new coordinator). Returns
    /// once no write of this coordinator is in flight, so a coordinator loaded next from
    /// the same log sees all of them.
    pub async fn unload(&self) {
        self.stopped.set(true);
        self.fail_waiters();
        let _no_write_in_flight = self.gate.write().await;
    }

    fn fail_waiters(&self) {
        for (_, waiter) in self.join_waiters.borrow_mut().drain() {
            let _ = waiter.send(Err(GroupError::NotCoordinator));
        }
        for (_, waiter) in self.sync_waiters.borrow_mut().drain() {
            let _ = waiter.send(Err(GroupError::NotCoordinator));
        }
    }

    /// Refuses calls once unloaded.
    fn check_serving(&self) -> Result<(), GroupError> {
        if self.stopped.get() {
            return Err(GroupError::NotCoordinator);
        }
        Ok(())
    }

    fn with_group<T>(&self, group_id: &str, act: impl FnOnce(&mut Group) -> T) -> T {
        let (result, completions) = self.act_on(group_id, act);
        self.deliver(group_id, completions);
        result
    }

    /// Whether one more group fits this shard's share of `--groups-max`.
    fn may_create_group(&self) -> bool {
        self.groups.borrow().len() < self.limits.groups_max_per_shard
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
        if let Err(error) = self.check_serving() {
            return JoinAnswer::Failed(error);
        }
        let now = crate::runtime::time::now();
        let created = !self.groups.borrow().contains_key(group_id);
        if created && !self.may_create_group() {
            return JoinAnswer::Failed(GroupError::TooManyGroups);
        }
        let (outcome, completions) =
            self.act_on(group_id, |group| group.join(now, request, &self.limits));
        if created && matches!(outcome, JoinOutcome::Done(Err(_))) {
            // As Kafka: a refused join (bad session timeout, unknown member id on a group
            // that does not exist, ...) creates nothing.
            self.forget_if_unused(group_id);
        }
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
        self.check_serving()?;
        if !self.groups.borrow().contains_key(group_id) {
            return Err(GroupError::UnknownMemberId);
        }
        let now = crate::runtime::time::now();
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
        self.check_serving()?;
        if !self.groups.borrow().contains_key(group_id) {
            return Err(GroupError::UnknownMemberId);
        }
        let now = crate::runtime::time::now();
        self.with_group(group_id, |group| {
            group.heartbeat(now, member_id, instance_id, generation)
        })
    }

    pub fn leave(
        &self,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Vec<Result<(), GroupError>> {
        if let Err(error) = self.check_serving() {
            return members.iter().map(|_| Err(error)).collect();
        }
        if !self.groups.borrow().contains_key(group_id) {
            return members
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect();
        }
        let now = crate::runtime::time::now();
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
        self.check_serving().map_err(CommitError::Group)?;
        let allowed = match self.groups.borrow().get(group_id) {
            Some(group) => group.check_commit(member_id, instance_id, generation),
            None if generation < 0 && member_id.is_empty() && !self.may_create_group() => {
                Err(GroupError::TooManyGroups)
            }
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
        {
            let _shared = self.gate.read().await;
            self.persist(&records)
                .await
                .map_err(|e| CommitError::Storage(e.to_string()))?;
            self.pause_before_apply().await;
            self.groups
                .borrow_mut()
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, &self.limits));
            self.apply(records);
        }
        self.compact_if_wanted().await;
        Ok(())
    }

    fn apply(&self, records: Vec<OffsetRecord>) {
        let mut store = self.offsets.borrow_mut();
        for record in records {
            store.apply(record);
        }
    }

    /// Tests: stops the next commit or removal between its append and its apply; answers
    /// (arrived, release).
    #[cfg(test)]
    pub(crate) fn pause_next_apply(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached, arrived) = oneshot::channel();
        let (release, released) = oneshot::channel();
        *self.pause_before_apply.borrow_mut() = Some(PausePoint {
            reached,
            release: released,
        });
        (arrived, release)
    }

    #[cfg(test)]
    pub(crate) fn set_compaction_slack_records(&self, records: usize) {
        self.offsets
            .borrow_mut()
            .set_compaction_slack_records(records);
    }

    async fn pause_before_apply(&self) {
        #[cfg(test)]
        {
            let point = self.pause_before_apply.borrow_mut().take();
            if let Some(point) = point {
                let _ = point.reached.send(());
                let _ = point.release.await;
            }
        }
    }

    async fn compact_if_wanted(&self) {
        if !self.offsets.borrow().wants_compaction() {
            return;
        }
        if let Err(error) = self.compact().await {
            tracing::warn!(%error, "compacting the offsets log failed; will retry on a later commit");
        }
    }

    /// Appends `records` and waits until they count: durable here (`fdatasync` per the
    /// flush policy) and, replicated, held by every in-sync replica.
    async fn persist(&self, records: &[OffsetRecord]) -> Result<(), StorageError> {
        let mut last_end = self.log.next_offset();
        for chunk in records.chunks(RECORDS_PER_BATCH_MAX) {
            let leader_epoch = match &self.replicated {
                None => 0,
                Some(leader) if !self.stopped.get() => {
                    leader.leader_epoch().ok_or(StorageError::LeadershipLost)?
                }
                Some(_) => return Err(StorageError::LeadershipLost),
            };
            let values: Vec<Vec<u8>> = chunk.iter().map(offsets::encode).collect();
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let batch = crate::record_batch::build_batch(&refs, crate::runtime::time::now_ms());
            let appended = self.log.append(Bytes::from(batch), leader_epoch).await?;
            last_end = appended.last_offset + 1;
        }
        match &self.replicated {
            None => self.log.wait_durable(last_end).await,
            Some(leader) => leader.committed(last_end).await,
        }
    }

    /// Rolls the segment, appends every live offset, then moves the log start to that
    /// snapshot: every older segment is deleted whole. Exclusive: no record may be appended
    /// but not yet applied meanwhile, or the snapshot would miss it while its segment goes.
    async fn compact(&self) -> Result<(), StorageError> {
        let _exclusive = self.gate.write().await;
        // Another compaction may have run while this one waited.
        if !self.offsets.borrow().wants_compaction() {
            return Ok(());
        }
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

    /// Removes committed offsets (OffsetDelete, DeleteGroups); partitions without one need
    /// no record.
    async fn remove_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), StorageError> {
        {
            let _shared = self.gate.read().await;
            let records: Vec<OffsetRecord> = {
                let store = self.offsets.borrow();
                partitions
                    .into_iter()
                    .filter(|(topic, partition)| store.get(group_id, topic, *partition).is_some())
                    .map(|(topic, partition)| OffsetRecord {
                        group: group_id.to_string(),
                        topic,
                        partition,
                        committed: None,
                    })
                    .collect()
            };
            if records.is_empty() {
                return Ok(());
            }
            self.persist(&records).await?;
            self.pause_before_apply().await;
            self.apply(records);
        }
        self.compact_if_wanted().await;
        Ok(())
    }

    /// OffsetDelete: refused for topics the group's active members subscribe to. Per
    /// partition, in request order: deleted (or had nothing to delete), or refused.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<bool>, DeleteError> {
        let subscribed: HashSet<String> = match self.groups.borrow().get(group_id) {
            Some(group) => group
                .members()
                .iter()
                .flat_map(|m| consumer::subscribed_topics(&m.metadata).unwrap_or_default())
                .collect(),
            None if !self.offsets.borrow().has_group(group_id) => {
                return Err(DeleteError::NotFound)
            }
            None => HashSet::new(),
        };
        let allowed: Vec<bool> = partitions
            .iter()
            .map(|(topic, _)| !subscribed.contains(topic))
            .collect();
        let removed = partitions
            .into_iter()
            .zip(&allowed)
            .filter(|(_, allowed)| **allowed)
            .map(|(partition, _)| partition)
            .collect();
        self.remove_offsets(group_id, removed)
            .await
            .map_err(|e| DeleteError::Storage(e.to_string()))?;
        Ok(allowed)
    }

    pub async fn delete_group(&self, group_id: &str) -> Result<(), DeleteError> {
        match self.groups.borrow().get(group_id) {
            Some(group) if !group.is_empty() => return Err(DeleteError::NotEmpty),
            None if !self.offsets.borrow().has_group(group_id) => {
                return Err(DeleteError::NotFound)
            }
            _ => {}
        }
        let known_offsets: Vec<(String, i32)> = self
            .offsets
            .borrow()
            .of_group(group_id)
            .into_iter()
            .map(|(t, p, _)| (t, p))
            .collect();
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
            None if self.offsets.borrow().has_group(group_id) => Some(GroupView {
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

    /// Applies timeouts. A group's `tick` returns at once before its earliest deadline, so
    /// this costs one check per group; completions are collected, then delivered.
    fn tick(&self) {
        let now = crate::runtime::time::now();
        let mut completed = Vec::new();
        for (id, group) in self.groups.borrow_mut().iter_mut() {
            group.tick(now);
            let completions = group.take_completions();
            if !completions.is_empty() {
                completed.push((id.clone(), completions));
            }
        }
        for (id, completions) in completed {
            self.deliver(&id, completions);
        }
    }

    /// Removes `group_id` if nothing is left of it: no members, no pending members, no
    /// offsets (Kafka's transition to Dead).
    fn forget_if_unused(&self, group_id: &str) {
        let mut groups = self.groups.borrow_mut();
        let unused = groups
            .get(group_id)
            .is_some_and(|g| g.state() == GroupState::Empty && g.is_empty());
        if unused && !self.offsets.borrow().has_group(group_id) {
            groups.remove(group_id);
        }
    }

    /// Expires offsets whose retention has passed (`offsets.retention.minutes`), writing
    /// their removals, then forgets the empty groups left without offsets. Exclusive (the
    /// gate), so no commit lands between the decision and its removal records. `now` and
    /// `now_ms` are the same moment on the monotonic clock (group state) and the wall clock
    /// (commit timestamps).
    pub async fn expire(&self, now: Instant, now_ms: i64) -> Result<usize, StorageError> {
        let removed = {
            let _exclusive = self.gate.write().await;
            let retention_ms =
                i64::try_from(self.limits.offsets_retention.as_millis()).unwrap_or(i64::MAX);
            let expired = {
                let groups = self.groups.borrow();
                self.offsets.borrow().expired(now_ms, retention_ms, |id| {
                    expiry_policy(groups.get(id), now, now_ms)
                })
            };
            let records: Vec<OffsetRecord> = expired
                .into_iter()
                .map(|(group, topic, partition)| OffsetRecord {
                    group,
                    topic,
                    partition,
                    committed: None,
                })
                .collect();
            let removed = records.len();
            if !records.is_empty() {
                self.persist(&records).await?;
                self.apply(records);
            }
            let unused: Vec<String> = self
                .groups
                .borrow()
                .iter()
                .filter(|(_, g)| g.state() == GroupState::Empty && g.is_empty())
                .map(|(id, _)| id.clone())
                .collect();
            for id in unused {
                self.forget_if_unused(&id);
            }
            removed
        };
        if removed > 0 {
            tracing::info!(removed, "expired committed offsets");
        }
        self.compact_if_wanted().await;
        Ok(removed)
    }
}

/// How a group's offsets expire (Kafka's `GroupMetadata.removeExpiredOffsets`).
fn expiry_policy(group: Option<&Group>, now: Instant, now_ms: i64) -> Expiry {
    // Known only by its offsets (after a restart: membership is not persisted).
    let Some(group) = group else {
        return Expiry::ByCommit;
    };
    match (group.protocol_type(), group.state()) {
        // A standalone committer: the group never had members.
        (None, _) => Expiry::ByCommit,
        (Some(_), GroupState::Empty) => match group.empty_since() {
            Some(since) => {
                let empty_ms = i64::try_from(now.saturating_duration_since(since).as_millis())
                    .unwrap_or(i64::MAX);
                Expiry::EmptySince(now_ms.saturating_sub(empty_ms))
            }
            None => Expiry::ByCommit,
        },
        (Some("consumer"), GroupState::Stable) => {
            let mut topics = HashSet::new();
            for member in group.members() {
                // A subscription that does not parse: keep everything, as Kafka.
                let Some(subscribed) = consumer::subscribed_topics(&member.metadata) else {
                    return Expiry::Keep;
                };
                topics.extend(subscribed);
            }
            Expiry::Unsubscribed(topics)
        }
        _ => Expiry::Keep,
    }
}

async fn ticker(coordinator: Weak<GroupCoordinator>) {
    // The first expiry waits one interval: after a restart, consumer groups are known only by
    // their offsets until their members rejoin, and their subscribed topics are kept then.
    let mut next_expiry = match coordinator.upgrade() {
        Some(coordinator) => {
            crate::runtime::time::now() + coordinator.limits.offsets_retention_check_interval
        }
        None => return,
    };
    loop {
        crate::runtime::time::sleep(TICK).await;
        let Some(coordinator) = coordinator.upgrade() else {
            return;
        };
        if coordinator.stopped.get() {
            return;
        }
        coordinator.tick();
        if crate::runtime::time::now() >= next_expiry {
            next_expiry =
                crate::runtime::time::now() + coordinator.limits.offsets_retention_check_interval;
            let expired = coordinator
                .expire(crate::runtime::time::now(), crate::runtime::time::now_ms())
                .await;
            if let Err(error) = expired {
                tracing::warn!(%error, "expiring committed offsets failed; will retry");
            }
        }
    }
}
