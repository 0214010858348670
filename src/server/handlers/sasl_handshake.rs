//! SaslHandshake (key 17): a SASL listener's connection picks its mechanism here, in its
//! authentication phase (`server::authentication`), before any other request. Reaching this
//! handler means its listener has no SASL: Kafka answers ILLEGAL_SASL_STATE. (On a SASL
//! listener, a handshake after the login is a re-authentication, KIP-368, which
//! `server::connection` runs.)

use kafka_protocol::messages::SaslHandshakeResponse;
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::protocol::frame::Request;
use crate::security::MECHANISMS;
use crate::server::exchange::{self, HandlerResult};

pub fn handle(request: &Request) -> HandlerResult {
    answer(request, Some(ResponseError::IllegalSaslState))
}

/// The answer: `error` or success, with the mechanisms a SASL listener offers.
pub fn answer(request: &Request, error: Option<ResponseError>) -> HandlerResult {
    let mut response = SaslHandshakeResponse::default();
    response.error_code = error.map_or(0, |error| error.code());
    response.mechanisms = MECHANISMS.iter().map(|name| str_bytes(name)).collect();
    exchange::respond(request, &response)
}
