//! Broker configuration: command-line flags, `PETREL_*` environment variables and an
//! optional TOML file, in that order of precedence, over built-in defaults. Every value is
//! validated once, here, with a message that names the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cluster::metadata::PARTITIONS_PER_TOPIC_MAX;
use crate::cluster::quorum::voters::{parse_voters, QuorumConfig};
use crate::cluster::topic_config::TopicDefaults;
use crate::storage::config::{BATCH_DECOMPRESSED_BYTES_MAX, BATCH_DECOMPRESSED_BYTES_MIN};
use crate::storage::{FlushPolicy, LogConfig, ShardStorageConfig};

/// Settings as given on the command line or in the environment (`None` = not given).
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML file with any of these settings (kebab-case keys, e.g. `data-dir = "/var/petrel"`).
    #[arg(long, env = "PETREL_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on. Every shard binds it (SO_REUSEPORT). [default: 127.0.0.1:9092]
    #[arg(long, env = "PETREL_LISTEN")]
    pub listen: Option<String>,
    /// host:port clients are told to connect to. [default: the listen address]
    #[arg(long, env = "PETREL_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Directory for partition logs and metadata. [default: ./petrel-data]
    #[arg(long, env = "PETREL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (pinned executors). [default: one per CPU this process may use]
    #[arg(long, env = "PETREL_SHARDS")]
    pub shards: Option<usize>,
    /// This broker's node id. [default: 0]
    #[arg(long, env = "PETREL_NODE_ID")]
    pub node_id: Option<i32>,
    /// Create unknown topics on Metadata and Produce requests. [default: true]
    #[arg(long, env = "PETREL_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic, or of one created with -1. [default: 1]
    #[arg(long, env = "PETREL_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// `fdatasync` at most this often instead of before every acks=all answer (ms).
    #[arg(long, env = "PETREL_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Default `retention.ms` of topics (-1: keep forever). [default: 604800000]
    #[arg(long, env = "PETREL_RETENTION_MS")]
    pub retention_ms: Option<i64>,
    /// Default `retention.bytes` of each partition (-1: no limit). [default: -1]
    #[arg(long, env = "PETREL_RETENTION_BYTES")]
    pub retention_bytes: Option<i64>,
    /// Default `segment.bytes`. [default: 1073741824]
    #[arg(long, env = "PETREL_SEGMENT_BYTES")]
    pub segment_bytes: Option<i64>,
    /// Default `segment.ms`. [default: 604800000]
    #[arg(long, env = "PETREL_SEGMENT_MS")]
    pub segment_ms: Option<i64>,
    /// Largest record batch accepted (`message.max.bytes`). [default: 1048588]
    #[arg(long, env = "PETREL_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<i64>,
    /// A compressed record batch may inflate to at most this many bytes when its records are
    /// checked (on produce) or read (ListOffsets by time); a larger one is refused with
    /// MESSAGE_TOO_LARGE, so a small decompression bomb cannot exhaust memory. [default: 67108864]
    #[arg(long, env = "PETREL_BATCH_DECOMPRESSED_BYTES_MAX")]
    pub batch_decompressed_bytes_max: Option<usize>,
    /// Largest request frame accepted (`socket.request.max.bytes`). [default: 104857600]
    #[arg(long, env = "PETREL_REQUEST_BYTES_MAX")]
    pub request_bytes_max: Option<usize>,
    /// Open connections allowed, over all shards. [default: 4096]
    #[arg(long, env = "PETREL_CONNECTIONS_MAX")]
    pub connections_max: Option<usize>,
    /// Bytes of requests in flight on one connection before it stops reading. [default: 104857600]
    #[arg(long, env = "PETREL_CONNECTION_INFLIGHT_BYTES_MAX")]
    pub connection_inflight_bytes_max: Option<usize>,
    /// A request must arrive whole within this many ms once it has started. [default: 30000]
    #[arg(long, env = "PETREL_REQUEST_READ_TIMEOUT_MS")]
    pub request_read_timeout_ms: Option<u64>,
    /// Idle connections are closed after this many ms (`connections.max.idle.ms`). [default: 600000]
    #[arg(long, env = "PETREL_CONNECTION_IDLE_MS")]
    pub connection_idle_ms: Option<u64>,
    /// How long a new consumer group waits for more members before its first rebalance
    /// (`group.initial.rebalance.delay.ms`). [default: 3000]
    #[arg(long, env = "PETREL_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest session timeout a consumer may ask for (`group.min.session.timeout.ms`). [default: 6000]
    #[arg(long, env = "PETREL_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<u64>,
    /// Largest session timeout a consumer may ask for (`group.max.session.timeout.ms`). [default: 1800000]
    #[arg(long, env = "PETREL_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<u64>,
    /// Members one consumer group may have (`group.max.size`); a join beyond it gets
    /// GROUP_MAX_SIZE_REACHED. [default: 1000]
    #[arg(long, env = "PETREL_GROUP_MAX_SIZE")]
    pub group_max_size: Option<usize>,
    /// Consumer groups this broker keeps, over all shards (each shard takes an equal share);
    /// a join or commit that would create one more gets POLICY_VIOLATION. Empty groups go
    /// when their offsets expire. [default: 100000]
    #[arg(long, env = "PETREL_GROUPS_MAX")]
    pub groups_max: Option<usize>,
    /// Bytes of recent batches cached in memory, over all shards. [default: 67108864]
    #[arg(long, env = "PETREL_CACHE_BYTES")]
    pub cache_bytes: Option<usize>,
    /// Largest fetch response, whatever the request asks (`fetch.max.bytes`); only the
    /// first batch of the first non-empty partition may exceed it. [default: 57671680]
    #[arg(long, env = "PETREL_FETCH_MAX_BYTES")]
    pub fetch_max_bytes: Option<usize>,
    /// Segment files each shard may hold open at once; sealed segments' files beyond it are
    /// closed while unused. [default: derived from the file descriptor limit, RLIMIT_NOFILE]
    #[arg(long, env = "PETREL_OPEN_FILES_MAX")]
    pub open_files_max: Option<usize>,
    /// Partitions this broker may hold, over all topics: creations beyond it are refused
    /// (POLICY_VIOLATION). [default: shards * open-files-max / 2]
    #[arg(long, env = "PETREL_PARTITIONS_MAX")]
    pub partitions_max: Option<usize>,
    /// In-sync replicas an acks=all produce needs, for topics without their own
    /// `min.insync.replicas`: fewer gets NOT_ENOUGH_REPLICAS. [default: 1]
    #[arg(long, env = "PETREL_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i64>,
    /// Replicas of topics created without a replication factor (and auto-created ones).
    /// [default: 1]
    #[arg(long, env = "PETREL_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i64>,
    /// The metadata quorum's voters, `id@host:port,...` (Kafka's
    /// `controller.quorum.voters`). Given: this broker is one node of a cluster, formatted
    /// with `petrel format`: a voter if they name its `--node-id` (combined mode: voter and
    /// broker), else a broker only, following the voters' catalogue. Not given: a single
    /// broker.
    #[arg(long, env = "PETREL_CONTROLLER_QUORUM_VOTERS")]
    pub controller_quorum_voters: Option<String>,
    /// Where this node's quorum listener binds. [default: its entry in the voters]
    #[arg(long, env = "PETREL_CONTROLLER_LISTEN")]
    pub controller_listen: Option<String>,
    /// How often a broker heartbeats to the quorum's leader. [default: 2000]
    #[arg(long, env = "PETREL_BROKER_HEARTBEAT_INTERVAL_MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// A broker not heard from for this long is fenced: it leads nothing and clients are
    /// not sent to it. [default: 9000]
    #[arg(long, env = "PETREL_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// Partitions of `__consumer_offsets`, the replicated log of committed offsets in a
    /// cluster (Kafka's `offsets.topic.num.partitions`); fixed once the topic exists.
    /// [default: 50]
    #[arg(long, env = "PETREL_OFFSETS_TOPIC_PARTITIONS")]
    pub offsets_topic_partitions: Option<i32>,
    /// Replicas of each `__consumer_offsets` partition, at most the number of voters
    /// (Kafka's `offsets.topic.replication.factor`). [default: 3]
    #[arg(long, env = "PETREL_OFFSETS_TOPIC_REPLICATION_FACTOR")]
    pub offsets_topic_replication_factor: Option<i16>,
    /// Tests only: makes storage calls fail as the spec says (`storage::faults`), e.g.
    /// `write:enospc:skip=100:count=50:path=t-0`. Not settable from the config file.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub inject_faults: Option<String>,
    /// Committed offsets expire this long after their group became empty, or after their
    /// commit for standalone committers (`offsets.retention.minutes`). [default: 10080]
    #[arg(long, env = "PETREL_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<u64>,
    /// How often expired offsets are looked for (`offsets.retention.check.interval.ms`).
    /// [default: 600000]
    #[arg(long, env = "PETREL_OFFSETS_RETENTION_CHECK_INTERVAL_MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// How often each log's retention (`retention.ms`, `retention.bytes`) is applied
    /// (Kafka's `log.retention.check.interval.ms`). [default: 30000]
    #[arg(long, env = "PETREL_LOG_RETENTION_CHECK_INTERVAL_MS")]
    pub log_retention_check_interval_ms: Option<u64>,
}

/// Validated broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    /// (host, port) for Metadata; port 0 means "the port actually bound".
    pub advertised: (String, u16),
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {reason}")]
    ParseFile { path: PathBuf, reason: String },
    #[error("invalid setting {name} = {value}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "the file descriptor limit (RLIMIT_NOFILE) is {nofile}: {reason}; raise it \
         (`ulimit -n`, or `LimitNOFILE=` in a systemd unit) or lower connections-max"
    )]
    FileDescriptors { nofile: u64, reason: String },
}

fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Kafka's `offsets.retention.minutes` is an int: at most about 4,000 years, and the
/// retention in ms must fit an i64 when compared with commit timestamps.
const OFFSETS_RETENTION_MINUTES_MAX: u64 = i32::MAX as u64;
/// Kafka's `group.max.size` is unlimited; a bound keeps one group's rebalance (which
/// answers every member) linear in something the operator chose.
const GROUP_MAX_SIZE_DEFAULT: usize = 1000;
const GROUP_MAX_SIZE_MAX: usize = 100_000;
/// Groups cost a few hundred bytes each plus their members and offsets: 100,000 is tens of
/// MB at most, and far beyond what one broker's consumers use.
const GROUPS_MAX_DEFAULT: usize = 100_000;
/// Requests one connection may have in flight (pipelined) before its reads pause.
const INFLIGHT_REQUESTS_MAX: usize = 128;
/// Kafka's default `fetch.max.bytes` (55 MiB), and the range accepted for it: at least 1 KiB
/// as in Kafka; at most 1 GiB, like `request-bytes-max`, so one response's buffer stays sane.
const FETCH_BYTES_MAX_DEFAULT: usize = 57_671_680;
const FETCH_BYTES_MAX_RANGE: std::ops::RangeInclusive<usize> = 1024..=(1 << 30);
pub const SHARDS_MAX: usize = 256;

impl ServeArgs {
    /// Fills every setting not given on the command line or in the environment from the
    /// TOML file named by `config`, if any.
    pub fn merge_file(self) -> Result<ServeArgs, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let file: ServeArgs = toml::from_str(&text).map_err(|error| ConfigError::ParseFile {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        Ok(ServeArgs {
            config: Some(path),
            listen: self.listen.or(file.listen),
            advertised_listener: self.advertised_listener.or(file.advertised_listener),
            data_dir: self.data_dir.or(file.data_dir),
            shards: self.shards.or(file.shards),
            node_id: self.node_id.or(file.node_id),
            auto_create_topics: self.auto_create_topics.or(file.auto_create_topics),
            default_partitions: self.default_partitions.or(file.default_partitions),
            flush_interval_ms: self.flush_interval_ms.or(file.flush_interval_ms),
            retention_ms: self.retention_ms.or(file.retention_ms),
            retention_bytes: self.retention_bytes.or(file.retention_bytes),
            segment_bytes: self.segment_bytes.or(file.segment_bytes),
            segment_ms: self.segment_ms.or(file.segment_ms),
            message_max_bytes: self.message_max_bytes.or(file.message_max_bytes),
            batch_decompressed_bytes_max: self
                .batch_decompressed_bytes_max
                .or(file.batch_decompressed_bytes_max),
            request_bytes_max: self.request_bytes_max.or(file.request_bytes_max),
            connections_max: self.connections_max.or(file.connections_max),
            connection_inflight_bytes_max: self
                .connection_inflight_bytes_max
                .or(file.connection_inflight_bytes_max),
            request_read_timeout_ms: self
                .request_read_timeout_ms
                .or(file.request_read_timeout_ms),
            connection_idle_ms: self.connection_idle_ms.or(file.connection_idle_ms),
            cache_bytes: self.cache_bytes.or(file.cache_bytes),
            fetch_max_bytes: self.fetch_max_bytes.or(file.fetch_max_bytes),
            open_files_max: self.open_files_max.or(file.open_files_max),
            partitions_max: self.partitions_max.or(file.partitions_max),
            inject_faults: self.inject_faults,
            min_insync_replicas: self.min_insync_replicas.or(file.min_insync_replicas),
            default_replication_factor: self
                .default_replication_factor
                .or(file.default_replication_factor),
            controller_quorum_voters: self
                .controller_quorum_voters
                .or(file.controller_quorum_voters),
            controller_listen: self.controller_listen.or(file.controller_listen),
            broker_heartbeat_interval_ms: self
                .broker_heartbeat_interval_ms
                .or(file.broker_heartbeat_interval_ms),
            broker_session_timeout_ms: self
                .broker_session_timeout_ms
                .or(file.broker_session_timeout_ms),
            offsets_topic_partitions: self
                .offsets_topic_partitions
                .or(file.offsets_topic_partitions),
            offsets_topic_replication_factor: self
                .offsets_topic_replication_factor
                .or(file.offsets_topic_replication_factor),
            group_initial_rebalance_delay_ms: self
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms),
            group_min_session_timeout_ms: self
                .group_min_session_timeout_ms
                .or(file.group_min_session_timeout_ms),
            group_max_session_timeout_ms: self
                .group_max_session_timeout_ms
                .or(file.group_max_session_timeout_ms),
            group_max_size: self.group_max_size.or(file.group_max_size),
            groups_max: self.groups_max.or(file.groups_max),
            offsets_retention_minutes: self
                .offsets_retention_minutes
                .or(file.offsets_retention_minutes),
            log_retention_check_interval_ms: self
                .log_retention_check_interval_ms
                .or(file.log_retention_check_interval_ms),
            offsets_retention_check_interval_ms: self
                .offsets_retention_check_interval_ms
                .or(file.offsets_retention_check_interval_ms),
        })
    }

    /// Applies defaults and validates. `cpus` are the CPUs this process may run on,
    /// `nofile` its file descriptor limit (see [`raise_fd_limit`]).
    pub fn resolve(self, cpus: Vec<usize>, nofile: u64) -> Result<BrokerConfig, ConfigError> {
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                &listen_text,
                "expected ip:port, e.g. 127.0.0.1:9092",
            )
        })?;
        let advertised = match self.advertised_listener {
            Some(text) => parse_host_port(&text)
                .ok_or_else(|| invalid("advertised-listener", &text, "expected host:port"))?,
            None => (listen.ip().to_string(), listen.port()),
        };
        if cpus.is_empty() {
            return Err(invalid(
                "shards",
                "-",
                "no CPU is available to this process",
            ));
        }
        let shards = self.shards.unwrap_or(cpus.len());
        if !(1..=SHARDS_MAX).contains(&shards) {
            return Err(invalid(
                "shards",
                shards,
                format!("must be in 1..={SHARDS_MAX}"),
            ));
        }
        let node_id = self.node_id.unwrap_or(0);
        if node_id < 0 {
            return Err(invalid("node-id", node_id, "must not be negative"));
        }
        let default_partitions = self.default_partitions.unwrap_or(1);
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&default_partitions) {
            return Err(invalid(
                "default-partitions",
                default_partitions,
                format!("must be in 1..={PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        let flush = match self.flush_interval_ms {
            None => FlushPolicy::EveryAppend,
            Some(0) => return Err(invalid("flush-interval-ms", 0, "must be positive")),
            Some(ms) => FlushPolicy::Interval(Duration::from_millis(ms)),
        };
        let topic_defaults = TopicDefaults {
            retention_ms: self.retention_ms.unwrap_or(7 * 24 * 3600 * 1000),
            retention_bytes: self.retention_bytes.unwrap_or(-1),
            segment_bytes: self.segment_bytes.unwrap_or(1 << 30),
            segment_ms: self.segment_ms.unwrap_or(7 * 24 * 3600 * 1000),
            max_message_bytes: self.message_max_bytes.unwrap_or(1_048_588),
            min_insync_replicas: self.min_insync_replicas.unwrap_or(1),
            replication_factor: self.default_replication_factor.unwrap_or(1),
        };
        crate::cluster::topic_config::validate_defaults(&topic_defaults)
            .map_err(|(name, value, reason)| invalid(name, value, reason))?;
        let batch_decompressed_bytes_max = self
            .batch_decompressed_bytes_max
            .unwrap_or(crate::record_batch::DECOMPRESSED_BYTES_MAX_DEFAULT);
        if !(BATCH_DECOMPRESSED_BYTES_MIN..=BATCH_DECOMPRESSED_BYTES_MAX)
            .contains(&batch_decompressed_bytes_max)
        {
            return Err(invalid(
                "batch-decompressed-bytes-max",
                batch_decompressed_bytes_max,
                "must be in 1 KiB..=1 GiB",
            ));
        }
        let request_bytes_max = self.request_bytes_max.unwrap_or(100 << 20);
        if !(1024..=(1 << 30)).contains(&request_bytes_max) {
            return Err(invalid(
                "request-bytes-max",
                request_bytes_max,
                "must be in 1 KiB..=1 GiB",
            ));
        }
        let connections_max = self.connections_max.unwrap_or(4096);
        if connections_max == 0 {
            return Err(invalid("connections-max", 0, "must be positive"));
        }
        let connection_inflight_bytes_max = self.connection_inflight_bytes_max.unwrap_or(100 << 20);
        if connection_inflight_bytes_max < request_bytes_max {
            return Err(invalid(
                "connection-inflight-bytes-max",
                connection_inflight_bytes_max,
                "must be at least request-bytes-max, or a largest request could never be read",
            ));
        }
        let request_read_timeout_ms = self.request_read_timeout_ms.unwrap_or(30_000);
        let connection_idle_ms = self.connection_idle_ms.unwrap_or(600_000);
        if request_read_timeout_ms == 0 || connection_idle_ms == 0 {
            return Err(invalid(
                "request-read-timeout-ms / connection-idle-ms",
                0,
                "must be positive",
            ));
        }
        // 64 MiB: tailing consumers read batches milliseconds old, so a small cache serves
        // them; a consumer further behind reads from disk with read-ahead. Measured with
        // `bench/kafka-vs-petrel` (workload 2, 131 MB/s): 256 MiB and 64 MiB give the same
        // end-to-end p99 (7.0 ms), with peak RSS 320 MB against 113 MB.
        let cache_bytes = self.cache_bytes.unwrap_or(64 << 20);
        let fetch_bytes_max = self.fetch_max_bytes.unwrap_or(FETCH_BYTES_MAX_DEFAULT);
        if !FETCH_BYTES_MAX_RANGE.contains(&fetch_bytes_max) {
            return Err(invalid(
                "fetch-max-bytes",
                fetch_bytes_max,
                "must be in 1 KiB..=1 GiB",
            ));
        }
        let session_min = self.group_min_session_timeout_ms.unwrap_or(6_000);
        let session_max = self.group_max_session_timeout_ms.unwrap_or(1_800_000);
        if session_min == 0 || session_min > session_max {
            return Err(invalid(
                "group-min-session-timeout-ms",
                session_min,
                "must be positive and at most group-max-session-timeout-ms",
            ));
        }
        let open_files_max =
            open_files_budget(self.open_files_max, nofile, shards, connections_max)?;
        // Each partition holds its active segment's file for good; half the budget is left
        // for sealed segments' files and the reads using them.
        let open_files_total = open_files_max.saturating_mul(shards);
        let partitions_max = self.partitions_max.unwrap_or(open_files_total / 2);
        if !(1..=open_files_total).contains(&partitions_max) {
            return Err(invalid(
                "partitions-max",
                partitions_max,
                format!(
                    "must be in 1..={open_files_total} (shards * open-files-max): every \
                     partition keeps a segment file open"
                ),
            ));
        }
        let retention_minutes = self.offsets_retention_minutes.unwrap_or(7 * 24 * 60);
        if !(1..=OFFSETS_RETENTION_MINUTES_MAX).contains(&retention_minutes) {
            return Err(invalid(
                "offsets-retention-minutes",
                retention_minutes,
                format!("must be in 1..={OFFSETS_RETENTION_MINUTES_MAX}"),
            ));
        }
        let retention_check_ms = self.offsets_retention_check_interval_ms.unwrap_or(600_000);
        if retention_check_ms == 0 {
            return Err(invalid(
                "offsets-retention-check-interval-ms",
                0,
                "must be positive",
            ));
        }
        let log_retention_check_ms = self.log_retention_check_interval_ms.unwrap_or(30_000);
        if log_retention_check_ms == 0 {
            return Err(invalid(
                "log-retention-check-interval-ms",
                0,
                "must be positive",
            ));
        }
        let members_max = self.group_max_size.unwrap_or(GROUP_MAX_SIZE_DEFAULT);
        if !(1..=GROUP_MAX_SIZE_MAX).contains(&members_max) {
            return Err(invalid(
                "group-max-size",
                members_max,
                format!("must be in 1..={GROUP_MAX_SIZE_MAX}"),
            ));
        }
        let groups_max = self.groups_max.unwrap_or(GROUPS_MAX_DEFAULT);
        if groups_max == 0 {
            return Err(invalid("groups-max", 0, "must be positive"));
        }
        let group_limits = crate::group::state::GroupLimits {
            session_timeout_min: Duration::from_millis(session_min),
            session_timeout_max: Duration::from_millis(session_max),
            initial_rebalance_delay: Duration::from_millis(
                self.group_initial_rebalance_delay_ms.unwrap_or(3_000),
            ),
            members_max,
            groups_max_per_shard: groups_max.div_ceil(shards),
            offsets_retention: Duration::from_secs(retention_minutes * 60),
            offsets_retention_check_interval: Duration::from_millis(retention_check_ms),
        };
        let quorum = resolve_quorum(
            &self.controller_quorum_voters,
            &self.controller_listen,
            node_id,
            self.broker_heartbeat_interval_ms,
            self.broker_session_timeout_ms,
        )?;
        let offsets_partitions = self.offsets_topic_partitions.unwrap_or(50);
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&offsets_partitions) {
            return Err(invalid(
                "offsets-topic-partitions",
                offsets_partitions,
                format!("must be in 1..={PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        let offsets_factor = self.offsets_topic_replication_factor.unwrap_or(3);
        let factor_max = crate::cluster::metadata::REPLICATION_FACTOR_MAX;
        if !usize::try_from(offsets_factor).is_ok_and(|f| (1..=factor_max).contains(&f)) {
            return Err(invalid(
                "offsets-topic-replication-factor",
                offsets_factor,
                format!("must be in 1..={factor_max}"),
            ));
        }
        let offsets_topic = OffsetsTopicConfig {
            partitions: offsets_partitions,
            replication_factor: offsets_factor,
        };
        let inject_faults = match &self.inject_faults {
            Some(spec) => Some(
                crate::storage::faults::FaultPlan::parse(spec)
                    .map_err(|error| invalid("inject-faults", spec, error.to_string()))?,
            ),
            None => None,
        };
        Ok(BrokerConfig {
            listen,
            advertised,
            data_dir: absolute(
                self.data_dir
                    .unwrap_or_else(|| PathBuf::from("petrel-data")),
            ),
            shards,
            cpus,
            node_id,
            auto_create_topics: self.auto_create_topics.unwrap_or(true),
            default_partitions,
            flush,
            topic_defaults,
            batch_decompressed_bytes_max,
            request_bytes_max,
            connections_max,
            connection_inflight_bytes_max,
            inflight_requests_max: INFLIGHT_REQUESTS_MAX,
            request_read_timeout: Duration::from_millis(request_read_timeout_ms),
            connection_idle: Duration::from_millis(connection_idle_ms),
            cache_bytes,
            fetch_bytes_max,
            open_files_max,
            partitions_max,
            inject_faults,
            group_limits,
            quorum,
            offsets_topic,
            retention_check_interval: Duration::from_millis(log_retention_check_ms),
        })
    }
}

/// The quorum settings, checked against this node's id.
fn resolve_quorum(
    voters: &Option<String>,
    listen: &Option<String>,
    node_id: i32,
    heartbeat_interval_ms: Option<u64>,
    session_timeout_ms: Option<u64>,
) -> Result<Option<QuorumConfig>, ConfigError> {
    let Some(text) = voters else {
        if let Some(listen) = listen {
            return Err(invalid(
                "controller-listen",
                listen,
                "needs --controller-quorum-voters",
            ));
        }
        return Ok(None);
    };
    let voters =
        parse_voters(text).map_err(|reason| invalid("controller-quorum-voters", text, reason))?;
    let heartbeat_interval = heartbeat_interval_ms.unwrap_or(2_000);
    let session_timeout = session_timeout_ms.unwrap_or(9_000);
    if heartbeat_interval == 0 || session_timeout <= heartbeat_interval {
        return Err(invalid(
            "broker-session-timeout-ms",
            session_timeout,
            format!("must be larger than broker-heartbeat-interval-ms ({heartbeat_interval}), which must be positive"),
        ));
    }
    let own = u64::try_from(node_id)
        .ok()
        .and_then(|id| voters.get(&id).copied());
    let Some(own) = own else {
        // A broker only (KRaft's `process.roles=broker`): it follows the voters' catalogue
        // and has no quorum listener.
        if let Some(listen) = listen {
            return Err(invalid(
                "controller-listen",
                listen,
                format!(
                    "only voters listen for the quorum, and --controller-quorum-voters does not \
                     name this node (--node-id {node_id}): it joins as a broker only"
                ),
            ));
        }
        return Ok(Some(QuorumConfig {
            voters,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            heartbeat_interval: Duration::from_millis(heartbeat_interval),
            session_timeout: Duration::from_millis(session_timeout),
        }));
    };
    let listen = match listen {
        Some(text) => {
            let address: SocketAddr = text
                .parse()
                .map_err(|_| invalid("controller-listen", text, "expected ip:port"))?;
            if address.port() != own.port() {
                return Err(invalid(
                    "controller-listen",
                    text,
                    format!("its port must be this node's port in the voters ({own})"),
                ));
            }
            address
        }
        None => own,
    };
    Ok(Some(QuorumConfig {
        voters,
        listen,
        heartbeat_interval: Duration::from_millis(heartbeat_interval),
        session_timeout: Duration::from_millis(session_timeout),
    }))
}

/// File descriptors kept for what is not a segment file or a client connection: stdio, the
/// metadata file, glommio's blocking-pool threads, and per shard its io_uring rings and
/// eventfds, the listener socket, and index, checkpoint, temp and directory files opened
/// for a moment (log opens, rolls, retention).
const FDS_RESERVED: u64 = 256;
const FDS_RESERVED_PER_SHARD: u64 = 64;
/// Fewest segment files a shard may work with: its consumer-offsets log and a few
/// partitions, each holding its active segment, plus a roll in progress.
const OPEN_FILES_MIN: usize = 8;

/// Raises the soft RLIMIT_NOFILE to the hard limit (the default soft limit, often 1024, is
/// far below what thousands of partitions and connections need) and returns the soft limit
/// now in force. Called once at start, before any shard exists.
pub fn raise_fd_limit() -> Result<u64, ConfigError> {
    let failed = |error: std::io::Error| ConfigError::FileDescriptors {
        nofile: 0,
        reason: format!("cannot read it: {error}"),
    };
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(failed)?;
    if soft >= hard {
        return Ok(soft);
    }
    match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
        Ok(()) => Ok(hard),
        Err(error) => {
            // E.g. an unlimited hard limit, which the kernel caps at fs.nr_open.
            tracing::warn!(soft, hard, %error, "cannot raise the file descriptor limit");
            Ok(soft)
        }
    }
}

/// Segment files each shard may hold open: `given`, if it fits `nofile`, or what is left of
/// `nofile` after the connections and the reserve, shared by the shards.
fn open_files_budget(
    given: Option<usize>,
    nofile: u64,
    shards: usize,
    connections_max: usize,
) -> Result<usize, ConfigError> {
    let shards_u64 = shards as u64;
    let reserved = FDS_RESERVED.saturating_add(FDS_RESERVED_PER_SHARD.saturating_mul(shards_u64));
    let available = nofile
        .saturating_sub(connections_max as u64)
        .saturating_sub(reserved);
    let per_shard = usize::try_from(available / shards_u64.max(1)).unwrap_or(usize::MAX);
    let explain = |wanted: usize| ConfigError::FileDescriptors {
        nofile,
        reason: format!(
            "after {connections_max} connections (connections-max) and {reserved} kept for the \
             broker itself, {shards} shards get {per_shard} segment files each, fewer than the \
             {wanted} needed"
        ),
    };
    match given {
        Some(open_files_max) if open_files_max < OPEN_FILES_MIN => Err(invalid(
            "open-files-max",
            open_files_max,
            format!("must be at least {OPEN_FILES_MIN}"),
        )),
        Some(open_files_max) if open_files_max > per_shard => Err(explain(open_files_max)),
        Some(open_files_max) => Ok(open_files_max),
        None if per_shard < OPEN_FILES_MIN => Err(explain(OPEN_FILES_MIN)),
        None => Ok(per_shard),
    }
}

/// Resolved once at start, so later changes of the working directory cannot move the data.
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir().map_or(path.clone(), |cwd| cwd.join(path))
}

fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

impl BrokerConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file descriptor limit as on a typical server (the kernel's default fs.nr_open).
    const NOFILE: u64 = 1 << 20;

    #[test]
    fn the_open_file_budget_and_partition_limit_follow_the_descriptor_limit() {
        // (1 Mi - 4096 connections - 256 - 2 * 64) / 2 shards.
        let config = ServeArgs::default().resolve(vec![0, 1], NOFILE).unwrap();
        assert_eq!(
            config.open_files_max,
            (NOFILE as usize - 4096 - 256 - 128) / 2
        );
        assert_eq!(config.partitions_max, config.open_files_max);
        // The common soft limit of 1024 cannot even hold the default connections.
        match ServeArgs::default().resolve(vec![0, 1], 1024) {
            Err(error @ ConfigError::FileDescriptors { .. }) => {
                let message = error.to_string();
                assert!(message.contains("ulimit -n") && message.contains("LimitNOFILE"));
            }
            other => panic!("expected a descriptor error, got {other:?}"),
        }
        let fewer_connections = ServeArgs {
            connections_max: Some(100),
            ..Default::default()
        };
        let config = fewer_connections.clone().resolve(vec![0, 1], 1024).unwrap();
        assert_eq!(config.open_files_max, (1024 - 100 - 256 - 128) / 2);
        // An explicit budget must fit the limit, and be usable.
        let explicit = |open_files_max, partitions_max| ServeArgs {
            open_files_max: Some(open_files_max),
            partitions_max,
            ..fewer_connections.clone()
        };
        assert_eq!(
            explicit(8, None)
                .resolve(vec![0, 1], 1024)
                .unwrap()
                .partitions_max,
            8
        );
        assert!(matches!(
            explicit(271, None).resolve(vec![0, 1], 1024),
            Err(ConfigError::FileDescriptors { .. })
        ));
        assert!(matches!(
            explicit(7, None).resolve(vec![0, 1], 1024),
            Err(ConfigError::Invalid {
                name: "open-files-max",
                ..
            })
        ));
        // The partition limit may use the whole budget, not more.
        let config = explicit(100, Some(200)).resolve(vec![0, 1], 1024).unwrap();
        assert_eq!(config.partitions_max, 200);
        for partitions_max in [0, 201] {
            assert!(matches!(
                explicit(100, Some(partitions_max)).resolve(vec![0, 1], 1024),
                Err(ConfigError::Invalid {
                    name: "partitions-max",
                    ..
                })
            ));
        }
    }

    #[test]
    fn defaults_resolve_and_bad_values_are_named() {
        let config = ServeArgs::default()
            .resolve(vec![0, 1], NOFILE)
            .expect("defaults");
        assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(config.advertised, ("127.0.0.1".to_string(), 9092));
        assert_eq!(config.shards, 2);
        assert_eq!(
            config.data_dir,
            std::env::current_dir().unwrap().join("petrel-data")
        );
        assert_eq!(config.flush, FlushPolicy::EveryAppend);
        assert_eq!(config.fetch_bytes_max, 57_671_680);
        assert_eq!(
            config.group_limits.offsets_retention,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert_eq!(
            config.group_limits.offsets_retention_check_interval,
            Duration::from_secs(600)
        );
        let cases: Vec<(ServeArgs, &str)> = vec![
            (
                ServeArgs {
                    listen: Some("nowhere".into()),
                    ..Default::default()
                },
                "listen",
            ),
            (
                ServeArgs {
                    shards: Some(0),
                    ..Default::default()
                },
                "shards",
            ),
            (
                ServeArgs {
                    default_partitions: Some(0),
                    ..Default::default()
                },
                "default-partitions",
            ),
            (
                ServeArgs {
                    flush_interval_ms: Some(0),
                    ..Default::default()
                },
                "flush-interval-ms",
            ),
            (
                ServeArgs {
                    segment_bytes: Some(10),
                    ..Default::default()
                },
                "segment.bytes",
            ),
            (
                ServeArgs {
                    batch_decompressed_bytes_max: Some(100),
                    ..Default::default()
                },
                "batch-decompressed-bytes-max",
            ),
            (
                ServeArgs {
                    advertised_listener: Some("host".into()),
                    ..Default::default()
                },
                "advertised-listener",
            ),
            (
                ServeArgs {
                    fetch_max_bytes: Some(1023),
                    ..Default::default()
                },
                "fetch-max-bytes",
            ),
            (
                ServeArgs {
                    fetch_max_bytes: Some((1 << 30) + 1),
                    ..Default::default()
                },
                "fetch-max-bytes",
            ),
            (
                ServeArgs {
                    offsets_retention_minutes: Some(0),
                    ..Default::default()
                },
                "offsets-retention-minutes",
            ),
            (
                ServeArgs {
                    offsets_retention_check_interval_ms: Some(0),
                    ..Default::default()
                },
                "offsets-retention-check-interval-ms",
            ),
        ];
        for (args, name) in cases {
            match args.resolve(vec![0], NOFILE) {
                Err(ConfigError::Invalid { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{name}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("petrel.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:19092\"\nshards = 1\ndata-dir = \"/tmp/x\"\nbatch-decompressed-bytes-max = 2048\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            shards: Some(2),
            ..Default::default()
        };
        let config = args
            .merge_file()
            .unwrap()
            .resolve(vec![0, 1], NOFILE)
            .unwrap();
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.shards, 2);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.batch_decompressed_bytes_max, 2048);
        std::fs::write(&path, "no-such-setting = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(matches!(
            args.merge_file(),
            Err(ConfigError::ParseFile { .. })
        ));
    }
}
