//! Topic configs: the ones Petrel supports, their validation, defaults and description.
//! Anything else is refused with INVALID_CONFIG rather than accepted and ignored.

use std::collections::BTreeMap;

/// Broker-wide defaults for topic configs (Kafka's `log.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefaults {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i64,
    /// In-sync replicas an acks=all produce needs (`min.insync.replicas`).
    pub min_insync_replicas: i64,
    /// Replicas of a topic created without a replication factor
    /// (`default.replication.factor`).
    pub replication_factor: i64,
}

/// Resolved configs of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i64,
    pub min_insync_replicas: i64,
}

/// (name, value, reason) of a rejected setting.
pub type Rejection = (&'static str, String, String);

/// Kafka config types, for DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
}

/// Every topic config Petrel understands, with its broker-wide default's name.
pub const TOPIC_CONFIGS: &[(&str, &str, ConfigType)] = &[
    ("cleanup.policy", "log.cleanup.policy", ConfigType::String),
    ("compression.type", "compression.type", ConfigType::String),
    ("max.message.bytes", "message.max.bytes", ConfigType::Int),
    (
        "message.timestamp.type",
        "log.message.timestamp.type",
        ConfigType::String,
    ),
    (
        "min.insync.replicas",
        "min.insync.replicas",
        ConfigType::Int,
    ),
    ("retention.bytes", "log.retention.bytes", ConfigType::Long),
    ("retention.ms", "log.retention.ms", ConfigType::Long),
    ("segment.bytes", "log.segment.bytes", ConfigType::Int),
    ("segment.ms", "log.roll.ms", ConfigType::Long),
];

const SEGMENT_BYTES_MIN: i64 = 14 * 1024;

fn number(name: &'static str, value: &str, min: i64, max: i64) -> Result<i64, Rejection> {
    let parsed: i64 = value
        .trim()
        .parse()
        .map_err(|_| (name, value.to_string(), "not a number".to_string()))?;
    if !(min..=max).contains(&parsed) {
        return Err((name, value.to_string(), format!("must be in {min}..={max}")));
    }
    Ok(parsed)
}

fn fixed(name: &'static str, value: &str, allowed: &str, why: &str) -> Result<(), Rejection> {
    if value.trim().eq_ignore_ascii_case(allowed) {
        Ok(())
    } else {
        Err((
            name,
            value.to_string(),
            format!("only {allowed} is supported: {why}"),
        ))
    }
}

/// Checks one override.
pub fn validate_entry(name: &str, value: &str) -> Result<(), Rejection> {
    match name {
        "retention.ms" => number("retention.ms", value, -1, i64::MAX).map(drop),
        "retention.bytes" => number("retention.bytes", value, -1, i64::MAX).map(drop),
        "segment.bytes" => {
            number("segment.bytes", value, SEGMENT_BYTES_MIN, i32::MAX as i64).map(drop)
        }
        "segment.ms" => number("segment.ms", value, 1, i64::MAX).map(drop),
        "max.message.bytes" => number("max.message.bytes", value, 0, i32::MAX as i64).map(drop),
        "min.insync.replicas" => number("min.insync.replicas", value, 1, i32::MAX as i64).map(drop),
        "cleanup.policy" => fixed(
            "cleanup.policy",
            value,
            "delete",
            "log compaction is not implemented",
        ),
        "compression.type" => fixed(
            "compression.type",
            value,
            "producer",
            "batches are stored as the producer compressed them",
        ),
        "message.timestamp.type" => fixed(
            "message.timestamp.type",
            value,
            "CreateTime",
            "LogAppendTime is not implemented",
        ),
        _ => Err((
            "config",
            name.to_string(),
            "unknown or unsupported topic config".to_string(),
        )),
    }
}

/// Validates every override of a topic.
pub fn validate(overrides: &BTreeMap<String, String>) -> Result<(), Rejection> {
    overrides
        .iter()
        .try_for_each(|(name, value)| validate_entry(name, value))
}

pub fn validate_defaults(defaults: &TopicDefaults) -> Result<(), Rejection> {
    for (name, value) in [
        ("retention.ms", defaults.retention_ms),
        ("retention.bytes", defaults.retention_bytes),
        ("segment.bytes", defaults.segment_bytes),
        ("segment.ms", defaults.segment_ms),
        ("max.message.bytes", defaults.max_message_bytes),
        ("min.insync.replicas", defaults.min_insync_replicas),
    ] {
        validate_entry(name, &value.to_string())?;
    }
    if !(1..=9).contains(&defaults.replication_factor) {
        return Err((
            "default.replication.factor",
            defaults.replication_factor.to_string(),
            "must be in 1..=9".into(),
        ));
    }
    Ok(())
}

/// The effective configs of a topic: its overrides over the broker defaults. Overrides
/// were validated when set, so a value that no longer parses falls back to the default.
pub fn resolve(overrides: &BTreeMap<String, String>, defaults: &TopicDefaults) -> TopicConfig {
    let get = |name: &str, default: i64| {
        overrides
            .get(name)
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(default)
    };
    TopicConfig {
        retention_ms: get("retention.ms", defaults.retention_ms),
        retention_bytes: get("retention.bytes", defaults.retention_bytes),
        segment_bytes: get("segment.bytes", defaults.segment_bytes),
        segment_ms: get("segment.ms", defaults.segment_ms),
        max_message_bytes: get("max.message.bytes", defaults.max_message_bytes),
        min_insync_replicas: get("min.insync.replicas", defaults.min_insync_replicas),
    }
}

/// One described config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    pub value: String,
    /// True when the value is the broker's default rather than a topic override.
    pub is_default: bool,
    pub config_type: ConfigType,
    /// For a topic config: the broker-level config it defaults to and that default's value
    /// (DescribeConfigs lists it as a synonym, e.g. `log.retention.ms` for `retention.ms`).
    pub broker_default: Option<(&'static str, String)>,
}

/// Every supported topic config with its effective value.
pub fn describe(overrides: &BTreeMap<String, String>, defaults: &TopicDefaults) -> Vec<Described> {
    TOPIC_CONFIGS
        .iter()
        .map(|&(name, broker_name, config_type)| {
            let default = default_value(name, defaults);
            let (value, is_default) = match overrides.get(name) {
                Some(value) => (value.clone(), false),
                None => (default.clone(), true),
            };
            Described {
                name: name.into(),
                value,
                is_default,
                config_type,
                broker_default: Some((broker_name, default)),
            }
        })
        .collect()
}

pub fn default_value(name: &str, defaults: &TopicDefaults) -> String {
    match name {
        "retention.ms" => defaults.retention_ms.to_string(),
        "retention.bytes" => defaults.retention_bytes.to_string(),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "message.timestamp.type" => "CreateTime".into(),
        "min.insync.replicas" => defaults.min_insync_replicas.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicDefaults {
        TopicDefaults {
            min_insync_replicas: 1,
            replication_factor: 1,
            retention_ms: 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 5000,
            max_message_bytes: 1_048_588,
        }
    }

    #[test]
    fn overrides_win_and_are_described_as_such() {
        let overrides = BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]);
        validate(&overrides).expect("valid");
        let resolved = resolve(&overrides, &defaults());
        assert_eq!(resolved.retention_ms, -1);
        assert_eq!(resolved.segment_ms, 5000);
        let described = describe(&overrides, &defaults());
        assert_eq!(described.len(), TOPIC_CONFIGS.len());
        let retention = described.iter().find(|d| d.name == "retention.ms").unwrap();
        assert!(!retention.is_default);
        let segment = described.iter().find(|d| d.name == "segment.ms").unwrap();
        assert_eq!((segment.value.as_str(), segment.is_default), ("5000", true));
    }

    #[test]
    fn unsupported_values_are_refused_not_ignored() {
        for (name, value) in [
            ("cleanup.policy", "compact"),
            ("retention.ms", "-2"),
            ("segment.bytes", "100"),
            ("max.message.bytes", "lots"),
            ("message.timestamp.type", "LogAppendTime"),
            ("unclean.leader.election.enable", "true"),
        ] {
            assert!(validate_entry(name, value).is_err(), "{name}={value}");
        }
        assert!(validate_entry("cleanup.policy", "delete").is_ok());
        assert!(validate_entry("compression.type", "producer").is_ok());
    }
}
