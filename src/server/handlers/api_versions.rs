//! ApiVersions (key 18): the versions of every API in the registry. An unsupported request
//! version gets a v0 answer with UNSUPPORTED_VERSION and our ranges (KIP-511).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use crate::protocol::frame::Request;
use crate::server::registry::{self, HandlerResult, APIS};

fn ranges() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|spec| {
            let mut version = ApiVersion::default();
            version.api_key = spec.key as i16;
            version.min_version = spec.min_version;
            version.max_version = spec.max_version;
            version
        })
        .collect()
}

pub fn handle(request: &Request) -> HandlerResult {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = ranges();
    if registry::decode::<ApiVersionsRequest>(request).is_err() {
        response.error_code = ResponseError::InvalidRequest.code();
    }
    registry::respond(request, &response)
}

pub fn unsupported_version(request: &Request) -> HandlerResult {
    let mut response = ApiVersionsResponse::default();
    response.error_code = ResponseError::UnsupportedVersion.code();
    response.api_keys = ranges();
    Ok(Some(crate::protocol::response::encode(
        ApiKey::ApiVersions,
        0,
        request.correlation_id,
        &response,
    )?))
}
