//! The leader's side of replication: a follower's fetch (it must be a replica; its log
//! must not have diverged from this one; its progress moves the high watermark and may
//! let it rejoin the ISR), the lag check that drops followers that fell behind, and the
//! ISR changes asked of the controller, one in flight per partition.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::state::IsrChange;
use crate::runtime::time;
use crate::shard::partition::Partition;
use crate::shard::Shard;

/// How often the leader looks for followers that fell behind (ISR shrink).
const LAG_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The pause after a refused or lost ISR change before the partition may ask again.
const ISR_CHANGE_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A follower's fetch of one partition, as the leader reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    /// The follower's broker id.
    pub replica: i32,
    /// Its log end: it holds everything below.
    pub fetch_offset: i64,
    /// The epoch of its last batch (-1: none).
    pub last_fetched_epoch: i32,
}

/// Why a follower may not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It holds no replica of the partition.
    NotReplica,
    /// Its log diverges from the leader's: it must truncate to `end_offset`, the end of
    /// `epoch` here (KIP-101, KIP-279, KIP-595's check in Fetch).
    Diverging { epoch: i32, end_offset: i64 },
}

/// On the leader: a follower's fetch of `partition`. Records its progress (which may
/// move the high watermark and let it rejoin the ISR: the ISR change is sent from here)
/// and returns how far it may read: what this leader's log has written.
pub fn follower_fetch(
    shard: &Rc<Shard>,
    partition: &Rc<Partition>,
    fetch: &FollowerFetch,
) -> Result<i64, Refused> {
    let (bound, change) = fetched(partition, fetch, time::now())?;
    if let Some(change) = change {
        request_isr_change(shard, partition, change);
    }
    Ok(bound)
}

/// What a follower's fetch means on the leader, without sending anything: how far it may
/// read, and the ISR change it calls for.
fn fetched(
    partition: &Partition,
    fetch: &FollowerFetch,
    now: Instant,
) -> Result<(i64, Option<IsrChange>), Refused> {
    if !partition.is_replica(fetch.replica) {
        return Err(Refused::NotReplica);
    }
    let written = partition.log.written_offset();
    if fetch.last_fetched_epoch >= 0 {
        let (epoch, end_offset) = partition.log.end_offset_for_epoch(fetch.last_fetched_epoch);
        if epoch != fetch.last_fetched_epoch || end_offset < fetch.fetch_offset {
            return Err(Refused::Diverging { epoch, end_offset });
        }
    }
    let change = partition.follower_fetched(fetch.replica, fetch.fetch_offset, now);
    Ok((written, change))
}

/// Every `LAG_CHECK_INTERVAL` until shutdown: asks for lagging followers to leave the
/// ISRs of what this shard leads.
pub async fn check_lag(shard: Rc<Shard>) {
    while shard
        .shutdown
        .or_stopped(time::sleep(LAG_CHECK_INTERVAL))
        .await
        .is_some()
    {
        let now = time::now();
        for partition in shard.owned_partitions() {
            if let Some(change) = partition.lagging_change(now) {
                tracing::info!(topic = %partition.topic, partition = partition.index, isr = ?change.isr, "a follower fell behind; shrinking the ISR");
                request_isr_change(&shard, &partition, change);
            }
        }
    }
}

/// Sends a leader's ISR change for `partition` to the controller (through the control
/// plane); until it is answered no other is sent, and a refused or lost one is sent
/// again on a later fetch (after `ISR_CHANGE_RETRY_DELAY`).
fn request_isr_change(shard: &Rc<Shard>, partition: &Rc<Partition>, change: IsrChange) {
    let (shard, partition) = (shard.clone(), partition.clone());
    crate::runtime::spawn(async move {
        let (topic_id, index) = (partition.topic_id, partition.index);
        let sent = shard
            .control_plane
            .alter_partition(topic_id, index, change.leader_epoch, change.isr)
            .await;
        if let Err(error) = sent {
            tracing::debug!(topic = %partition.topic, partition = index, %error, "ISR change not made");
            // Paced: a refusal is quick, and followers fetch often.
            time::sleep(ISR_CHANGE_RETRY_DELAY).await;
        }
        partition.isr_change_answered();
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cluster::metadata::{PartitionState, Topic};
    use crate::shard::partition::ProduceMeasures;
    use crate::storage::{Durability, Log, LogConfig, ShardStorage, ShardStorageConfig};

    fn state(leader: i32, leader_epoch: i32, isr: Vec<i32>) -> PartitionState {
        PartitionState {
            leader,
            leader_epoch,
            isr,
            ..PartitionState::default()
        }
    }

    /// KIP-841 through the leader's side of a fetch. Broker 1 follows broker 2 at epoch 4
    /// and holds offsets 0..100, but has learned a high watermark of 80 only (one fetch
    /// behind). Leadership moves to broker 1 at epoch 5 (ISR 1, 2): its high watermark
    /// trails its log, and offsets 80..100 may have been acknowledged under broker 2.
    /// Follower 3, at 90, has passed that high watermark but not the epoch's start: it
    /// must not rejoin the ISR (it could then lead without acknowledged records). At 100
    /// it may.
    #[test]
    fn a_follower_short_of_the_new_leaders_epoch_start_does_not_rejoin_the_isr() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        crate::runtime::run_single("kip-841", dir.clone(), move || async move {
            let storage = ShardStorage::new(&ShardStorageConfig::default());
            let log = Log::open(storage, dir.join("t-0"), "t-0".into(), LogConfig::default())
                .await
                .expect("log");
            for n in 0..10u8 {
                let value = [n];
                let values: Vec<&[u8]> = vec![&value; 10];
                let batch = crate::record_batch::build_batch(&values, 1);
                log.append(Bytes::from(batch), 4).await.expect("append");
            }
            log.wait(Durability::Written, 100).await.expect("written");
            let topic = Topic {
                name: "t".into(),
                id: uuid::Uuid::from_u128(1),
                partitions: 1,
                configs: Default::default(),
                replicas: vec![vec![2, 1, 3]],
                states: vec![state(2, 4, vec![2, 1])],
            };
            let partition = Partition::new(&topic, 0, 1, log.clone(), ProduceMeasures::of("t"));
            partition.learn_high_watermark(80);
            partition.take_catalogue(&[2, 1, 3], &state(1, 5, vec![1, 2]));
            assert_eq!(
                partition.high_watermark(),
                80,
                "the new leader's trails its log"
            );
            let now = Instant::now();
            let fetch = |fetch_offset| FollowerFetch {
                replica: 3,
                fetch_offset,
                last_fetched_epoch: 4,
            };
            let (bound, change) = fetched(&partition, &fetch(90), now).expect("may read");
            assert_eq!(bound, 100);
            assert_eq!(change, None, "90 is short of epoch 5's start, 100");
            let (_, change) = fetched(&partition, &fetch(100), now).expect("may read");
            assert_eq!(change.map(|change| change.isr), Some(vec![1, 2, 3]));
            log.close().await.expect("close");
        })
        .expect("executor");
    }

    #[test]
    fn a_stranger_or_a_diverged_follower_may_not_read() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        crate::runtime::run_single("follower-fetch", dir.clone(), move || async move {
            let storage = ShardStorage::new(&ShardStorageConfig::default());
            let log = Log::open(storage, dir.join("t-0"), "t-0".into(), LogConfig::default())
                .await
                .expect("log");
            let batch = crate::record_batch::build_batch(&[b"x".as_slice(); 5], 1);
            log.append(Bytes::from(batch), 2).await.expect("append");
            let topic = Topic {
                name: "t".into(),
                id: uuid::Uuid::from_u128(1),
                partitions: 1,
                configs: Default::default(),
                replicas: vec![vec![1, 2]],
                states: vec![state(1, 3, vec![1, 2])],
            };
            let partition = Partition::new(&topic, 0, 1, log.clone(), ProduceMeasures::of("t"));
            let now = Instant::now();
            let stranger = FollowerFetch {
                replica: 9,
                fetch_offset: 0,
                last_fetched_epoch: -1,
            };
            assert_eq!(
                fetched(&partition, &stranger, now),
                Err(Refused::NotReplica)
            );
            // Follower 2 holds 7 records of epoch 2; the leader's epoch 2 ends at 5.
            let diverged = FollowerFetch {
                replica: 2,
                fetch_offset: 7,
                last_fetched_epoch: 2,
            };
            assert_eq!(
                fetched(&partition, &diverged, now),
                Err(Refused::Diverging {
                    epoch: 2,
                    end_offset: 5
                })
            );
            log.close().await.expect("close");
        })
        .expect("executor");
    }
}
