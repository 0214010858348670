//! ApiVersions (key 18): the versions of every API in the registry. An unsupported request
//! version gets a v0 answer with UNSUPPORTED_VERSION and our ranges (KIP-511).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use crate::protocol::frame::Request;
use crate::server::exchange::{self, HandlerResult};

/// Answers with `ranges`, the registry's advertised versions.
pub fn handle(request: &Request, ranges: &[ApiVersion]) -> HandlerResult {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = ranges.to_vec();
    if exchange::decode::<ApiVersionsRequest>(request).is_err() {
        response.error_code = ResponseError::InvalidRequest.code();
    }
    exchange::respond(request, &response)
}

pub fn unsupported_version(request: &Request, ranges: &[ApiVersion]) -> HandlerResult {
    let mut response = ApiVersionsResponse::default();
    response.error_code = ResponseError::UnsupportedVersion.code();
    response.api_keys = ranges.to_vec();
    Ok(Some(crate::protocol::response::encode(
        ApiKey::ApiVersions,
        0,
        request.correlation_id,
        &response,
    )?))
}
