//! ACLs as Kafka's StandardAuthorizer reads them: who (a principal, `User:*` for anyone)
//! from where (a host, `*` for anywhere) may or may not (ALLOW, DENY) do what (an
//! operation) to which resources (a type, and a name: literal, `*` for every name, or a
//! prefix). Pure: the bindings live in the catalogue; the server asks [`Acls::authorize`].
//!
//! Kafka's rules, kept here:
//! - a super user may do anything;
//! - a DENY that matches wins over any ALLOW;
//! - an ALLOW of READ, WRITE, DELETE or ALTER also allows DESCRIBE, one of ALTER_CONFIGS
//!   also DESCRIBE_CONFIGS, one of ALL everything (a DENY denies only its own operation, or
//!   all with ALL);
//! - a resource no binding matches at all is allowed only with
//!   `allow.everyone.if.no.acl.found` (default false).

use serde::{Deserialize, Serialize};

/// Kafka's resource types (`ResourceType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

impl ResourceType {
    pub fn from_code(code: i8) -> Option<ResourceType> {
        use ResourceType::*;
        [
            Topic,
            Group,
            Cluster,
            TransactionalId,
            DelegationToken,
            User,
        ]
        .into_iter()
        .find(|t| *t as i8 == code)
    }
}

/// Kafka's operations (`AclOperation` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
    TwoPhaseCommit = 15,
}

impl Operation {
    pub fn from_code(code: i8) -> Option<Operation> {
        use Operation::*;
        [
            All,
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            CreateTokens,
            DescribeTokens,
            TwoPhaseCommit,
        ]
        .into_iter()
        .find(|o| *o as i8 == code)
    }

    /// Whether an ALLOW of `self` allows `wanted`.
    fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` denies `wanted`.
    fn denies(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    Deny = 2,
    Allow = 3,
}

/// How a binding's resource name matches (`PatternType` codes 3 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// The name itself, or `*` for every name.
    Literal = 3,
    /// Every name that starts with it.
    Prefixed = 4,
}

/// A resource pattern: a type and a name that matches as `pattern` says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
}

impl ResourcePattern {
    fn matches(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.name),
            }
    }
}

/// An ACL binding: a pattern and one entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// An IP address, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// The wildcard resource name, principal name and host.
pub const WILDCARD: &str = "*";
const ANY_USER: &str = "User:*";

/// Who asks: a principal and the host it connects from.
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// The bindings and the authorizer's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acls {
    pub bindings: Vec<AclBinding>,
    /// Principals that may do anything (`super.users`).
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acl: bool,
}

impl Acls {
    /// Whether `who` may do `operation` on the resource (`resource_type`, `name`). Linear
    /// in the bindings.
    pub fn authorize(
        &self,
        who: &Requester<'_>,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if self.super_users.iter().any(|user| user == who.principal) {
            return true;
        }
        let mut any_for_resource = false;
        let mut allowed = false;
        for binding in &self.bindings {
            if !binding.pattern.matches(resource_type, name) {
                continue;
            }
            any_for_resource = true;
            let principal = binding.principal == who.principal || binding.principal == ANY_USER;
            let host = binding.host == who.host || binding.host == WILDCARD;
            if !(principal && host) {
                continue;
            }
            match binding.permission {
                Permission::Deny if binding.operation.denies(operation) => return false,
                Permission::Allow if binding.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any_for_resource && self.allow_if_no_acl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type,
                name: name.into(),
                pattern,
            },
            principal: principal.into(),
            host: WILDCARD.into(),
            operation,
            permission,
        }
    }

    const ALICE: Requester<'static> = Requester {
        principal: "User:alice",
        host: "10.0.0.1",
    };
    const BOB: Requester<'static> = Requester {
        principal: "User:bob",
        host: "10.0.0.2",
    };

    #[test]
    fn kafka_s_rules_allow_deny_imply_and_default() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let acls = Acls {
            bindings: vec![
                binding(Topic, "orders", Literal, "User:alice", Write, Allow),
                binding(Topic, "logs-", Prefixed, "User:*", Read, Allow),
                binding(Topic, "logs-secret", Literal, "User:bob", Read, Deny),
                binding(Group, "*", Literal, "User:bob", All, Allow),
                binding(
                    Cluster,
                    "kafka-cluster",
                    Literal,
                    "User:alice",
                    AlterConfigs,
                    Allow,
                ),
            ],
            super_users: vec!["User:admin".into()],
            allow_if_no_acl: false,
        };
        // Exact allow, and WRITE implies DESCRIBE but not READ or DELETE.
        assert!(acls.authorize(&ALICE, Write, Topic, "orders"));
        assert!(acls.authorize(&ALICE, Describe, Topic, "orders"));
        assert!(!acls.authorize(&ALICE, Read, Topic, "orders"));
        assert!(!acls.authorize(&BOB, Write, Topic, "orders"));
        // A prefix for everyone; a DENY wins over it for bob only.
        assert!(acls.authorize(&BOB, Read, Topic, "logs-app"));
        assert!(acls.authorize(&ALICE, Read, Topic, "logs-secret"));
        assert!(!acls.authorize(&BOB, Read, Topic, "logs-secret"));
        // The wildcard name, ALL; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
        assert!(acls.authorize(&BOB, Delete, Group, "any-group"));
        assert!(acls.authorize(&ALICE, DescribeConfigs, Cluster, "kafka-cluster"));
        // No binding for the resource: denied, unless allow.everyone.if.no.acl.found.
        assert!(!acls.authorize(&ALICE, Read, Topic, "unguarded"));
        let open = Acls {
            allow_if_no_acl: true,
            ..acls.clone()
        };
        assert!(open.authorize(&ALICE, Read, Topic, "unguarded"));
        assert!(
            !open.authorize(&BOB, Write, Topic, "orders"),
            "guarded stays guarded"
        );
        // Super users may do anything.
        let admin = Requester {
            principal: "User:admin",
            host: "10.0.0.9",
        };
        assert!(acls.authorize(&admin, Delete, Topic, "orders"));
    }

    #[test]
    fn hosts_narrow_a_binding_and_deny_all_denies_everything() {
        use Operation::*;
        let mut allow = binding(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "User:alice",
            All,
            Permission::Allow,
        );
        allow.host = "10.0.0.1".into();
        let acls = Acls {
            bindings: vec![allow.clone()],
            ..Acls::default()
        };
        assert!(acls.authorize(&ALICE, Read, ResourceType::Topic, "t"));
        let elsewhere = Requester {
            principal: "User:alice",
            host: "10.0.0.7",
        };
        assert!(!acls.authorize(&elsewhere, Read, ResourceType::Topic, "t"));
        let mut deny = allow;
        deny.permission = Permission::Deny;
        deny.host = WILDCARD.into();
        deny.operation = All;
        let mut acls = acls;
        acls.bindings.push(deny);
        assert!(!acls.authorize(&ALICE, Describe, ResourceType::Topic, "t"));
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_none() {
        for code in 2..=7 {
            assert_eq!(ResourceType::from_code(code).map(|t| t as i8), Some(code));
        }
        for code in 2..=15 {
            assert_eq!(Operation::from_code(code).map(|o| o as i8), Some(code));
        }
        assert_eq!(ResourceType::from_code(0), None);
        assert_eq!(
            Operation::from_code(1),
            None,
            "ANY is a filter, not an operation"
        );
        assert_eq!(Operation::from_code(16), None);
    }
}
