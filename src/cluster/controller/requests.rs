//! The controller's operations' inputs, as requests name them (serialized between nodes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A topic to create, as requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    /// -1 for the broker default.
    pub partitions: i32,
    /// -1 for the default (1: this is a single broker).
    pub replication_factor: i16,
    /// Manual assignment: per partition, its replicas' broker ids.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: BTreeMap<String, String>,
}

/// A request to grow a topic to `count` partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionGrowth {
    pub topic: String,
    pub count: i32,
    /// Manual assignment of the new partitions: per new partition, its replicas.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// One operation of a topic config change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigEdit {
    Set(String, String),
    /// Back to the broker default.
    Delete(String),
}

/// A change to one topic's config overrides: IncrementalAlterConfigs edits the current
/// overrides; AlterConfigs (`replace_all`) replaces them with the set it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfigChange {
    pub topic: String,
    pub replace_all: bool,
    pub edits: Vec<ConfigEdit>,
}

/// One partition's reassignment: its target replicas, or `None` to cancel it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReassignment {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// A topic named by name or by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// A SCRAM credential to delete (AlterUserScramCredentials), its mechanism as Kafka's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramDeletion {
    pub user: String,
    pub mechanism: i8,
}

/// A SCRAM credential to set: the client salted the password (Kafka's admin client does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramUpsertion {
    pub user: String,
    pub mechanism: i8,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// The users a credential change names, each once, in order of first mention (how Kafka
/// lists its per-user results). Linear in the request: a set, not a scan, for "seen".
pub fn users_named(deletions: &[ScramDeletion], upsertions: &[ScramUpsertion]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    deletions
        .iter()
        .map(|d| &d.user)
        .chain(upsertions.iter().map(|u| &u.user))
        .filter(|user| seen.insert(user.as_str()))
        .cloned()
        .collect()
}
