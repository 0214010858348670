//! Consumer groups (classic protocol) and committed offsets.
//!
//! - `state`: the per-group state machine, sans-I/O, driven by explicit time.
//! - `offsets`: the committed-offsets table and its log records, sans-I/O.
//! - `coordinator`: one per shard; owns the groups placed on it (by a hash of the group
//!   id), answers joins and syncs when the state machine completes them, applies timeouts,
//!   and persists offsets in the shard's `__consumer_offsets-<shard>` log.

pub mod coordinator;
pub mod offsets;
pub mod state;

#[cfg(test)]
mod tests;
