//! DescribeLogDirs (key 35): this broker's one log directory (the data dir) and the size of
//! every partition replica it holds there, gathered from the shards that own them. Tools
//! ask it before moving replicas (`kafka-reassign-partitions`) and to list usage
//! (`kafka-log-dirs`). Volume sizes are not reported (-1, Kafka's "unknown").

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::str_bytes;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;
use kafka_protocol::ResponseError;

/// Kafka's UNKNOWN_VOLUME_BYTES.
const VOLUME_BYTES_UNKNOWN: i64 = -1;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DescribeLogDirsRequest = exchange::decode(request)?;
    if !shard.access(request).may_on_cluster(Operation::Describe) {
        let mut response = DescribeLogDirsResponse::default();
        if request.api_version >= 3 {
            response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        }
        return exchange::respond(request, &response);
    }
    // `None`: every partition.
    let wanted: Option<HashSet<(String, i32)>> = body.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.to_string(), p)))
            .collect()
    });
    let held = shard
        .run_on_all(|owner| async move {
            owner
                .owned_partitions()
                .iter()
                .map(|partition| {
                    let lag = (partition.high_watermark() - partition.log.next_offset()).max(0);
                    let size = i64::try_from(partition.log.size_bytes()).unwrap_or(i64::MAX);
                    (partition.topic.clone(), partition.index, size, lag)
                })
                .collect::<Vec<_>>()
        })
        .await?;
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (topic, index, size, lag) in held.into_iter().flatten() {
        let asked = wanted
            .as_ref()
            .is_none_or(|wanted| wanted.contains(&(topic.clone(), index)));
        if !asked {
            continue;
        }
        let mut partition = DescribeLogDirsPartition::default();
        partition.partition_index = index;
        partition.partition_size = size;
        partition.offset_lag = lag;
        by_topic.entry(topic).or_default().push(partition);
    }
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = str_bytes(&shard.config.data_dir.to_string_lossy());
    result.total_bytes = VOLUME_BYTES_UNKNOWN;
    result.usable_bytes = VOLUME_BYTES_UNKNOWN;
    result.topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_unstable_by_key(|p| p.partition_index);
            let mut topic = DescribeLogDirsTopic::default();
            topic.name = TopicName(str_bytes(&name));
            topic.partitions = partitions;
            topic
        })
        .collect();
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    exchange::respond(request, &response)
}
