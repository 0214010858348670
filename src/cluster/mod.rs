//! Cluster-wide state: which topics exist, their ids, partition counts and configs.
//! Shard 0 is the controller: it alone changes this state and persists it; every shard
//! holds a read-only snapshot that the controller replaces on each change.

pub mod control;
pub mod controller;
pub mod election;
pub mod metadata;
pub mod node;
pub mod quorum;
pub mod reassignment;
pub mod records;
pub mod topic_config;
