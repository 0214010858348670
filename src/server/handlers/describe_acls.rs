//! DescribeAcls (key 29): the bindings a filter matches, grouped by resource pattern, as
//! `kafka-acls --list` shows them. Read from this broker's catalogue copy. Needs DESCRIBE
//! on the cluster; without `--authorizer` answers SECURITY_DISABLED.

use std::rc::Rc;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::protocol::frame::Request;
use crate::security::acl::{AclFilter, Operation};
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DescribeAclsRequest = exchange::decode(request)?;
    let mut response = DescribeAclsResponse::default();
    let mut fail = |code: ResponseError, message: String| {
        response.error_code = code.code();
        response.error_message = Some(str_bytes(&message));
    };
    if !shard.authorizer_enabled() {
        fail(
            ResponseError::SecurityDisabled,
            "no authorizer is configured (--authorizer standard)".into(),
        );
        return exchange::respond(request, &response);
    }
    if !shard.access(request).may_on_cluster(Operation::Describe) {
        fail(
            ResponseError::ClusterAuthorizationFailed,
            "DescribeAcls needs DESCRIBE on the cluster".into(),
        );
        return exchange::respond(request, &response);
    }
    let filter = match AclFilter::from_codes(
        body.resource_type_filter,
        body.resource_name_filter.as_deref(),
        body.pattern_type_filter,
        body.principal_filter.as_deref(),
        body.host_filter.as_deref(),
        body.operation,
        body.permission_type,
    ) {
        Ok(filter) => filter,
        Err(invalid) => {
            fail(ResponseError::InvalidRequest, invalid.0);
            return exchange::respond(request, &response);
        }
    };
    let metadata = shard.metadata();
    // The catalogue's set is ordered by pattern first: one resource per run of bindings.
    for binding in metadata.acls.iter().filter(|b| filter.matches(b)) {
        let pattern = &binding.pattern;
        let same_resource = response.resources.last().is_some_and(|r| {
            r.resource_type == pattern.resource_type as i8
                && r.pattern_type == pattern.pattern as i8
                && r.resource_name.as_str() == pattern.name
        });
        if !same_resource {
            let mut resource = DescribeAclsResource::default();
            resource.resource_type = pattern.resource_type as i8;
            resource.resource_name = str_bytes(&pattern.name);
            resource.pattern_type = pattern.pattern as i8;
            response.resources.push(resource);
        }
        let mut description = AclDescription::default();
        description.principal = str_bytes(&binding.principal);
        description.host = str_bytes(&binding.host);
        description.operation = binding.operation as i8;
        description.permission_type = binding.permission as i8;
        if let Some(resource) = response.resources.last_mut() {
            resource.acls.push(description);
        }
    }
    exchange::respond(request, &response)
}
