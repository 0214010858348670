//! Replication of a partition between its replicas, Kafka's ISR protocol, in one place:
//!
//! - `state`: a partition's replication state without I/O (leader or follower, the ISR,
//!   followers' progress, the high watermark, the KIP-841 rejoin rule) and its invariants;
//! - `leader`: the leader's side: a follower's fetch (membership, divergence, progress),
//!   the lag check, and the ISR changes asked of the controller;
//! - `follower`: the follower's fetch sessions (one per leader broker per shard): fetch,
//!   append, truncate, follow the leader's log start and high watermark.
//!
//! The Kafka edge only translates: the Fetch handler calls `leader::follower_fetch` for a
//! follower's partitions; the wire format of a follower's own fetch is
//! `protocol::replica_fetch`.

pub mod follower;
pub mod leader;
pub mod state;
