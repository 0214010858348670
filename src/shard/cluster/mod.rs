//! This broker as a node of a cluster (`--controller-quorum-voters`), on the controller
//! shard: the adapter that runs `cluster::node`'s decisions with the metadata quorum, its
//! links and the clock. `node.rs` holds the map of the other files.

mod broker;
mod client;
mod host;
mod leader;
mod node;
mod observer;
mod reconcile;
mod start;

pub use node::{ClusterNode, StartError};
