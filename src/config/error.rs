//! What was wrong with a setting.

use std::path::PathBuf;

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

pub(super) fn invalid(
    name: &'static str,
    value: impl ToString,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        reason: reason.into(),
    }
}
