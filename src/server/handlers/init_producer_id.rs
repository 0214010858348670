//! InitProducerId (key 22): producer ids and epochs for idempotent producers.
//!
//! Every request without a transactional id gets a fresh id (from the controller's
//! persisted blocks) at epoch 0, as Kafka's `TransactionCoordinator.handleInitProducerId`
//! does: also a producer that sends its current id and epoch (KIP-360, v3+). Bumping the
//! epoch of whatever pair a client names would let any client fence a live producer and
//! take over its sequence numbers: the real producer, fenced, would ask again, get the same
//! bumped epoch, and its next batch would be taken for a duplicate of the intruder's
//! (acknowledged, never written). Idempotent producers bump their epoch locally instead.
//! An id without an epoch, or an epoch without an id, is INVALID_REQUEST (as Kafka's
//! `KafkaApis`). Transactional ids are refused: transactions are not implemented.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::cluster::control::ControlCall;
use crate::protocol::frame::Request;
use crate::security::acl::{Operation, ResourceType};
use crate::server::errors::topic_error_code;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: InitProducerIdRequest = exchange::decode(request)?;
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if let Some(transactional_id) = &body.transactional_id {
        // As Kafka's coordinator: an empty id is malformed; any other needs transactions.
        let error = if transactional_id.0.is_empty() {
            ResponseError::InvalidRequest
        } else {
            ResponseError::TransactionalIdAuthorizationFailed
        };
        response.error_code = error.code();
        return exchange::respond(request, &response);
    }
    // KIP-679 (Kafka 3+): an idempotent producer needs IDEMPOTENT_WRITE on the cluster
    // or WRITE on some topic.
    let access = shard.access(request);
    if !access.may_on_cluster(Operation::IdempotentWrite)
        && !access.may_on_any(Operation::Write, ResourceType::Topic)
    {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return exchange::respond(request, &response);
    }
    // -1 is Kafka's NO_PRODUCER_ID and NO_PRODUCER_EPOCH: both or neither.
    if (body.producer_id.0 == -1) != (body.producer_epoch == -1) {
        response.error_code = ResponseError::InvalidRequest.code();
        return exchange::respond(request, &response);
    }
    let allocated = shard
        .control(ControlCall::AllocateProducerId)
        .await?
        .into_producer_id()
        .map_err(|error| topic_error_code(&error));
    match allocated {
        Ok(producer_id) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = 0;
        }
        Err(code) => response.error_code = code.code(),
    }
    exchange::respond(request, &response)
}
