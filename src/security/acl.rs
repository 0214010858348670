//! ACLs as Kafka's StandardAuthorizer reads them: who (a principal, `User:*` for anyone)
//! from where (a host, `*` for anywhere) may or may not (ALLOW, DENY) do what (an
//! operation) to which resources (a type, and a name: literal, `*` for every name, or a
//! prefix). Pure: the bindings live in the catalogue; each shard indexes them in an
//! [`Authorizer`] and asks it.
//!
//! Kafka's rules, kept here:
//! - a super user may do anything;
//! - a DENY that matches wins over any ALLOW;
//! - an ALLOW of READ, WRITE, DELETE or ALTER also allows DESCRIBE, one of ALTER_CONFIGS
//!   also DESCRIBE_CONFIGS, one of ALL everything (a DENY denies only its own operation, or
//!   all with ALL);
//! - a resource no binding matches at all is allowed only with
//!   `allow.everyone.if.no.acl.found` (default false).

use std::collections::{BTreeSet, HashMap};

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

/// The authorizer's settings (`--authorizer standard`): Kafka's `super.users` and
/// `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals that may do anything, e.g. `User:admin`.
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

/// The bindings indexed by resource, and the authorizer's settings: what a shard asks.
/// A check costs the bindings that match the resource (looked up by name, by prefix
/// length and by wildcard), not all bindings.
#[derive(Debug, Default)]
pub struct Authorizer {
    config: AuthorizerConfig,
    by_type: HashMap<ResourceType, TypeIndex>,
}

#[derive(Debug, Default)]
struct TypeIndex {
    /// Literal bindings by name (`*` included, as a name).
    literal: HashMap<String, Vec<Entry>>,
    /// Prefixed bindings by prefix.
    prefixed: HashMap<String, Vec<Entry>>,
    /// The lengths of the prefixes in `prefixed`, so a check looks up only those.
    prefix_lengths: BTreeSet<usize>,
}

#[derive(Debug)]
struct Entry {
    principal: String,
    host: String,
    operation: Operation,
    permission: Permission,
}

impl Authorizer {
    pub fn new<'a>(
        config: AuthorizerConfig,
        bindings: impl IntoIterator<Item = &'a AclBinding>,
    ) -> Authorizer {
        let mut by_type: HashMap<ResourceType, TypeIndex> = HashMap::new();
        for binding in bindings {
            let index = by_type.entry(binding.pattern.resource_type).or_default();
            let entry = Entry {
                principal: binding.principal.clone(),
                host: binding.host.clone(),
                operation: binding.operation,
                permission: binding.permission,
            };
            let name = binding.pattern.name.clone();
            match binding.pattern.pattern {
                PatternType::Literal => index.literal.entry(name).or_default().push(entry),
                PatternType::Prefixed => {
                    index.prefix_lengths.insert(name.len());
                    index.prefixed.entry(name).or_default().push(entry)
                }
            }
        }
        Authorizer { config, by_type }
    }

    /// Whether `who` may do `operation` on the resource (`resource_type`, `name`).
    pub fn authorize(
        &self,
        who: &Requester<'_>,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if self
            .config
            .super_users
            .iter()
            .any(|user| user == who.principal)
        {
            return true;
        }
        let mut any_for_resource = false;
        let mut allowed = false;
        for entry in self.entries(resource_type, name) {
            any_for_resource = true;
            let principal = entry.principal == who.principal || entry.principal == ANY_USER;
            let host = entry.host == who.host || entry.host == WILDCARD;
            if !(principal && host) {
                continue;
            }
            match entry.permission {
                Permission::Deny if entry.operation.denies(operation) => return false,
                Permission::Allow if entry.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any_for_resource && self.config.allow_if_no_acl)
    }

    /// Whether `who` may do `operation` on some resource of `resource_type` (Kafka's
    /// `authorizeByResourceType`: an idempotent producer may write if it may write to
    /// some topic, KIP-679). An ALLOW anywhere counts unless a DENY of the same principal
    /// covers every name (a literal `*` or an empty prefix).
    pub fn authorize_any(
        &self,
        who: &Requester<'_>,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self
            .config
            .super_users
            .iter()
            .any(|user| user == who.principal)
        {
            return true;
        }
        let Some(index) = self.by_type.get(&resource_type) else {
            return self.config.allow_if_no_acl;
        };
        let applies = |entry: &Entry| {
            (entry.principal == who.principal || entry.principal == ANY_USER)
                && (entry.host == who.host || entry.host == WILDCARD)
        };
        let everything = index
            .literal
            .get(WILDCARD)
            .into_iter()
            .chain(index.prefixed.get(""))
            .flatten();
        let denied_everywhere = everything
            .filter(|e| applies(e))
            .any(|e| e.permission == Permission::Deny && e.operation.denies(operation));
        if denied_everywhere {
            return false;
        }
        index
            .literal
            .values()
            .chain(index.prefixed.values())
            .flatten()
            .any(|e| {
                applies(e) && e.permission == Permission::Allow && e.operation.allows(operation)
            })
    }

    /// The entries whose pattern matches the resource.
    fn entries<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        let index = self.by_type.get(&resource_type);
        let literal = index.into_iter().flat_map(move |index| {
            let exact = index.literal.get(name).into_iter().flatten();
            let wildcard = (name != WILDCARD)
                .then(|| index.literal.get(WILDCARD))
                .flatten()
                .into_iter()
                .flatten();
            exact.chain(wildcard)
        });
        let prefixed = index.into_iter().flat_map(move |index| {
            index
                .prefix_lengths
                .iter()
                .take_while(move |&&length| length <= name.len())
                .filter_map(move |&length| name.get(..length))
                .filter_map(move |prefix| index.prefixed.get(prefix))
                .flatten()
        });
        literal.chain(prefixed)
    }
}

/// A filter over bindings (DescribeAcls, DeleteAcls), with Kafka's ANY (code 1) as `None`
/// and MATCH as its own pattern filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    /// Any pattern type; the name, if given, compared as written.
    Any,
    /// Bindings that would apply to the named resource (literal, `*` or a prefix of it).
    Match,
    Exactly(PatternType),
}

/// Why a binding or a filter is not acceptable (CreateAcls, DescribeAcls, DeleteAcls
/// answer INVALID_REQUEST, as Kafka does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{0}")]
pub struct InvalidAcl(pub String);

/// The only name of the CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

impl PatternType {
    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

impl Permission {
    pub fn from_code(code: i8) -> Option<Permission> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// Kafka's ANY, in every enum of a filter.
const ANY_CODE: i8 = 1;
/// PatternType MATCH.
const MATCH_CODE: i8 = 2;

impl AclBinding {
    /// A binding from CreateAcls' fields, checked as Kafka checks a new ACL.
    pub fn from_codes(
        resource_type: i8,
        name: &str,
        pattern: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, InvalidAcl> {
        let bad = |what: String| Err(InvalidAcl(what));
        let Some(resource_type) = ResourceType::from_code(resource_type) else {
            return bad(format!(
                "resource type {resource_type} is not one an ACL can name"
            ));
        };
        let Some(pattern) = PatternType::from_code(pattern) else {
            return bad(format!(
                "pattern type {pattern} is not LITERAL (3) or PREFIXED (4)"
            ));
        };
        let Some(operation) = Operation::from_code(operation) else {
            return bad(format!("operation {operation} is not one an ACL can name"));
        };
        let Some(permission) = Permission::from_code(permission) else {
            return bad(format!(
                "permission {permission} is not DENY (2) or ALLOW (3)"
            ));
        };
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return bad(format!("a resource name is 1 to {NAME_BYTES_MAX} bytes"));
        }
        if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
            return bad(format!(
                "the only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        check_principal(principal)?;
        if host.is_empty() || host.len() > NAME_BYTES_MAX {
            return bad(format!(
                "a host is `*` or an address, at most {NAME_BYTES_MAX} bytes"
            ));
        }
        Ok(AclBinding {
            pattern: ResourcePattern {
                resource_type,
                name: name.into(),
                pattern,
            },
            principal: principal.into(),
            host: host.into(),
            operation,
            permission,
        })
    }
}

/// A resource name, principal or host in a binding is at most this long (Kafka bounds
/// none; a catalogue must).
pub const NAME_BYTES_MAX: usize = 1024;

/// `Type:name`, as Kafka's `KafkaPrincipal.fromString` reads it.
fn check_principal(principal: &str) -> Result<(), InvalidAcl> {
    let valid = principal.len() <= NAME_BYTES_MAX
        && principal
            .split_once(':')
            .is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty());
    if valid {
        Ok(())
    } else {
        Err(InvalidAcl(format!(
            "principal {principal:?} is not Type:name (e.g. User:alice)"
        )))
    }
}

impl AclFilter {
    /// A filter from DescribeAcls' or DeleteAcls' fields (ANY is code 1 in each enum).
    pub fn from_codes(
        resource_type: i8,
        name: Option<&str>,
        pattern: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, InvalidAcl> {
        let any_or = |code: i8, known: Option<()>, what: &str| {
            if code == ANY_CODE || known.is_some() {
                Ok(())
            } else {
                Err(InvalidAcl(format!("unknown {what} {code}")))
            }
        };
        let resource = ResourceType::from_code(resource_type);
        any_or(resource_type, resource.map(drop), "resource type")?;
        let op = Operation::from_code(operation);
        any_or(operation, op.map(drop), "operation")?;
        let perm = Permission::from_code(permission);
        any_or(permission, perm.map(drop), "permission")?;
        let pattern = match pattern {
            ANY_CODE => PatternFilter::Any,
            MATCH_CODE => PatternFilter::Match,
            code => PatternFilter::Exactly(
                PatternType::from_code(code)
                    .ok_or_else(|| InvalidAcl(format!("unknown pattern type {code}")))?,
            ),
        };
        Ok(AclFilter {
            resource_type: resource,
            name: name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: op,
            permission: perm,
        })
    }

    pub fn matches(&self, binding: &AclBinding) -> bool {
        let pattern = &binding.pattern;
        let same =
            |wanted: &Option<String>, have: &str| wanted.as_deref().is_none_or(|w| w == have);
        let resource = self
            .resource_type
            .is_none_or(|t| t == pattern.resource_type)
            && match self.pattern {
                PatternFilter::Any => same(&self.name, &pattern.name),
                PatternFilter::Exactly(kind) => {
                    kind == pattern.pattern && same(&self.name, &pattern.name)
                }
                PatternFilter::Match => self
                    .name
                    .as_deref()
                    .is_none_or(|name| pattern.matches(pattern.resource_type, name)),
            };
        resource
            && same(&self.principal, &binding.principal)
            && same(&self.host, &binding.host)
            && self.operation.is_none_or(|o| o == binding.operation)
            && self.permission.is_none_or(|p| p == binding.permission)
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
        let bindings = vec![
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
        ];
        let config = AuthorizerConfig {
            super_users: vec!["User:admin".into()],
            allow_if_no_acl: false,
        };
        let acls = Authorizer::new(config.clone(), &bindings);
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
        let open = Authorizer::new(
            AuthorizerConfig {
                allow_if_no_acl: true,
                ..config
            },
            &bindings,
        );
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
        let acls = Authorizer::new(AuthorizerConfig::default(), [&allow]);
        assert!(acls.authorize(&ALICE, Read, ResourceType::Topic, "t"));
        let elsewhere = Requester {
            principal: "User:alice",
            host: "10.0.0.7",
        };
        assert!(!acls.authorize(&elsewhere, Read, ResourceType::Topic, "t"));
        let mut deny = allow.clone();
        deny.permission = Permission::Deny;
        deny.host = WILDCARD.into();
        deny.operation = All;
        let acls = Authorizer::new(AuthorizerConfig::default(), [&allow, &deny]);
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

    #[test]
    fn filters_match_as_kafka_s_describe_and_delete_do() {
        use Operation::*;
        let orders = binding(
            ResourceType::Topic,
            "orders",
            PatternType::Literal,
            "User:alice",
            Write,
            Permission::Allow,
        );
        let prefix = binding(
            ResourceType::Topic,
            "ord",
            PatternType::Prefixed,
            "User:bob",
            Read,
            Permission::Allow,
        );
        let any_topic = binding(
            ResourceType::Topic,
            "*",
            PatternType::Literal,
            "User:carol",
            Read,
            Permission::Deny,
        );
        let filter = |resource_type, name: Option<&str>, pattern, principal: Option<&str>| {
            AclFilter::from_codes(resource_type, name, pattern, principal, None, 1, 1).unwrap()
        };
        let matching = |f: &AclFilter| {
            [&orders, &prefix, &any_topic]
                .into_iter()
                .filter(|b| f.matches(b))
                .count()
        };
        assert_eq!(matching(&filter(1, None, 1, None)), 3, "ANY matches all");
        assert_eq!(matching(&filter(2, Some("orders"), 1, None)), 1);
        assert_eq!(matching(&filter(2, Some("orders"), 2, None)), 3, "MATCH");
        assert_eq!(matching(&filter(2, Some("other"), 2, None)), 1, "only *");
        assert_eq!(matching(&filter(2, None, 4, None)), 1, "PREFIXED");
        assert_eq!(matching(&filter(1, None, 1, Some("User:bob"))), 1);
        assert_eq!(matching(&filter(3, None, 1, None)), 0, "groups");
        assert!(AclFilter::from_codes(9, None, 1, None, None, 1, 1).is_err());
        assert!(AclFilter::from_codes(1, None, 7, None, None, 1, 1).is_err());
        assert!(AclFilter::from_codes(1, None, 1, None, None, 0, 1).is_err());
    }

    #[test]
    fn new_bindings_are_checked_as_kafka_checks_them() {
        let create = |resource_type, name, pattern, principal, operation, permission| {
            AclBinding::from_codes(
                resource_type,
                name,
                pattern,
                principal,
                "*",
                operation,
                permission,
            )
        };
        assert!(create(2, "t", 3, "User:alice", 4, 3).is_ok());
        assert!(create(4, "kafka-cluster", 3, "User:alice", 7, 3).is_ok());
        assert!(
            create(4, "other", 3, "User:alice", 7, 3).is_err(),
            "cluster name"
        );
        assert!(
            create(1, "t", 3, "User:alice", 4, 3).is_err(),
            "ANY resource"
        );
        assert!(
            create(2, "t", 2, "User:alice", 4, 3).is_err(),
            "MATCH pattern"
        );
        assert!(
            create(2, "t", 3, "alice", 4, 3).is_err(),
            "principal without type"
        );
        assert!(
            create(2, "t", 3, "User:alice", 1, 3).is_err(),
            "ANY operation"
        );
        assert!(
            create(2, "t", 3, "User:alice", 4, 1).is_err(),
            "ANY permission"
        );
        assert!(create(2, "", 3, "User:alice", 4, 3).is_err(), "empty name");
    }

    #[test]
    fn prefixes_are_found_by_length_and_a_type_wide_check_sees_any_allow() {
        use Operation::*;
        let bindings = [
            binding(
                ResourceType::Topic,
                "a",
                PatternType::Prefixed,
                "User:alice",
                Read,
                Permission::Allow,
            ),
            binding(
                ResourceType::Topic,
                "abc",
                PatternType::Prefixed,
                "User:alice",
                Write,
                Permission::Allow,
            ),
            binding(
                ResourceType::Topic,
                "abcd",
                PatternType::Prefixed,
                "User:alice",
                Write,
                Permission::Deny,
            ),
        ];
        let acls = Authorizer::new(AuthorizerConfig::default(), &bindings);
        assert!(acls.authorize(&ALICE, Read, ResourceType::Topic, "abcdef"));
        assert!(acls.authorize(&ALICE, Write, ResourceType::Topic, "abcx"));
        assert!(!acls.authorize(&ALICE, Write, ResourceType::Topic, "abcdx"));
        assert!(!acls.authorize(&ALICE, Write, ResourceType::Topic, "ab"));
        assert!(!acls.authorize(&ALICE, Read, ResourceType::Topic, "b"));
        // Names that are not char boundaries at a prefix length are no panic.
        assert!(!acls.authorize(&ALICE, Read, ResourceType::Topic, "é"));
        assert!(acls.authorize_any(&ALICE, Write, ResourceType::Topic));
        assert!(!acls.authorize_any(&BOB, Write, ResourceType::Topic));
        let deny_all = binding(
            ResourceType::Topic,
            "",
            PatternType::Prefixed,
            "User:alice",
            All,
            Permission::Deny,
        );
        let acls = Authorizer::new(
            AuthorizerConfig::default(),
            bindings.iter().chain([&deny_all]),
        );
        assert!(!acls.authorize_any(&ALICE, Write, ResourceType::Topic));
    }
}
