//! Committed offsets: the in-memory table and its log records. Sans-I/O.
//!
//! Every commit (and deletion) is appended to the coordinator shard's internal log
//! `__consumer_offsets-<shard>` as records whose values are JSON [`OffsetRecord`]s; on start
//! the log is replayed from its start. Compaction by key: when the log holds many more
//! records than live offsets, a snapshot of every live offset is appended and the log start
//! moved to it, so older segments are deleted whole.
//!
//! Expiry (Kafka's `offsets.retention.minutes`): [`OffsetStore::expired`] names the offsets
//! whose retention has passed under each group's [`Expiry`] policy; the coordinator writes
//! their removals.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use crate::record_batch::{self, BatchError, RecordLimits};

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

/// (group, topic, partition).
pub type Key = (String, String, i32);

/// Superseded records tolerated in the log beyond twice the live offsets before a snapshot
/// pays off.
pub const COMPACTION_SLACK_RECORDS: usize = 10_000;

/// When a group's offsets expire (Kafka's `GroupMetadata.removeExpiredOffsets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// An empty group, empty since this time (ms): all its offsets expire together once the
    /// retention has passed since.
    EmptySince(i64),
    /// Each offset on its own, the retention counted from its commit: standalone committers,
    /// and empty groups whose emptied time is unknown (after a restart).
    ByCommit,
    /// A stable consumer group: offsets of topics no member subscribes to, by commit time.
    Unsubscribed(HashSet<String>),
    /// Nothing expires (the group is rebalancing, or not a consumer group).
    Keep,
}

#[derive(Debug)]
pub struct OffsetStore {
    offsets: BTreeMap<Key, Committed>,
    /// Records in the log since its start: decides when to compact.
    records_in_log: usize,
    compaction_slack_records: usize,
}

impl Default for OffsetStore {
    fn default() -> Self {
        OffsetStore {
            offsets: BTreeMap::new(),
            records_in_log: 0,
            compaction_slack_records: COMPACTION_SLACK_RECORDS,
        }
    }
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

    /// True if `group` has any committed offset (one range step, no copy).
    pub fn has_group(&self, group: &str) -> bool {
        self.offsets
            .range((group.to_string(), String::new(), i32::MIN)..)
            .next()
            .is_some_and(|((g, _, _), _)| g == group)
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
        self.records_in_log > 2 * self.offsets.len() + self.compaction_slack_records
    }

    /// Tests compact small logs.
    #[cfg(test)]
    pub fn set_compaction_slack_records(&mut self, records: usize) {
        self.compaction_slack_records = records;
    }

    /// The offsets whose retention has passed at `now_ms`, under each group's policy
    /// (asked once per group, in group order).
    pub fn expired(
        &self,
        now_ms: i64,
        retention_ms: i64,
        mut policy: impl FnMut(&str) -> Expiry,
    ) -> Vec<Key> {
        let passed = |since_ms: i64| now_ms.saturating_sub(since_ms) >= retention_ms;
        let mut expired = Vec::new();
        let mut current: Option<(&str, Expiry)> = None;
        for ((group, topic, partition), committed) in &self.offsets {
            if current.as_ref().is_none_or(|(g, _)| *g != group.as_str()) {
                current = Some((group.as_str(), policy(group)));
            }
            let Some((_, expiry)) = &current else {
                continue;
            };
            let expires = match expiry {
                Expiry::EmptySince(since_ms) => passed(*since_ms),
                Expiry::ByCommit => passed(committed.timestamp_ms),
                Expiry::Unsubscribed(topics) => {
                    !topics.contains(topic) && passed(committed.timestamp_ms)
                }
                Expiry::Keep => false,
            };
            if expires {
                expired.push((group.clone(), topic.clone(), *partition));
            }
        }
        expired
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

/// Replays one stored batch of the offsets log into `store`: all of its records, or none
/// if the batch is damaged (CRC, framing, or any record), so a bad batch costs only itself.
/// A record whose value is not an offset record is skipped.
pub fn replay_batch(
    batch: &[u8],
    limits: RecordLimits,
    store: &mut OffsetStore,
) -> Result<(), BatchError> {
    let view = record_batch::verify(batch, batch.len())?;
    let mut decoded = Vec::new();
    record_batch::for_each_record(&view, limits, |record| {
        if let Some(offset) = record.value.and_then(decode) {
            decoded.push(offset);
        }
        ControlFlow::Continue(())
    })?;
    for offset in decoded {
        store.apply(offset);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(group: &str, topic: &str, partition: i32, offset: Option<i64>) -> OffsetRecord {
        committed_at(group, topic, partition, offset, 0)
    }

    fn committed_at(
        group: &str,
        topic: &str,
        partition: i32,
        offset: Option<i64>,
        timestamp_ms: i64,
    ) -> OffsetRecord {
        OffsetRecord {
            group: group.into(),
            topic: topic.into(),
            partition,
            committed: offset.map(|offset| Committed {
                offset,
                leader_epoch: -1,
                metadata: None,
                timestamp_ms,
            }),
        }
    }

    fn key(group: &str, topic: &str, partition: i32) -> Key {
        (group.into(), topic.into(), partition)
    }

    #[test]
    fn expiry_follows_each_groups_policy() {
        const RETENTION_MS: i64 = 1_000;
        let mut store = OffsetStore::default();
        for r in [
            // An empty group: everything expires together, whatever the commit times.
            committed_at("empty", "t", 0, Some(1), 100),
            committed_at("empty", "t", 1, Some(1), 5_000),
            // A standalone committer: each offset by its commit time.
            committed_at("simple", "t", 0, Some(1), 100),
            committed_at("simple", "t", 1, Some(1), 4_500),
            // A stable consumer group: only topics nobody subscribes to.
            committed_at("stable", "read", 0, Some(1), 100),
            committed_at("stable", "dropped", 0, Some(1), 100),
            committed_at("stable", "dropped", 1, Some(1), 4_500),
            // Rebalancing: nothing.
            committed_at("busy", "t", 0, Some(1), 0),
        ] {
            store.apply(r);
        }
        let mut asked = Vec::new();
        let policy = |group: &str| {
            asked.push(group.to_string());
            match group {
                "empty" => Expiry::EmptySince(4_000),
                "simple" => Expiry::ByCommit,
                "stable" => Expiry::Unsubscribed(HashSet::from(["read".to_string()])),
                _ => Expiry::Keep,
            }
        };
        let expired = store.expired(5_000, RETENTION_MS, policy);
        assert_eq!(
            expired,
            vec![
                key("empty", "t", 0),
                key("empty", "t", 1),
                key("simple", "t", 0),
                key("stable", "dropped", 0),
            ]
        );
        assert_eq!(
            asked,
            ["busy", "empty", "simple", "stable"],
            "once per group"
        );
        // One millisecond earlier the empty group has not been empty long enough.
        let expired = store.expired(4_999, RETENTION_MS, |group| match group {
            "empty" => Expiry::EmptySince(4_000),
            _ => Expiry::Keep,
        });
        assert!(expired.is_empty());
        assert!(store.has_group("busy") && store.has_group("stable"));
        assert!(!store.has_group("bus") && !store.has_group("zzz") && !store.has_group(""));
    }

    #[test]
    fn replay_applies_whole_batches_and_skips_damaged_ones() {
        let limits = RecordLimits::default();
        let values = [
            encode(&record("g", "t", 0, Some(5))),
            b"not json".to_vec(),
            encode(&record("g", "t", 1, Some(7))),
        ];
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let batch = record_batch::build_batch(&refs, 1);
        let mut store = OffsetStore::default();
        replay_batch(&batch, limits, &mut store).expect("valid batch");
        assert_eq!(store.live(), 2);
        // The same batch with a record cut short: nothing of it is applied.
        let mut cut = record_batch::build_batch(&refs, 1);
        cut.truncate(cut.len() - 1);
        let length = (cut.len() - record_batch::LOG_OVERHEAD_BYTES) as i32;
        cut[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&cut[21..]);
        cut[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut empty = OffsetStore::default();
        assert!(replay_batch(&cut, limits, &mut empty).is_err());
        assert_eq!(empty.live(), 0);
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
