//! DescribeCluster (key 60): this broker, which is also the controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::protocol::frame::Request;
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
    response.cluster_id = str_bytes(&shard.metadata().cluster_id);
    response.controller_id = BrokerId(config.node_id);
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(config.node_id);
    broker.host = str_bytes(&config.advertised.0);
    broker.port = i32::from(config.advertised.1);
    response.brokers = vec![broker];
    response.cluster_authorized_operations = i32::MIN;
    exchange::respond(request, &response)
}
