//! The validated broker configuration, and what the services take from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::listeners::{ListenerConfig, Listeners};
use crate::cluster::metadata::Endpoint;
use crate::cluster::quorum::voters::QuorumConfig;
use crate::cluster::topic_config::TopicDefaults;
use crate::storage::{FlushPolicy, LogConfig, ShardStorageConfig};

/// Validated broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The client listeners (`config::listeners`).
    pub listeners: Listeners,
    /// How a client certificate's subject names its principal.
    pub principal_mapping: crate::security::principal::MappingRules,
    /// `--authorizer standard`: every request is checked against the ACLs.
    pub authorizer: Option<crate::security::acl::AuthorizerConfig>,
    /// `--controller-security-protocol SSL`: how quorum peers prove they are nodes.
    pub quorum_security: Option<crate::cluster::quorum::transport::PeerSecurity>,
    /// The inter-broker listener is SSL: a follower's TLS client side (this node's
    /// certificate, the cluster's CAs) for its fetches from leaders.
    pub inter_broker_tls: Option<crate::runtime::tls::ClientTls>,
    pub data_dir: PathBuf,
    pub shards: usize,
    /// CPUs the shards are pinned to, one per shard (reused round-robin if fewer).
    pub cpus: Vec<usize>,
    pub node_id: i32,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub flush: FlushPolicy,
    pub topic_defaults: TopicDefaults,
    pub batch_decompressed_bytes_max: usize,
    pub request_bytes_max: usize,
    pub connections_max: usize,
    pub connection_inflight_bytes_max: usize,
    pub inflight_requests_max: usize,
    pub request_read_timeout: Duration,
    pub connection_idle: Duration,
    /// How long a SASL session lasts (`connections.max.reauth.ms`); None: for good.
    pub connection_reauth_max: Option<Duration>,
    pub cache_bytes: usize,
    /// Largest fetch response (Kafka's `fetch.max.bytes`), whatever the request's `max_bytes`.
    pub fetch_bytes_max: usize,
    /// Segment files one shard may hold open (derived from RLIMIT_NOFILE unless given).
    pub open_files_max: usize,
    /// Partitions the broker may hold, over all topics.
    pub partitions_max: usize,
    /// Tests only: the storage fault plan every shard installs (`--inject-faults`).
    pub inject_faults: Option<crate::storage::faults::FaultPlan>,
    pub group_limits: crate::group::state::GroupLimits,
    /// The metadata quorum, when this broker is a node of a cluster.
    pub quorum: Option<QuorumConfig>,
    /// `__consumer_offsets` in a cluster.
    pub offsets_topic: OffsetsTopicConfig,
    /// How often each log's retention is applied.
    pub retention_check_interval: Duration,
}

/// How `__consumer_offsets` is created (a cluster only; a single broker keeps each
/// shard's offsets in its own local log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetsTopicConfig {
    pub partitions: i32,
    /// Capped at the number of voters when the topic is created.
    pub replication_factor: i16,
}

impl BrokerConfig {
    /// Every TLS configuration in use (listeners, quorum links, replica fetches), each
    /// once: what SIGHUP reloads.
    pub fn tls_configs(&self) -> Vec<crate::runtime::tls::AnyTls> {
        use crate::runtime::tls::{self, AnyTls};
        let listeners = self.listeners.all.iter().filter_map(|l| l.tls.clone());
        let quorum = self.quorum_security.iter().flat_map(|security| {
            [
                AnyTls::Server(security.server.clone()),
                AnyTls::Client(security.client.clone()),
            ]
        });
        tls::distinct(
            listeners
                .map(AnyTls::Server)
                .chain(quorum)
                .chain(self.inter_broker_tls.clone().map(AnyTls::Client)),
        )
    }

    /// The listener other brokers fetch replicas through: its advertised address is the
    /// one a registration's `host:port` names.
    pub fn inter_broker_listener(&self) -> &ListenerConfig {
        &self.listeners.all[self.listeners.inter_broker]
    }

    /// Every listener's advertised address, as a registration lists them (Metadata answers
    /// a client with the endpoints of the listener it came in on).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.listeners
            .all
            .iter()
            .map(|listener| Endpoint {
                name: listener.name.clone(),
                host: listener.advertised.0.clone(),
                port: listener.advertised.1,
            })
            .collect()
    }

    pub fn shard_storage(&self) -> ShardStorageConfig {
        ShardStorageConfig {
            cache_bytes_max: (self.cache_bytes / self.shards).max(1 << 20),
            open_files_max: self.open_files_max,
        }
    }

    /// The storage settings of one partition of a topic with `topic` configs.
    pub fn log_config(&self, topic: &crate::cluster::topic_config::TopicConfig) -> LogConfig {
        LogConfig {
            segment_bytes_max: topic.segment_bytes as u64,
            segment_age_max: Duration::from_millis(topic.segment_ms as u64),
            retention_age_max: (topic.retention_ms >= 0)
                .then(|| Duration::from_millis(topic.retention_ms as u64)),
            retention_bytes_max: (topic.retention_bytes >= 0)
                .then_some(topic.retention_bytes as u64),
            // A stored batch may be as large as the topic allows, plus the log overhead.
            batch_bytes_max: (topic.max_message_bytes as usize).min(topic.segment_bytes as usize),
            batch_decompressed_bytes_max: self.batch_decompressed_bytes_max,
            flush: self.flush,
            ..LogConfig::default()
        }
    }

    pub fn metadata_path(&self) -> PathBuf {
        self.data_dir.join(crate::cluster::metadata::FILE_NAME)
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        partition_dir(&self.data_dir, topic, partition)
    }
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}
