//! CreateAcls (key 30): adds ACL bindings, as `kafka-acls --add` sends them. Each creation
//! is checked as Kafka checks a new ACL (INVALID_REQUEST otherwise) and stored through the
//! controller. Needs ALTER on the cluster; without `--authorizer` every creation answers
//! SECURITY_DISABLED.

use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::cluster::control::ControlCall;
use crate::protocol::frame::Request;
use crate::security::acl::{AclBinding, Operation};
use crate::server::errors::Failure;
use crate::server::exchange::{self, HandlerResult};
use crate::shard::Shard;

/// Why an ACL change (CreateAcls, DeleteAcls) is refused whole: no authorizer
/// (SECURITY_DISABLED), or no ALTER on the cluster.
pub fn refusal(shard: &Shard, request: &Request) -> Option<Failure> {
    if !shard.authorizer_enabled() {
        Some(Failure::new(
            ResponseError::SecurityDisabled,
            "no authorizer is configured (--authorizer standard)",
        ))
    } else if !shard.access(request).may_on_cluster(Operation::Alter) {
        Some(Failure::new(
            ResponseError::ClusterAuthorizationFailed,
            format!("{:?} needs ALTER on the cluster", request.api_key),
        ))
    } else {
        None
    }
}

pub async fn handle(shard: &Rc<Shard>, request: &Request) -> HandlerResult {
    let body: CreateAclsRequest = exchange::decode(request)?;
    let refusal = refusal(shard, request);
    let checked: Vec<Result<AclBinding, Failure>> = body
        .creations
        .iter()
        .map(|c| {
            if let Some(failure) = &refusal {
                return Err(failure.clone());
            }
            AclBinding::from_codes(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
            .map_err(|invalid| Failure::new(ResponseError::InvalidRequest, invalid.0))
        })
        .collect();
    let valid: Vec<AclBinding> = checked.iter().flatten().cloned().collect();
    let mut stored = if valid.is_empty() {
        Vec::new()
    } else {
        let count = valid.len();
        shard
            .control(ControlCall::CreateAcls(valid))
            .await?
            .into_done(count)
    }
    .into_iter();
    let mut response = CreateAclsResponse::default();
    for outcome in checked {
        let outcome = outcome.and_then(|_| stored.next().unwrap_or(Ok(())).map_err(Failure::from));
        let mut result = AclCreationResult::default();
        if let Err(failure) = outcome {
            result.error_code = failure.code.code();
            result.error_message = Some(str_bytes(&failure.message));
        }
        response.results.push(result);
    }
    exchange::respond(request, &response)
}
