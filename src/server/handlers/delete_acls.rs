//! DeleteAcls (key 31): removes the bindings each filter matches, as `kafka-acls --remove`
//! sends them, through the controller; answers per filter with the bindings removed.
//! Needs ALTER on the cluster; without `--authorizer` answers SECURITY_DISABLED.

use std::rc::Rc;

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::protocol::frame::Request;
use crate::security::acl::{AclBinding, AclFilter};
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: DeleteAclsRequest = exchange::decode(request)?;
    let refusal = super::create_acls::refusal(shard, request);
    let checked: Vec<Result<AclFilter, Failure>> = body
        .filters
        .iter()
        .map(|f| {
            if let Some(failure) = &refusal {
                return Err(failure.clone());
            }
            AclFilter::from_codes(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
            .map_err(|invalid| Failure::new(ResponseError::InvalidRequest, invalid.0))
        })
        .collect();
    let valid: Vec<AclFilter> = checked.iter().flatten().cloned().collect();
    let mut deleted = if valid.is_empty() {
        Vec::new()
    } else {
        let count = valid.len();
        shard
            .control(ControlCall::DeleteAcls(valid))
            .await?
            .into_deleted_acls(count)
    }
    .into_iter();
    let mut response = DeleteAclsResponse::default();
    for outcome in checked {
        let outcome = outcome.and_then(|_| {
            deleted
                .next()
                .unwrap_or_else(|| Ok(Vec::new()))
                .map_err(Failure::from)
        });
        let mut result = DeleteAclsFilterResult::default();
        match outcome {
            Ok(bindings) => result.matching_acls = bindings.iter().map(matching).collect(),
            Err(failure) => {
                result.error_code = failure.code.code();
                result.error_message = Some(str_bytes(&failure.message));
            }
        }
        response.filter_results.push(result);
    }
    exchange::respond(request, &response)
}

fn matching(binding: &AclBinding) -> DeleteAclsMatchingAcl {
    let mut acl = DeleteAclsMatchingAcl::default();
    acl.resource_type = binding.pattern.resource_type as i8;
    acl.resource_name = str_bytes(&binding.pattern.name);
    acl.pattern_type = binding.pattern.pattern as i8;
    acl.principal = str_bytes(&binding.principal);
    acl.host = str_bytes(&binding.host);
    acl.operation = binding.operation as i8;
    acl.permission_type = binding.permission as i8;
    acl
}
