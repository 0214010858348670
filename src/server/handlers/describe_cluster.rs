//! DescribeCluster (key 60): this broker, which is also the controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::protocol::frame::Request;
use crate::security::acl::{ResourceType, CLUSTER_NAME};
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

/// `endpoint_type` 1 = brokers; 2 = controllers (Petrel answers both with itself).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DescribeClusterRequest = exchange::decode(request)?;
    let config = &shard.config;
    let mut response = DescribeClusterResponse::default();
    if request.api_version >= 1 {
        response.endpoint_type = body.endpoint_type;
        if !matches!(body.endpoint_type, 1 | 2) {
            response.error_code = ResponseError::UnsupportedEndpointType.code();
        }
    } else if body.endpoint_type != ENDPOINT_TYPE_BROKERS {
        response.error_code = ResponseError::UnsupportedEndpointType.code();
    }
    let metadata = shard.metadata();
    response.cluster_id = str_bytes(&metadata.cluster_id);
    // As KRaft brokers do: clients send admin requests to any live broker, which forwards
    // controller operations to the metadata quorum's leader.
    response.controller_id = BrokerId(config.node_id);
    let with_fenced = request.api_version >= 2 && body.include_fenced_brokers;
    response.brokers = metadata
        .brokers
        .values()
        .filter(|info| with_fenced || !info.fenced)
        .filter_map(|info| {
            let (host, port) = info.endpoint(shard.listener_name(request))?;
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(info.id);
            broker.host = str_bytes(host);
            broker.port = i32::from(port);
            broker.is_fenced = info.fenced;
            Some(broker)
        })
        .collect();
    response.cluster_authorized_operations = if body.include_cluster_authorized_operations {
        shard
            .access(request)
            .operations_on(ResourceType::Cluster, CLUSTER_NAME)
    } else {
        i32::MIN
    };
    exchange::respond(request, &response)
}
