//! What a request's principal may do: the shard's [`Authorizer`] (the catalogue's ACLs,
//! indexed) asked for the request's principal and host. Without `--authorizer` every
//! check passes. Handlers ask per resource and answer Kafka's *_AUTHORIZATION_FAILED
//! codes for what is denied.

use std::rc::Rc;

use super::Shard;
use crate::protocol::frame::Request;
use crate::security::acl::{Authorizer, Operation, Requester, ResourceType, CLUSTER_NAME};

/// One request's view of the authorizer: cheap to make, asked per resource.
pub struct Access<'a> {
    authorizer: Option<Rc<Authorizer>>,
    requester: Requester<'a>,
}

impl Shard {
    /// The authorizer's view for `request`.
    pub fn access<'a>(&self, request: &'a Request) -> Access<'a> {
        Access {
            authorizer: self.authorizer.borrow().clone(),
            requester: Requester {
                principal: &request.principal,
                // Kafka matches ACL hosts against the bare address.
                host: request.client_host.trim_start_matches('/'),
            },
        }
    }

    /// Whether an authorizer is on (ACL APIs answer SECURITY_DISABLED without one).
    pub fn authorizer_enabled(&self) -> bool {
        self.config.authorizer.is_some()
    }
}

impl Access<'_> {
    /// Everything allowed, as without an authorizer (tests of handler helpers).
    #[cfg(test)]
    pub fn unchecked() -> Access<'static> {
        Access {
            authorizer: None,
            requester: Requester {
                principal: crate::security::principal::ANONYMOUS,
                host: "",
            },
        }
    }

    /// Whether the principal may do `operation` on the resource.
    pub fn may(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let Some(authorizer) = &self.authorizer else {
            return true;
        };
        let allowed = authorizer.authorize(&self.requester, operation, resource_type, name);
        if !allowed {
            tracing::debug!(
                principal = self.requester.principal,
                host = self.requester.host,
                ?operation,
                ?resource_type,
                name,
                "denied"
            );
        }
        allowed
    }

    pub fn may_on_topic(&self, operation: Operation, topic: &str) -> bool {
        self.may(operation, ResourceType::Topic, topic)
    }

    pub fn may_on_group(&self, operation: Operation, group: &str) -> bool {
        self.may(operation, ResourceType::Group, group)
    }

    pub fn may_on_cluster(&self, operation: Operation) -> bool {
        self.may(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether the principal may do `operation` on some resource of the type (KIP-679:
    /// an idempotent producer needs WRITE on some topic, or IDEMPOTENT_WRITE).
    pub fn may_on_any(&self, operation: Operation, resource_type: ResourceType) -> bool {
        self.authorizer
            .as_ref()
            .is_none_or(|a| a.authorize_any(&self.requester, operation, resource_type))
    }

    /// Kafka's authorized-operations bit field (bit `1 << code` per operation allowed) of
    /// the operations that apply to the resource type (Metadata, DescribeCluster,
    /// DescribeGroups with `include_*_authorized_operations`).
    pub fn operations_on(&self, resource_type: ResourceType, name: &str) -> i32 {
        use Operation::*;
        let applicable: &[Operation] = match resource_type {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            _ => &[],
        };
        applicable
            .iter()
            .filter(|&&operation| self.may(operation, resource_type, name))
            .fold(0, |bits, &operation| bits | 1 << (operation as i32))
    }

    /// The principal, for log lines.
    pub fn principal(&self) -> &str {
        self.requester.principal
    }
}
