//! Consumer groups (classic protocol).
//!
//! `state`: the per-group state machine, sans-I/O, driven by explicit time. The coordinator
//! shell (group placement on shards, the JoinGroup/SyncGroup/Heartbeat/LeaveGroup/offset
//! handlers, and the committed-offsets log) is not built yet, so no group API is advertised.

pub mod state;

#[cfg(test)]
mod tests;
