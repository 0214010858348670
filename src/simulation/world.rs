//! The simulated world: N nodes in one thread, a seeded clock that jumps from event to
//! event, the network, the disks, and the faults. A run has two phases:
//!
//! 1. **Faults** (`Options::fault_time`): nodes crash and restart with their journals
//!    (losing part of what they had not synced), are paused, are cut off by network
//!    partitions, and their disks stall for seconds on a sync; links drop, duplicate, delay and reorder messages; an admin client
//!    creates, grows, reconfigures and deletes topics, reassigns partitions and elects
//!    leaders. Each seed picks its own mix and rates of faults (a swarm).
//! 2. **Healing** (`Options::heal_time`): every node runs, every link works. By the end,
//!    the cluster must have recovered: a quorum leader, every broker registered and
//!    unfenced, every partition with a live in-sync replica led, and every node's
//!    catalogue the same.
//!
//! The safety invariants (`checks`) are checked after every step of both phases.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::checks::{Checks, SharedChecks};
use super::journal::SimJournal;
use super::network::{Envelope, LinkFaults, Network, NetworkStats};
use super::node::{Ctx, DiskStalls, NodeSettings, SimNode, Timer, View};
use super::rng::SimRng;
use crate::cluster::control::ControlCall;
use crate::cluster::controller::{
    ConfigEdit, Controller, ControllerSettings, PartitionGrowth, PartitionReassignment,
    TopicConfigChange, TopicRef, TopicSpec,
};
use crate::cluster::metadata::ClusterMetadata;
use crate::cluster::node::members::{MembershipConfig, DISCONNECTED_FENCE_AFTER};
use crate::cluster::quorum::core::QuorumSettings;
use crate::cluster::reassignment::ElectionKind;
use crate::cluster::topic_config::TopicDefaults;

/// Steps one run may take before it counts as a runaway (a bound on every run).
const STEPS_MAX: u64 = 5_000_000;

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes (all quorum voters); `None`: 3 or 5, as the seed picks.
    pub nodes: Option<usize>,
    pub fault_time: Duration,
    pub heal_time: Duration,
    /// Prints every event (to replay a failing seed).
    pub trace: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: None,
            fault_time: Duration::from_secs(30),
            heal_time: Duration::from_secs(30),
            trace: false,
        }
    }
}

/// Faults injected in a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaultCounts {
    pub crashes: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub disk_stalls: u64,
    pub admin_operations: u64,
}

/// What a passing run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub steps: u64,
    pub simulated: Duration,
    pub faults: FaultCounts,
    pub network: NetworkStats,
    pub checks: u64,
    pub committed: u64,
    pub terms_led: usize,
    pub proposals: u64,
    pub isr_changes_asked: u64,
    pub admin_ok: u64,
    pub admin_failed: u64,
    /// How long after healing the cluster had recovered.
    pub recovered_after: Duration,
}

/// A failing run: replay it with its seed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub at: Duration,
    pub what: String,
}

impl Failure {
    /// Seed `seed` panicked with `payload` (where and when is in the panic's own message).
    pub fn panicked(seed: u64, payload: &(dyn std::any::Any + Send)) -> Failure {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        Failure {
            seed,
            step: 0,
            at: Duration::ZERO,
            what: format!("panicked: {message}"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed at step {} ({:?} simulated): {}\n  replay: cargo run --release -- simulate --seed {} --trace",
            self.seed, self.step, self.at, self.what, self.seed
        )
    }
}

/// Each seed's mix of faults (swarm testing: rare combinations get their turn).
#[derive(Debug, Clone, Copy)]
struct Swarm {
    links: LinkFaults,
    /// Mean time between faults of each kind (`None`: this run has none).
    crash_every: Option<Duration>,
    pause_every: Option<Duration>,
    partition_every: Option<Duration>,
    admin_every: Duration,
    /// Chance that a sync stalls, and the longest stall (`None`: disks never stall).
    disk_stalls: Option<(f64, Duration)>,
}

impl Swarm {
    fn pick(rng: &mut SimRng) -> Swarm {
        let mut every = |chance: f64, low: u64, high: u64| {
            rng.chance(chance)
                .then(|| Duration::from_millis(rng.between(low, high)))
        };
        let crash_every = every(0.7, 2_000, 12_000);
        let pause_every = every(0.4, 3_000, 15_000);
        let partition_every = every(0.6, 2_000, 12_000);
        let links = LinkFaults {
            drop: rng.fraction(0.15),
            duplicate: rng.fraction(0.1),
            delay_min: Duration::from_micros(50),
            delay_max: Duration::from_millis(rng.between(1, 30)),
            slow: rng.fraction(0.05),
            slow_max: Duration::from_millis(rng.between(100, 3000)),
        };
        let admin_every = Duration::from_millis(rng.between(300, 3000));
        // Up to 15 s: past the proposal timeout (10 s), so a leader's caller gives up on
        // an entry its stalled disk has yet to make durable.
        let disk_stalls = rng.chance(0.3).then(|| {
            let chance = rng.fraction(0.02);
            (chance, Duration::from_millis(rng.between(1_000, 15_000)))
        });
        Swarm {
            links,
            crash_every,
            pause_every,
            partition_every,
            admin_every,
            disk_stalls,
        }
    }
}

#[derive(Debug)]
enum Event {
    Deliver(Envelope),
    Timer {
        node: u64,
        generation: u64,
        timer: Timer,
    },
    Crash,
    Restart(u64),
    Pause,
    Partition,
    HealPartition,
    Admin,
    Heal,
}

struct Slot {
    node: Option<SimNode>,
    /// The journal of a crashed node, until it restarts.
    journal: Option<SimJournal>,
    generation: u64,
    paused_until: Option<Instant>,
}

struct World {
    seed: u64,
    options: Options,
    rng: SimRng,
    start: Instant,
    now: Instant,
    step: u64,
    next_event: u64,
    events: BTreeMap<(Instant, u64), Event>,
    network: Network,
    ids: Vec<u64>,
    slots: BTreeMap<u64, Slot>,
    view: View,
    settings: Rc<NodeSettings>,
    checks: SharedChecks,
    swarm: Swarm,
    faults: FaultCounts,
    healed: bool,
    /// Node stats of nodes that crashed (kept for the report).
    retired: super::node::NodeStats,
    topics_created: u64,
}

/// Runs one seed to the end; `Err` names the first invariant broken.
pub fn run(seed: u64, options: &Options) -> Result<Report, Failure> {
    let mut world = World::new(seed, options.clone());
    world.run()
}

impl World {
    fn new(seed: u64, options: Options) -> World {
        let mut rng = SimRng::new(seed);
        // One voter now and then: a quorum of one never loses its leader to an election,
        // so a stalled disk holds its proposals with no one else to take over.
        let count = options
            .nodes
            .unwrap_or(*rng.pick(&[1, 3, 3, 3, 5, 5, 5]).expect("a count"));
        let swarm = Swarm::pick(&mut rng);
        let ids: Vec<u64> = (1..=count as u64).collect();
        let mut quorum = QuorumSettings::new(0);
        // Small snapshots: a run compacts its journals and sends snapshots to laggards.
        quorum.snapshot_entries = rng.between(20, 300);
        let settings = Rc::new(NodeSettings {
            quorum,
            membership: MembershipConfig {
                session_timeout: Duration::from_secs(9),
                heartbeat_interval: Duration::from_secs(2),
                disconnected_fence_after: DISCONNECTED_FENCE_AFTER,
            },
            fsync_max: Duration::from_millis(rng.between(0, 8)),
            cluster_id: "simulation".into(),
        });
        let start = Instant::now();
        let view = View {
            disk_stalls: swarm.disk_stalls.map(|(chance, max)| DiskStalls {
                chance,
                max,
                until: start + options.fault_time,
            }),
            ..View::default()
        };
        let slots = ids
            .iter()
            .map(|&id| {
                let slot = Slot {
                    node: None,
                    journal: Some(SimJournal::default()),
                    generation: 0,
                    paused_until: None,
                };
                (id, slot)
            })
            .collect();
        World {
            seed,
            options,
            rng,
            start,
            now: start,
            step: 0,
            next_event: 0,
            events: BTreeMap::new(),
            network: Network::new(swarm.links),
            ids,
            slots,
            view,
            settings,
            checks: Rc::new(RefCell::new(Checks::default())),
            swarm,
            faults: FaultCounts::default(),
            healed: false,
            retired: Default::default(),
            topics_created: 0,
        }
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.next_event += 1;
        self.events.insert((at, self.next_event), event);
    }

    fn after(&mut self, mean: Duration) -> Instant {
        // Exponential-ish spacing: anywhere from 0 to twice the mean.
        let gap = self.rng.duration(Duration::ZERO, mean * 2);
        self.now + gap
    }

    /// Schedules the next event of a recurring kind (a fault, an admin operation) about
    /// `every` from now, unless the faults have ended; false once they have.
    fn recur(&mut self, every: Option<Duration>, event: Event) -> bool {
        if self.healed {
            return false;
        }
        if let Some(every) = every {
            let at = self.after(every);
            self.schedule(at, event);
        }
        true
    }

    fn run(&mut self) -> Result<Report, Failure> {
        for id in self.ids.clone() {
            self.start_node(id)?;
        }
        let heal_at = self.start + self.options.fault_time;
        let end = heal_at + self.options.heal_time;
        self.schedule(heal_at, Event::Heal);
        for (every, event) in [
            (self.swarm.crash_every, Event::Crash),
            (self.swarm.pause_every, Event::Pause),
            (self.swarm.partition_every, Event::Partition),
            (Some(self.swarm.admin_every), Event::Admin),
        ] {
            if let Some(every) = every {
                let at = self.after(every);
                self.schedule(at, event);
            }
        }
        let mut recovered: Option<Instant> = None;
        let mut next_liveness_check = heal_at;
        while let Some(((at, _), event)) = self.events.pop_first() {
            if at > end {
                break;
            }
            self.now = at;
            self.step += 1;
            if self.step > STEPS_MAX {
                return Err(self.failure(format!("ran past {STEPS_MAX} steps")));
            }
            if self.options.trace {
                eprintln!("{:>10.3?} #{} {event:?}", at - self.start, self.step);
            }
            self.dispatch(event)?;
            if let Some(violation) = self.checks.borrow_mut().violation.take() {
                return Err(self.failure(violation));
            }
            if self.healed && self.now >= next_liveness_check {
                next_liveness_check = self.now + Duration::from_millis(500);
                match self.recovery() {
                    Ok(()) => {
                        recovered.get_or_insert(self.now);
                    }
                    Err(_) => recovered = None,
                }
            }
        }
        if let Err(what) = self.recovery() {
            return Err(self.failure(format!(
                "not recovered {:?} after the faults ended: {what}",
                self.options.heal_time
            )));
        }
        Ok(self.report(recovered.map_or(Duration::ZERO, |at| at - heal_at)))
    }

    fn failure(&self, what: String) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            at: self.now - self.start,
            what,
        }
    }

    fn dispatch(&mut self, event: Event) -> Result<(), Failure> {
        match event {
            Event::Deliver(envelope) => {
                let to = envelope.to;
                if let Some(until) = self.paused(to) {
                    self.schedule(until, Event::Deliver(envelope));
                    return Ok(());
                }
                self.with_node(to, |node, ctx| {
                    node.on_message(ctx, envelope.from, envelope.payload)
                });
            }
            Event::Timer {
                node,
                generation,
                timer,
            } => {
                if self.slots[&node].generation != generation {
                    return Ok(()); // a timer of a life that crashed
                }
                if let Some(until) = self.paused(node) {
                    self.schedule(
                        until,
                        Event::Timer {
                            node,
                            generation,
                            timer,
                        },
                    );
                    return Ok(());
                }
                if timer == Timer::PartitionCheck {
                    self.view.follows = self.follows();
                }
                self.with_node(node, |node, ctx| node.on_timer(ctx, timer));
            }
            Event::Crash => self.crash(),
            Event::Restart(id) => self.start_node(id)?,
            Event::Pause => self.pause(),
            Event::Partition => self.partition(),
            Event::HealPartition => self.network.heal(),
            Event::Admin => self.admin(),
            Event::Heal => self.heal()?,
        }
        Ok(())
    }

    fn paused(&mut self, id: u64) -> Option<Instant> {
        let slot = self.slots.get_mut(&id)?;
        match slot.paused_until {
            Some(until) if until > self.now => Some(until),
            _ => {
                slot.paused_until = None;
                None
            }
        }
    }

    /// Runs `step` on node `id` if it is up, then sends and schedules what it asked for.
    fn with_node(&mut self, id: u64, step: impl FnOnce(&mut SimNode, &mut Ctx)) {
        let Some(mut node) = self.slots.get_mut(&id).and_then(|slot| slot.node.take()) else {
            return; // down: the message is lost, as to a dead process
        };
        let mut ctx = Ctx {
            now: self.now,
            rng: &mut self.rng,
            sends: Vec::new(),
            timers: Vec::new(),
            view: &self.view,
        };
        step(&mut node, &mut ctx);
        let (sends, timers) = (ctx.sends, ctx.timers);
        let generation = self.slots[&id].generation;
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.node = Some(node);
        }
        for envelope in sends {
            for (at, copy) in self.network.send(envelope, self.now, &mut self.rng) {
                self.schedule(at, Event::Deliver(copy));
            }
        }
        for (at, timer) in timers {
            self.schedule(
                at,
                Event::Timer {
                    node: id,
                    generation,
                    timer,
                },
            );
        }
    }

    fn start_node(&mut self, id: u64) -> Result<(), Failure> {
        let journal = self
            .slots
            .get_mut(&id)
            .and_then(|slot| slot.journal.take())
            .unwrap_or_default();
        let controller = Controller::new(ControllerSettings {
            node_id: id as i32,
            default_partitions: 1,
            topic_defaults: topic_defaults(),
            partitions_max: 100_000,
        });
        let mut ids = self.rng.fork();
        controller.set_topic_ids(Box::new(move || ids.uuid()));
        let node = SimNode::start(
            id,
            &self.ids,
            journal,
            self.settings.clone(),
            self.checks.clone(),
            controller,
            &mut self.rng,
        )
        .map_err(|error| self.failure(format!("node {id} could not start: {error}")))?;
        self.view.down_since.remove(&id);
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.node = Some(node);
            slot.paused_until = None;
        }
        self.with_node(id, |node, ctx| node.first_timers(ctx));
        Ok(())
    }

    /// The nodes running now (not crashed).
    fn nodes_up(&self) -> Vec<u64> {
        self.ids
            .iter()
            .copied()
            .filter(|id| self.slots[id].node.is_some())
            .collect()
    }

    fn crash(&mut self) {
        if !self.recur(self.swarm.crash_every, Event::Crash) {
            return;
        }
        let up = self.nodes_up();
        let Some(&id) = self.rng.pick(&up) else {
            return;
        };
        self.faults.crashes += 1;
        let slot = self.slots.get_mut(&id).expect("a node's slot");
        let node = slot.node.take().expect("up");
        let stats = node.stats;
        let mut journal = node.into_journal();
        journal.crash(&mut self.rng);
        slot.journal = Some(journal);
        slot.generation += 1;
        slot.paused_until = None;
        self.retired.proposals += stats.proposals;
        self.retired.admin_ok += stats.admin_ok;
        self.retired.admin_failed += stats.admin_failed;
        self.retired.isr_changes_asked += stats.isr_changes_asked;
        self.retired.disk_stalls += stats.disk_stalls;
        self.view.down_since.insert(id, self.now);
        let down = self
            .rng
            .duration(Duration::from_millis(100), Duration::from_secs(12));
        self.schedule(self.now + down, Event::Restart(id));
    }

    fn pause(&mut self) {
        if !self.recur(self.swarm.pause_every, Event::Pause) {
            return;
        }
        let Some(&id) = self.rng.pick(&self.ids.clone()) else {
            return;
        };
        self.faults.pauses += 1;
        let pause = self
            .rng
            .duration(Duration::from_millis(100), Duration::from_secs(12));
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.paused_until = Some(self.now + pause);
        }
    }

    fn partition(&mut self) {
        if !self.recur(self.swarm.partition_every, Event::Partition) {
            return;
        }
        let side: BTreeSet<u64> = self
            .ids
            .iter()
            .copied()
            .filter(|_| self.rng.chance(0.4))
            .collect();
        if side.is_empty() || side.len() == self.ids.len() {
            return;
        }
        self.faults.partitions += 1;
        self.network.partition(&side, &self.ids);
        let lasting = self
            .rng
            .duration(Duration::from_millis(200), Duration::from_secs(10));
        self.schedule(self.now + lasting, Event::HealPartition);
    }

    /// The faults end: every node runs again, every link works.
    fn heal(&mut self) -> Result<(), Failure> {
        self.healed = true;
        self.view.disk_stalls = None;
        self.network.heal();
        self.network.set_faults(LinkFaults::healthy());
        // Restarts already scheduled are dropped: every node is started now.
        self.events
            .retain(|_, event| !matches!(event, Event::Restart(_) | Event::HealPartition));
        for id in self.ids.clone() {
            if self.slots[&id].node.is_none() {
                self.start_node(id)?;
            }
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.paused_until = None;
            }
        }
        Ok(())
    }

    /// An admin client's operation, through a random live node, made from what that node's
    /// catalogue shows.
    fn admin(&mut self) {
        if !self.recur(Some(self.swarm.admin_every), Event::Admin) {
            return;
        }
        let up = self.nodes_up();
        let Some(&via) = self.rng.pick(&up) else {
            return;
        };
        let image = match &self.slots[&via].node {
            Some(node) => node.catalogue.copy(),
            None => return,
        };
        let call = self.admin_call(&image);
        self.faults.admin_operations += 1;
        self.with_node(via, |node, ctx| node.admin(ctx, call));
    }

    fn admin_call(&mut self, image: &ClusterMetadata) -> ControlCall {
        let names: Vec<String> = image.topics().keys().cloned().collect();
        let brokers: Vec<i32> = self.ids.iter().map(|&id| id as i32).collect();
        let roll = self.rng.below(100);
        let topic = self.rng.pick(&names).cloned();
        match (roll, topic) {
            (0..=29, _) | (_, None) => {
                self.topics_created += 1;
                let factor = self.rng.between(1, brokers.len().min(3) as u64) as i16;
                ControlCall::CreateTopics {
                    specs: vec![TopicSpec {
                        name: format!("t{}", self.topics_created),
                        partitions: self.rng.between(1, 3) as i32,
                        replication_factor: factor,
                        assignments: Vec::new(),
                        configs: Default::default(),
                    }],
                    validate_only: false,
                }
            }
            (30..=54, Some(name)) => {
                let topic = image.topic(&name).expect("named from this catalogue");
                let partition = self.rng.below(topic.partitions as u64) as i32;
                let factor = topic.replicas_of(partition).len().max(1);
                let target = (!self.rng.chance(0.2)).then(|| {
                    let mut pool = brokers.clone();
                    let mut chosen = Vec::new();
                    while chosen.len() < factor && !pool.is_empty() {
                        let at = self.rng.below(pool.len() as u64) as usize;
                        chosen.push(pool.swap_remove(at));
                    }
                    chosen
                });
                ControlCall::ReassignPartitions {
                    changes: vec![PartitionReassignment {
                        topic: name,
                        partition,
                        target,
                    }],
                    allow_factor_change: false,
                }
            }
            (55..=69, _) => ControlCall::ElectLeaders {
                kind: ElectionKind::Preferred,
                partitions: None,
            },
            (70..=84, Some(name)) => ControlCall::AlterTopicConfigs {
                changes: vec![TopicConfigChange {
                    topic: name,
                    replace_all: false,
                    edits: vec![ConfigEdit::Set(
                        "retention.ms".into(),
                        self.rng.between(60_000, 600_000).to_string(),
                    )],
                }],
                validate_only: false,
            },
            (85..=94, Some(name)) => {
                let count = image.topic(&name).map_or(1, |t| t.partitions) + 1;
                ControlCall::CreatePartitions {
                    growths: vec![PartitionGrowth {
                        topic: name,
                        count,
                        assignments: None,
                    }],
                    validate_only: false,
                }
            }
            (_, Some(name)) => ControlCall::DeleteTopics(vec![TopicRef::Name(name)]),
        }
    }

    /// Who fetches which partition from whom: live, reachable nodes that know the leader.
    fn follows(&self) -> BTreeMap<(i32, uuid::Uuid, i32), (i32, i32)> {
        let mut follows = BTreeMap::new();
        for (&id, slot) in &self.slots {
            let Some(node) = &slot.node else { continue };
            if slot.paused_until.is_some_and(|until| until > self.now) {
                continue;
            }
            let image = node.catalogue.image();
            for topic in image.topics().values() {
                for (p, state) in topic.states.iter().enumerate() {
                    let leader = state.leader;
                    if leader < 0 || leader as u64 == id {
                        continue;
                    }
                    let leader_up = self.slots.get(&(leader as u64)).is_some_and(|s| {
                        s.node.is_some() && s.paused_until.is_none_or(|until| until <= self.now)
                    });
                    let reachable = self.network.connected(id, leader as u64)
                        && self.network.connected(leader as u64, id);
                    if leader_up && reachable && topic.replicas_of(p as i32).contains(&(id as i32))
                    {
                        follows.insert(
                            (id as i32, topic.id, p as i32),
                            (leader, state.leader_epoch),
                        );
                    }
                }
            }
        }
        follows
    }

    /// Whether the cluster has recovered: a quorum leader; every broker registered and
    /// unfenced; every partition with a live in-sync replica led; every node's catalogue
    /// the leader's.
    fn recovery(&self) -> Result<(), String> {
        let leaders: Vec<&SimNode> = self
            .slots
            .values()
            .filter_map(|slot| slot.node.as_ref())
            .filter(|node| node.status().leader_ready)
            .collect();
        let Some(leader) = leaders.first() else {
            return Err("no quorum leader is ready".into());
        };
        let image = leader.catalogue.copy();
        for &id in &self.ids {
            let live = image
                .brokers
                .get(&(id as i32))
                .is_some_and(|broker| !broker.fenced);
            if !live {
                return Err(format!("broker {id} is not registered and unfenced"));
            }
        }
        for topic in image.topics().values() {
            for (p, state) in topic.states.iter().enumerate() {
                let live_in_sync = state.isr.iter().any(|id| image.is_live(*id));
                if live_in_sync && state.leader < 0 {
                    return Err(format!(
                        "{}/{p} has live in-sync replicas {:?} but no leader",
                        topic.name, state.isr
                    ));
                }
            }
        }
        for (id, slot) in &self.slots {
            let Some(node) = &slot.node else {
                return Err(format!("node {id} is down"));
            };
            if *node.catalogue.image() != *image {
                return Err(format!(
                    "node {id}'s catalogue (applied {}) differs from the leader's (applied {})",
                    node.status().applied,
                    leader.status().applied
                ));
            }
        }
        Ok(())
    }

    fn report(&self, recovered_after: Duration) -> Report {
        let mut stats = self.retired;
        for node in self.slots.values().filter_map(|slot| slot.node.as_ref()) {
            stats.proposals += node.stats.proposals;
            stats.admin_ok += node.stats.admin_ok;
            stats.admin_failed += node.stats.admin_failed;
            stats.isr_changes_asked += node.stats.isr_changes_asked;
            stats.disk_stalls += node.stats.disk_stalls;
        }
        let checks = self.checks.borrow();
        Report {
            seed: self.seed,
            nodes: self.ids.len(),
            steps: self.step,
            simulated: self.now - self.start,
            faults: FaultCounts {
                disk_stalls: stats.disk_stalls,
                ..self.faults
            },
            network: self.network.stats,
            checks: checks.performed,
            committed: checks.committed_index(),
            terms_led: checks.terms_led(),
            proposals: stats.proposals,
            isr_changes_asked: stats.isr_changes_asked,
            admin_ok: stats.admin_ok,
            admin_failed: stats.admin_failed,
            recovered_after,
        }
    }
}

fn topic_defaults() -> TopicDefaults {
    TopicDefaults {
        retention_ms: 604_800_000,
        retention_bytes: -1,
        segment_bytes: 1 << 30,
        segment_ms: 604_800_000,
        max_message_bytes: 1_048_588,
        min_insync_replicas: 1,
        replication_factor: 1,
    }
}
