//! Petrel: a Kafka-compatible streaming broker on thread-per-core glommio shards.
//! See ARCHITECTURE.md for the map.

pub mod cluster;
pub mod config;
pub mod group;
pub mod protocol;
pub mod record_batch;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod storage;
pub mod testkit;
