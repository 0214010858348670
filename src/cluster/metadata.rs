//! The catalogue: topics (names, ids, partitions, config overrides, each partition's
//! replicas and state) and registered brokers. A single broker's controller persists it as
//! JSON in `<data dir>/petrel-metadata.json` (atomic replace + directory fsync); a cluster's
//! is the state every voter applies from the metadata quorum's log (`cluster::records`), and
//! a broker-only node's a copy of a voter's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::security::acl::AclBinding;
use crate::security::quota::ClientQuotas;
use crate::security::scram::{ScramCredential, ScramMechanism};
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
    /// Per partition, the brokers holding a replica; the first is the preferred leader.
    /// Files written before clusters existed lack it: `fill_replicas` names the one broker.
    #[serde(default)]
    pub replicas: Vec<Vec<i32>>,
    /// Per partition, its leader, leader epoch and in-sync replicas (the controller's
    /// decisions). Files written before clusters existed lack it: `fill_replicas`.
    #[serde(default)]
    pub states: Vec<PartitionState>,
}

/// Who leads a partition, since which epoch, which replicas are in sync, and a
/// reassignment in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// -1 while no in-sync replica is live (the partition is offline).
    pub leader: i32,
    /// Bumped by every change of leader (stamped into the batches the leader appends).
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// A reassignment in progress (KIP-455, `cluster/reassignment.rs`): replicas being
    /// added (copying; the reassignment completes once all are in sync) and replicas to
    /// remove then. Both are also among the partition's replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionState {
    /// A new partition's state: led by its first live replica, every live one in sync
    /// (all of them, leaderless, if none is live).
    pub fn new(replicas: &[i32], live: impl Fn(i32) -> bool) -> PartitionState {
        let isr: Vec<i32> = replicas.iter().copied().filter(|&id| live(id)).collect();
        match isr.first() {
            Some(&leader) => PartitionState {
                leader,
                leader_epoch: 0,
                isr,
                ..PartitionState::default()
            },
            None => PartitionState {
                leader: -1,
                leader_epoch: 0,
                isr: replicas.to_vec(),
                ..PartitionState::default()
            },
        }
    }
}

impl Topic {
    /// The brokers holding partition `index` (empty for a partition that does not exist).
    pub fn replicas_of(&self, index: i32) -> &[i32] {
        usize::try_from(index)
            .ok()
            .and_then(|slot| self.replicas.get(slot))
            .map_or(&[], Vec::as_slice)
    }

    /// The state of partition `index`, if it exists.
    pub fn state_of(&self, index: i32) -> Option<&PartitionState> {
        usize::try_from(index)
            .ok()
            .and_then(|slot| self.states.get(slot))
    }
}

/// A broker of the cluster, as it registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: i32,
    /// Where clients reach it (its advertised listener).
    pub host: String,
    pub port: u16,
    /// Random per process start: a second process claiming a live broker's id is told
    /// apart from the same broker restarting.
    pub incarnation: Uuid,
    /// The metadata index of its latest registration (Kafka's broker epoch).
    pub epoch: u64,
    /// Fenced brokers lead nothing and are not listed to clients: they missed their
    /// heartbeats, or have just registered and not yet caught up.
    pub fenced: bool,
    /// Every client listener's advertised address, by listener name; empty in a
    /// registration written before listeners had names (then `host:port` serves all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Endpoint>,
}

/// A listener's advertised address (Kafka's registration endpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl BrokerInfo {
    /// Where a client that came in on `listener` reaches this broker: None if the broker
    /// has no such listener (Kafka then leaves it out of the answer).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, u16)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|endpoint| endpoint.name == listener)
            .map(|endpoint| (endpoint.host.as_str(), endpoint.port))
    }
}

/// The catalogue. `topics` is reached only through methods, so the id index always
/// matches it: produce, fetch and metadata requests look topics up by id once per topic
/// named, and a scan of every topic per lookup made such a request cost topics x ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredMetadata")]
pub struct ClusterMetadata {
    pub format_version: u32,
    pub cluster_id: String,
    topics: BTreeMap<String, Topic>,
    /// Producer ids below this may have been handed out; the controller hands out ids from
    /// a block it has persisted first, so ids stay unique across restarts.
    #[serde(default)]
    pub producer_id_block_end: i64,
    /// Every broker that registered, by id (a single broker lists itself).
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Users' SCRAM credentials by user and mechanism (AlterUserScramCredentials): what
    /// SASL logins on every broker are checked against.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram_credentials: ScramCredentials,
    /// ACL bindings (CreateAcls), each once: what every broker's authorizer checks.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<AclBinding>,
    /// Client quotas by entity (AlterClientQuotas): what every shard throttles by.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "crate::security::quota::as_list"
    )]
    pub client_quotas: ClientQuotas,
    /// A node's bootstrap users (`petrel format --add-scram`) were considered: they are
    /// applied once per catalogue, by the first node that offers them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bootstrapped: bool,
    /// Topic id -> name, for every topic in `topics`; not persisted (rebuilt on load).
    #[serde(skip)]
    topic_ids: HashMap<Uuid, String>,
}

/// The persisted fields; loading goes through here so the id index is always built.
#[derive(Deserialize)]
struct StoredMetadata {
    format_version: u32,
    cluster_id: String,
    topics: BTreeMap<String, Topic>,
    #[serde(default)]
    producer_id_block_end: i64,
    #[serde(default)]
    brokers: BTreeMap<i32, BrokerInfo>,
    #[serde(default)]
    scram_credentials: ScramCredentials,
    #[serde(default)]
    acls: BTreeSet<AclBinding>,
    #[serde(default, with = "crate::security::quota::as_list")]
    client_quotas: ClientQuotas,
    #[serde(default)]
    bootstrapped: bool,
}

/// Users' SCRAM credentials: user -> mechanism -> credential.
pub type ScramCredentials = BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>;

impl From<StoredMetadata> for ClusterMetadata {
    fn from(stored: StoredMetadata) -> ClusterMetadata {
        let topic_ids = stored
            .topics
            .values()
            .map(|topic| (topic.id, topic.name.clone()))
            .collect();
        ClusterMetadata {
            format_version: stored.format_version,
            cluster_id: stored.cluster_id,
            topics: stored.topics,
            producer_id_block_end: stored.producer_id_block_end,
            brokers: stored.brokers,
            scram_credentials: stored.scram_credentials,
            acls: stored.acls,
            client_quotas: stored.client_quotas,
            bootstrapped: stored.bootstrapped,
            topic_ids,
        }
    }
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
            scram_credentials: BTreeMap::new(),
            acls: BTreeSet::new(),
            client_quotas: BTreeMap::new(),
            bootstrapped: false,
            brokers: BTreeMap::new(),
            topic_ids: HashMap::new(),
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
            let count = usize::try_from(topic.partitions).unwrap_or(0);
            let replicas_named = (topic.replicas.is_empty() || topic.replicas.len() == count)
                && (topic.states.is_empty() || topic.states.len() == count);
            if name != &topic.name || topic.partitions < 1 || !replicas_named {
                return Err(MetadataError::Damaged(format!("topic entry {name}")));
            }
        }
        // Two topics with one id would make lookups by id ambiguous.
        if metadata.topic_ids.len() != metadata.topics.len() {
            return Err(MetadataError::Damaged("two topics share an id".into()));
        }
        Ok(metadata)
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Topic> {
        self.topic_ids
            .get(id)
            .and_then(|name| self.topics.get(name))
    }

    /// Every topic, by name.
    pub fn topics(&self) -> &BTreeMap<String, Topic> {
        &self.topics
    }

    /// Topic `name` to change in place (its partitions' replicas and states); its name and
    /// id, which the index keys on, must stay as they are.
    pub fn topic_mut(&mut self, name: &str) -> Option<&mut Topic> {
        self.topics.get_mut(name)
    }

    /// Adds `topic`, or replaces the topic of the same name.
    pub fn insert_topic(&mut self, topic: Topic) {
        if let Some(old) = self.topics.get(&topic.name) {
            self.topic_ids.remove(&old.id);
        }
        self.topic_ids.insert(topic.id, topic.name.clone());
        self.topics.insert(topic.name.clone(), topic);
    }

    pub fn remove_topic(&mut self, name: &str) -> Option<Topic> {
        let removed = self.topics.remove(name)?;
        self.topic_ids.remove(&removed.id);
        Some(removed)
    }

    /// Replaces the state of one partition (a record naming a partition that no longer
    /// exists changes nothing).
    pub fn set_partition_state(&mut self, topic_id: &Uuid, partition: i32, state: PartitionState) {
        let Some(name) = self.topic_ids.get(topic_id) else {
            return;
        };
        let slot = usize::try_from(partition).ok();
        if let Some(current) = self
            .topics
            .get_mut(name)
            .and_then(|topic| slot.and_then(|slot| topic.states.get_mut(slot)))
        {
            *current = state;
        }
    }

    /// Replaces a topic's config overrides; the changed topic, if it exists.
    pub fn set_topic_configs(
        &mut self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Option<&Topic> {
        let topic = self.topics.get_mut(name)?;
        topic.configs = configs;
        Some(topic)
    }

    /// Names `node` as the one replica of every partition whose replicas a metadata file
    /// from before clusters did not record.
    pub fn fill_replicas(&mut self, node: i32) {
        for topic in self.topics.values_mut() {
            let count = usize::try_from(topic.partitions).unwrap_or(0);
            if topic.replicas.is_empty() {
                topic.replicas = vec![vec![node]; count];
            }
            if topic.states.is_empty() {
                topic.states = topic
                    .replicas
                    .iter()
                    .map(|replicas| PartitionState::new(replicas, |_| true))
                    .collect();
            }
        }
    }

    /// The broker leading partition `index` of `topic`, if one does.
    pub fn leader_of(&self, topic: &Topic, index: i32) -> Option<i32> {
        topic
            .state_of(index)
            .map(|state| state.leader)
            .filter(|&leader| leader >= 0)
    }

    /// Whether broker `id` is registered and unfenced.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|broker| !broker.fenced)
    }

    /// In a cluster, the broker coordinating consumer group `group`: the leader of its
    /// `__consumer_offsets` partition, when the topic exists and the partition has a live
    /// leader. When that broker fails, the partition's next leader takes the group over
    /// with every committed offset (they are replicated).
    pub fn group_coordinator(&self, group: &str) -> Option<&BrokerInfo> {
        let topic = self.topic(OFFSETS_TOPIC)?;
        let leader = self.leader_of(topic, offsets_partition(group, topic.partitions))?;
        self.brokers.get(&leader).filter(|broker| !broker.fenced)
    }

    /// Brokers clients may use (unfenced), by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|broker| !broker.fenced)
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

/// Replicas of one partition: Kafka's own bound is the broker count; this one keeps a
/// partition's state (and a produce's wait) small.
pub const REPLICATION_FACTOR_MAX: usize = 9;

/// The replicated log of committed offsets in a cluster (Kafka's name and role).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Topics the brokers write themselves: clients may read them but not produce to, create,
/// delete or grow them (Kafka's `Topic.isInternal`).
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// The `__consumer_offsets` partition holding group `group` (of `partitions`).
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let partitions = u64::try_from(partitions.max(1)).unwrap_or(1);
    let slot = crate::runtime::placement::fnv1a64(group.as_bytes()) % partitions;
    i32::try_from(slot).unwrap_or(0)
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

/// Catalogues for the control plane's tests, written once: brokers, and a topic "t".
#[cfg(test)]
pub mod fixture {
    use uuid::Uuid;

    use super::{BrokerInfo, ClusterMetadata, PartitionState, Topic};

    /// The id of `topic`'s topic.
    pub const TOPIC_ID: Uuid = Uuid::from_u128(1);

    /// Broker `id` at h:9092, registered at `epoch`, its incarnation derived from its id.
    pub fn broker(id: i32, epoch: u64, fenced: bool) -> BrokerInfo {
        BrokerInfo {
            id,
            host: "h".into(),
            port: 9092,
            incarnation: Uuid::from_u128(id as u128),
            epoch,
            fenced,
            listeners: Vec::new(),
        }
    }

    /// Brokers 1 to `count`, registered at `epoch`; those `fenced` says are fenced.
    pub fn brokers(count: i32, epoch: u64, fenced: impl Fn(i32) -> bool) -> ClusterMetadata {
        let mut image = ClusterMetadata::new();
        for id in 1..=count {
            image.brokers.insert(id, broker(id, epoch, fenced(id)));
        }
        image
    }

    /// Topic "t" (`TOPIC_ID`), one partition per entry of `replicas`, in `states`.
    pub fn topic(replicas: Vec<Vec<i32>>, states: Vec<PartitionState>) -> Topic {
        assert_eq!(replicas.len(), states.len(), "a state per partition");
        Topic {
            name: "t".into(),
            id: TOPIC_ID,
            partitions: replicas.len() as i32,
            configs: Default::default(),
            replicas,
            states,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        use crate::security::acl::{
            Operation, PatternType, Permission, ResourcePattern, ResourceType,
        };
        use crate::security::quota::{EntityName, QuotaEntity, QuotaValue};
        let mut metadata = ClusterMetadata::new();
        metadata.insert_topic(topic("orders"));
        // Every kind of catalogue entry persists (JSON maps need string keys: quotas are
        // keyed by a struct and written as a list).
        metadata.acls.insert(AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::Topic,
                name: "orders".into(),
                pattern: PatternType::Literal,
            },
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Write,
            permission: Permission::Allow,
        });
        let entity = QuotaEntity {
            user: Some(EntityName::Named("alice".into())),
            client_id: Some(EntityName::Default),
        };
        metadata
            .client_quotas
            .entry(entity)
            .or_default()
            .insert("producer_byte_rate".into(), QuotaValue::new(1024.0));
        metadata.bootstrapped = true;
        let decoded = ClusterMetadata::decode(&metadata.encode()).expect("decode");
        assert_eq!(decoded, metadata);
        assert!(decoded
            .topic_by_id(&metadata.topics()["orders"].id)
            .is_some());
        assert!(ClusterMetadata::decode(b"{not json").is_err());
        let mut bytes = metadata.encode();
        bytes.truncate(bytes.len() / 2);
        assert!(ClusterMetadata::decode(&bytes).is_err());
    }

    fn topic(name: &str) -> Topic {
        Topic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions: 6,
            configs: BTreeMap::new(),
            replicas: vec![vec![1]; 6],
            states: Vec::new(),
        }
    }

    #[test]
    fn the_id_index_follows_every_change() {
        let mut metadata = ClusterMetadata::new();
        let (a, b) = (topic("a"), topic("b"));
        metadata.insert_topic(a.clone());
        metadata.insert_topic(b.clone());
        assert_eq!(metadata.topic_by_id(&a.id).map(|t| &t.name), Some(&a.name));
        // Replaced under the same name with a new id (deleted and created again).
        let again = topic("a");
        metadata.insert_topic(again.clone());
        assert!(metadata.topic_by_id(&a.id).is_none());
        assert_eq!(
            metadata.topic_by_id(&again.id).map(|t| t.id),
            Some(again.id)
        );
        // Grown: same name and id.
        metadata.insert_topic(Topic {
            partitions: 9,
            replicas: vec![vec![1]; 9],
            ..again.clone()
        });
        assert_eq!(
            metadata.topic_by_id(&again.id).map(|t| t.partitions),
            Some(9)
        );
        let configs = BTreeMap::from([("retention.ms".to_string(), "1".to_string())]);
        assert!(metadata.set_topic_configs("b", configs.clone()).is_some());
        assert_eq!(
            metadata.topic_by_id(&b.id).map(|t| &t.configs),
            Some(&configs)
        );
        assert_eq!(metadata.remove_topic("b").map(|t| t.id), Some(b.id));
        assert!(metadata.topic_by_id(&b.id).is_none());
        assert!(metadata.remove_topic("b").is_none());
        let decoded = ClusterMetadata::decode(&metadata.encode()).expect("decode");
        assert_eq!(decoded, metadata, "the index is rebuilt on load");
        assert!(
            metadata.clone().topic_by_id(&again.id).is_some(),
            "and cloned"
        );
    }

    /// Lookups by id cost one hash probe each: a request naming many unknown ids in a
    /// catalogue of many topics must not cost ids x topics.
    #[test]
    fn lookups_by_id_do_not_scan_the_catalogue() {
        const TOPICS: usize = 100_000;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut metadata = ClusterMetadata::new();
            for index in 0..TOPICS {
                metadata.insert_topic(topic(&format!("t{index}")));
            }
            let found = (0..TOPICS)
                .filter(|_| metadata.topic_by_id(&Uuid::new_v4()).is_some())
                .count();
            let _ = sender.send(found);
        });
        let found = receiver
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("did not finish within the watchdog: a scan per lookup?");
        assert_eq!(found, 0);
    }

    #[test]
    fn two_topics_with_one_id_are_damage() {
        let mut metadata = ClusterMetadata::new();
        let a = topic("a");
        metadata.insert_topic(a.clone());
        metadata.insert_topic(Topic {
            name: "b".into(),
            ..a
        });
        assert!(ClusterMetadata::decode(&metadata.encode()).is_err());
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
