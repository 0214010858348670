//! A partition this shard owns: its log and its replication state. The replication state
//! is reached only through the methods here, which keep its invariants
//! (`replication::state`); what they read is a copy, never a borrow held by the caller.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use event_listener::{Event, EventListener};
use uuid::Uuid;

use super::replication::state::{FollowerProgress, IsrChange, ReplicaState};
use crate::cluster::metadata::{PartitionState, Topic};
use crate::runtime::metrics::{self, Counter};
use crate::storage::{Log, StorageError};

/// Records appended by produce, by topic.
pub const PRODUCE_RECORDS: &str = "petrel_produce_records_total";
/// Bytes of record batches appended by produce, by topic.
pub const PRODUCE_BYTES: &str = "petrel_produce_bytes_total";

/// Records and bytes produce appended to a topic's partitions on this shard.
#[derive(Clone)]
pub struct ProduceMeasures {
    pub records: Counter,
    pub bytes: Counter,
}

impl ProduceMeasures {
    pub fn of(topic: &str) -> ProduceMeasures {
        let labels = || vec![("topic", topic.to_string())];
        ProduceMeasures {
            records: metrics::counter(PRODUCE_RECORDS, labels()),
            bytes: metrics::counter(PRODUCE_BYTES, labels()),
        }
    }
}

/// Who leads the partition, as this broker knows it (a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub leader: i32,
    pub leader_epoch: i32,
    pub is_leader: bool,
    /// This broker copies the partition from a live leader.
    pub follows: bool,
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub log: Rc<Log>,
    /// Leader or follower, the ISR, followers' progress.
    replica: RefCell<ReplicaState>,
    /// Fired when the high watermark may have moved because of a follower or a leader's
    /// answer (the log's own `on_written` covers local writes).
    replicated: Event,
    /// Held while a follower applies a leader's answer (truncation, appends): the sessions
    /// of an old and a new leader never interleave their changes to this log.
    replica_writes: async_lock::Mutex<()>,
    /// What produce appended here (the metrics seam).
    pub produced: ProduceMeasures,
}

impl Partition {
    /// Partition `index` of `topic` on broker `node`, with its opened `log`; its role is
    /// the catalogue's as of now.
    pub fn new(
        topic: &Topic,
        index: i32,
        node: i32,
        log: Rc<Log>,
        produced: ProduceMeasures,
    ) -> Partition {
        let replica = ReplicaState::open(
            node,
            topic.replicas_of(index),
            topic.state_of(index),
            log.next_offset(),
            log.written_offset(),
        );
        Partition {
            topic: topic.name.clone(),
            topic_id: topic.id,
            index,
            log,
            replica: RefCell::new(replica),
            replicated: Event::new(),
            replica_writes: async_lock::Mutex::new(()),
            produced,
        }
    }

    pub fn role(&self) -> Role {
        let replica = self.replica.borrow();
        Role {
            leader: replica.leader(),
            leader_epoch: replica.leader_epoch(),
            is_leader: replica.is_leader(),
            follows: replica.follows(),
        }
    }

    /// Whether this broker leads the partition at `leader_epoch`.
    pub fn leads_at(&self, leader_epoch: i32) -> bool {
        let replica = self.replica.borrow();
        replica.is_leader() && replica.leader_epoch() == leader_epoch
    }

    pub fn in_sync_replicas(&self) -> usize {
        self.replica.borrow().isr().len()
    }

    pub fn is_replica(&self, broker: i32) -> bool {
        self.replica.borrow().is_replica(broker)
    }

    /// Whether this broker leads it or is in its ISR.
    pub fn involves(&self, broker: i32) -> bool {
        let replica = self.replica.borrow();
        replica.leader() == broker || replica.isr().contains(&broker)
    }

    /// Takes the catalogue's view of the partition (`Shard::set_metadata`).
    pub fn take_catalogue(&self, replicas: &[i32], state: &PartitionState) {
        let log_end = self.log.next_offset();
        self.replica.borrow_mut().update(replicas, state, log_end);
        self.replicated.notify(usize::MAX);
    }

    /// The high watermark: what consumers may read, and what acks=all waits for. Every
    /// offset below it is written to the device on every in-sync replica (survives a crash
    /// of any of their processes); with one replica, like Kafka's single-replica high
    /// watermark, which is what reached the page cache.
    pub fn high_watermark(&self) -> i64 {
        let written = self.log.written_offset();
        self.replica.borrow_mut().high_watermark(written)
    }

    /// Listens for the high watermark possibly moving (take it before looking).
    pub fn on_replicated(&self) -> EventListener {
        self.replicated.listen()
    }

    /// acks=all: waits until every in-sync replica holds the records below `end_offset`
    /// (the high watermark passed them), as the leader at `leader_epoch`. A leadership lost
    /// meanwhile is `LeadershipLost`: the records may or may not survive, and the writer
    /// retries with the new leader.
    pub async fn wait_replicated(
        &self,
        end_offset: i64,
        leader_epoch: i32,
        min_insync: i64,
    ) -> Result<(), StorageError> {
        loop {
            let listener = self.replicated.listen();
            if self.high_watermark() >= end_offset {
                return Ok(());
            }
            if !self.leads_at(leader_epoch) {
                return Err(StorageError::LeadershipLost);
            }
            // The ISR shrank below the minimum after the append (Kafka's
            // NOT_ENOUGH_REPLICAS_AFTER_APPEND): the records are stored but do not count.
            if (self.in_sync_replicas() as i64) < min_insync {
                return Err(StorageError::NotEnoughReplicasAfterAppend);
            }
            let written = self.log.on_written();
            futures_lite::future::or(listener, written).await;
        }
    }

    /// Leader: follower `follower` fetched from `log_end`. Records its progress, which may
    /// move the high watermark (waking those waiting on it only then: a wake-up per
    /// follower fetch kept other waiting fetches busy for nothing) and let it rejoin.
    pub fn follower_fetched(&self, follower: i32, log_end: i64, now: Instant) -> Option<IsrChange> {
        let written = self.log.written_offset();
        let FollowerProgress {
            high_watermark_moved,
            change,
        } = self
            .replica
            .borrow_mut()
            .follower_fetched(follower, log_end, written, now);
        if high_watermark_moved {
            self.replicated.notify(usize::MAX);
        }
        change
    }

    /// Leader: the ISR change to ask for if followers fell behind.
    pub fn lagging_change(&self, now: Instant) -> Option<IsrChange> {
        self.replica.borrow_mut().lagging_change(now)
    }

    /// Leader: the controller answered the ISR change in flight.
    pub fn isr_change_answered(&self) {
        self.replica.borrow_mut().isr_change_answered();
    }

    /// Follower: takes the leader's high watermark, capped at what it has written.
    pub fn learn_high_watermark(&self, leader: i64) {
        let written = self.log.written_offset();
        self.replica
            .borrow_mut()
            .learn_high_watermark(leader, written);
        self.replicated.notify(usize::MAX);
    }

    /// Follower: holds off every other change to this log from replication while a leader's
    /// answer is applied.
    pub async fn lock_replica_writes(&self) -> async_lock::MutexGuard<'_, ()> {
        self.replica_writes.lock().await
    }
}
