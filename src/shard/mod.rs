//! Shards: one pinned glommio executor per core, each owning a set of partitions, their
//! logs, and the connections it accepted.
//!
//! **Placement rule.** Partition `p` of the topic with id `t` lives on shard
//! `(fnv1a64(t) + p) mod shards`: consecutive partitions of a topic land on consecutive
//! shards, so every topic spreads over all shards, and the rule depends only on the
//! persisted topic id, so it is stable across restarts (for a fixed shard count).
//!
//! **Messaging.** Each shard has one bounded inbox (`async_channel`, capacity
//! `INBOX_CAPACITY`). A message is a `Send` closure that runs on the target shard with that
//! shard's context and answers through a oneshot ([`Shard::run_on`]). Only `Send` data
//! crosses: record data as `bytes::Bytes`, names as `String`, snapshots as `Arc`. The inbox
//! loop never awaits anything but its next message (each job runs as its own task), so a
//! shard waiting for another can never block that other's inbox: no cycle can deadlock.

pub mod start;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use event_listener::Event;
use uuid::Uuid;

use crate::cluster::metadata::{ClusterMetadata, Topic};
use crate::cluster::topic_config;
use crate::config::BrokerConfig;
use crate::storage::{Log, ShardStorage, StorageError};

/// Jobs queued for one shard before senders wait.
pub const INBOX_CAPACITY: usize = 1024;

/// A unit of work sent to a shard: runs there, on its executor.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

#[derive(Debug, thiserror::Error)]
#[error("shard {0} is gone (shutting down)")]
pub struct ShardGone(pub usize);

/// The shard that owns partition `partition` of topic `topic_id`.
pub fn shard_for(topic_id: &Uuid, partition: i32, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash.wrapping_add(partition as u64) % shards as u64) as usize
}

/// A partition this shard owns.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub log: Rc<Log>,
}

impl Partition {
    /// The high watermark: what consumers may read. Every offset below it has been written
    /// to the device (survives a crash of the broker process), like Kafka's single-replica
    /// high watermark, which is what reached the page cache.
    pub fn high_watermark(&self) -> i64 {
        self.log.written_offset()
    }
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<BrokerConfig>,
    /// The port every shard listens on (resolved when the configured port is 0).
    pub port: u16,
    peers: Vec<async_channel::Sender<Job>>,
    pub storage: Rc<ShardStorage>,
    partitions: RefCell<HashMap<String, Vec<Option<Rc<Partition>>>>>,
    metadata: RefCell<Arc<ClusterMetadata>>,
    /// Serializes metadata changes; only used on the controller (shard 0).
    pub controller_lock: async_lock::Mutex<()>,
    /// The coordinator of the consumer groups placed on this shard (set once loaded).
    pub groups: RefCell<Option<Rc<crate::group::coordinator::GroupCoordinator>>>,
    /// The next producer id to hand out (controller only; `None` until the first).
    pub next_producer_id: Cell<Option<i64>>,
    pub connections: Cell<usize>,
    pub shutting_down: Cell<bool>,
    pub shutdown_started: Event,
    pub connection_closed: Event,
}

impl Shard {
    pub fn new(
        id: usize,
        config: Arc<BrokerConfig>,
        port: u16,
        peers: Vec<async_channel::Sender<Job>>,
        metadata: Arc<ClusterMetadata>,
    ) -> Rc<Shard> {
        let storage = ShardStorage::new(&config.shard_storage());
        Rc::new(Shard {
            id,
            count: peers.len(),
            config,
            port,
            peers,
            storage,
            partitions: RefCell::new(HashMap::new()),
            metadata: RefCell::new(metadata),
            controller_lock: async_lock::Mutex::new(()),
            next_producer_id: Cell::new(None),
            groups: RefCell::new(None),
            connections: Cell::new(0),
            shutting_down: Cell::new(false),
            shutdown_started: Event::new(),
            connection_closed: Event::new(),
        })
    }

    /// Runs `job` on shard `target` and returns its result. On this shard it runs inline.
    pub async fn run_on<T, F, Fut>(self: &Rc<Self>, target: usize, job: F) -> Result<T, ShardGone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(job(self.clone()).await);
        }
        let (reply, answer) = futures_channel::oneshot::channel();
        let boxed: Job = Box::new(move |shard| {
            Box::pin(async move {
                // The asker may have given up (its connection closed); nothing to do then.
                let _ = reply.send(job(shard).await);
            })
        });
        let peer = self.peers.get(target).ok_or(ShardGone(target))?;
        peer.send(boxed).await.map_err(|_| ShardGone(target))?;
        answer.await.map_err(|_| ShardGone(target))
    }

    /// Runs `job` on every shard (this one included) and collects the results in shard order.
    pub async fn run_on_all<T, F, Fut>(self: &Rc<Self>, job: F) -> Result<Vec<T>, ShardGone>
    where
        T: Send + 'static,
        F: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let parts = (0..self.count).map(|target| (target, ())).collect();
        self.run_on_each(parts, move |shard, ()| job(shard)).await
    }

    /// Runs `job(shard, part)` for every `(shard id, part)` on that shard, all at once (the
    /// split of a request over the shards owning its partitions), and returns the results
    /// in the order of `parts`.
    pub async fn run_on_each<P, T, F, Fut>(
        self: &Rc<Self>,
        parts: Vec<(usize, P)>,
        job: F,
    ) -> Result<Vec<T>, ShardGone>
    where
        P: Send + 'static,
        T: Send + 'static,
        F: Fn(Rc<Shard>, P) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let runs: Vec<_> = parts
            .into_iter()
            .map(|(target, part)| {
                let (shard, job) = (self.clone(), job.clone());
                glommio::spawn_local(async move {
                    shard.run_on(target, move |owner| job(owner, part)).await
                })
            })
            .collect();
        let mut results = Vec::with_capacity(runs.len());
        for run in runs {
            results.push(run.await?);
        }
        Ok(results)
    }

    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    pub fn set_metadata(&self, metadata: Arc<ClusterMetadata>) {
        *self.metadata.borrow_mut() = metadata;
    }

    pub fn owner_of(&self, topic: &Topic, partition: i32) -> usize {
        shard_for(&topic.id, partition, self.count)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Rc<Partition>> {
        let partitions = self.partitions.borrow();
        let slot = usize::try_from(index).ok()?;
        partitions.get(topic)?.get(slot)?.clone()
    }

    /// Every partition this shard owns.
    pub fn owned_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|slots| slots.iter().flatten().cloned())
            .collect()
    }

    /// Opens (creating if needed) the logs of `partitions` of `topic` that this shard owns.
    /// `fresh` removes any leftover directory first: a new topic never inherits the data of
    /// a deleted one that had the same name.
    pub async fn open_partitions(
        &self,
        topic: &Topic,
        partitions: &[i32],
        fresh: bool,
    ) -> Result<(), StorageError> {
        let resolved = topic_config::resolve(&topic.configs, &self.config.topic_defaults);
        let log_config = self.config.log_config(&resolved);
        for &index in partitions {
            let dir = self.config.partition_dir(&topic.name, index);
            if fresh && crate::storage::io::list_dir(&dir).await.is_ok() {
                crate::storage::io::remove_dir_all(&dir).await?;
            }
            let log = Log::open(
                self.storage.clone(),
                dir,
                format!("{}-{index}", topic.name),
                log_config.clone(),
            )
            .await?;
            let partition = Rc::new(Partition {
                topic: topic.name.clone(),
                topic_id: topic.id,
                index,
                log,
            });
            let mut table = self.partitions.borrow_mut();
            let slots = table.entry(topic.name.clone()).or_default();
            let slot = index as usize;
            if slots.len() <= slot {
                slots.resize(slot + 1, None);
            }
            slots[slot] = Some(partition);
        }
        Ok(())
    }

    /// Applies `topic`'s current configs to this shard's open logs of it (roll and
    /// retention limits; see `Log::set_limits`).
    pub fn reconfigure_partitions(&self, topic: &Topic) {
        let resolved = topic_config::resolve(&topic.configs, &self.config.topic_defaults);
        let limits = self.config.log_config(&resolved).limits();
        let partitions = self.partitions.borrow();
        for partition in partitions.get(&topic.name).into_iter().flatten().flatten() {
            partition.log.set_limits(limits);
        }
    }

    /// Closes and deletes this shard's logs of `topic`.
    pub async fn delete_partitions(&self, topic: &str) -> Result<(), StorageError> {
        let removed = self
            .partitions
            .borrow_mut()
            .remove(topic)
            .unwrap_or_default();
        for partition in removed.into_iter().flatten() {
            partition.log.delete().await?;
        }
        Ok(())
    }

    /// This shard's group coordinator, once its offsets are loaded.
    pub fn coordinator(&self) -> Option<Rc<crate::group::coordinator::GroupCoordinator>> {
        self.groups.borrow().clone()
    }

    /// Closes every log (final sync). Called once, at shutdown.
    pub async fn close_all(&self) {
        let coordinator = self.groups.borrow_mut().take();
        if let Some(coordinator) = coordinator {
            coordinator.close().await;
        }
        let table = std::mem::take(&mut *self.partitions.borrow_mut());
        for partition in table.into_values().flatten().flatten() {
            if let Err(error) = partition.log.close().await {
                tracing::error!(log = %partition.log.name(), %error, "closing log failed");
            }
        }
    }

    /// The shards that own at least one partition of `topic`.
    pub fn owners(&self, topic: &Topic) -> Vec<usize> {
        let mut owners: Vec<usize> = (0..topic.partitions.min(self.count as i32))
            .map(|p| self.owner_of(topic, p))
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_a_topic_over_all_shards_and_is_stable() {
        let topic = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        for shards in [1, 2, 3, 8] {
            let mut counts = vec![0; shards];
            for partition in 0..(shards as i32 * 4) {
                let shard = shard_for(&topic, partition, shards);
                assert_eq!(shard, shard_for(&topic, partition, shards));
                counts[shard] += 1;
            }
            assert!(
                counts.iter().all(|&count| count == 4),
                "{shards} shards: {counts:?}"
            );
        }
    }

    /// Cross-shard replies wake a shard's task from another thread, and that thread may drop
    /// the task's last waker just as the task completes and its `JoinHandle` is dropped (what
    /// `run_on_each` does for every part). Upstream glommio 0.9.0 let the count pass through
    /// zero there and freed the task under the foreign waker; a shard then hung on a garbage
    /// futex (vendor/glommio/PETREL-PATCHES.md). This drives that interleaving many times,
    /// with the foreign drop jittered over the owner's drop of the `JoinHandle`.
    #[test]
    fn a_task_outlives_a_waker_dropped_on_another_thread() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::mpsc;
        use std::task::{Poll, Waker};
        use std::time::Duration;

        const ROUNDS: usize = 30_000;
        let (to_foreign, foreign_inbox) = mpsc::sync_channel::<(Waker, Arc<AtomicBool>)>(1);
        let foreign = std::thread::spawn(move || {
            let mut jitter: u32 = 0x9e37_79b9;
            for (waker, ready) in foreign_inbox {
                ready.store(true, Ordering::Release);
                waker.wake_by_ref();
                // xorshift: spin 0..4095 rounds so the drop sweeps over the owner's work.
                jitter ^= jitter << 13;
                jitter ^= jitter >> 17;
                jitter ^= jitter << 5;
                for _ in 0..(jitter % 4096) {
                    std::hint::spin_loop();
                }
                drop(waker);
            }
        });
        let completed = Arc::new(AtomicUsize::new(0));
        let counted = completed.clone();
        let (finished_tx, finished) = mpsc::channel();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spin_before_park(Duration::from_millis(10))
            .spawn(move || async move {
                for _ in 0..ROUNDS {
                    let ready = Arc::new(AtomicBool::new(false));
                    let (sender, flag) = (to_foreign.clone(), ready.clone());
                    let mut sent = false;
                    let task = glommio::spawn_local(futures_lite::future::poll_fn(move |cx| {
                        if flag.load(Ordering::Acquire) {
                            return Poll::Ready(());
                        }
                        if !sent {
                            sent = true;
                            let _ = sender.send((cx.waker().clone(), flag.clone()));
                        }
                        Poll::Pending
                    }));
                    task.await;
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                let _ = finished_tx.send(());
            })
            .expect("executor starts");
        // A freed task shows as a panic on either thread or as a hung executor; don't wait
        // out the deadline when the foreign thread has already died.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while finished.recv_timeout(Duration::from_millis(100)).is_err() {
            let rounds = completed.load(Ordering::Relaxed);
            assert!(
                !foreign.is_finished(),
                "the foreign thread died after {rounds} of {ROUNDS} rounds"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the executor stopped after {rounds} of {ROUNDS} rounds"
            );
        }
        foreign.join().expect("the foreign thread ends");
    }
}
