//! InitProducerId (key 22): producer ids and epochs for idempotent producers.
//!
//! A new producer gets a fresh id (from the controller's persisted blocks) at epoch 0. A
//! producer that sends its current id and epoch (KIP-360, v3+) gets the epoch bumped, or a
//! fresh id when the epoch would overflow; its partitions then expect sequence 0 again.
//! Transactional ids are refused: transactions are not implemented.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::protocol::frame::Request;
use crate::runtime::placement::CONTROLLER_SHARD;
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
    let (current_id, current_epoch) = (body.producer_id.0, body.producer_epoch);
    if current_id >= 0 && (0..i16::MAX - 1).contains(&current_epoch) {
        response.producer_id = ProducerId(current_id);
        response.producer_epoch = current_epoch + 1;
        return exchange::respond(request, &response);
    }
    let allocated = shard
        .run_on(CONTROLLER_SHARD, |controller_shard| async move {
            controller_shard
                .controller
                .allocate_producer_id(&controller_shard)
                .await
                .map_err(|error| topic_error_code(&error))
        })
        .await?;
    match allocated {
        Ok(producer_id) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = 0;
        }
        Err(code) => response.error_code = code.code(),
    }
    exchange::respond(request, &response)
}
