//! The controller: topic creation, deletion, partition growth, config changes and producer
//! ids. One change at a time (`Controller::lock`); the broker runs the one controller on
//! shard 0 (`runtime::placement::CONTROLLER_SHARD`) and other shards reach it by message.
//!
//! The controller decides and persists; it does not know how partitions are spread over
//! shards. It acts on them through a [`TopicHost`], which the shard layer implements.
//!
//! Order of a creation (and of partition growth): open the new logs on their owning shards,
//! persist the metadata file, then give every shard the new snapshot. If a log cannot be
//! opened, the logs this change opened are closed and deleted again. A crash before the
//! persist leaves orphan directories, which a later creation of the same name moves aside
//! (`<data dir>/.orphans/`), never deletes. Deletion persists first, then deletes the logs,
//! so a deleted topic never comes back.
//!
//! - `frontend`: the controller itself: its turn (one change at a time), producer ids,
//!   publishing a change through the host;
//! - `topics`: creation (and auto-creation) and deletion; `partitions`: growth,
//!   reassignment, elections; `configs`: topic config changes; `users`: SCRAM credentials;
//!   `acls`: ACL bindings; `quotas`: client quotas;
//! - `assignment`: where a topic's replicas go; `requests`: the operations' inputs;
//! - `host`: what the controller acts on; `error`: why an operation failed.

mod acls;
mod assignment;
mod configs;
mod error;
mod frontend;
mod host;
mod partitions;
mod quotas;
mod requests;
mod topics;
mod users;

pub use error::{Outcome, TopicError};
pub use frontend::{Controller, ControllerSettings, TopicIds};
pub use host::TopicHost;
pub use quotas::QuotaAlteration;
pub use requests::{
    users_named, ConfigEdit, PartitionGrowth, PartitionReassignment, ScramDeletion, ScramUpsertion,
    TopicConfigChange, TopicRef, TopicSpec,
};
pub use topics::auto_create_specs;

#[cfg(test)]
mod tests;
