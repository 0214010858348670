//! The topic catalogue: names, ids, partition counts and config overrides. Persisted by the
//! controller as JSON in `<data dir>/petrel-metadata.json` (atomic replace + directory fsync).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const FILE_NAME: &str = "petrel-metadata.json";
const FORMAT_VERSION: u32 = 1;
/// Kafka caps partitions per topic request at this in practice; a bound on per-request work.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
/// Kafka's limit on topic name length.
const TOPIC_NAME_BYTES_MAX: usize = 249;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub format_version: u32,
    pub cluster_id: String,
    pub topics: BTreeMap<String, Topic>,
    /// Producer ids below this may have been handed out; the controller hands out ids from
    /// a block it has persisted first, so ids stay unique across restarts.
    #[serde(default)]
    pub producer_id_block_end: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata file is damaged: {0}")]
    Damaged(String),
    #[error("metadata file has format version {0}, this build reads {FORMAT_VERSION}")]
    Version(u32),
}

impl ClusterMetadata {
    pub fn new() -> ClusterMetadata {
        ClusterMetadata {
            format_version: FORMAT_VERSION,
            cluster_id: Uuid::new_v4().simple().to_string(),
            topics: BTreeMap::new(),
            producer_id_block_end: 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("metadata always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<ClusterMetadata, MetadataError> {
        let metadata: ClusterMetadata =
            serde_json::from_slice(bytes).map_err(|e| MetadataError::Damaged(e.to_string()))?;
        if metadata.format_version != FORMAT_VERSION {
            return Err(MetadataError::Version(metadata.format_version));
        }
        for (name, topic) in &metadata.topics {
            if name != &topic.name || topic.partitions < 1 {
                return Err(MetadataError::Damaged(format!("topic entry {name}")));
            }
        }
        Ok(metadata)
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Topic> {
        self.topics.values().find(|topic| &topic.id == id)
    }

    /// Partitions of every topic together.
    pub fn partition_count(&self) -> usize {
        self.topics
            .values()
            .map(|topic| usize::try_from(topic.partitions).unwrap_or(0))
            .sum()
    }
}

impl Default for ClusterMetadata {
    fn default() -> Self {
        ClusterMetadata::new()
    }
}

/// Kafka's topic name rules: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name must be 1 to {TOPIC_NAME_BYTES_MAX} characters"
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name contains {bad:?}; allowed are ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut metadata = ClusterMetadata::new();
        metadata.topics.insert(
            "orders".into(),
            Topic {
                name: "orders".into(),
                id: Uuid::new_v4(),
                partitions: 6,
                configs: BTreeMap::new(),
            },
        );
        let decoded = ClusterMetadata::decode(&metadata.encode()).expect("decode");
        assert_eq!(decoded, metadata);
        assert!(decoded.topic_by_id(&metadata.topics["orders"].id).is_some());
        assert!(ClusterMetadata::decode(b"{not json").is_err());
        let mut bytes = metadata.encode();
        bytes.truncate(bytes.len() / 2);
        assert!(ClusterMetadata::decode(&bytes).is_err());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["orders", "a.b_c-d", "X9"] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(250);
        for bad in [
            "",
            ".",
            "..",
            "with space",
            "slash/name",
            "ümlaut",
            long.as_str(),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
