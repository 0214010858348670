//! Defaults applied and every value checked: a `ServeArgs` becomes a `BrokerConfig`.
//! Each step checks one group of settings and names the setting it refuses.

use std::path::PathBuf;
use std::time::Duration;

use super::args::ServeArgs;
use super::error::{invalid, ConfigError};
use super::files::open_files_budget;
use super::quorum::resolve_quorum;
use super::settings::{BrokerConfig, OffsetsTopicConfig};
use crate::cluster::metadata::PARTITIONS_PER_TOPIC_MAX;
use crate::cluster::quorum::transport::PeerSecurity;
use crate::cluster::topic_config::TopicDefaults;
use crate::group::state::GroupLimits;
use crate::runtime::tls;
use crate::security::acl::AuthorizerConfig;
use crate::security::principal::MappingRules;
use crate::storage::config::{BATCH_DECOMPRESSED_BYTES_MAX, BATCH_DECOMPRESSED_BYTES_MIN};
use crate::storage::FlushPolicy;

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

/// A connection's limits.
struct ConnectionLimits {
    request_bytes_max: usize,
    connections_max: usize,
    inflight_bytes_max: usize,
    request_read_timeout: Duration,
    idle: Duration,
    reauth_max: Option<Duration>,
}

impl ServeArgs {
    /// Applies defaults and validates. `cpus` are the CPUs this process may run on,
    /// `nofile` its file descriptor limit (see [`super::raise_fd_limit`]).
    pub fn resolve(self, cpus: Vec<usize>, nofile: u64) -> Result<BrokerConfig, ConfigError> {
        let listeners = self.listeners(self.controller_quorum_voters.is_some())?;
        let shards = self.shard_count(&cpus)?;
        let node_id = self.node_id.unwrap_or(0);
        if node_id < 0 {
            return Err(invalid("node-id", node_id, "must not be negative"));
        }
        let connections = self.connection_limits()?;
        let fetch_bytes_max = self.fetch_max_bytes.unwrap_or(FETCH_BYTES_MAX_DEFAULT);
        if !FETCH_BYTES_MAX_RANGE.contains(&fetch_bytes_max) {
            return Err(invalid(
                "fetch-max-bytes",
                fetch_bytes_max,
                "must be in 1 KiB..=1 GiB",
            ));
        }
        let open_files_max = open_files_budget(
            self.open_files_max,
            nofile,
            shards,
            connections.connections_max,
        )?;
        let partitions_max = self.partitions_max(open_files_max, shards)?;
        let quorum = resolve_quorum(
            &self.controller_quorum_voters,
            &self.controller_listen,
            node_id,
            self.broker_heartbeat_interval_ms,
            self.broker_session_timeout_ms,
        )?;
        let principal_mapping = self.principal_mapping()?;
        let authorizer = self.authorizer()?;
        let quorum_security =
            self.quorum_security(quorum.is_some(), &principal_mapping, &authorizer)?;
        let inter_broker_tls = match listeners.all[listeners.inter_broker].protocol.tls() {
            true if quorum.is_some() => Some(self.node_client_tls("inter-broker-listener-name")?),
            _ => None,
        };
        Ok(BrokerConfig {
            listeners,
            principal_mapping,
            authorizer,
            quorum_security,
            inter_broker_tls,
            data_dir: absolute(
                self.data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("petrel-data")),
            ),
            shards,
            cpus,
            node_id,
            auto_create_topics: self.auto_create_topics.unwrap_or(true),
            default_partitions: self.default_partitions()?,
            flush: self.flush()?,
            topic_defaults: self.topic_defaults()?,
            batch_decompressed_bytes_max: self.batch_decompressed_bytes_max()?,
            request_bytes_max: connections.request_bytes_max,
            connections_max: connections.connections_max,
            connection_inflight_bytes_max: connections.inflight_bytes_max,
            inflight_requests_max: INFLIGHT_REQUESTS_MAX,
            request_read_timeout: connections.request_read_timeout,
            connection_idle: connections.idle,
            connection_reauth_max: connections.reauth_max,
            // 64 MiB: tailing consumers read batches milliseconds old, so a small cache
            // serves them; a consumer further behind reads from disk with read-ahead.
            // Measured with `bench/kafka-vs-petrel` (workload 2, 131 MB/s): 256 MiB and
            // 64 MiB give the same end-to-end p99 (7.0 ms), with peak RSS 320 MB against
            // 113 MB.
            cache_bytes: self.cache_bytes.unwrap_or(64 << 20),
            fetch_bytes_max,
            open_files_max,
            partitions_max,
            inject_faults: self.inject_faults()?,
            group_limits: self.group_limits(shards)?,
            quorum,
            offsets_topic: self.offsets_topic()?,
            retention_check_interval: positive_ms(
                "log-retention-check-interval-ms",
                self.log_retention_check_interval_ms.unwrap_or(30_000),
            )?,
        })
    }

    /// Quorum links over mTLS (`--controller-security-protocol SSL`): the node's server and
    /// client sides, and with an authorizer its super users as the nodes' principals.
    fn quorum_security(
        &self,
        cluster: bool,
        mapping: &MappingRules,
        authorizer: &Option<AuthorizerConfig>,
    ) -> Result<Option<PeerSecurity>, ConfigError> {
        if !self.controller_ssl()? {
            return Ok(None);
        }
        if !cluster {
            return Err(invalid(
                "controller-security-protocol",
                "SSL",
                "needs --controller-quorum-voters (a single broker has no quorum links)",
            ));
        }
        let setting = "controller-security-protocol";
        let files = self.node_tls_files(setting)?;
        let server = tls::server_config(&files)
            .map_err(|error| invalid(setting, "SSL", error.to_string()))?;
        Ok(Some(PeerSecurity {
            server,
            client: self.node_client_tls(setting)?,
            mapping: mapping.clone(),
            nodes: authorizer.as_ref().map(|a| a.super_users.clone()),
        }))
    }

    fn node_client_tls(&self, setting: &'static str) -> Result<tls::ClientTls, ConfigError> {
        let files = self.node_tls_files(setting)?;
        tls::client_config(&files).map_err(|error| invalid(setting, "SSL", error.to_string()))
    }

    fn principal_mapping(&self) -> Result<MappingRules, ConfigError> {
        match &self.ssl_principal_mapping_rules {
            None => Ok(MappingRules::default()),
            Some(text) => MappingRules::parse(text)
                .map_err(|error| invalid("ssl-principal-mapping-rules", text, error.to_string())),
        }
    }

    fn authorizer(&self) -> Result<Option<AuthorizerConfig>, ConfigError> {
        let enabled = match self.authorizer.as_deref().map(str::trim) {
            None | Some("none") | Some("") => false,
            Some(
                "standard"
                | "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
                | "kafka.security.authorizer.AclAuthorizer",
            ) => true,
            Some(other) => {
                return Err(invalid(
                    "authorizer",
                    other,
                    "expected none or standard (Kafka's StandardAuthorizer)",
                ))
            }
        };
        let super_users: Vec<String> = self
            .super_users
            .iter()
            .flat_map(|text| text.split(';'))
            .map(str::trim)
            .filter(|user| !user.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = super_users.iter().find(|u| {
            !u.split_once(':')
                .is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty())
        }) {
            return Err(invalid(
                "super-users",
                bad,
                "a principal is Type:name, e.g. User:admin",
            ));
        }
        if !enabled {
            if !super_users.is_empty() || self.allow_everyone_if_no_acl_found.is_some() {
                return Err(invalid(
                    "super-users",
                    "-",
                    "super-users and allow-everyone-if-no-acl-found need --authorizer standard",
                ));
            }
            return Ok(None);
        }
        Ok(Some(AuthorizerConfig {
            super_users,
            allow_if_no_acl: self.allow_everyone_if_no_acl_found.unwrap_or(false),
        }))
    }

    fn shard_count(&self, cpus: &[usize]) -> Result<usize, ConfigError> {
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
        Ok(shards)
    }

    fn default_partitions(&self) -> Result<i32, ConfigError> {
        let default_partitions = self.default_partitions.unwrap_or(1);
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&default_partitions) {
            return Err(invalid(
                "default-partitions",
                default_partitions,
                format!("must be in 1..={PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        Ok(default_partitions)
    }

    fn flush(&self) -> Result<FlushPolicy, ConfigError> {
        match self.flush_interval_ms {
            None => Ok(FlushPolicy::EveryAppend),
            Some(0) => Err(invalid("flush-interval-ms", 0, "must be positive")),
            Some(ms) => Ok(FlushPolicy::Interval(Duration::from_millis(ms))),
        }
    }

    fn topic_defaults(&self) -> Result<TopicDefaults, ConfigError> {
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
        Ok(topic_defaults)
    }

    fn batch_decompressed_bytes_max(&self) -> Result<usize, ConfigError> {
        let bytes_max = self
            .batch_decompressed_bytes_max
            .unwrap_or(crate::record_batch::DECOMPRESSED_BYTES_MAX_DEFAULT);
        if !(BATCH_DECOMPRESSED_BYTES_MIN..=BATCH_DECOMPRESSED_BYTES_MAX).contains(&bytes_max) {
            return Err(invalid(
                "batch-decompressed-bytes-max",
                bytes_max,
                "must be in 1 KiB..=1 GiB",
            ));
        }
        Ok(bytes_max)
    }

    fn connection_limits(&self) -> Result<ConnectionLimits, ConfigError> {
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
        let inflight_bytes_max = self.connection_inflight_bytes_max.unwrap_or(100 << 20);
        if inflight_bytes_max < request_bytes_max {
            return Err(invalid(
                "connection-inflight-bytes-max",
                inflight_bytes_max,
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
        Ok(ConnectionLimits {
            request_bytes_max,
            connections_max,
            inflight_bytes_max,
            request_read_timeout: Duration::from_millis(request_read_timeout_ms),
            idle: Duration::from_millis(connection_idle_ms),
            reauth_max: self
                .connections_max_reauth_ms
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis),
        })
    }

    /// Each partition holds its active segment's file for good; half the budget is left
    /// for sealed segments' files and the reads using them.
    fn partitions_max(&self, open_files_max: usize, shards: usize) -> Result<usize, ConfigError> {
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
        Ok(partitions_max)
    }

    fn group_limits(&self, shards: usize) -> Result<GroupLimits, ConfigError> {
        let session_min = self.group_min_session_timeout_ms.unwrap_or(6_000);
        let session_max = self.group_max_session_timeout_ms.unwrap_or(1_800_000);
        if session_min == 0 || session_min > session_max {
            return Err(invalid(
                "group-min-session-timeout-ms",
                session_min,
                "must be positive and at most group-max-session-timeout-ms",
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
        Ok(GroupLimits {
            session_timeout_min: Duration::from_millis(session_min),
            session_timeout_max: Duration::from_millis(session_max),
            initial_rebalance_delay: Duration::from_millis(
                self.group_initial_rebalance_delay_ms.unwrap_or(3_000),
            ),
            members_max,
            groups_max_per_shard: groups_max.div_ceil(shards),
            offsets_retention: Duration::from_secs(retention_minutes * 60),
            offsets_retention_check_interval: positive_ms(
                "offsets-retention-check-interval-ms",
                self.offsets_retention_check_interval_ms.unwrap_or(600_000),
            )?,
        })
    }

    fn offsets_topic(&self) -> Result<OffsetsTopicConfig, ConfigError> {
        let partitions = self.offsets_topic_partitions.unwrap_or(50);
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(invalid(
                "offsets-topic-partitions",
                partitions,
                format!("must be in 1..={PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        let replication_factor = self.offsets_topic_replication_factor.unwrap_or(3);
        let factor_max = crate::cluster::metadata::REPLICATION_FACTOR_MAX;
        if !usize::try_from(replication_factor).is_ok_and(|f| (1..=factor_max).contains(&f)) {
            return Err(invalid(
                "offsets-topic-replication-factor",
                replication_factor,
                format!("must be in 1..={factor_max}"),
            ));
        }
        Ok(OffsetsTopicConfig {
            partitions,
            replication_factor,
        })
    }

    fn inject_faults(&self) -> Result<Option<crate::storage::faults::FaultPlan>, ConfigError> {
        let Some(spec) = &self.inject_faults else {
            return Ok(None);
        };
        crate::storage::faults::FaultPlan::parse(spec)
            .map(Some)
            .map_err(|error| invalid("inject-faults", spec, error.to_string()))
    }
}

/// `ms` milliseconds, which must be positive (`name` is the setting).
fn positive_ms(name: &'static str, ms: u64) -> Result<Duration, ConfigError> {
    if ms == 0 {
        return Err(invalid(name, 0, "must be positive"));
    }
    Ok(Duration::from_millis(ms))
}

/// Resolved once at start, so later changes of the working directory cannot move the data.
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir().map_or(path.clone(), |cwd| cwd.join(path))
}
