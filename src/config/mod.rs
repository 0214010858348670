//! Broker configuration: command-line flags, `PETREL_*` environment variables and an
//! optional TOML file, in that order of precedence, over built-in defaults. Every value is
//! validated once, here, with a message that names the setting.
//!
//! - `args`: the settings as given (flags, environment, the TOML file merged under them);
//! - `resolve`: defaults applied and every value checked, into a `BrokerConfig`;
//! - `settings`: the validated `BrokerConfig` and what the services take from it;
//! - `listeners`: the client listeners and their security (TLS files);
//! - `quorum`: a cluster node's quorum settings; `files`: the file descriptor budget;
//! - `error`: what was wrong, naming the setting.

mod args;
mod error;
mod files;
mod listeners;
mod quorum;
mod resolve;
mod settings;

pub use args::ServeArgs;
pub use error::ConfigError;
pub use files::raise_fd_limit;
pub use listeners::{ListenerConfig, Listeners, SecurityProtocol};
pub use resolve::SHARDS_MAX;
pub use settings::{partition_dir, BrokerConfig, OffsetsTopicConfig};

#[cfg(test)]
mod tests;
