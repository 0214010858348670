//! One simulated cluster node: the real quorum core (raft-rs), the real catalogue, the
//! real controller and the real decisions of `cluster::node`, driven the way
//! `cluster::quorum::node` and `shard::cluster` drive them on a shard, with the world's
//! clock, network and disk instead of glommio's:
//!
//! - the quorum driver: inputs (peers' messages, proposals) feed the core; a `Ready`'s
//!   writes go to the simulated journal and the round finishes only once they are synced;
//! - the leader: calls wait until it is ready to lead; decisions that propose run one at
//!   a time (the controller's turn), each decided again when its turn comes; controller
//!   operations run the real `Controller` on a host that proposes through the core;
//!   silent brokers are fenced every duty interval;
//! - the broker: it registers, heartbeats, and calls the leader through a client that
//!   retries as `shard::cluster::client` does;
//! - partition leadership: every second the node asks for the ISR its followers' progress
//!   calls for (the world says who is fetching), one change in flight per partition.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::eraftpb::Message;
use uuid::Uuid;

use super::checks::{CheckedCatalogue, SharedChecks};
use super::journal::SimJournal;
use super::network::{Envelope, Payload};
use super::rng::SimRng;
use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::controller::{Controller, TopicHost};
use crate::cluster::metadata::{BrokerInfo, ClusterMetadata, Topic};
use crate::cluster::node::catalogue::Catalogue;
use crate::cluster::node::leader::{self, Decision, Then};
use crate::cluster::node::members::{self, Members, MembershipConfig, SilentBroker};
use crate::cluster::node::rpc::{NodeCall, NodeReply};
use crate::cluster::quorum::core::{
    QuorumCore, QuorumError, QuorumSettings, QuorumStatus, ReadyRound,
};
use crate::cluster::records;

/// How long a call to the quorum's leader may take, all retries included (as
/// `shard::cluster::client`).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Retry pause while no leader is known, or after a refusal.
const RETRY_DELAY: Duration = Duration::from_millis(200);
/// How long a new leader may take to be ready before a call is answered `NotLeader`.
const LEADER_READY_WAIT: Duration = Duration::from_secs(10);
/// As `shard::cluster::node`'s: how long a decision waits for the leader to settle.
const SETTLE_WAIT: Duration = Duration::from_secs(10);
/// Inputs queued for the quorum driver; more are dropped (peers retry).
const INPUTS_MAX: usize = 4096;
/// How often a partition leader looks at its followers.
pub const PARTITION_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A follower not fetching for this long leaves the ISR (`REPLICA_LAG_MAX`).
const REPLICA_LAG_MAX: Duration = Duration::from_secs(10);
/// A returning follower fetching for this long has caught up.
const CATCH_UP: Duration = Duration::from_secs(1);

/// A node's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Tick,
    SyncDone,
    Register,
    Heartbeat,
    LeaderDuty,
    PartitionCheck,
    CallRetry { id: u64, attempt: u64 },
    ProposalDeadline { job: u64 },
}

/// The world as a node may see it: who is down (its connections closed), and who
/// fetches which partition from whom.
#[derive(Default)]
pub struct View {
    /// Crashed nodes, since when.
    pub down_since: BTreeMap<u64, Instant>,
    /// Nodes that fetch partition (topic, index) from `leader` at `epoch`: alive, able to
    /// reach the leader, knowing it leads. (node, topic, index) -> (leader, epoch).
    pub follows: BTreeMap<(i32, Uuid, i32), (i32, i32)>,
    /// Disks stall now and then while the faults last (`None`: they do not).
    pub disk_stalls: Option<DiskStalls>,
}

/// A disk whose sync now and then takes seconds (a stalled device, a full queue).
#[derive(Debug, Clone, Copy)]
pub struct DiskStalls {
    /// Chance that a sync stalls, and for how long at most.
    pub chance: f64,
    pub max: Duration,
    /// No stall lasts past this (the faults end then).
    pub until: Instant,
}

/// What a node's step asks of the world, and what it needs.
pub struct Ctx<'a> {
    pub now: Instant,
    pub rng: &'a mut SimRng,
    pub sends: Vec<Envelope>,
    pub timers: Vec<(Instant, Timer)>,
    pub view: &'a View,
}

impl Ctx<'_> {
    fn at(&mut self, after: Duration, timer: Timer) {
        self.timers.push((self.now + after, timer));
    }
}

/// Counts of one node's life.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeStats {
    pub proposals: u64,
    pub admin_ok: u64,
    pub admin_failed: u64,
    pub isr_changes_asked: u64,
    pub disk_stalls: u64,
}

pub struct NodeSettings {
    pub quorum: QuorumSettings,
    pub membership: MembershipConfig,
    pub fsync_max: Duration,
    pub cluster_id: String,
}

enum Input {
    Raft(Message),
    Propose { data: Bytes, job: u64 },
}

/// A call this node's broker side made.
struct Outgoing {
    call: NodeCall,
    purpose: Purpose,
    attempt: u64,
    /// The node the current attempt went to.
    to: u64,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Register,
    Heartbeat,
    AlterPartition(Uuid, i32),
    Admin,
}

/// The controller's hands in the simulation: as `shard::cluster`'s, a commit proposes the
/// records that turn the catalogue into the change; the node's driver proposes them.
struct SimHost {
    catalogue: Catalogue,
    /// The records the controller asks to commit, and the outcome once known.
    request: RefCell<Option<Vec<records::MetadataRecord>>>,
    outcome: RefCell<Option<Result<u64, QuorumError>>>,
    /// The node's quorum status, set before each poll of the controller.
    status: Cell<QuorumStatus>,
    /// As `ClusterNode::read_at`: where the controller's change read the catalogue, if
    /// the node was settled then.
    read_at: Cell<Option<u64>>,
}

impl TopicHost for SimHost {
    fn metadata(&self) -> Arc<ClusterMetadata> {
        let status = self.status.get();
        self.read_at.set(status.settled.then_some(status.applied));
        self.catalogue.copy()
    }

    async fn open_logs(&self, _topic: &Topic, _range: Range<i32>) -> Result<(), String> {
        Ok(())
    }

    async fn delete_logs(&self, _topic: &Topic) {}

    async fn discard_logs(&self, _topic: &Topic, _range: Range<i32>) {}

    async fn reconfigure_logs(&self, _topic: &Topic) {}

    async fn commit(&self, metadata: ClusterMetadata) -> Result<(), String> {
        let changes = records::diff(&self.catalogue.image(), &metadata);
        if changes.is_empty() {
            return Ok(());
        }
        if self.read_at.get() != Some(self.status.get().applied) {
            return Err(QuorumError::Unsettled.to_string());
        }
        *self.request.borrow_mut() = Some(changes);
        futures_lite::future::poll_fn(|_| match self.outcome.borrow_mut().take() {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        })
        .await
        .map(drop)
        .map_err(|error| error.to_string())
    }
}

enum JobKind {
    Call {
        from: u64,
        id: u64,
        call: NodeCall,
        unfencing: Option<i32>,
    },
    Control {
        from: u64,
        id: u64,
        future: Pin<Box<dyn Future<Output = ControlReply>>>,
    },
    Fence(SilentBroker),
}

/// A follower's fetching as its leader sees it.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The leader epoch it is counted under.
    epoch: i32,
    /// Fetching without a break since.
    fetching_since: Option<Instant>,
    /// Last seen fetching.
    last_fetching: Instant,
}

/// A turn of the controller: one runs at a time.
struct Job {
    seq: u64,
    kind: JobKind,
    then: Option<Then>,
    proposal: Option<u64>,
    outcome: Option<Result<u64, QuorumError>>,
    started: bool,
    /// When it stops waiting for the leader to settle before deciding.
    settle_by: Option<Instant>,
}

pub struct SimNode {
    pub id: u64,
    settings: Rc<NodeSettings>,
    core: QuorumCore<CheckedCatalogue>,
    pub catalogue: Catalogue,
    journal: SimJournal,
    inputs: VecDeque<Input>,
    round: Option<ReadyRound>,
    syncing: bool,
    tick_due: bool,
    last_status: QuorumStatus,
    checks: SharedChecks,
    // The leader's side.
    members: Members,
    jobs: VecDeque<Job>,
    next_job: u64,
    /// Proposal id -> the job that made it.
    proposals: BTreeMap<u64, u64>,
    /// Calls waiting for this leader to be ready: (from, id, call, until).
    parked: Vec<(u64, u64, NodeCall, Instant)>,
    controller: Rc<Controller>,
    host: Rc<SimHost>,
    // The broker's side.
    pub epoch: Option<u64>,
    /// The heartbeat loop runs (from the first registration on).
    heartbeating: bool,
    incarnation: Uuid,
    calls: BTreeMap<u64, Outgoing>,
    next_call: u64,
    // The partition leader's side.
    isr_in_flight: BTreeSet<(Uuid, i32)>,
    /// What this leader saw of each follower: (topic, partition, follower) -> progress.
    followers: BTreeMap<(Uuid, i32, i32), Progress>,
    pub stats: NodeStats,
}

impl SimNode {
    /// Starts node `id` from its journal (a restart replays it), with a fresh incarnation.
    pub fn start(
        id: u64,
        voters: &[u64],
        journal: SimJournal,
        settings: Rc<NodeSettings>,
        checks: SharedChecks,
        controller: Controller,
        rng: &mut SimRng,
    ) -> Result<SimNode, QuorumError> {
        let catalogue = Catalogue::new(settings.cluster_id.clone());
        let machine = CheckedCatalogue {
            node: id,
            catalogue: catalogue.clone(),
            checks: checks.clone(),
        };
        let mut quorum = settings.quorum.clone();
        quorum.node_id = id;
        let mut core = QuorumCore::new(quorum, journal.replay(voters), machine)?;
        let mut timeouts = rng.fork();
        core.set_election_timeouts(Box::new(move |min, max| {
            timeouts.between(min as u64, max as u64 - 1) as usize
        }));
        let host = Rc::new(SimHost {
            catalogue: catalogue.clone(),
            request: RefCell::new(None),
            outcome: RefCell::new(None),
            status: Cell::new(QuorumStatus::default()),
            read_at: Cell::new(None),
        });
        Ok(SimNode {
            id,
            settings,
            last_status: core.status(),
            core,
            catalogue,
            journal,
            inputs: VecDeque::new(),
            round: None,
            syncing: false,
            tick_due: false,
            checks,
            members: Members::default(),
            jobs: VecDeque::new(),
            next_job: 1,
            proposals: BTreeMap::new(),
            parked: Vec::new(),
            controller: Rc::new(controller),
            host,
            epoch: None,
            heartbeating: false,
            incarnation: rng.uuid(),
            calls: BTreeMap::new(),
            next_call: 1,
            isr_in_flight: BTreeSet::new(),
            followers: BTreeMap::new(),
            stats: NodeStats::default(),
        })
    }

    /// The timers a node starts with.
    pub fn first_timers(&self, ctx: &mut Ctx) {
        let tick = self.settings.quorum.tick;
        let jitter = ctx.rng.duration(Duration::ZERO, tick);
        ctx.at(jitter, Timer::Tick);
        ctx.at(Duration::ZERO, Timer::Register);
        ctx.at(self.settings.membership.duty_interval(), Timer::LeaderDuty);
        ctx.at(PARTITION_CHECK_INTERVAL, Timer::PartitionCheck);
    }

    /// The journal, as a crash leaves it to the world.
    pub fn into_journal(self) -> SimJournal {
        self.journal
    }

    /// As `QuorumNode::status`: not settled while a proposal handed to the driver is
    /// unanswered (queued, or in the log), whether or not its job still waits.
    pub fn status(&self) -> QuorumStatus {
        let mut status = self.core.status();
        let queued = self
            .inputs
            .iter()
            .any(|input| matches!(input, Input::Propose { .. }));
        status.settled &= self.proposals.is_empty() && !queued;
        status
    }

    pub fn journal_records(&self) -> usize {
        self.journal.records()
    }

    /// A message from `from`.
    pub fn on_message(&mut self, ctx: &mut Ctx, from: u64, payload: Payload) {
        match payload {
            Payload::Raft(message) => {
                if self.inputs.len() < INPUTS_MAX {
                    self.inputs.push_back(Input::Raft(message));
                }
            }
            Payload::Call { id, call } => self.on_call(ctx, from, id, call),
            Payload::Reply { id, reply } => self.on_reply(ctx, id, reply),
        }
        self.drive(ctx);
    }

    pub fn on_timer(&mut self, ctx: &mut Ctx, timer: Timer) {
        match timer {
            Timer::Tick => {
                self.tick_due = true;
                ctx.at(self.settings.quorum.tick, Timer::Tick);
            }
            Timer::SyncDone => self.sync_done(ctx),
            Timer::Register => self.register(ctx),
            Timer::Heartbeat => self.heartbeat(ctx),
            Timer::LeaderDuty => {
                self.leader_duty(ctx);
                ctx.at(self.settings.membership.duty_interval(), Timer::LeaderDuty);
            }
            Timer::PartitionCheck => {
                self.partition_check(ctx);
                ctx.at(PARTITION_CHECK_INTERVAL, Timer::PartitionCheck);
            }
            Timer::CallRetry { id, attempt } => {
                if self
                    .calls
                    .get(&id)
                    .is_some_and(|out| out.attempt == attempt)
                {
                    self.route(ctx, id);
                }
            }
            Timer::ProposalDeadline { job } => {
                if let Some(active) = self.jobs.front_mut().filter(|active| active.seq == job) {
                    if active.outcome.is_none() && active.proposal.is_some() {
                        // `QuorumNode::propose` gives up; the entry may still commit, and
                        // the driver still answers it (`proposals` keeps it).
                        active.proposal = None;
                        active.outcome = Some(Err(QuorumError::Timeout));
                    }
                }
            }
        }
        self.drive(ctx);
    }

    // The quorum driver (`cluster::quorum::node`).

    /// Runs the driver as far as it can go without waiting for the disk.
    fn drive(&mut self, ctx: &mut Ctx) {
        if !self.syncing {
            while let Some(input) = self.inputs.pop_front() {
                match input {
                    Input::Raft(message) => self.core.step(message),
                    Input::Propose { data, job } => {
                        self.stats.proposals += 1;
                        match self.core.propose(&data) {
                            Ok(proposal) => {
                                self.proposals.insert(proposal, job);
                            }
                            Err(error) => self.job_outcome(job, Err(error)),
                        }
                    }
                }
            }
            if self.tick_due {
                self.tick_due = false;
                self.core.tick();
            }
            if let Some(mut round) = self.core.begin_ready() {
                ctx.sends.extend(
                    std::mem::take(&mut round.messages)
                        .into_iter()
                        .map(|message| self.envelope(message)),
                );
                for write in std::mem::take(&mut round.writes) {
                    self.journal.write(write);
                }
                self.round = Some(round);
                self.syncing = true;
                let latency = self.sync_latency(ctx);
                ctx.at(latency, Timer::SyncDone);
            }
        }
        self.publish(ctx);
        self.advance_jobs(ctx);
    }

    fn sync_done(&mut self, ctx: &mut Ctx) {
        self.journal.sync();
        self.syncing = false;
        let Some(round) = self.round.take() else {
            return;
        };
        let finished = self.core.finish_ready(round);
        self.publish(ctx);
        for message in finished.messages {
            let envelope = self.envelope(message);
            ctx.sends.push(envelope);
        }
        if !finished.writes.is_empty() {
            for write in finished.writes {
                self.journal.write(write);
            }
            self.syncing = true;
            let latency = self.sync_latency(ctx);
            ctx.at(latency, Timer::SyncDone);
        }
    }

    /// How long a sync takes: up to `fsync_max`, or, when the disk stalls, seconds (the
    /// driver waits for it, as `QuorumNode`'s loop waits for the journal).
    fn sync_latency(&mut self, ctx: &mut Ctx) -> Duration {
        let latency = ctx.rng.duration(Duration::ZERO, self.settings.fsync_max);
        let Some(stalls) = ctx.view.disk_stalls else {
            return latency;
        };
        if !ctx.rng.chance(stalls.chance) {
            return latency;
        }
        let left = stalls.until.saturating_duration_since(ctx.now);
        let stall = ctx.rng.duration(Duration::ZERO, stalls.max).min(left);
        self.stats.disk_stalls += 1;
        latency + stall
    }

    fn envelope(&self, message: Message) -> Envelope {
        Envelope {
            from: self.id,
            to: message.to,
            payload: Payload::Raft(message),
        }
    }

    /// The status, as other tasks see it: leadership changes reroute the broker's calls
    /// and answer parked ones; applied proposals complete their jobs.
    fn publish(&mut self, ctx: &mut Ctx) {
        let status = self.core.status();
        self.checks.borrow_mut().status(self.id, &status);
        if status.leader != self.last_status.leader {
            // A call to a leader that is no longer one waits for no reply.
            for (&id, out) in &self.calls {
                if out.to != 0 && out.to != status.leader {
                    ctx.at(
                        RETRY_DELAY,
                        Timer::CallRetry {
                            id,
                            attempt: out.attempt,
                        },
                    );
                }
            }
        }
        self.last_status = status;
        for (proposal, result) in self.core.take_completed() {
            if let Some(job) = self.proposals.remove(&proposal) {
                self.job_outcome(job, result);
            }
        }
        self.unpark(ctx);
    }

    // The leader's side (`shard::cluster::leader`).

    fn on_call(&mut self, ctx: &mut Ctx, from: u64, id: u64, call: NodeCall) {
        let status = self.core.status();
        if !status.is_leader {
            let reply = NodeReply::NotLeader {
                leader: status.leader,
            };
            return self.reply(ctx, from, id, reply);
        }
        if !status.leader_ready {
            self.parked
                .push((from, id, call, ctx.now + LEADER_READY_WAIT));
            return;
        }
        self.lead(ctx, from, id, call);
    }

    fn unpark(&mut self, ctx: &mut Ctx) {
        if self.parked.is_empty() {
            return;
        }
        let status = self.core.status();
        let parked = std::mem::take(&mut self.parked);
        for (from, id, call, until) in parked {
            if status.leader_ready {
                self.lead(ctx, from, id, call);
            } else if !status.is_leader || ctx.now >= until {
                let reply = NodeReply::NotLeader {
                    leader: status.leader,
                };
                self.reply(ctx, from, id, reply);
            } else {
                self.parked.push((from, id, call, until));
            }
        }
    }

    fn lead(&mut self, ctx: &mut Ctx, from: u64, id: u64, call: NodeCall) {
        if let NodeCall::Control(call) = call {
            let (controller, host) = (self.controller.clone(), self.host.clone());
            let future = Box::pin(async move { controller.execute(&*host, call).await });
            self.push_job(JobKind::Control { from, id, future });
            return;
        }
        leader::observe(&mut self.members, &call, ctx.now);
        let decision = self.decide(ctx.now, &call);
        if let Decision::Answer(reply) = decision {
            return self.reply(ctx, from, id, reply);
        }
        let unfencing = match call {
            NodeCall::Heartbeat { id: broker, .. } => {
                if !self.members.begin_unfence(broker) {
                    let reply = NodeReply::Heartbeat {
                        fenced: true,
                        stale: false,
                    };
                    return self.reply(ctx, from, id, reply);
                }
                Some(broker)
            }
            _ => None,
        };
        self.push_job(JobKind::Call {
            from,
            id,
            call,
            unfencing,
        });
    }

    fn decide(&self, now: Instant, call: &NodeCall) -> Decision {
        leader::decide(
            &self.catalogue.image(),
            &self.members,
            call,
            now,
            &self.settings.membership,
        )
    }

    fn leader_duty(&mut self, ctx: &mut Ctx) {
        let image = self.catalogue.copy();
        let down = &ctx.view.down_since;
        let now = ctx.now;
        let silent = self.members.duties(
            self.core.status().leader_ready,
            &image,
            now,
            self.broker_id(),
            &self.settings.membership,
            |id| {
                u64::try_from(id)
                    .ok()
                    .and_then(|id| down.get(&id))
                    .map(|since| now - *since)
            },
        );
        for broker in silent {
            self.push_job(JobKind::Fence(broker));
        }
    }

    fn push_job(&mut self, kind: JobKind) {
        let seq = self.next_job;
        self.next_job += 1;
        self.jobs.push_back(Job {
            seq,
            kind,
            then: None,
            proposal: None,
            outcome: None,
            started: false,
            settle_by: None,
        });
    }

    fn job_outcome(&mut self, job: u64, outcome: Result<u64, QuorumError>) {
        if let Some(active) = self.jobs.front_mut().filter(|active| active.seq == job) {
            active.proposal = None;
            active.outcome = Some(outcome);
        }
    }

    /// Runs the controller's turns: the first job runs until it waits for a proposal.
    fn advance_jobs(&mut self, ctx: &mut Ctx) {
        while let Some(mut job) = self.jobs.pop_front() {
            let done = self.step_job(ctx, &mut job);
            if !done {
                self.jobs.push_front(job);
                return;
            }
        }
    }

    /// One step of `job`; true once it is done.
    fn step_job(&mut self, ctx: &mut Ctx, job: &mut Job) -> bool {
        if !job.started {
            // As `ClusterNode::settle`: decide only on a catalogue that holds every entry
            // this leader appended, waiting up to `SETTLE_WAIT`.
            let status = self.status();
            if !status.settled {
                let by = *job.settle_by.get_or_insert(ctx.now + SETTLE_WAIT);
                if status.is_leader && ctx.now < by {
                    return false;
                }
                let error = match status.is_leader {
                    true => QuorumError::Unsettled,
                    false => QuorumError::NotLeader {
                        leader: status.leader,
                    },
                };
                self.refuse_job(ctx, job, error);
                return true;
            }
        }
        let first = !job.started;
        job.started = true;
        if first {
            self.host.read_at.set(None);
        }
        match &mut job.kind {
            JobKind::Call {
                from,
                id,
                call,
                unfencing,
            } => {
                let (from, id, unfencing) = (*from, *id, *unfencing);
                if first {
                    match self.decide(ctx.now, call) {
                        Decision::Answer(reply) => {
                            self.end_unfence(unfencing);
                            self.reply(ctx, from, id, reply);
                            return true;
                        }
                        Decision::Propose { records, then } => {
                            job.then = Some(then);
                            self.propose(ctx, job, records);
                            return false;
                        }
                    }
                }
                let Some(outcome) = job.outcome.take() else {
                    return false;
                };
                let then = job.then.unwrap_or(Then::Done);
                let reply = leader::conclude(
                    &self.catalogue.image(),
                    &mut self.members,
                    then,
                    outcome,
                    ctx.now,
                );
                self.end_unfence(unfencing);
                self.reply(ctx, from, id, reply);
                true
            }
            JobKind::Fence(broker) => {
                if first {
                    let (id, epoch) = (broker.id, broker.epoch);
                    let fence = members::fence(&self.catalogue.image(), id, epoch);
                    match fence {
                        Some(records) => {
                            self.propose(ctx, job, records);
                            return false;
                        }
                        None => return true,
                    }
                }
                job.outcome.take().is_some()
            }
            JobKind::Control { .. } => self.step_control(ctx, job),
        }
    }

    /// Ends `job` undecided, as the leader's code answers when it cannot settle.
    fn refuse_job(&mut self, ctx: &mut Ctx, job: &Job, error: QuorumError) {
        match &job.kind {
            JobKind::Call {
                from,
                id,
                unfencing,
                ..
            } => {
                let (from, id) = (*from, *id);
                self.end_unfence(*unfencing);
                self.reply(ctx, from, id, NodeReply::Failed(error.to_string()));
            }
            JobKind::Fence(_) => {}
            JobKind::Control { from, id, .. } => {
                let (from, id) = (*from, *id);
                self.reply(ctx, from, id, NodeReply::Failed(error.to_string()));
            }
        }
    }

    fn step_control(&mut self, ctx: &mut Ctx, job: &mut Job) -> bool {
        if let Some(outcome) = job.outcome.take() {
            *self.host.outcome.borrow_mut() = Some(outcome);
        }
        let JobKind::Control { from, id, future } = &mut job.kind else {
            return true;
        };
        let (from, id) = (*from, *id);
        self.host.status.set(self.status());
        let mut context = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut context) {
            Poll::Ready(reply) => {
                let index = self.core.status().applied;
                self.reply(ctx, from, id, NodeReply::Control { reply, index });
                true
            }
            Poll::Pending => {
                let request = self.host.request.borrow_mut().take();
                if let Some(records) = request {
                    self.propose(ctx, job, records);
                }
                false
            }
        }
    }

    /// Proposes `records` for `job` through the driver's inputs, with the proposal's
    /// timeout (`QuorumSettings::proposal_timeout`).
    fn propose(&mut self, ctx: &mut Ctx, job: &mut Job, records: Vec<records::MetadataRecord>) {
        let status = self.status();
        if status.is_leader && !status.settled {
            // As `ClusterNode::propose`.
            job.outcome = Some(Err(QuorumError::Unsettled));
            return;
        }
        let data = Bytes::from(records::encode_entry(&records));
        let base = match job.kind {
            JobKind::Control { .. } => self.host.read_at.get(),
            _ => None, // decided in this step, on the catalogue as it is
        };
        let base = base.unwrap_or(status.applied);
        self.checks.borrow_mut().decided(self.id, &data, base);
        job.outcome = None;
        job.proposal = Some(0); // a proposal is on its way through the inputs
        if self.inputs.len() >= INPUTS_MAX {
            job.outcome = Some(Err(QuorumError::Timeout));
            return;
        }
        self.inputs.push_back(Input::Propose { data, job: job.seq });
        ctx.at(
            self.settings.quorum.proposal_timeout,
            Timer::ProposalDeadline { job: job.seq },
        );
    }

    fn end_unfence(&mut self, unfencing: Option<i32>) {
        if let Some(broker) = unfencing {
            self.members.end_unfence(broker);
        }
    }

    fn reply(&mut self, ctx: &mut Ctx, to: u64, id: u64, reply: NodeReply) {
        if to == self.id {
            self.on_reply(ctx, id, reply);
        } else {
            ctx.sends.push(Envelope {
                from: self.id,
                to,
                payload: Payload::Reply { id, reply },
            });
        }
    }

    // The broker's side (`shard::cluster::broker` and `client`).

    fn broker_id(&self) -> i32 {
        self.id as i32
    }

    fn register(&mut self, ctx: &mut Ctx) {
        let info = BrokerInfo {
            id: self.broker_id(),
            host: format!("node-{}", self.id),
            port: 9092,
            incarnation: self.incarnation,
            epoch: 0,
            fenced: true,
            listeners: Vec::new(),
        };
        self.ask(ctx, NodeCall::Register(info), Purpose::Register);
    }

    fn heartbeat(&mut self, ctx: &mut Ctx) {
        let Some(epoch) = self.epoch else {
            ctx.at(
                self.settings.membership.heartbeat_interval,
                Timer::Heartbeat,
            );
            return;
        };
        let call = NodeCall::Heartbeat {
            id: self.broker_id(),
            epoch,
            applied: self.core.status().applied,
        };
        self.ask(ctx, call, Purpose::Heartbeat);
    }

    /// An admin client's controller operation, sent through this node.
    pub fn admin(&mut self, ctx: &mut Ctx, call: ControlCall) {
        self.ask(ctx, NodeCall::Control(call), Purpose::Admin);
        self.drive(ctx);
    }

    fn ask(&mut self, ctx: &mut Ctx, call: NodeCall, purpose: Purpose) {
        let id = self.next_call;
        self.next_call += 1;
        self.calls.insert(
            id,
            Outgoing {
                call,
                purpose,
                attempt: 0,
                to: 0,
                deadline: ctx.now + CALL_TIMEOUT,
            },
        );
        self.route(ctx, id);
    }

    /// Sends call `id` to the leader this node knows of (or answers it here).
    fn route(&mut self, ctx: &mut Ctx, id: u64) {
        let status = self.core.status();
        let Some(out) = self.calls.get_mut(&id) else {
            return;
        };
        out.attempt += 1;
        let attempt = out.attempt;
        if ctx.now >= out.deadline {
            if let Some(out) = self.calls.remove(&id) {
                self.gave_up(ctx, out.purpose);
            }
            return;
        }
        if status.is_leader {
            out.to = self.id;
            let call = out.call.clone();
            return self.on_call(ctx, self.id, id, call);
        }
        if status.leader == 0 || status.leader == self.id {
            out.to = 0;
            return ctx.at(RETRY_DELAY, Timer::CallRetry { id, attempt });
        }
        out.to = status.leader;
        let wait = out.deadline - ctx.now;
        ctx.sends.push(Envelope {
            from: self.id,
            to: status.leader,
            payload: Payload::Call {
                id,
                call: out.call.clone(),
            },
        });
        ctx.at(wait, Timer::CallRetry { id, attempt });
    }

    fn on_reply(&mut self, ctx: &mut Ctx, id: u64, reply: NodeReply) {
        let Some(out) = self.calls.get(&id) else {
            return; // answered already (a duplicate, or a late answer)
        };
        if let NodeReply::NotLeader { .. } = reply {
            let attempt = out.attempt;
            return ctx.at(RETRY_DELAY, Timer::CallRetry { id, attempt });
        }
        if let Some(out) = self.calls.remove(&id) {
            self.answered(ctx, out.purpose, reply);
        }
    }

    fn answered(&mut self, ctx: &mut Ctx, purpose: Purpose, reply: NodeReply) {
        let interval = self.settings.membership.heartbeat_interval;
        match purpose {
            Purpose::Register => match reply {
                NodeReply::Registered { epoch } => {
                    self.epoch = Some(epoch);
                    // The heartbeat loop starts once, with the first registration (the
                    // first heartbeat goes at once: the broker is fenced until one arrives).
                    if !self.heartbeating {
                        self.heartbeating = true;
                        ctx.at(Duration::ZERO, Timer::Heartbeat);
                    }
                }
                _ => ctx.at(RETRY_DELAY, Timer::Register),
            },
            Purpose::Heartbeat => {
                if let NodeReply::Heartbeat { stale: true, .. } = reply {
                    self.register(ctx);
                }
                ctx.at(interval, Timer::Heartbeat);
            }
            Purpose::AlterPartition(topic, partition) => {
                self.isr_in_flight.remove(&(topic, partition));
            }
            Purpose::Admin => match reply {
                NodeReply::Control { .. } => self.stats.admin_ok += 1,
                _ => self.stats.admin_failed += 1,
            },
        }
    }

    fn gave_up(&mut self, ctx: &mut Ctx, purpose: Purpose) {
        match purpose {
            Purpose::Register => ctx.at(RETRY_DELAY, Timer::Register),
            Purpose::Heartbeat => ctx.at(
                self.settings.membership.heartbeat_interval,
                Timer::Heartbeat,
            ),
            Purpose::AlterPartition(topic, partition) => {
                self.isr_in_flight.remove(&(topic, partition));
            }
            Purpose::Admin => self.stats.admin_failed += 1,
        }
    }

    // Partition leadership (`shard::replication::leader`, with followers' progress told by
    // the world).

    fn partition_check(&mut self, ctx: &mut Ctx) {
        let me = self.broker_id();
        let image = self.catalogue.copy();
        let now = ctx.now;
        let mut asks = Vec::new();
        for topic in image.topics().values() {
            for (p, state) in topic.states.iter().enumerate() {
                let partition = p as i32;
                if state.leader != me {
                    continue;
                }
                let mut isr = vec![me];
                for &follower in topic.replicas_of(partition) {
                    if follower == me {
                        continue;
                    }
                    let fetching = ctx.view.follows.get(&(follower, topic.id, partition))
                        == Some(&(me, state.leader_epoch));
                    let key = (topic.id, partition, follower);
                    let mut seen = match self.followers.get(&key) {
                        Some(seen) if seen.epoch == state.leader_epoch => *seen,
                        // A new leadership presumes its followers caught up (Kafka's
                        // `lastCaughtUpTime` starts at the leadership's start).
                        _ => Progress {
                            epoch: state.leader_epoch,
                            fetching_since: None,
                            last_fetching: now,
                        },
                    };
                    if fetching {
                        seen.fetching_since.get_or_insert(now);
                        seen.last_fetching = now;
                    } else {
                        seen.fetching_since = None;
                    }
                    self.followers.insert(key, seen);
                    let (since, last) = (seen.fetching_since, seen.last_fetching);
                    let in_sync = state.isr.contains(&follower);
                    let keeps = in_sync && now - last < REPLICA_LAG_MAX;
                    let joins = !in_sync && since.is_some_and(|since| now - since >= CATCH_UP);
                    if keeps || joins {
                        isr.push(follower);
                    }
                }
                let mut wanted = isr.clone();
                wanted.sort_unstable();
                let mut current = state.isr.clone();
                current.sort_unstable();
                if wanted != current && !self.isr_in_flight.contains(&(topic.id, partition)) {
                    asks.push((topic.id, partition, state.leader_epoch, isr));
                }
            }
        }
        for (topic_id, partition, leader_epoch, isr) in asks {
            self.isr_in_flight.insert((topic_id, partition));
            self.stats.isr_changes_asked += 1;
            let call = NodeCall::AlterPartition {
                broker: me,
                topic_id,
                partition,
                leader_epoch,
                isr,
            };
            self.ask(ctx, call, Purpose::AlterPartition(topic_id, partition));
        }
    }
}
