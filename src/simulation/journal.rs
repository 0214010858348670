//! A node's metadata journal on a simulated disk. A write lands at once, unsynced; a
//! sync makes everything written durable; a crash keeps what was durable and a prefix of
//! the rest (the whole batches a torn write leaves, as the real journal's recovery scan
//! keeps them). A compaction deletes older records only once it is durable, as
//! `Journal::write` does.

use crate::cluster::quorum::codec::JournalRecord;
use crate::cluster::quorum::core::JournalWrite;
use crate::cluster::quorum::store::{initial_snapshot, StoreCore};

use super::rng::SimRng;

#[derive(Default)]
pub struct SimJournal {
    records: Vec<JournalRecord>,
    /// Records below this are durable.
    durable: usize,
    /// The start of a compaction not yet durable: once it is, every record before goes.
    compaction: Option<usize>,
}

impl SimJournal {
    pub fn write(&mut self, write: JournalWrite) {
        if let JournalWrite::Compact(_) = write {
            self.compaction = Some(self.records.len());
        }
        self.records.extend(write.records().iter().cloned());
    }

    /// fdatasync: everything written is durable; a compaction written deletes the rest.
    pub fn sync(&mut self) {
        self.durable = self.records.len();
        if let Some(start) = self.compaction.take() {
            self.records.drain(..start);
            self.durable = self.records.len();
        }
    }

    /// A crash: the unsynced tail survives only in part (a prefix), chosen by `rng`.
    pub fn crash(&mut self, rng: &mut SimRng) {
        let unsynced = (self.records.len() - self.durable) as u64;
        let kept = self.durable + rng.below(unsynced + 1) as usize;
        self.records.truncate(kept);
        self.durable = kept;
        self.compaction = None;
    }

    /// The node's state as a restart replays it; a new quorum starts from `voters`.
    pub fn replay(&self, voters: &[u64]) -> StoreCore {
        let mut core = StoreCore::default();
        for record in &self.records {
            core.replay(record.clone());
        }
        core.finish_replay();
        if core
            .snapshot
            .get_metadata()
            .get_conf_state()
            .voters
            .is_empty()
        {
            core.snapshot = initial_snapshot(voters.to_vec());
        }
        core
    }

    pub fn records(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{Entry, HardState};

    use super::*;

    fn entry(index: u64) -> JournalRecord {
        JournalRecord::Entry(Entry {
            index,
            term: 1,
            ..Entry::default()
        })
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_a_prefix_of_the_rest() {
        let mut rng = SimRng::new(3);
        for _ in 0..50 {
            let mut journal = SimJournal::default();
            journal.write(JournalWrite::Append(vec![entry(1), entry(2)]));
            journal.sync();
            journal.write(JournalWrite::Append(vec![entry(3), entry(4), entry(5)]));
            journal.crash(&mut rng);
            let core = journal.replay(&[1, 2, 3]);
            assert!(
                (2..=5).contains(&core.last_index()),
                "{}",
                core.last_index()
            );
            assert_eq!(
                core.snapshot.get_metadata().get_conf_state().voters,
                vec![1, 2, 3]
            );
        }
    }

    #[test]
    fn a_compaction_deletes_older_records_only_once_durable() {
        let mut journal = SimJournal::default();
        journal.write(JournalWrite::Append(vec![entry(1), entry(2)]));
        journal.sync();
        let mut snapshot = initial_snapshot(vec![1]);
        snapshot.mut_metadata().index = 2;
        snapshot.mut_metadata().term = 1;
        journal.write(JournalWrite::Compact(vec![
            JournalRecord::Snapshot(snapshot),
            JournalRecord::HardState(HardState::default()),
        ]));
        assert_eq!(journal.records(), 4, "not durable yet: nothing deleted");
        journal.sync();
        assert_eq!(journal.records(), 2);
        assert_eq!(journal.replay(&[1]).snapshot_index(), 2);
    }
}
