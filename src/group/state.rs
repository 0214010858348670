//! The classic consumer-group state machine of one group (Kafka's `GroupMetadata` and the
//! member logic of `GroupCoordinator`). Sans-I/O and clock-free: every event takes `now`,
//! and responses that must wait for other members (JoinGroup, SyncGroup) come out later as
//! [`Completion`]s, so tests drive it with a fake clock.
//!
//! States: Empty -> PreparingRebalance -> CompletingRebalance -> Stable, and back to
//! PreparingRebalance whenever membership or subscriptions change.
//! - Join: new dynamic members first get a member id and must join again with it
//!   (KIP-394, `MEMBER_ID_REQUIRED`). A rebalance completes when every member has rejoined
//!   (after the initial delay for a new group), or at the rebalance timeout, when members
//!   that did not rejoin are removed. Completion bumps the generation, chooses the protocol
//!   all members support (by vote), keeps or elects the leader, and answers every join; the
//!   leader's answer lists the members and their metadata.
//! - Sync: the leader's assignments move the group to Stable and answer every member.
//! - Heartbeats keep members alive; a member silent for its session timeout is removed.
//! - Static members (`group.instance.id`) rejoining with a new member id replace their old
//!   id without a rebalance; the old id is fenced (`FENCED_INSTANCE_ID`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Member-level failures, each one a Kafka error code at the server edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("rebalance in progress")]
    RebalanceInProgress,
    #[error("no protocol common to every member, or another protocol type")]
    InconsistentGroupProtocol,
    #[error("session timeout outside the broker's bounds")]
    InvalidSessionTimeout,
    #[error("this static member was replaced by a newer instance")]
    FencedInstanceId,
    #[error("the group is full")]
    GroupMaxSizeReached,
    #[error("this broker already keeps its limit of consumer groups (--groups-max)")]
    TooManyGroups,
    /// The coordinator was unloaded (its `__consumer_offsets` partition moved to another
    /// leader) while the request was in flight.
    #[error("this broker no longer coordinates the group")]
    NotCoordinator,
    /// The principal may not use the group (its ACLs); decided before the coordinator.
    #[error("the principal may not use this group")]
    NotAuthorized,
}

/// Broker-wide bounds on groups.
#[derive(Debug, Clone)]
pub struct GroupLimits {
    pub session_timeout_min: Duration,
    pub session_timeout_max: Duration,
    /// How long a new group waits for more members before its first rebalance completes.
    pub initial_rebalance_delay: Duration,
    pub members_max: usize,
    /// Groups one coordinator (shard) keeps: its share of `--groups-max`.
    pub groups_max_per_shard: usize,
    /// How long committed offsets are kept once they may expire (`offsets.retention.minutes`):
    /// for an empty group, counted from when it became empty; for a standalone committer,
    /// or a topic no member of a stable consumer group subscribes to, from the commit.
    pub offsets_retention: Duration,
    /// How often expired offsets are looked for (`offsets.retention.check.interval.ms`).
    pub offsets_retention_check_interval: Duration,
}

impl Default for GroupLimits {
    fn default() -> Self {
        // Kafka's defaults: group.min/max.session.timeout.ms, group.initial.rebalance.delay.ms,
        // offsets.retention.minutes (7 days), offsets.retention.check.interval.ms (10 min).
        GroupLimits {
            session_timeout_min: Duration::from_secs(6),
            session_timeout_max: Duration::from_secs(1800),
            initial_rebalance_delay: Duration::from_secs(3),
            members_max: 1000,
            groups_max_per_shard: 100_000,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    /// (protocol name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// KIP-394 (JoinGroup v4+): a new member must first obtain its id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; for the leader only.
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Done(Result<JoinResult, GroupError>),
    /// KIP-394: join again with this id.
    MemberIdRequired(String),
    /// Answered by a later [`Completion::Join`].
    Pending {
        member_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    Done(Result<Bytes, GroupError>),
    /// Answered by a later [`Completion::Sync`] once the leader has synced.
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Join {
        member_id: String,
        result: Result<JoinResult, GroupError>,
    },
    Sync {
        member_id: String,
        result: Result<Bytes, GroupError>,
    },
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    assignment: Bytes,
    last_heartbeat: Instant,
    awaiting_join: bool,
    awaiting_sync: bool,
    /// Join order: the earliest member becomes leader when a leader is needed.
    joined_seq: u64,
}

impl Member {
    /// The protocol names this member supports, each once.
    fn protocol_names(&self) -> HashSet<&str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Takes a rejoining member's new settings; true if its protocols are unchanged.
    fn refresh(&mut self, now: Instant, request: JoinRequest) -> bool {
        let unchanged = self.protocols == request.protocols;
        self.protocols = request.protocols;
        self.session_timeout = request.session_timeout;
        self.rebalance_timeout = request.rebalance_timeout;
        self.client_id = request.client_id;
        self.client_host = request.client_host;
        self.last_heartbeat = now;
        unchanged
    }
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Protocol name -> how many members support it (Kafka's `supportedProtocols`), kept by
    /// `insert_member` and `take_member`, so checking a join's protocols costs the join's
    /// size, not members x protocols.
    protocol_support: HashMap<String, usize>,
    /// group.instance.id -> its current member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, valid until their deadline.
    pending_members: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    initial_delay_deadline: Option<Instant>,
    /// How long the first rebalance of an empty group waits for more members.
    initial_rebalance_delay: Duration,
    completions: Vec<Completion>,
    next_join_seq: u64,
    /// When the group last became Empty after having members (Kafka's state timestamp), for
    /// offset expiry; `None` if it never had members.
    empty_since: Option<Instant>,
    /// At or before `next_deadline()`: `tick` has nothing to do before it. Recomputed after
    /// every event that can bring a deadline closer (join, leave, tick); heartbeats and syncs
    /// only move deadlines later, so an older hint stays a safe lower bound.
    tick_hint: Option<Instant>,
}

fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(id: impl Into<String>, limits: &GroupLimits) -> Group {
        Group {
            id: id.into(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            protocol_support: HashMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_deadline: None,
            initial_rebalance_delay: limits.initial_rebalance_delay,
            completions: Vec::new(),
            next_join_seq: 0,
            empty_since: None,
            tick_hint: None,
        }
    }

    /// When the group last became Empty after having members, if it is empty now.
    pub fn empty_since(&self) -> Option<Instant> {
        self.empty_since.filter(|_| self.state == GroupState::Empty)
    }

    /// Adds (or puts back) a member and counts the protocols it supports.
    fn insert_member(&mut self, member_id: String, member: Member) {
        for name in member.protocol_names() {
            *self.protocol_support.entry(name.to_string()).or_default() += 1;
        }
        self.members.insert(member_id, member);
        debug_assert!(
            self.protocol_support
                .values()
                .all(|&supporters| supporters <= self.members.len()),
            "a protocol has more supporters than the group has members"
        );
    }

    /// Removes a member and uncounts its protocols.
    fn take_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        for name in member.protocol_names() {
            if let Some(count) = self.protocol_support.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    self.protocol_support.remove(name);
                }
            }
        }
        Some(member)
    }

    /// `protocol_support` recounted from the members: for tests.
    #[cfg(test)]
    pub fn protocol_support_matches_members(&self) -> bool {
        let mut recounted: HashMap<String, usize> = HashMap::new();
        for member in self.members.values() {
            for name in member.protocol_names() {
                *recounted.entry(name.to_string()).or_default() += 1;
            }
        }
        recounted == self.protocol_support
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    pub fn members(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|(id, member)| MemberView {
                member_id: id.clone(),
                instance_id: member.instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                metadata: self.chosen_metadata(member),
                assignment: member.assignment.clone(),
            })
            .collect()
    }

    /// Answers to waiting joins and syncs produced since the last call.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.completions)
    }

    /// The next moment `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| !m.awaiting_join)
            .map(|m| m.last_heartbeat + m.session_timeout);
        sessions
            .chain(self.pending_members.values().copied())
            .chain(self.rebalance_deadline)
            .chain(self.initial_delay_deadline)
            .min()
    }

    pub fn join(
        &mut self,
        now: Instant,
        request: JoinRequest,
        limits: &GroupLimits,
    ) -> JoinOutcome {
        let outcome = self.join_inner(now, request, limits);
        self.tick_hint = self.next_deadline();
        outcome
    }

    fn join_inner(
        &mut self,
        now: Instant,
        request: JoinRequest,
        limits: &GroupLimits,
    ) -> JoinOutcome {
        if request.session_timeout < limits.session_timeout_min
            || request.session_timeout > limits.session_timeout_max
        {
            return JoinOutcome::Done(Err(GroupError::InvalidSessionTimeout));
        }
        if !self.supports(&request) {
            return JoinOutcome::Done(Err(GroupError::InconsistentGroupProtocol));
        }
        if request.member_id.is_empty() {
            if let Some(instance_id) = request.instance_id.clone() {
                return self.join_static_new_id(now, request, instance_id, limits);
            }
            if self.members.len() + self.pending_members.len() >= limits.members_max {
                return JoinOutcome::Done(Err(GroupError::GroupMaxSizeReached));
            }
            let member_id = new_member_id(&request.client_id);
            if request.require_known_member_id {
                self.pending_members
                    .insert(member_id.clone(), now + request.session_timeout);
                return JoinOutcome::MemberIdRequired(member_id);
            }
            return self.add_and_rebalance(now, member_id, request);
        }
        if let Some(instance_id) = &request.instance_id {
            if self
                .static_members
                .get(instance_id)
                .is_some_and(|current| current != &request.member_id)
            {
                return JoinOutcome::Done(Err(GroupError::FencedInstanceId));
            }
        }
        let member_id = request.member_id.clone();
        if self.pending_members.remove(&member_id).is_some() {
            return self.add_and_rebalance(now, member_id, request);
        }
        let Some(mut member) = self.take_member(&member_id) else {
            return JoinOutcome::Done(Err(GroupError::UnknownMemberId));
        };
        let unchanged = member.refresh(now, request);
        self.insert_member(member_id.clone(), member);
        // A follower whose subscription did not change gets the current generation at once.
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        self.rejoin(now, member_id, unchanged && !is_leader)
    }

    /// A known member joined again: answer at once with the current generation if
    /// `unchanged` and the group is stable, else (re)start the rebalance and wait.
    fn rejoin(&mut self, now: Instant, member_id: String, unchanged: bool) -> JoinOutcome {
        if self.state == GroupState::Stable && unchanged {
            return JoinOutcome::Done(Ok(self.join_result(&member_id)));
        }
        if let Some(member) = self.members.get_mut(&member_id) {
            member.awaiting_join = true;
        }
        self.prepare_rebalance(now);
        self.maybe_complete_join(now);
        JoinOutcome::Pending { member_id }
    }

    /// A static member joining with no member id: a new instance of a known member takes
    /// over its place (the old id is fenced) without a rebalance if the group is stable.
    fn join_static_new_id(
        &mut self,
        now: Instant,
        request: JoinRequest,
        instance_id: String,
        limits: &GroupLimits,
    ) -> JoinOutcome {
        let member_id = new_member_id(&request.client_id);
        let Some(old_id) = self.static_members.get(&instance_id).cloned() else {
            if self.members.len() + self.pending_members.len() >= limits.members_max {
                return JoinOutcome::Done(Err(GroupError::GroupMaxSizeReached));
            }
            return self.add_and_rebalance(now, member_id, request);
        };
        let Some(mut member) = self.take_member(&old_id) else {
            self.static_members.remove(&instance_id);
            return self.add_and_rebalance(now, member_id, request);
        };
        self.answer_waits(&old_id, &member, GroupError::FencedInstanceId);
        member.awaiting_join = false;
        member.awaiting_sync = false;
        let unchanged = member.refresh(now, request);
        self.insert_member(member_id.clone(), member);
        self.static_members.insert(instance_id, member_id.clone());
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(member_id.clone());
        }
        self.rejoin(now, member_id, unchanged)
    }

    fn supports(&self, request: &JoinRequest) -> bool {
        if request.protocols.is_empty() || request.protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(request.protocol_type.as_str()) {
            return false;
        }
        // Some protocol of the request must be supported by every other member; a rejoining
        // member's own current protocols are not counted.
        let own: HashSet<&str> = self
            .members
            .get(&request.member_id)
            .map(Member::protocol_names)
            .unwrap_or_default();
        let others =
            self.members.len() - usize::from(self.members.contains_key(&request.member_id));
        request.protocols.iter().any(|(name, _)| {
            let support = self.protocol_support.get(name).copied().unwrap_or(0);
            support - usize::from(own.contains(name.as_str())) == others
        })
    }

    fn add_and_rebalance(
        &mut self,
        now: Instant,
        member_id: String,
        request: JoinRequest,
    ) -> JoinOutcome {
        if let Some(instance_id) = &request.instance_id {
            self.static_members
                .insert(instance_id.clone(), member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        self.insert_member(
            member_id.clone(),
            Member {
                instance_id: request.instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                protocols: request.protocols,
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                assignment: Bytes::new(),
                last_heartbeat: now,
                awaiting_join: true,
                awaiting_sync: false,
                joined_seq: self.next_join_seq,
            },
        );
        self.next_join_seq += 1;
        self.prepare_rebalance(now);
        self.maybe_complete_join(now);
        JoinOutcome::Pending { member_id }
    }

    pub fn sync(
        &mut self,
        now: Instant,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        if let Err(error) = self.check_member(member_id, instance_id) {
            return SyncOutcome::Done(Err(error));
        }
        if generation != self.generation {
            return SyncOutcome::Done(Err(GroupError::IllegalGeneration));
        }
        match self.state {
            GroupState::Empty => SyncOutcome::Done(Err(GroupError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                SyncOutcome::Done(Err(GroupError::RebalanceInProgress))
            }
            GroupState::Stable => SyncOutcome::Done(Ok(self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default())),
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.last_heartbeat = now;
                }
                if self.leader.as_deref() != Some(member_id) {
                    if let Some(member) = self.members.get_mut(member_id) {
                        member.awaiting_sync = true;
                    }
                    return SyncOutcome::Pending;
                }
                let assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                for (id, member) in self.members.iter_mut() {
                    member.assignment = assigned.get(id).cloned().unwrap_or_default();
                    if member.awaiting_sync && id != member_id {
                        member.awaiting_sync = false;
                        self.completions.push(Completion::Sync {
                            member_id: id.clone(),
                            result: Ok(member.assignment.clone()),
                        });
                    }
                }
                self.state = GroupState::Stable;
                SyncOutcome::Done(Ok(self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default()))
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        now: Instant,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        self.check_member(member_id, instance_id)?;
        if self.state == GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heartbeat = now;
        }
        if self.state == GroupState::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup for one member, named by member id or (static members) instance id.
    pub fn leave(
        &mut self,
        now: Instant,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let member_id = match instance_id {
            Some(instance_id) => {
                let current = self
                    .static_members
                    .get(instance_id)
                    .cloned()
                    .ok_or(GroupError::UnknownMemberId)?;
                if !member_id.is_empty() && member_id != current {
                    return Err(GroupError::FencedInstanceId);
                }
                current
            }
            None => member_id.to_string(),
        };
        if self.pending_members.remove(&member_id).is_some() {
            // The group may now complete a rebalance that waited for this id.
            self.maybe_complete_join(now);
            self.tick_hint = self.next_deadline();
            return Ok(());
        }
        if !self.members.contains_key(&member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        self.remove_member(now, &member_id);
        self.tick_hint = self.next_deadline();
        Ok(())
    }

    /// May this member commit offsets for this generation? (`generation < 0` with no member
    /// id: a consumer storing offsets without group management, only for an empty group.)
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if generation < 0 && member_id.is_empty() && self.members.is_empty() {
            return Ok(());
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Removes members whose session expired and pending ids never used, and completes a
    /// rebalance whose wait is over.
    pub fn tick(&mut self, now: Instant) {
        if self.tick_hint.is_none_or(|hint| now < hint) {
            return;
        }
        self.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.awaiting_join && m.last_heartbeat + m.session_timeout <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in expired {
            self.remove_member(now, &member_id);
        }
        self.maybe_complete_join(now);
        self.tick_hint = self.next_deadline();
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(instance_id) = instance_id {
            if let Some(current) = self.static_members.get(instance_id) {
                if current != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    fn remove_member(&mut self, now: Instant, member_id: &str) {
        let Some(member) = self.take_member(member_id) else {
            return;
        };
        if let Some(instance_id) = &member.instance_id {
            if self.static_members.get(instance_id).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance_id);
            }
        }
        self.answer_waits(member_id, &member, GroupError::UnknownMemberId);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        self.prepare_rebalance(now);
        self.maybe_complete_join(now);
    }

    /// Answers a departing member's waiting join or sync, if any, with `error`.
    fn answer_waits(&mut self, member_id: &str, member: &Member, error: GroupError) {
        if member.awaiting_join {
            self.completions.push(Completion::Join {
                member_id: member_id.into(),
                result: Err(error),
            });
        }
        if member.awaiting_sync {
            self.completions.push(Completion::Sync {
                member_id: member_id.into(),
                result: Err(error),
            });
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        if self.state == GroupState::CompletingRebalance {
            for (id, member) in self.members.iter_mut() {
                if member.awaiting_sync {
                    member.awaiting_sync = false;
                    self.completions.push(Completion::Sync {
                        member_id: id.clone(),
                        result: Err(GroupError::RebalanceInProgress),
                    });
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_deadline = None;
        if was_empty {
            self.initial_delay_deadline = Some(now + self.initial_rebalance_delay.min(timeout));
        }
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined =
            self.members.values().all(|m| m.awaiting_join) && self.pending_members.is_empty();
        let delay_over = self
            .initial_delay_deadline
            .is_none_or(|deadline| now >= deadline);
        let timed_out = self
            .rebalance_deadline
            .is_some_and(|deadline| now >= deadline);
        if !(timed_out || (all_joined && delay_over)) {
            return;
        }
        if timed_out {
            let laggards: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| !m.awaiting_join)
                .map(|(id, _)| id.clone())
                .collect();
            for member_id in laggards {
                if let Some(member) = self.take_member(&member_id) {
                    if let Some(instance_id) = member.instance_id {
                        self.static_members.remove(&instance_id);
                    }
                }
                if self.leader.as_deref() == Some(member_id.as_str()) {
                    self.leader = None;
                }
            }
            self.pending_members.clear();
        }
        self.complete_join(now);
    }

    fn complete_join(&mut self, now: Instant) {
        self.rebalance_deadline = None;
        self.initial_delay_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.empty_since = Some(now);
            // The protocol type stays, as in Kafka: an emptied consumer group is still a
            // consumer group (admin clients tell "simple" groups by an empty type).
            self.protocol = None;
            self.leader = None;
            return;
        }
        if self
            .leader
            .as_ref()
            .is_none_or(|leader| !self.members.contains_key(leader))
        {
            // The earliest member to join leads, as in Kafka.
            self.leader = self
                .members
                .iter()
                .min_by_key(|(_, member)| member.joined_seq)
                .map(|(id, _)| id.clone());
        }
        debug_assert!(
            self.leader
                .as_ref()
                .is_some_and(|leader| self.members.contains_key(leader)),
            "a group with members is led by one of them"
        );
        self.protocol = self.choose_protocol();
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in ids {
            let result = self.join_result(&member_id);
            if let Some(member) = self.members.get_mut(&member_id) {
                member.awaiting_join = false;
            }
            self.completions.push(Completion::Join {
                member_id,
                result: Ok(result),
            });
        }
    }

    /// Each member votes for its most preferred protocol that every member supports; the
    /// candidates are in the leader's order of preference, which breaks ties. Linear in the
    /// members' protocol lists (the candidates come from `protocol_support`).
    fn choose_protocol(&self) -> Option<String> {
        let first = self
            .leader
            .as_ref()
            .and_then(|leader| self.members.get(leader))?;
        let everyone = self.members.len();
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.protocol_support.get(*name) == Some(&everyone))
            .collect();
        let candidate_set: HashSet<&str> = candidates.iter().copied().collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidate_set.contains(name.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        // Most votes wins; ties go to the leader's earlier preference (candidate order).
        let mut best: Option<(&str, usize)> = None;
        for name in candidates {
            let count = votes.get(name).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    fn chosen_metadata(&self, member: &Member) -> Bytes {
        let Some(protocol) = &self.protocol else {
            return Bytes::new();
        };
        member
            .protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|(id, member)| JoinedMember {
                    member_id: id.clone(),
                    instance_id: member.instance_id.clone(),
                    metadata: self.chosen_metadata(member),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }
}
