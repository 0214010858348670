//! Committed offsets: the in-memory table and its log records. Sans-I/O.
//!
//! Every commit (and deletion) is appended to the coordinator shard's internal log
//! `__consumer_offsets-<shard>` as records whose values are JSON [`OffsetRecord`]s; on start
//! the log is replayed from its start. Compaction by key: when the log holds many more
//! records than live offsets, a snapshot of every live offset is appended and the log start
//! moved to it, so older segments are deleted whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Kafka's `offset.metadata.max.bytes`.
pub const METADATA_BYTES_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub timestamp_ms: i64,
}

/// One log record: an offset for (group, topic, partition), or its removal (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: Option<Committed>,
}

type Key = (String, String, i32);

#[derive(Debug, Default)]
pub struct OffsetStore {
    offsets: BTreeMap<Key, Committed>,
    /// Records in the log since its start: decides when to compact.
    records_in_log: usize,
}

impl OffsetStore {
    pub fn apply(&mut self, record: OffsetRecord) {
        let key = (record.group, record.topic, record.partition);
        match record.committed {
            Some(committed) => {
                self.offsets.insert(key, committed);
            }
            None => {
                self.offsets.remove(&key);
            }
        }
        self.records_in_log += 1;
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.offsets
            .get(&(group.to_string(), topic.to_string(), partition))
    }

    /// Every committed offset of `group`: (topic, partition, offset).
    pub fn of_group(&self, group: &str) -> Vec<(String, i32, Committed)> {
        self.offsets
            .range((group.to_string(), String::new(), i32::MIN)..)
            .take_while(|((g, _, _), _)| g == group)
            .map(|((_, topic, partition), committed)| {
                (topic.clone(), *partition, committed.clone())
            })
            .collect()
    }

    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.offsets.keys().map(|(g, _, _)| g.clone()).collect();
        groups.dedup();
        groups
    }

    pub fn live(&self) -> usize {
        self.offsets.len()
    }

    /// True when the log holds so many superseded records that a snapshot pays off.
    pub fn wants_compaction(&self) -> bool {
        self.records_in_log > 2 * self.offsets.len() + 10_000
    }

    /// Every live offset as records, for a snapshot; resets the record count to them.
    pub fn snapshot(&mut self) -> Vec<OffsetRecord> {
        self.records_in_log = self.offsets.len();
        self.offsets
            .iter()
            .map(|((group, topic, partition), committed)| OffsetRecord {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                committed: Some(committed.clone()),
            })
            .collect()
    }
}

pub fn encode(record: &OffsetRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("offset records always serialize")
}

pub fn decode(bytes: &[u8]) -> Option<OffsetRecord> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(group: &str, topic: &str, partition: i32, offset: Option<i64>) -> OffsetRecord {
        OffsetRecord {
            group: group.into(),
            topic: topic.into(),
            partition,
            committed: offset.map(|offset| Committed {
                offset,
                leader_epoch: -1,
                metadata: None,
                timestamp_ms: 0,
            }),
        }
    }

    #[test]
    fn later_records_win_and_removals_delete() {
        let mut store = OffsetStore::default();
        for r in [
            record("g", "t", 0, Some(5)),
            record("g", "t", 0, Some(9)),
            record("g", "t", 1, Some(3)),
            record("h", "t", 0, Some(1)),
        ] {
            store.apply(decode(&encode(&r)).expect("round trip"));
        }
        assert_eq!(store.get("g", "t", 0).map(|c| c.offset), Some(9));
        assert_eq!(store.of_group("g").len(), 2);
        store.apply(record("g", "t", 1, None));
        assert_eq!(store.of_group("g").len(), 1);
        assert_eq!(store.groups(), vec!["g".to_string(), "h".to_string()]);
        assert!(decode(b"not json").is_none());
    }

    #[test]
    fn compaction_is_wanted_only_when_the_log_is_mostly_superseded() {
        let mut store = OffsetStore::default();
        // One live offset: compaction pays off past 2 * 1 + 10,000 records.
        for offset in 0..10_002 {
            store.apply(record("g", "t", 0, Some(offset)));
        }
        assert!(!store.wants_compaction());
        store.apply(record("g", "t", 0, Some(1)));
        assert!(store.wants_compaction());
        assert_eq!(store.snapshot().len(), 1);
        assert!(!store.wants_compaction());
    }
}
