//! The node's Raft log in memory, as raft-rs reads it (`raft::Storage`). The journal
//! (`journal.rs`) makes every change durable before raft-rs is told it is persisted; this
//! is the copy it reads from. The metadata log is small (a snapshot replaces its prefix),
//! so it is kept whole.

use std::cell::RefCell;
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::codec::JournalRecord;

#[derive(Default)]
pub struct StoreCore {
    pub hard_state: HardState,
    /// The latest snapshot; its metadata holds the configuration as of its index.
    pub snapshot: Snapshot,
    /// Entries after the snapshot's index, contiguous.
    pub entries: Vec<Entry>,
}

impl StoreCore {
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// Appends `entries`, replacing any at or after the first one's index (a new leader's
    /// entries overwrite a follower's uncommitted tail).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let base = self.snapshot_index();
        if first.index <= base {
            // Already covered by the snapshot: keep only what lies beyond it.
            let skip = (base + 1 - first.index) as usize;
            if skip < entries.len() {
                self.append(&entries[skip..]);
            }
            return;
        }
        let keep = (first.index - base - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Replays one journal record (at start, and a simulated node's restart).
    pub fn replay(&mut self, record: JournalRecord) {
        match record {
            JournalRecord::Entry(entry) => self.append(std::slice::from_ref(&entry)),
            JournalRecord::HardState(state) => self.set_hard_state(state),
            JournalRecord::Snapshot(snapshot) => self.apply_snapshot(snapshot),
        }
    }

    /// Takes `state`, never below what the snapshot already proves: a snapshot's index is
    /// committed and its term was reached. A hard state written beside a snapshot may be
    /// older than it (the one stored before the snapshot arrived); taken as it is, a
    /// commit index below the snapshot makes raft-rs panic at the next start
    /// ("hs.commit is out of range").
    pub fn set_hard_state(&mut self, mut state: HardState) {
        let metadata = self.snapshot.get_metadata();
        state.commit = state.commit.max(metadata.index);
        state.term = state.term.max(metadata.term);
        self.hard_state = state;
    }

    /// After a replay: a commit index is never past the entries the journal holds (the
    /// hard state may have been written after entries a crash then lost), and the term
    /// is never below the last entry's (a torn write can keep entries and lose the hard
    /// state written with them; a node holding entries of term T was at term T or later).
    /// raft-rs assumes both: at term 0 with entries, a node that refuses a pre-vote
    /// panics ("term should be set when sending MsgRequestPreVoteResponse").
    pub fn finish_replay(&mut self) {
        self.hard_state.commit = self.hard_state.commit.min(self.last_index());
        let last_term = self
            .entries
            .last()
            .map_or(self.snapshot.get_metadata().term, |entry| entry.term);
        if self.hard_state.term < last_term {
            self.hard_state.term = last_term;
            // The vote belonged to an older term.
            self.hard_state.vote = 0;
        }
    }

    /// Installs `snapshot`: every entry it covers goes.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        let term = snapshot.get_metadata().term;
        let base = self.snapshot_index();
        let covered = index.saturating_sub(base) as usize;
        // Keep entries after the snapshot only if the log agrees with it at its index.
        let agrees = covered >= 1
            && self
                .entries
                .get(covered - 1)
                .is_some_and(|entry| entry.term == term);
        if agrees {
            self.entries.drain(..covered);
        } else {
            self.entries.clear();
        }
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
        if self.hard_state.term < term {
            self.hard_state.term = term;
        }
        self.snapshot = snapshot;
    }
}

/// Shared between the node (which changes it after the journal persisted the change) and
/// raft-rs (which reads it). One shard only: `Rc<RefCell>`, never held across an await.
#[derive(Clone, Default)]
pub struct MemoryStore(pub Rc<RefCell<StoreCore>>);

fn store_error(error: StorageError) -> raft::Error {
    raft::Error::Store(error)
}

impl raft::Storage for MemoryStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.0.borrow();
        Ok(RaftState {
            hard_state: core.hard_state.clone(),
            conf_state: core.snapshot.get_metadata().get_conf_state().clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.0.borrow();
        let base = core.snapshot_index();
        if low <= base {
            return Err(store_error(StorageError::Compacted));
        }
        if high > core.last_index() + 1 || low > high {
            return Err(store_error(StorageError::Unavailable));
        }
        let from = (low - base - 1) as usize;
        let to = (high - base - 1) as usize;
        let mut entries = core.entries[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let core = self.0.borrow();
        let base = core.snapshot_index();
        if index == base {
            return Ok(core.snapshot.get_metadata().term);
        }
        if index < base {
            return Err(store_error(StorageError::Compacted));
        }
        match core.entries.get((index - base - 1) as usize) {
            Some(entry) => Ok(entry.term),
            None => Err(store_error(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let core = self.0.borrow();
        if core.snapshot_index() < request_index {
            return Err(store_error(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(core.snapshot.clone())
    }
}

/// The configuration a brand-new quorum starts from: `voters`, nothing logged.
pub fn initial_snapshot(voters: Vec<u64>) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.mut_metadata().set_conf_state(ConfState {
        voters,
        ..ConfState::default()
    });
    snapshot
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // protobuf types: built field by field
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        let mut entry = Entry::default();
        entry.index = index;
        entry.term = term;
        entry
    }

    #[test]
    fn appends_overwrite_a_conflicting_tail_and_snapshots_cut_the_prefix() {
        let store = MemoryStore::default();
        store.0.borrow_mut().snapshot = initial_snapshot(vec![1, 2, 3]);
        store
            .0
            .borrow_mut()
            .append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        store.0.borrow_mut().append(&[entry(2, 2)]);
        assert_eq!(store.last_index().unwrap(), 2);
        assert_eq!(store.term(2).unwrap(), 2);
        let mut snapshot = initial_snapshot(vec![1, 2, 3]);
        snapshot.mut_metadata().index = 1;
        snapshot.mut_metadata().term = 1;
        store.0.borrow_mut().apply_snapshot(snapshot);
        assert_eq!(store.first_index().unwrap(), 2);
        assert_eq!(store.term(1).unwrap(), 1);
        assert!(store.term(0).is_err());
        assert_eq!(
            store
                .entries(2, 3, None, GetEntriesContext::empty(false))
                .unwrap(),
            vec![entry(2, 2)]
        );
        // Entries the snapshot already covers are skipped on append.
        store
            .0
            .borrow_mut()
            .append(&[entry(1, 1), entry(2, 2), entry(3, 2)]);
        assert_eq!(store.last_index().unwrap(), 3);
        assert_eq!(
            store.initial_state().unwrap().conf_state.voters,
            vec![1, 2, 3]
        );
    }
}
