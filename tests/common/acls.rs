//! ACLs from the client's side: bindings as CreateAcls sends them, and DescribeAcls of
//! every binding.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Raw;

pub fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// One binding as CreateAcls sends it (host `*`).
pub fn creation(
    resource_type: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    operation: i8,
    permission: i8,
) -> AclCreation {
    let mut creation = AclCreation::default();
    creation.resource_type = resource_type;
    creation.resource_name = text(name);
    creation.resource_pattern_type = pattern;
    creation.principal = text(principal);
    creation.host = text("*");
    creation.operation = operation;
    creation.permission_type = permission;
    creation
}

pub fn create_acls(raw: &mut Raw, creations: Vec<AclCreation>) -> Vec<i16> {
    let mut request = CreateAclsRequest::default();
    request.creations = creations;
    let response: CreateAclsResponse = raw.call(ApiKey::CreateAcls, 3, &request);
    response.results.iter().map(|r| r.error_code).collect()
}

/// A binding as listed: resource type, name, pattern, principal, operation, permission.
pub type Listed = (i8, String, i8, String, i8, i8);

/// Every binding.
pub fn describe_acls(raw: &mut Raw) -> Result<Vec<Listed>, i16> {
    let mut request = DescribeAclsRequest::default();
    request.resource_type_filter = 1;
    request.resource_name_filter = None;
    request.principal_filter = None;
    request.host_filter = None;
    request.pattern_type_filter = 1;
    request.operation = 1;
    request.permission_type = 1;
    let response: DescribeAclsResponse = raw.call(ApiKey::DescribeAcls, 3, &request);
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    let mut bindings = Vec::new();
    for resource in &response.resources {
        for acl in &resource.acls {
            bindings.push((
                resource.resource_type,
                resource.resource_name.to_string(),
                resource.pattern_type,
                acl.principal.to_string(),
                acl.operation,
                acl.permission_type,
            ));
        }
    }
    bindings.sort();
    Ok(bindings)
}
