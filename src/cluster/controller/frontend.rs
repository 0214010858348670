//! The controller: one change at a time (its turn), producer ids, and publishing a change
//! through its host. The operations themselves are in the sibling files.

use std::cell::{Cell, RefCell};

use uuid::Uuid;

use super::error::{Outcome, TopicError};
use super::host::TopicHost;
use crate::cluster::metadata::ClusterMetadata;
use crate::cluster::topic_config::TopicDefaults;

/// What the controller needs of the broker's settings.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// The one broker's id: every replica assignment must name it.
    pub node_id: i32,
    pub default_partitions: i32,
    pub topic_defaults: TopicDefaults,
    /// Partitions the broker may hold over all topics: each keeps a file open and memory.
    pub partitions_max: usize,
}

/// Producer ids reserved (persisted) at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Controller {
    pub(super) settings: ControllerSettings,
    /// Serializes changes: each reads the snapshot, changes it and publishes it whole.
    pub(super) lock: async_lock::Mutex<()>,
    /// The next producer id to hand out (`None` until the first).
    pub(super) next_producer_id: Cell<Option<i64>>,
    /// Where new topics' ids come from: random, or a simulation's seeded source.
    pub(super) topic_ids: RefCell<TopicIds>,
}

/// A source of topic ids.
pub type TopicIds = Box<dyn FnMut() -> Uuid>;

impl Controller {
    pub fn new(settings: ControllerSettings) -> Controller {
        Controller {
            settings,
            lock: async_lock::Mutex::new(()),
            next_producer_id: Cell::new(None),
            topic_ids: RefCell::new(Box::new(Uuid::new_v4)),
        }
    }

    /// Takes new topics' ids from `source` (a deterministic simulation) instead of at
    /// random.
    pub fn set_topic_ids(&self, source: TopicIds) {
        *self.topic_ids.borrow_mut() = source;
    }

    /// Runs `work` as one controller change: no other change runs meanwhile, so a change
    /// computed from the catalogue it reads cannot overwrite another (e.g. a fencing's
    /// partition changes and a config change of the same topic).
    pub async fn exclusive<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let _one_change_at_a_time = self.lock.lock().await;
        work.await
    }

    /// Hands out a new producer id, persisting a new block of ids first when the current
    /// one is used up, so no id is handed out twice, even across restarts.
    pub async fn allocate_producer_id(&self, host: &impl TopicHost) -> Outcome<i64> {
        let _one_change_at_a_time = self.lock.lock().await;
        let metadata = host.metadata();
        let next = self
            .next_producer_id
            .get()
            .unwrap_or(metadata.producer_id_block_end);
        if next >= metadata.producer_id_block_end {
            let mut updated = (*metadata).clone();
            updated.producer_id_block_end = next + PRODUCER_ID_BLOCK;
            self.publish(host, updated).await.map_err(|error| {
                TopicError::Storage(format!("cannot persist producer ids: {error}"))
            })?;
        }
        self.next_producer_id.set(Some(next + 1));
        Ok(next)
    }

    /// Publishes `metadata`; if it cannot be persisted, every change in `results` failed.
    pub(super) async fn publish_or_fail<T>(
        &self,
        host: &impl TopicHost,
        metadata: ClusterMetadata,
        results: Vec<Outcome<T>>,
    ) -> Vec<Outcome<T>> {
        match self.publish(host, metadata).await {
            Ok(()) => results,
            Err(error) => {
                let message = format!("cannot persist topic metadata: {error}");
                tracing::error!("{message}");
                results
                    .into_iter()
                    .map(|outcome| outcome.and_then(|_| Err(TopicError::Storage(message.clone()))))
                    .collect()
            }
        }
    }

    /// Commits `metadata` through the host (persisted, then given to every shard).
    pub(super) async fn publish(
        &self,
        host: &impl TopicHost,
        metadata: ClusterMetadata,
    ) -> Result<(), String> {
        host.commit(metadata).await
    }
}
