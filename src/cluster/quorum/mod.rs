//! The metadata quorum: Raft (raft-rs) over the controller voters, replicating the
//! metadata log that every node applies to its image of the cluster.

pub mod codec;
pub mod journal;
pub mod node;
pub mod store;
pub mod transport;
pub mod voters;

#[cfg(test)]
mod tests;
