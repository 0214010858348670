//! Petrel: a Kafka-compatible streaming broker on thread-per-core glommio shards.
//! ARCHITECTURE.md holds the map and the one list of layers these modules follow (each
//! uses only the layers below it), which `tests/architecture.rs` checks against the code.
#![deny(unsafe_code)]

pub mod broker;
pub mod cluster;
pub mod config;
pub mod group;
pub mod protocol;
pub mod record_batch;
pub mod runtime;
pub mod security;
pub mod server;
pub mod shard;
pub mod simulation;
pub mod storage;
pub mod testkit;
