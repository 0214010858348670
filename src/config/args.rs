//! The settings as given: flags, `PETREL_*` environment variables (clap), and the TOML
//! file merged under them.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::ConfigError;

/// Settings as given on the command line or in the environment (`None` = not given).
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML file with any of these settings (kebab-case keys, e.g. `data-dir = "/var/petrel"`).
    #[arg(long, env = "PETREL_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on, one PLAINTEXT listener (short for `--listeners
    /// PLAINTEXT://ADDR`). Every shard binds it (SO_REUSEPORT). [default: 127.0.0.1:9092]
    #[arg(long, env = "PETREL_LISTEN")]
    pub listen: Option<String>,
    /// host:port clients are told to connect to. [default: the listen address]
    #[arg(long, env = "PETREL_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Client listeners, Kafka-style (instead of --listen): `NAME://host:port,...`, e.g.
    /// `PLAINTEXT://127.0.0.1:9092,SSL://:9093` (an empty host binds every address). A
    /// name is its security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) unless
    /// --listener-security-protocol-map maps it. Every shard accepts on every listener.
    #[arg(long, env = "PETREL_LISTENERS")]
    pub listeners: Option<String>,
    /// `NAME://host:port,...`: what clients that came in on listener NAME are told to
    /// connect to. [default: each listener's own address]
    #[arg(long, env = "PETREL_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// `NAME:PROTOCOL,...`, e.g. `CLIENT:SSL,REPLICATION:PLAINTEXT`.
    #[arg(long, env = "PETREL_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// The listener other brokers fetch replicas through. [default: the first listener]
    #[arg(long, env = "PETREL_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// PEM file: the certificate SSL listeners present, then its chain.
    #[arg(long, env = "PETREL_SSL_CERTIFICATE_LOCATION")]
    pub ssl_certificate_location: Option<PathBuf>,
    /// PEM file: the certificate's private key.
    #[arg(long, env = "PETREL_SSL_KEY_LOCATION")]
    pub ssl_key_location: Option<PathBuf>,
    /// PEM file: the CAs that sign client certificates (for --ssl-client-auth).
    #[arg(long, env = "PETREL_SSL_TRUSTSTORE_LOCATION")]
    pub ssl_truststore_location: Option<PathBuf>,
    /// Client certificates on SSL listeners: none, requested (verified if sent) or
    /// required (a client without one signed by the truststore's CAs is refused).
    /// [default: none]
    #[arg(long, env = "PETREL_SSL_CLIENT_AUTH")]
    pub ssl_client_auth: Option<String>,
    /// How a client certificate's subject becomes a principal's name, as Kafka's
    /// `ssl.principal.mapping.rules`: `RULE:pattern/replacement/[LU],...,DEFAULT`.
    /// [default: DEFAULT, the whole distinguished name]
    #[arg(long, env = "PETREL_SSL_PRINCIPAL_MAPPING_RULES")]
    pub ssl_principal_mapping_rules: Option<String>,
    /// `standard` checks every request against the ACLs (CreateAcls), as Kafka's
    /// StandardAuthorizer (its class name is accepted too); `none` lets every client do
    /// everything. [default: none]
    #[arg(long, env = "PETREL_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// Principals that may do anything, `;`-separated, e.g. `User:admin;User:broker`
    /// (Kafka's `super.users`).
    #[arg(long, env = "PETREL_SUPER_USERS")]
    pub super_users: Option<String>,
    /// Allow a request on a resource no ACL names at all (Kafka's
    /// `allow.everyone.if.no.acl.found`). [default: false]
    #[arg(long, env = "PETREL_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
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
    /// SASL sessions last this many ms (`connections.max.reauth.ms`, KIP-368): clients log
    /// in again on the same connection before the end (so a changed password or a removed
    /// user stops old connections); a request after the end closes the connection. 0: no
    /// end. [default: 0]
    #[arg(long, env = "PETREL_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
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
    /// How nodes prove themselves to each other on quorum links: PLAINTEXT (anyone who
    /// reaches the port), or SSL (mTLS: each side presents a certificate the
    /// --ssl-truststore-location CAs signed, the --ssl-certificate-location one; with an
    /// authorizer its principal must also be a super user). [default: PLAINTEXT]
    #[arg(long, env = "PETREL_CONTROLLER_SECURITY_PROTOCOL")]
    pub controller_security_protocol: Option<String>,
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
            listeners: self.listeners.or(file.listeners),
            advertised_listeners: self.advertised_listeners.or(file.advertised_listeners),
            listener_security_protocol_map: self
                .listener_security_protocol_map
                .or(file.listener_security_protocol_map),
            inter_broker_listener_name: self
                .inter_broker_listener_name
                .or(file.inter_broker_listener_name),
            ssl_certificate_location: self
                .ssl_certificate_location
                .or(file.ssl_certificate_location),
            ssl_key_location: self.ssl_key_location.or(file.ssl_key_location),
            ssl_truststore_location: self
                .ssl_truststore_location
                .or(file.ssl_truststore_location),
            ssl_client_auth: self.ssl_client_auth.or(file.ssl_client_auth),
            ssl_principal_mapping_rules: self
                .ssl_principal_mapping_rules
                .or(file.ssl_principal_mapping_rules),
            authorizer: self.authorizer.or(file.authorizer),
            super_users: self.super_users.or(file.super_users),
            allow_everyone_if_no_acl_found: self
                .allow_everyone_if_no_acl_found
                .or(file.allow_everyone_if_no_acl_found),
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
            connections_max_reauth_ms: self
                .connections_max_reauth_ms
                .or(file.connections_max_reauth_ms),
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
            controller_security_protocol: self
                .controller_security_protocol
                .or(file.controller_security_protocol),
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
}
