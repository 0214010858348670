//! One file per Kafka API. Each decodes its request, does its work (on other shards through
//! `Shard::run_on` where partitions live elsewhere), and encodes its response.

pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;

use std::future::Future;
use std::rc::Rc;

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::coordinator::GroupCoordinator;
use crate::shard::{Shard, ShardGone};

/// Runs `job` with the coordinator of `group_id`, on the shard it lives on; `None` if
/// another broker coordinates the group or its offsets are still loading (`unavailable`
/// says which).
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
    if !shard.coordinates(group_id) {
        return Ok(None);
    }
    let Some(home) = shard.group_home(group_id) else {
        return Ok(None);
    };
    shard
        .run_on(home.shard, move |owner| async move {
            match owner.coordinator(home.slot) {
                Some(coordinator) => Some(job(coordinator).await),
                None => None,
            }
        })
        .await
}

/// Why `on_coordinator` found no coordinator here: the group belongs to another broker
/// (NOT_COORDINATOR: the client looks it up again), or its offsets are still loading.
pub fn unavailable(shard: &Shard, group_id: &str) -> ResponseError {
    if shard.coordinates(group_id) {
        ResponseError::CoordinatorLoadInProgress
    } else {
        ResponseError::NotCoordinator
    }
}

pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// The answers to every item of a request, in order, where only the `allowed` items went
/// to the work that answered `outcomes` (in their order); the others answer `denied()`.
pub fn with_denied<U>(allowed: &[bool], outcomes: Vec<U>, mut denied: impl FnMut() -> U) -> Vec<U> {
    let mut outcomes = outcomes.into_iter();
    allowed
        .iter()
        .map(|&ok| match ok {
            true => outcomes.next().unwrap_or_else(&mut denied),
            false => denied(),
        })
        .collect()
}
