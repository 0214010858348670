//! One file per Kafka API. Each decodes its request, does its work (on other shards through
//! `Shard::run_on` where partitions live elsewhere), and encodes its response.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

use std::future::Future;
use std::rc::Rc;

use kafka_protocol::protocol::StrBytes;

use crate::group::coordinator::GroupCoordinator;
use crate::runtime::placement::group_shard;
use crate::shard::{Shard, ShardGone};

/// Runs `job` with the coordinator of `group_id`, on the shard it lives on; `None` while
/// that coordinator is still loading its offsets (COORDINATOR_LOAD_IN_PROGRESS).
pub async fn on_coordinator<T, F, Fut>(
    shard: &Rc<Shard>,
    group_id: &str,
    job: F,
) -> Result<Option<T>, ShardGone>
where
    T: Send + 'static,
    F: FnOnce(Rc<GroupCoordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let target = group_shard(group_id, shard.count);
    shard
        .run_on(target, move |owner| async move {
            match owner.coordinator() {
                Some(coordinator) => Some(job(coordinator).await),
                None => None,
            }
        })
        .await
}

pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}
