//! SaslAuthenticate (key 36): carries a SASL mechanism's messages after a v1 SaslHandshake,
//! in a SASL listener's authentication phase (`server::authentication`). Reaching this
//! handler means the connection is past that phase, or its listener has no SASL:
//! ILLEGAL_SASL_STATE, as Kafka answers.

use bytes::Bytes;
use kafka_protocol::messages::SaslAuthenticateResponse;
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::protocol::frame::Request;
use crate::server::exchange::{self, HandlerResult};

pub fn handle(request: &Request) -> HandlerResult {
    failure(
        request,
        ResponseError::IllegalSaslState,
        "not in a SASL exchange",
    )
}

/// A step of the exchange succeeded: the mechanism's answer, and on the last step the
/// session's lifetime (KIP-368; 0 for none, and for v0, which has no such field).
pub fn answer(request: &Request, auth_bytes: Vec<u8>, session_lifetime_ms: i64) -> HandlerResult {
    let mut response = SaslAuthenticateResponse::default();
    response.auth_bytes = Bytes::from(auth_bytes);
    if request.api_version >= 1 {
        response.session_lifetime_ms = session_lifetime_ms;
    }
    exchange::respond(request, &response)
}

pub fn failure(request: &Request, error: ResponseError, message: &str) -> HandlerResult {
    let mut response = SaslAuthenticateResponse::default();
    response.error_code = error.code();
    response.error_message = Some(str_bytes(message));
    exchange::respond(request, &response)
}
