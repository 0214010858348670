//! Per-shard cache of recently appended batches, so tailing consumers never touch the disk.
//!
//! Entries are whole batches as stored (offsets assigned), keyed by (log id, base offset).
//! Eviction is first-in first-out by bytes: the tail of a log is the newest data, which is
//! what tailing consumers read. Sans-I/O.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

type Key = (u64, i64);

struct Entry {
    batch: Bytes,
    last_offset: i64,
}

pub struct BatchCache {
    entries: BTreeMap<Key, Entry>,
    /// Insertion order for eviction. May hold keys already invalidated; those are skipped
    /// and the queue is compacted when stale keys outnumber live ones.
    order: VecDeque<Key>,
    bytes: usize,
    bytes_max: usize,
}

/// Batches served from the cache: contiguous, in offset order.
#[derive(Debug, Default)]
pub struct CachedRead {
    pub batches: Vec<Bytes>,
    pub bytes: usize,
    /// The offset after the last batch returned.
    pub next_offset: i64,
}

impl BatchCache {
    pub fn new(bytes_max: usize) -> BatchCache {
        BatchCache {
            entries: BTreeMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn insert(&mut self, log_id: u64, base_offset: i64, last_offset: i64, batch: Bytes) {
        if batch.len() > self.bytes_max {
            return;
        }
        let key = (log_id, base_offset);
        self.bytes += batch.len();
        if let Some(old) = self.entries.insert(key, Entry { batch, last_offset }) {
            self.bytes -= old.batch.len();
        }
        self.order.push_back(key);
        while self.bytes > self.bytes_max {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.batch.len();
            }
        }
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order.retain(|key| entries.contains_key(key));
        }
    }

    /// Contiguous cached batches starting with the one that holds `offset`, stopping before
    /// `end_offset`, before exceeding `bytes_max`, or at the first gap. With `min_one` the
    /// first batch is returned even if larger than `bytes_max` (KIP-74); without it the read
    /// may be empty. `None` if the batch holding `offset` is not cached.
    pub fn read(
        &self,
        log_id: u64,
        offset: i64,
        bytes_max: usize,
        end_offset: i64,
        min_one: bool,
    ) -> Option<CachedRead> {
        let (&(found_log, first_base), first) =
            self.entries.range(..=(log_id, offset)).next_back()?;
        if found_log != log_id || first.last_offset < offset {
            return None;
        }
        let mut read = CachedRead {
            next_offset: first_base,
            ..CachedRead::default()
        };
        for (&(entry_log, base_offset), entry) in self.entries.range((log_id, first_base)..) {
            let fits =
                (read.batches.is_empty() && min_one) || read.bytes + entry.batch.len() <= bytes_max;
            if entry_log != log_id
                || base_offset != read.next_offset
                || base_offset >= end_offset
                || !fits
            {
                break;
            }
            read.bytes += entry.batch.len();
            read.batches.push(entry.batch.clone());
            read.next_offset = entry.last_offset + 1;
        }
        Some(read)
    }

    /// Forgets every batch of `log_id` that holds an offset at or past `offset`.
    pub fn invalidate_from(&mut self, log_id: u64, offset: i64) {
        let doomed: Vec<Key> = self
            .entries
            .range((log_id, i64::MIN)..=(log_id, i64::MAX))
            .filter(|(_, entry)| entry.last_offset >= offset)
            .map(|(key, _)| *key)
            .collect();
        for key in doomed {
            if let Some(entry) = self.entries.remove(&key) {
                self.bytes -= entry.batch.len();
            }
        }
    }

    /// Forgets every batch of `log_id` below `offset` (retention moved the log start).
    pub fn invalidate_before(&mut self, log_id: u64, offset: i64) {
        let doomed: Vec<Key> = self
            .entries
            .range((log_id, i64::MIN)..(log_id, offset))
            .map(|(key, _)| *key)
            .collect();
        for key in doomed {
            if let Some(entry) = self.entries.remove(&key) {
                self.bytes -= entry.batch.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    /// Log 1 holds batches of 10 offsets and 100 bytes: [0..9], [10..19], ...
    fn cache_with(batches: i64, bytes_max: usize) -> BatchCache {
        let mut cache = BatchCache::new(bytes_max);
        for index in 0..batches {
            cache.insert(1, index * 10, index * 10 + 9, batch(100));
        }
        cache
    }

    #[test]
    fn reads_contiguous_batches_from_the_one_holding_the_offset() {
        let cache = cache_with(10, 10_000);
        let read = cache.read(1, 25, 250, i64::MAX, true).expect("cached");
        assert_eq!(read.batches.len(), 2);
        assert_eq!(read.next_offset, 40);
        // The first batch is served even when it alone exceeds the byte budget.
        assert_eq!(
            cache
                .read(1, 25, 1, i64::MAX, true)
                .expect("cached")
                .batches
                .len(),
            1
        );
        // The end offset bounds the read (e.g. the high watermark).
        assert_eq!(
            cache
                .read(1, 0, 10_000, 30, true)
                .expect("cached")
                .next_offset,
            30
        );
        assert!(cache.read(1, 100, 10_000, i64::MAX, true).is_none());
        assert!(cache.read(2, 5, 10_000, i64::MAX, true).is_none());
    }

    #[test]
    fn without_min_one_a_read_never_exceeds_its_budget() {
        let cache = cache_with(10, 10_000);
        // The batch holding the offset is cached but larger than the budget: an empty read,
        // not `None`, so the caller does not go to the disk for it.
        let read = cache.read(1, 25, 99, i64::MAX, false).expect("cached");
        assert!(read.batches.is_empty());
        assert_eq!(read.bytes, 0);
        let read = cache.read(1, 25, 250, i64::MAX, false).expect("cached");
        assert_eq!((read.batches.len(), read.bytes), (2, 200));
        let read = cache.read(1, 25, 300, i64::MAX, false).expect("cached");
        assert_eq!((read.batches.len(), read.next_offset), (3, 50));
    }

    #[test]
    fn evicts_oldest_first_and_stays_within_its_budget() {
        let cache = cache_with(10, 550);
        assert!(cache.bytes() <= 550);
        assert!(cache.read(1, 0, 10_000, i64::MAX, true).is_none());
        let read = cache
            .read(1, 50, 10_000, i64::MAX, true)
            .expect("newest kept");
        assert_eq!(read.next_offset, 100);
    }

    #[test]
    fn invalidation_drops_exactly_the_named_range() {
        let mut cache = cache_with(10, 10_000);
        cache.insert(2, 0, 9, batch(100));
        cache.invalidate_from(1, 55);
        assert_eq!(
            cache
                .read(1, 0, 10_000, i64::MAX, true)
                .expect("kept")
                .next_offset,
            50
        );
        cache.invalidate_before(1, 20);
        assert!(cache.read(1, 5, 10_000, i64::MAX, true).is_none());
        assert!(cache.read(1, 25, 10_000, i64::MAX, true).is_some());
        assert!(cache.read(2, 0, 10_000, i64::MAX, true).is_some());
        assert_eq!(cache.bytes(), 400);
    }

    #[test]
    fn stale_eviction_keys_are_compacted() {
        let mut cache = BatchCache::new(1 << 20);
        for round in 0..5_000 {
            cache.insert(1, round, round, batch(10));
            cache.invalidate_from(1, round);
        }
        assert!(cache.order.len() <= 1024 + 1);
        assert_eq!(cache.bytes(), 0);
    }
}
