//! Cluster-wide state and the services that change it: the catalogue (`metadata`,
//! `records`, `topic_config`), the controller (`controller`, `control`: topic changes and
//! producer ids, one at a time), leadership decisions (`election`, `reassignment`), a
//! cluster node's decisions (`node`: membership, ISR changes, the quorum leader's answers)
//! and the metadata quorum (`quorum`). The control plane on shard 0 runs them
//! (`shard::control_plane`, `shard::cluster`); every shard holds a read-only snapshot of the
//! catalogue that the control plane replaces on each change.

pub mod control;
pub mod controller;
pub mod election;
pub mod metadata;
pub mod node;
pub mod quorum;
pub mod reassignment;
pub mod records;
pub mod topic_config;
