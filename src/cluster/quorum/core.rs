//! The quorum's consensus without I/O: raft-rs's `RawNode` and what a node does with each
//! of its `Ready`s, as calls that take an input (a peer's message, a proposal, a tick) and
//! return the I/O to do. `node.rs` runs it on a shard (the journal on disk, TCP links,
//! glommio timers); the control-plane simulation (`crate::simulation`) runs the very same
//! code under simulated time, network and disk. The order raft-rs demands of a `Ready` is
//! kept here, once:
//!
//! 1. [`QuorumCore::begin_ready`]: messages that may go at once (a leader's appends), and
//!    the journal writes to make durable: a snapshot received, new entries, the hard state.
//! 2. The caller makes those writes durable (fsync), then calls
//!    [`QuorumCore::finish_ready`]: the store takes them, committed entries are applied,
//!    raft-rs learns they are persisted. Only now may votes and append acknowledgements go
//!    (they promise what is on disk), and they come back as messages to send, with writes
//!    that may be made durable at leisure (the commit index, a compaction).
//!
//! **Invariant: nothing this node promises a peer is only in memory.** Messages that
//! raft-rs marks as needing persistence are returned only by `finish_ready`, which the
//! caller calls only once the writes of `begin_ready` are durable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole, Storage};

use super::codec::JournalRecord;
use super::store::{MemoryStore, StoreCore};

/// What the quorum replicates into: the metadata image.
pub trait StateMachine {
    /// Applies the committed entry at `index` (a record this quorum's leader proposed).
    fn apply(&self, index: u64, data: &[u8]);
    /// The whole state as of the last applied entry.
    fn snapshot(&self) -> Bytes;
    /// Replaces the state with a snapshot taken at `index`.
    fn restore(&self, index: u64, data: &[u8]);
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
    /// An earlier change that timed out at its caller has not committed yet, and still
    /// may: a change decided now, without it, could undo it when both commit.
    #[error("an earlier metadata change has not committed yet; try again")]
    Unsettled,
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
    /// The leader has applied every entry it holds: no proposal of its own is in flight
    /// (one whose caller timed out may still commit), so a decision on its state undoes
    /// nothing. A new change is decided only when settled.
    pub settled: bool,
    pub applied: u64,
}

/// A write the journal must make durable.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalWrite {
    /// Records appended after everything before.
    Append(Vec<JournalRecord>),
    /// A snapshot first, then what follows it: once durable, every older record may go.
    Compact(Vec<JournalRecord>),
}

impl JournalWrite {
    pub fn records(&self) -> &[JournalRecord] {
        match self {
            JournalWrite::Append(records) | JournalWrite::Compact(records) => records,
        }
    }
}

/// The first half of a `Ready` (see the module's order).
pub struct ReadyRound {
    ready: raft::Ready,
    /// Messages that may go before the writes are durable.
    pub messages: Vec<Message>,
    /// Writes to make durable, in order, before `finish_ready`.
    pub writes: Vec<JournalWrite>,
}

/// The second half of a `Ready`.
#[derive(Default)]
pub struct Finished {
    /// Messages to send now (including those that promise the persisted writes).
    pub messages: Vec<Message>,
    /// Writes to make durable next (the commit index, a compaction); nothing waits on them.
    pub writes: Vec<JournalWrite>,
}

/// Picks a randomized election timeout in `min..max` ticks (the simulation's seeded
/// choice; raft-rs otherwise draws from the thread's random generator).
pub type ElectionTimeouts = Box<dyn FnMut(usize, usize) -> usize>;

/// Ticks a leader waits for a follower to confirm a snapshot before it counts the snapshot
/// as lost and sends it again (5 s at the default tick). raft-rs pauses a follower that was
/// sent a snapshot until the application reports on it; a snapshot lost on the way (a full
/// link queue, a connection that broke) would otherwise stall that follower for good
/// (found by the control-plane simulation).
const SNAPSHOT_CONFIRM_TICKS: u64 = 50;

pub struct QuorumCore<M> {
    settings: QuorumSettings,
    raw: RawNode<MemoryStore>,
    store: MemoryStore,
    machine: M,
    conf_state: ConfState,
    /// This node's proposals not yet applied, by id.
    pending: BTreeSet<u64>,
    next_proposal: u64,
    /// The index of the first entry of this node's current leadership (`u64::MAX`: not
    /// leading).
    leader_since: u64,
    applied: u64,
    /// Proposals applied (their index) or failed since the caller last took them.
    completed: Vec<(u64, Result<u64, QuorumError>)>,
    election_timeouts: Option<ElectionTimeouts>,
    /// Leader: followers sent a snapshot, and the ticks since.
    snapshots_unconfirmed: BTreeMap<u64, u64>,
}

impl<M: StateMachine> QuorumCore<M> {
    /// A node from the journal's replayed state `core` (for a new quorum, the initial
    /// configuration as its snapshot). The snapshot and the committed entries the journal
    /// holds are applied before this returns, so the state machine reflects everything
    /// this node knew before it stopped.
    pub fn new(
        settings: QuorumSettings,
        core: StoreCore,
        machine: M,
    ) -> Result<QuorumCore<M>, QuorumError> {
        let snapshot_index = core.snapshot_index();
        let conf_state = core.snapshot.get_metadata().get_conf_state().clone();
        if !core.snapshot.data.is_empty() {
            machine.restore(snapshot_index, &core.snapshot.data);
        }
        let store = MemoryStore(std::rc::Rc::new(std::cell::RefCell::new(core)));
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
        let mut core = QuorumCore {
            settings,
            raw,
            store,
            machine,
            conf_state,
            pending: BTreeSet::new(),
            next_proposal: 1,
            leader_since: u64::MAX,
            applied: snapshot_index,
            completed: Vec::new(),
            election_timeouts: None,
            snapshots_unconfirmed: BTreeMap::new(),
        };
        core.apply_known_committed();
        Ok(core)
    }

    /// Draws every randomized election timeout from `timeouts` instead of raft-rs's own
    /// random generator (a deterministic simulation).
    pub fn set_election_timeouts(&mut self, timeouts: ElectionTimeouts) {
        self.election_timeouts = Some(timeouts);
        self.after_input();
    }

    pub fn id(&self) -> u64 {
        self.settings.node_id
    }

    pub fn settings(&self) -> &QuorumSettings {
        &self.settings
    }

    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The node as other tasks see it.
    pub fn status(&self) -> QuorumStatus {
        let raft = &self.raw.raft;
        let is_leader = raft.state == StateRole::Leader;
        let leader_ready = is_leader && self.applied >= self.leader_since;
        QuorumStatus {
            leader: raft.leader_id,
            term: raft.term,
            is_leader,
            leader_ready,
            settled: leader_ready && self.applied >= raft.raft_log.last_index(),
            applied: self.applied,
        }
    }

    /// The commit index this node knows of.
    pub fn committed(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// A peer's message.
    pub fn step(&mut self, mut message: Message) {
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
        self.after_input();
    }

    /// Proposes `data`; its id comes back through `take_completed` once it is applied
    /// here (or failed). Only the leader proposes; others get `NotLeader`.
    pub fn propose(&mut self, data: &[u8]) -> Result<u64, QuorumError> {
        let not_leader = QuorumError::NotLeader {
            leader: self.raw.raft.leader_id,
        };
        if self.raw.raft.state != StateRole::Leader {
            return Err(not_leader);
        }
        let proposal = self.next_proposal;
        self.next_proposal += 1;
        let context = proposal_context(self.settings.node_id, proposal);
        self.raw
            .propose(context, data.to_vec())
            .map_err(|_| not_leader)?;
        self.pending.insert(proposal);
        self.after_input();
        Ok(proposal)
    }

    /// One tick of Raft's logical clock (`QuorumSettings::tick`).
    pub fn tick(&mut self) {
        self.raw.tick();
        self.retry_lost_snapshots();
        self.after_input();
    }

    /// A follower still waiting for its snapshot after `SNAPSHOT_CONFIRM_TICKS` is
    /// reported failed: the leader probes it again and sends a new snapshot.
    fn retry_lost_snapshots(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            self.snapshots_unconfirmed.clear();
            return;
        }
        let waiting: Vec<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(_, progress)| progress.state == ProgressState::Snapshot)
            .map(|(&id, _)| id)
            .collect();
        self.snapshots_unconfirmed
            .retain(|id, _| waiting.contains(id));
        for id in waiting {
            let ticks = self.snapshots_unconfirmed.entry(id).or_insert(0);
            *ticks += 1;
            if *ticks >= SNAPSHOT_CONFIRM_TICKS {
                tracing::info!(
                    follower = id,
                    "a snapshot was not confirmed in time; sending it again"
                );
                self.snapshots_unconfirmed.remove(&id);
                self.raw.report_snapshot(id, SnapshotStatus::Failure);
            }
        }
    }

    /// The first half of the next `Ready`, if raft-rs has one.
    pub fn begin_ready(&mut self) -> Option<ReadyRound> {
        if !self.raw.has_ready() {
            return None;
        }
        let mut ready = self.raw.ready();
        let messages = ready.take_messages();
        let mut writes = Vec::new();
        if !ready.snapshot().is_empty() {
            // The hard state beside the snapshot: raft-rs's newer one if this round has it,
            // never below the snapshot (a crash may lose the append that follows).
            let snapshot = ready.snapshot();
            let mut hard_state = ready
                .hs()
                .cloned()
                .unwrap_or_else(|| self.store.0.borrow().hard_state.clone());
            hard_state.commit = hard_state.commit.max(snapshot.get_metadata().index);
            hard_state.term = hard_state.term.max(snapshot.get_metadata().term);
            writes.push(JournalWrite::Compact(vec![
                JournalRecord::Snapshot(snapshot.clone()),
                JournalRecord::HardState(hard_state),
            ]));
        }
        let mut records: Vec<JournalRecord> = ready
            .entries()
            .iter()
            .cloned()
            .map(JournalRecord::Entry)
            .collect();
        if let Some(state) = ready.hs() {
            records.push(JournalRecord::HardState(state.clone()));
        }
        if !records.is_empty() {
            writes.push(JournalWrite::Append(records));
        }
        Some(ReadyRound {
            ready,
            messages,
            writes,
        })
    }

    /// The second half of `round`: call only once every write of `round` is durable.
    pub fn finish_ready(&mut self, round: ReadyRound) -> Finished {
        let mut ready = round.ready;
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone());
        }
        self.apply(ready.take_committed_entries());
        {
            let mut core = self.store.0.borrow_mut();
            core.append(ready.entries());
            if let Some(state) = ready.hs() {
                core.set_hard_state(state.clone());
            }
        }
        let mut finished = Finished {
            messages: ready.take_persisted_messages(),
            writes: Vec::new(),
        };
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut core = self.store.0.borrow_mut();
            core.hard_state.commit = commit;
            finished
                .writes
                .push(JournalWrite::Append(vec![JournalRecord::HardState(
                    core.hard_state.clone(),
                )]));
        }
        finished.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
        if let Some(compaction) = self.maybe_snapshot() {
            finished.writes.push(compaction);
        }
        self.after_input();
        finished
    }

    /// Proposals applied or failed since the last call: (id, index or why not).
    pub fn take_completed(&mut self) -> Vec<(u64, Result<u64, QuorumError>)> {
        std::mem::take(&mut self.completed)
    }

    /// The node stops: every proposal not applied yet fails.
    pub fn stop(&mut self) -> Vec<(u64, Result<u64, QuorumError>)> {
        let stopped = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|proposal| (proposal, Err(QuorumError::Stopped)));
        let mut completed = self.take_completed();
        completed.extend(stopped);
        completed
    }

    /// After every input: the leadership's first index, proposals a lost leadership will
    /// not apply, and (simulation) the election timeout raft-rs just drew.
    fn after_input(&mut self) {
        let is_leader = self.raw.raft.state == StateRole::Leader;
        if is_leader && self.leader_since == u64::MAX {
            // raft-rs appends an empty entry on election: once it is applied, every entry
            // of earlier terms is too.
            self.leader_since = self.raw.raft.raft_log.last_index();
        }
        if !is_leader {
            self.leader_since = u64::MAX;
            // A proposal of a lost leadership may or may not commit; its caller is told
            // so now instead of at its timeout.
            for proposal in std::mem::take(&mut self.pending) {
                self.completed.push((proposal, Err(QuorumError::Timeout)));
            }
        }
        if let Some(timeouts) = self.election_timeouts.as_mut() {
            // raft-rs resets the elapsed count whenever it draws a new timeout; drawing
            // ours whenever the count is zero replaces each of its draws.
            let raft = &mut self.raw.raft;
            if raft.election_elapsed == 0 {
                let min = raft.election_timeout();
                let timeout = timeouts(min, 2 * min).clamp(min, 2 * min - 1);
                raft.set_randomized_election_timeout(timeout);
            }
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
    /// those committed after `applied`; doing it here makes the state machine current
    /// before the node serves anything).
    fn apply_known_committed(&mut self) {
        let entries = {
            let core = self.store.0.borrow();
            let count = core.hard_state.commit.saturating_sub(core.snapshot_index()) as usize;
            core.entries[..count.min(core.entries.len())].to_vec()
        };
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
        debug_assert!(
            entry.index > self.applied,
            "entries apply in index order, once"
        );
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
        if let Some((node, proposal)) = proposal_of(&entry.context) {
            if node == self.settings.node_id && self.pending.remove(&proposal) {
                self.completed.push((proposal, Ok(entry.index)));
            }
        }
    }

    /// Once `snapshot_entries` have been applied since the last snapshot: the state
    /// machine is snapshotted, the store cut, and the journal compacted (returned).
    fn maybe_snapshot(&mut self) -> Option<JournalWrite> {
        let snapshot_index = self.store.0.borrow().snapshot_index();
        if self.applied < snapshot_index + self.settings.snapshot_entries {
            return None;
        }
        let term = self.store.term(self.applied).unwrap_or(0);
        let mut snapshot = Snapshot::default();
        snapshot.data = self.machine.snapshot();
        snapshot.mut_metadata().index = self.applied;
        snapshot.mut_metadata().term = term;
        snapshot
            .mut_metadata()
            .set_conf_state(self.conf_state.clone());
        let mut records = vec![JournalRecord::Snapshot(snapshot.clone())];
        {
            let core = self.store.0.borrow();
            let skip = (self.applied - snapshot_index) as usize;
            let after = &core.entries[skip.min(core.entries.len())..];
            records.extend(after.iter().cloned().map(JournalRecord::Entry));
            records.push(JournalRecord::HardState(core.hard_state.clone()));
        }
        self.store.0.borrow_mut().apply_snapshot(snapshot);
        tracing::debug!(index = self.applied, "metadata snapshot taken");
        Some(JournalWrite::Compact(records))
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

fn proposal_context(node: u64, proposal: u64) -> Vec<u8> {
    let mut context = BytesMut::with_capacity(16);
    context.put_u64(node);
    context.put_u64(proposal);
    context.to_vec()
}

fn proposal_of(context: &[u8]) -> Option<(u64, u64)> {
    let node = u64::from_be_bytes(context.get(..8)?.try_into().ok()?);
    let proposal = u64::from_be_bytes(context.get(8..16)?.try_into().ok()?);
    Some((node, proposal))
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use bytes::Bytes;
    use raft::eraftpb::{HardState, MessageType};

    use super::*;
    use crate::cluster::quorum::store::initial_snapshot;

    #[derive(Default)]
    struct Records(RefCell<Vec<Vec<u8>>>);

    impl StateMachine for Records {
        fn apply(&self, _index: u64, data: &[u8]) {
            self.0.borrow_mut().push(data.to_vec());
        }
        fn snapshot(&self) -> Bytes {
            Bytes::new()
        }
        fn restore(&self, _index: u64, _data: &[u8]) {}
    }

    fn node(id: u64, voters: Vec<u64>) -> QuorumCore<Records> {
        let store = StoreCore {
            snapshot: initial_snapshot(voters),
            ..StoreCore::default()
        };
        QuorumCore::new(QuorumSettings::new(id), store, Records::default()).expect("node")
    }

    /// Runs every `Ready` as if each write were durable at once; returns the messages.
    fn drain(core: &mut QuorumCore<Records>) -> Vec<Message> {
        let mut sent = Vec::new();
        while let Some(mut round) = core.begin_ready() {
            sent.append(&mut round.messages);
            let finished = core.finish_ready(round);
            sent.extend(finished.messages);
        }
        sent
    }

    #[test]
    fn a_proposal_completes_only_once_its_writes_are_durable_and_unsettles_the_leader_until_then() {
        let mut core = node(1, vec![1]);
        for _ in 0..100 {
            if core.status().leader_ready {
                break;
            }
            core.tick();
            drain(&mut core);
        }
        assert!(core.status().leader_ready, "a lone voter leads");
        assert!(core.status().settled, "nothing of its own in flight");
        let proposal = core.propose(b"x").expect("leader proposes");
        assert!(!core.status().settled, "its entry is not applied yet");
        let round = core.begin_ready().expect("the entry to persist");
        let logged = round.writes.iter().flat_map(JournalWrite::records).any(
            |record| matches!(record, JournalRecord::Entry(entry) if entry.data == b"x".to_vec()),
        );
        assert!(logged, "the entry is among the writes");
        assert!(core.take_completed().is_empty(), "nothing applied yet");
        assert!(core.machine().0.borrow().is_empty());
        core.finish_ready(round);
        drain(&mut core);
        let index = core.status().applied;
        assert_eq!(core.take_completed(), vec![(proposal, Ok(index))]);
        assert!(core.status().settled, "every entry it holds is applied");
        assert_eq!(*core.machine().0.borrow(), vec![b"x".to_vec()]);
    }

    #[test]
    fn a_vote_is_sent_only_after_the_vote_is_durable() {
        let mut voter = node(2, vec![1, 2, 3]);
        let mut request = Message::default();
        request.set_msg_type(MessageType::MsgRequestVote);
        request.from = 1;
        request.to = 2;
        request.term = 5;
        voter.step(request);
        let round = voter.begin_ready().expect("a vote to persist");
        let is_vote = |m: &Message| m.get_msg_type() == MessageType::MsgRequestVoteResponse;
        assert!(!round.messages.iter().any(is_vote), "not before the write");
        let hard_state = round.writes.iter().flat_map(JournalWrite::records).any(
            |record| matches!(record, JournalRecord::HardState(state) if state.vote == 1 && state.term == 5),
        );
        assert!(hard_state, "the vote is among the writes");
        let finished = voter.finish_ready(round);
        assert!(finished.messages.iter().any(is_vote), "after it");
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn hard_state(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            commit,
            ..HardState::default()
        }
    }

    /// A node restarted from `records`, as `Journal::open` replays them.
    fn restarted(id: u64, voters: Vec<u64>, records: Vec<JournalRecord>) -> QuorumCore<Records> {
        let mut store = StoreCore {
            snapshot: initial_snapshot(voters),
            ..StoreCore::default()
        };
        for record in records {
            store.replay(record);
        }
        store.finish_replay();
        QuorumCore::new(QuorumSettings::new(id), store, Records::default()).expect("node")
    }

    #[test]
    fn a_snapshot_journaled_with_an_older_hard_state_restarts() {
        // A follower installs a snapshot at index 64; the crash loses the append that
        // follows the compaction. raft-rs panicked at start ("hs.commit 63 is out of
        // range [64, 64]") when the hard state beside the snapshot said commit 63.
        let mut follower = node(2, vec![1, 2, 3]);
        let mut snapshot = initial_snapshot(vec![1, 2, 3]);
        snapshot.mut_metadata().index = 64;
        snapshot.mut_metadata().term = 3;
        let mut install = Message::default();
        install.set_msg_type(MessageType::MsgSnapshot);
        install.from = 1;
        install.to = 2;
        install.term = 3;
        install.set_snapshot(snapshot.clone());
        follower.step(install);
        let round = follower.begin_ready().expect("the snapshot to persist");
        let JournalWrite::Compact(compaction) = &round.writes[0] else {
            panic!("a snapshot compacts the journal first");
        };
        let kept = compaction.iter().any(
            |record| matches!(record, JournalRecord::HardState(state) if state.commit >= 64 && state.term >= 3),
        );
        assert!(kept, "the hard state beside it is not older than it");
        let restarted = restarted(2, vec![1, 2, 3], compaction.clone());
        assert_eq!(restarted.status().applied, 64);

        // A journal written before the fix: the older hard state after the snapshot.
        let old = vec![
            JournalRecord::Snapshot(snapshot),
            JournalRecord::HardState(hard_state(2, 63)),
        ];
        let restarted = restarted_from(old);
        assert_eq!(restarted.raw.raft.raft_log.committed, 64);
        assert_eq!(restarted.raw.raft.term, 3);
    }

    fn restarted_from(records: Vec<JournalRecord>) -> QuorumCore<Records> {
        restarted(2, vec![1, 2, 3], records)
    }

    #[test]
    fn entries_kept_without_their_hard_state_restart_at_their_term() {
        // A torn write kept two entries of term 4 and lost the hard state written with
        // them. At term 0, refusing a pre-vote from a node with a shorter log made raft-rs
        // panic ("term should be set when sending MsgRequestPreVoteResponse").
        let mut voter = restarted_from(vec![
            JournalRecord::Entry(entry(1, 4)),
            JournalRecord::Entry(entry(2, 4)),
        ]);
        assert_eq!(voter.raw.raft.term, 4);
        let mut request = Message::default();
        request.set_msg_type(MessageType::MsgRequestPreVote);
        request.from = 1;
        request.to = 2;
        request.term = 5;
        voter.step(request);
        let sent = drain(&mut voter);
        let answer = sent
            .iter()
            .find(|m| m.get_msg_type() == MessageType::MsgRequestPreVoteResponse)
            .expect("an answer");
        assert!(answer.reject, "a candidate with an empty log is refused");
        assert_eq!(answer.term, 4);
    }

    #[test]
    fn seeded_election_timeouts_replace_raft_rs_draws() {
        let mut core = node(1, vec![1, 2, 3]);
        let drawn = std::rc::Rc::new(RefCell::new(Vec::new()));
        let record = drawn.clone();
        core.set_election_timeouts(Box::new(move |min, max| {
            record.borrow_mut().push((min, max));
            min + 3
        }));
        assert_eq!(core.raw.raft.randomized_election_timeout(), 13);
        assert_eq!(drawn.borrow()[0], (10, 20));
    }
}
