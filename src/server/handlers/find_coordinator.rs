//! FindCoordinator (key 10): the broker coordinating each group (`Shard::group_coordinator`:
//! this one for a single broker, the leader of the group's `__consumer_offsets` partition
//! in a cluster, which moves on failover; batched keys from v4).
//! Transaction coordinators do not exist: transactions are not implemented, and the lookup
//! answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients treat as fatal
//! (`initTransactions()` fails at once) rather than retrying a missing coordinator until
//! their timeout.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::protocol::frame::Request;
use crate::security::acl::Operation;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::groups::ensure_offsets_topic;
use crate::shard::Shard;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: FindCoordinatorRequest = exchange::decode(request)?;
    let version = request.api_version;
    let access = shard.access(request);
    let answer = |key: &str| {
        let mut coordinator = Coordinator::default();
        coordinator.key = str_bytes(key);
        if body.key_type == KEY_TYPE_GROUP && !access.may_on_group(Operation::Describe, key) {
            // Kafka: DESCRIBE on the group.
            coordinator.node_id = BrokerId(-1);
            coordinator.port = -1;
            coordinator.error_code = ResponseError::GroupAuthorizationFailed.code();
            coordinator.error_message =
                Some(str_bytes("the principal may not DESCRIBE this group"));
        } else if body.key_type == KEY_TYPE_GROUP {
            let listener = shard.listener_name(request);
            let live = shard.group_coordinator(key).filter(|broker| !broker.fenced);
            let reachable = live.and_then(|broker| {
                let (host, port) = broker.endpoint(listener)?;
                Some((broker.id, host.to_string(), port))
            });
            match reachable {
                Some((id, host, port)) => {
                    coordinator.node_id = BrokerId(id);
                    coordinator.host = str_bytes(&host);
                    coordinator.port = i32::from(port);
                }
                None => {
                    // A cluster's first group: `__consumer_offsets` is created now.
                    ensure_offsets_topic(shard);
                    coordinator.node_id = BrokerId(-1);
                    coordinator.port = -1;
                    coordinator.error_code = ResponseError::CoordinatorNotAvailable.code();
                    coordinator.error_message =
                        Some(str_bytes("the group's coordinator is not available yet"));
                }
            }
        } else {
            let (code, message) = if body.key_type == KEY_TYPE_TRANSACTION {
                (
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "transactions are not implemented in Petrel",
                )
            } else {
                (
                    ResponseError::InvalidRequest,
                    "only group coordinators exist in Petrel",
                )
            };
            coordinator.node_id = BrokerId(-1);
            coordinator.port = -1;
            coordinator.error_code = code.code();
            coordinator.error_message = Some(str_bytes(message));
        }
        coordinator
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = body
            .coordinator_keys
            .iter()
            .map(|key| answer(key.as_str()))
            .collect();
    } else {
        let single = answer(body.key.as_str());
        response.error_code = single.error_code;
        if version >= 1 {
            response.error_message = single.error_message;
        }
        response.node_id = single.node_id;
        response.host = single.host;
        response.port = single.port;
    }
    exchange::respond(request, &response)
}
