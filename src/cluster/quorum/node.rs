//! One node of the metadata quorum: raft-rs's `RawNode` driven by one task on the
//! controller shard. raft-rs is sans-I/O: this loop ticks it, feeds it peers' messages and
//! proposals, persists what it asks to persist (`Journal`), sends what it asks to send
//! (`Transport`), and applies committed entries to the state machine.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_channel::oneshot;
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, StateRole, Storage};

use super::journal::{Journal, JournalError};
use super::store::{MemoryStore, StoreCore};
use crate::runtime::shutdown::Shutdown;

/// What the quorum replicates into: the metadata image.
pub trait StateMachine {
    /// Applies the committed entry at `index` (a record this quorum's leader proposed).
    fn apply(&self, index: u64, data: &[u8]);
    /// The whole state as of the last applied entry.
    fn snapshot(&self) -> Bytes;
    /// Replaces the state with a snapshot taken at `index`.
    fn restore(&self, index: u64, data: &[u8]);
}

/// Sends Raft messages to peers; never waits (a message that cannot be queued is dropped,
/// which Raft tolerates: it retries appends and heartbeats).
pub trait Transport {
    fn send(&self, message: Message);
}

#[derive(Debug, Clone)]
pub struct QuorumSettings {
    pub node_id: u64,
    /// Raft's logical clock.
    pub tick: Duration,
    /// Ticks without a leader before an election (raft-rs randomizes it up to twice this).
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Applied entries after which the state machine is snapshotted and the journal cut.
    pub snapshot_entries: u64,
    /// How long a proposal may wait to be committed and applied.
    pub proposal_timeout: Duration,
}

impl QuorumSettings {
    /// Kafka's KRaft defaults in spirit: 1–2 s election timeout, fast heartbeats.
    pub fn new(node_id: u64) -> QuorumSettings {
        QuorumSettings {
            node_id,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_entries: 1000,
            proposal_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// This node does not lead the quorum; `leader` is the one it knows (0: none).
    #[error("this node is not the metadata quorum's leader (leader: {leader})")]
    NotLeader { leader: u64 },
    #[error("the metadata change was not committed in time; its outcome is unknown")]
    Timeout,
    #[error("the metadata quorum on this node has stopped")]
    Stopped,
    #[error("the metadata journal failed: {0}")]
    Journal(String),
}

/// What other tasks can see of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuorumStatus {
    pub leader: u64,
    pub term: u64,
    pub is_leader: bool,
    /// The leader has applied every entry of earlier terms: its state is the latest
    /// committed one, so decisions may be taken on it.
    pub leader_ready: bool,
    pub applied: u64,
}

enum Input {
    Raft(Message),
    Propose {
        data: Bytes,
        done: oneshot::Sender<Result<u64, QuorumError>>,
    },
}

/// Inputs queued for the loop; more are dropped (peers retry) or refused (proposals).
const INBOX_CAPACITY: usize = 4096;

pub struct QuorumNode {
    settings: QuorumSettings,
    inbox: async_channel::Sender<Input>,
    status: Cell<QuorumStatus>,
    /// Fired after every applied batch of entries and every status change.
    changed: event_listener::Event,
}

/// Everything only the loop touches.
struct Driver<M, T> {
    node: Rc<QuorumNode>,
    raw: RawNode<MemoryStore>,
    store: MemoryStore,
    journal: Journal,
    machine: M,
    transport: T,
    conf_state: ConfState,
    pending: HashMap<u64, oneshot::Sender<Result<u64, QuorumError>>>,
    next_proposal: u64,
    /// The index of the first entry of this node's current leadership.
    leader_since: u64,
    applied: u64,
}

impl QuorumNode {
    /// Starts the node on the current shard from the journal's replayed state `core`
    /// (for a new quorum, the initial configuration as its snapshot). Applies the
    /// snapshot and the committed entries the journal holds before returning, so the
    /// state machine reflects everything this node knew before it stopped.
    pub fn start<M, T>(
        settings: QuorumSettings,
        journal: Journal,
        core: StoreCore,
        machine: M,
        transport: T,
        shutdown: Rc<Shutdown>,
    ) -> Result<(Rc<QuorumNode>, async_channel::Receiver<()>), QuorumError>
    where
        M: StateMachine + 'static,
        T: Transport + 'static,
    {
        let snapshot_index = core.snapshot_index();
        let conf_state = core.snapshot.get_metadata().get_conf_state().clone();
        if !core.snapshot.data.is_empty() {
            machine.restore(snapshot_index, &core.snapshot.data);
        }
        let store = MemoryStore(Rc::new(RefCell::new(core)));
        let config = raft::Config {
            id: settings.node_id,
            election_tick: settings.election_ticks,
            heartbeat_tick: settings.heartbeat_ticks,
            applied: snapshot_index,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let logger = slog::Logger::root(TracingDrain, slog::o!());
        let raw = RawNode::new(&config, store.clone(), &logger)
            .map_err(|error| QuorumError::Journal(error.to_string()))?;
        let (sender, receiver) = async_channel::bounded(INBOX_CAPACITY);
        let node = Rc::new(QuorumNode {
            settings,
            inbox: sender,
            status: Cell::new(QuorumStatus {
                applied: snapshot_index,
                ..QuorumStatus::default()
            }),
            changed: event_listener::Event::new(),
        });
        let mut driver = Driver {
            node: node.clone(),
            raw,
            store,
            journal,
            machine,
            transport,
            conf_state,
            pending: HashMap::new(),
            next_proposal: 1,
            leader_since: u64::MAX,
            applied: snapshot_index,
        };
        // Entries the journal knows to be committed are applied now, before any peer is
        // heard from.
        driver.apply_known_committed();
        let (stopped_tx, stopped_rx) = async_channel::bounded(1);
        glommio::spawn_local(async move {
            driver.run(receiver, shutdown).await;
            driver.journal.close().await;
            drop(stopped_tx);
        })
        .detach();
        Ok((node, stopped_rx))
    }

    pub fn id(&self) -> u64 {
        self.settings.node_id
    }

    pub fn status(&self) -> QuorumStatus {
        self.status.get()
    }

    /// Hands a peer's message to the node; dropped if the node is far behind.
    pub fn receive(&self, message: Message) {
        let _ = self.inbox.try_send(Input::Raft(message));
    }

    /// Proposes `data` and returns its index once it is committed and applied here.
    /// Only the leader proposes; others get `NotLeader`.
    pub async fn propose(&self, data: Bytes) -> Result<u64, QuorumError> {
        let (done, answer) = oneshot::channel();
        self.inbox
            .try_send(Input::Propose { data, done })
            .map_err(|_| QuorumError::Timeout)?;
        let timeout = self.settings.proposal_timeout;
        let answer = futures_lite::future::or(async { Some(answer.await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        match answer {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(QuorumError::Stopped),
            None => Err(QuorumError::Timeout),
        }
    }

    /// Waits until the status satisfies `ready`, up to `timeout`; returns the last status.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&QuorumStatus) -> bool,
    ) -> Result<QuorumStatus, QuorumStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let listener = self.changed.listen();
            let status = self.status();
            if ready(&status) {
                return Ok(status);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(status);
            }
            futures_lite::future::or(listener, glommio::timer::sleep(left)).await;
        }
    }
}

/// A heartbeat names the leader's commit index as far as the leader believes this node's
/// log reaches. Past this log's end (the log was lost: a replaced disk, a wiped journal)
/// raft-rs takes it as a fatal inconsistency and panics, at every restart again. Such a
/// commit index is dropped (this node keeps its own): the heartbeat is still answered, and
/// the leader's next append finds where the logs part and sends the rest. Returns whether
/// it was dropped.
fn drop_commit_past_end(message: &mut Message, last_index: u64, committed: u64) -> bool {
    if message.get_msg_type() == MessageType::MsgHeartbeat && message.commit > last_index {
        message.commit = committed;
        return true;
    }
    false
}

fn proposal_context(node: u64, proposal: u64) -> Bytes {
    let mut context = BytesMut::with_capacity(16);
    context.put_u64(node);
    context.put_u64(proposal);
    context.freeze()
}

fn proposal_of(context: &[u8]) -> Option<(u64, u64)> {
    let node = u64::from_be_bytes(context.get(..8)?.try_into().ok()?);
    let proposal = u64::from_be_bytes(context.get(8..16)?.try_into().ok()?);
    Some((node, proposal))
}

impl<M: StateMachine, T: Transport> Driver<M, T> {
    async fn run(&mut self, inbox: async_channel::Receiver<Input>, shutdown: Rc<Shutdown>) {
        let tick = self.node.settings.tick;
        let mut next_tick = std::time::Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(std::time::Instant::now());
            let input = shutdown
                .or_stopped(futures_lite::future::or(
                    async { inbox.recv().await.ok() },
                    async {
                        glommio::timer::sleep(wait).await;
                        None
                    },
                ))
                .await;
            let Some(input) = input else {
                break;
            };
            if let Some(input) = input {
                self.handle(input);
                // Take whatever else is queued before persisting once for all of it.
                for _ in 0..256 {
                    match inbox.try_recv() {
                        Ok(input) => self.handle(input),
                        Err(_) => break,
                    }
                }
            }
            if std::time::Instant::now() >= next_tick {
                self.raw.tick();
                next_tick += tick;
                if next_tick < std::time::Instant::now() {
                    next_tick = std::time::Instant::now() + tick;
                }
            }
            if let Err(error) = self.on_ready().await {
                // The journal failed: this node can no longer promise anything it votes
                // or acknowledges. Stop it; the others carry on without it.
                tracing::error!(%error, "metadata journal failed; the quorum node stops");
                break;
            }
            self.publish_status();
        }
        for (_, done) in self.pending.drain() {
            let _ = done.send(Err(QuorumError::Stopped));
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Raft(mut message) => {
                let log = &self.raw.raft.raft_log;
                if drop_commit_past_end(&mut message, log.last_index(), log.committed) {
                    tracing::warn!(
                        leader = message.from,
                        "the quorum's leader believes this node holds entries it does not \
                         (was its journal lost?); catching up from the leader"
                    );
                }
                if let Err(error) = self.raw.step(message) {
                    tracing::debug!(%error, "raft message ignored");
                }
            }
            Input::Propose { data, done } => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = done.send(Err(QuorumError::NotLeader {
                        leader: self.raw.raft.leader_id,
                    }));
                    return;
                }
                let proposal = self.next_proposal;
                self.next_proposal += 1;
                let context = proposal_context(self.node.settings.node_id, proposal);
                match self.raw.propose(context.to_vec(), data.to_vec()) {
                    Ok(()) => {
                        self.pending.insert(proposal, done);
                    }
                    Err(_) => {
                        let _ = done.send(Err(QuorumError::NotLeader {
                            leader: self.raw.raft.leader_id,
                        }));
                    }
                }
            }
        }
    }

    async fn on_ready(&mut self) -> Result<(), JournalError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let hard_state = self.store.0.borrow().hard_state.clone();
            self.journal.compact(&snapshot, &[], &hard_state).await?;
            self.install_snapshot(snapshot);
        }
        self.apply(ready.take_committed_entries());
        if !ready.entries().is_empty() || ready.hs().is_some() {
            self.journal.append(ready.entries(), ready.hs()).await?;
            let mut core = self.store.0.borrow_mut();
            core.append(ready.entries());
            if let Some(state) = ready.hs() {
                core.hard_state = state.clone();
            }
        }
        self.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut state = self.store.0.borrow().hard_state.clone();
            state.commit = commit;
            self.journal.append(&[], Some(&state)).await?;
            self.store.0.borrow_mut().hard_state = state;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
        self.maybe_snapshot().await
    }

    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            self.transport.send(message);
        }
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        self.conf_state = snapshot.get_metadata().get_conf_state().clone();
        self.machine.restore(index, &snapshot.data);
        self.store.0.borrow_mut().apply_snapshot(snapshot);
        self.applied = index;
    }

    /// Applies the committed entries the journal held at start (raft-rs hands over only
    /// those committed after `applied`, and the first `ready` does that too; doing it
    /// here makes the state machine current before the node serves anything).
    fn apply_known_committed(&mut self) {
        let (commit, entries) = {
            let core = self.store.0.borrow();
            let commit = core.hard_state.commit;
            let base = core.snapshot_index();
            let count = commit.saturating_sub(base) as usize;
            (
                commit,
                core.entries[..count.min(core.entries.len())].to_vec(),
            )
        };
        let _ = commit;
        for entry in entries {
            self.apply_entry(&entry);
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if entry.index <= self.applied {
                continue; // applied at start already
            }
            self.apply_entry(&entry);
        }
    }

    fn apply_entry(&mut self, entry: &Entry) {
        match entry.entry_type {
            EntryType::EntryNormal => {
                if !entry.data.is_empty() {
                    self.machine.apply(entry.index, &entry.data);
                }
            }
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                // Written by raft-rs itself from a local proposal; decoded with its codec.
                match ConfChangeV2::parse_from_bytes(&entry.data) {
                    Ok(change) => match self.raw.apply_conf_change(&change) {
                        Ok(state) => self.conf_state = state,
                        Err(error) => tracing::warn!(%error, "configuration change refused"),
                    },
                    Err(error) => tracing::warn!(%error, "undecodable configuration change"),
                }
            }
        }
        self.applied = entry.index;
        // Visible at once: a controller answering right after its proposal applied names
        // an index its callers wait for.
        let mut status = self.node.status.get();
        status.applied = entry.index;
        self.node.status.set(status);
        if let Some((node, proposal)) = proposal_of(&entry.context) {
            if node == self.node.settings.node_id {
                if let Some(done) = self.pending.remove(&proposal) {
                    let _ = done.send(Ok(entry.index));
                }
            }
        }
    }

    async fn maybe_snapshot(&mut self) -> Result<(), JournalError> {
        let snapshot_index = self.store.0.borrow().snapshot_index();
        if self.applied < snapshot_index + self.node.settings.snapshot_entries {
            return Ok(());
        }
        let term = self.store.term(self.applied).unwrap_or(0);
        let mut snapshot = Snapshot::default();
        snapshot.data = self.machine.snapshot();
        snapshot.mut_metadata().index = self.applied;
        snapshot.mut_metadata().term = term;
        snapshot
            .mut_metadata()
            .set_conf_state(self.conf_state.clone());
        let (after, hard_state) = {
            let core = self.store.0.borrow();
            let skip = (self.applied - snapshot_index) as usize;
            (
                core.entries[skip.min(core.entries.len())..].to_vec(),
                core.hard_state.clone(),
            )
        };
        self.journal.compact(&snapshot, &after, &hard_state).await?;
        self.store.0.borrow_mut().apply_snapshot(snapshot);
        tracing::debug!(index = self.applied, "metadata snapshot taken");
        Ok(())
    }

    fn publish_status(&mut self) {
        let raft = &self.raw.raft;
        let is_leader = raft.state == StateRole::Leader;
        if is_leader && self.leader_since == u64::MAX {
            // raft-rs appends an empty entry on election: once it is applied, every
            // entry of earlier terms is too.
            self.leader_since = raft.raft_log.last_index();
        }
        if !is_leader {
            self.leader_since = u64::MAX;
            // A proposal of a lost leadership may or may not commit; its caller is told
            // so now instead of at its timeout.
            for (_, done) in self.pending.drain() {
                let _ = done.send(Err(QuorumError::Timeout));
            }
        }
        let status = QuorumStatus {
            leader: raft.leader_id,
            term: raft.term,
            is_leader,
            leader_ready: is_leader && self.applied >= self.leader_since,
            applied: self.applied,
        };
        if status != self.node.status.get() {
            if status.leader != self.node.status.get().leader {
                tracing::info!(
                    node = self.node.settings.node_id,
                    leader = status.leader,
                    term = status.term,
                    "metadata quorum leader changed"
                );
            }
            self.node.status.set(status);
            self.node.changed.notify(usize::MAX);
        }
    }
}

/// raft-rs logs through slog; this forwards its records to `tracing`.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}
