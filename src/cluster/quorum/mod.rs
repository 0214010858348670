//! The metadata quorum: Raft (raft-rs) over the controller voters, replicating the
//! metadata log that every node applies to its image of the cluster.
//!
//! - `core`: the consensus without I/O (raft-rs's `RawNode` and the order of a `Ready`);
//! - `node`: runs the core on the controller shard with the journal, links and timers;
//! - `journal` (durable), `store` (in memory, read by raft-rs), `codec` (bounded encoding
//!   of Raft messages and journal records), `transport` (the TCP links), `voters`.

pub mod codec;
pub mod core;
pub mod journal;
pub mod node;
pub mod store;
pub mod transport;
pub mod voters;

#[cfg(test)]
mod tests;
