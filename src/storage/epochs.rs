//! A partition's leader-epoch history: for each leader epoch, the first offset written in
//! it (Kafka's `leader-epoch-checkpoint`). Replicas truncate by it after a leader change
//! (KIP-101, KIP-279) and consumers check their position against it (KIP-320,
//! OffsetForLeaderEpoch). Sans-I/O; `Log` keeps one per partition and persists it.
//!
//! File format (Kafka's): a version line `0`, a count line, then one `<epoch> <start offset>`
//! line per entry, in increasing epoch and offset order.

/// Entries one partition keeps: one per leadership change, so a bound far beyond any real
/// history that still caps what a damaged file can make us allocate.
pub const ENTRIES_MAX: usize = 100_000;

pub const FILE_NAME: &str = "leader-epoch-checkpoint";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(i32, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leader epoch file is damaged: {0}")]
pub struct EpochsError(String);

impl LeaderEpochs {
    pub fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Records that `epoch` starts at `offset`. Returns whether anything changed: an epoch
    /// not newer than the latest is ignored (batches of the current epoch keep coming), and
    /// entries starting at or after `offset` are replaced (a new epoch starting where an
    /// older one wrote nothing that survived).
    pub fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        if epoch < 0 || self.latest().is_some_and(|(latest, _)| epoch <= latest) {
            return false;
        }
        self.entries.retain(|&(_, start)| start < offset);
        self.entries.push((epoch, offset));
        if self.entries.len() > ENTRIES_MAX {
            self.entries.remove(0);
        }
        true
    }

    /// Forgets the epochs that start at or after `end` (the log was truncated to `end`).
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < end);
        before != self.entries.len()
    }

    /// The log now starts at `start`: epochs wholly before it go; the one holding it now
    /// starts there.
    pub fn truncate_from_start(&mut self, start: i64) -> bool {
        let holding = self.entries.iter().rposition(|&(_, first)| first <= start);
        match holding {
            Some(index) if index > 0 || self.entries[index].1 != start => {
                self.entries.drain(..index);
                self.entries[0].1 = start;
                true
            }
            _ => false,
        }
    }

    /// Kafka's `endOffsetFor`: the largest epoch not above `epoch` and the offset where
    /// the next higher epoch starts (`log_end` for the latest); (-1, -1) if `epoch` is
    /// unknown (newer than any) or undefined.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (-1, -1);
        if epoch < 0 {
            return UNDEFINED;
        }
        match self.latest() {
            None => return UNDEFINED,
            Some((latest, _)) if latest == epoch => return (epoch, log_end),
            _ => {}
        }
        let Some(higher) = self.entries.iter().position(|&(e, _)| e > epoch) else {
            return UNDEFINED;
        };
        let higher_start = self.entries[higher].1;
        match higher.checked_sub(1) {
            Some(floor) => (self.entries[floor].0, higher_start),
            None => (epoch, higher_start),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            text.push_str(&format!("{epoch} {start}\n"));
        }
        text.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<LeaderEpochs, EpochsError> {
        let damaged = |what: &str| EpochsError(what.to_string());
        let text = std::str::from_utf8(bytes).map_err(|_| damaged("not UTF-8"))?;
        let mut lines = text.lines();
        if lines.next() != Some("0") {
            return Err(damaged("unknown version"));
        }
        let count: usize = lines
            .next()
            .and_then(|line| line.parse().ok())
            .ok_or_else(|| damaged("no entry count"))?;
        if count > ENTRIES_MAX {
            return Err(damaged("too many entries"));
        }
        let mut epochs = LeaderEpochs::default();
        for _ in 0..count {
            let line = lines
                .next()
                .ok_or_else(|| damaged("fewer entries than counted"))?;
            let (epoch, start) = line.split_once(' ').ok_or_else(|| damaged(line))?;
            let epoch: i32 = epoch.parse().map_err(|_| damaged(line))?;
            let start: i64 = start.parse().map_err(|_| damaged(line))?;
            let ordered = epochs
                .latest()
                .is_none_or(|(last_epoch, last_start)| epoch > last_epoch && start >= last_start);
            if epoch < 0 || start < 0 || !ordered {
                return Err(damaged(line));
            }
            epochs.entries.push((epoch, start));
        }
        Ok(epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> LeaderEpochs {
        let mut epochs = LeaderEpochs::default();
        assert!(epochs.assign(1, 0));
        assert!(!epochs.assign(1, 40), "same epoch: no new entry");
        assert!(epochs.assign(3, 100));
        assert!(epochs.assign(5, 250));
        epochs
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let epochs = history();
        assert_eq!(
            epochs.end_offset_for(5, 300),
            (5, 300),
            "latest: the log end"
        );
        assert_eq!(epochs.end_offset_for(3, 300), (3, 250));
        assert_eq!(
            epochs.end_offset_for(4, 300),
            (3, 250),
            "unknown middle: its floor"
        );
        assert_eq!(epochs.end_offset_for(1, 300), (1, 100));
        assert_eq!(
            epochs.end_offset_for(0, 300),
            (0, 0),
            "older than any: the first start"
        );
        assert_eq!(epochs.end_offset_for(6, 300), (-1, -1), "newer than any");
        assert_eq!(epochs.end_offset_for(-1, 300), (-1, -1));
        assert_eq!(LeaderEpochs::default().end_offset_for(0, 10), (-1, -1));
    }

    #[test]
    fn truncation_from_either_end() {
        let mut epochs = history();
        assert!(epochs.truncate_from_end(100));
        assert_eq!(epochs.entries(), &[(1, 0)]);
        let mut epochs = history();
        assert!(epochs.truncate_from_start(120));
        assert_eq!(epochs.entries(), &[(3, 120), (5, 250)]);
        assert!(!epochs.truncate_from_start(120));
        // A new epoch replaces entries at or past its start.
        let mut epochs = history();
        assert!(epochs.assign(7, 250));
        assert_eq!(epochs.entries(), &[(1, 0), (3, 100), (7, 250)]);
    }

    #[test]
    fn the_file_round_trips_and_damage_is_refused() {
        let epochs = history();
        assert_eq!(LeaderEpochs::decode(&epochs.encode()), Ok(epochs));
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n1\nx 0\n",
            "0\n2\n3 10\n1 20\n",
            "0\n999999999\n",
            "0\n1\n-1 0\n",
        ] {
            assert!(LeaderEpochs::decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
