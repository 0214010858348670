//! Petrel: a Kafka-compatible streaming broker on thread-per-core glommio shards.
//! See ARCHITECTURE.md for the map. Layers, each using only those below it (checked by
//! `tests/architecture.rs`):
//!
//! 1. `runtime` (executors, cross-shard messages, placement, clock, shutdown);
//!    `protocol`, `record_batch` (sans-I/O codecs).
//! 2. `storage` (the log engine).
//! 3. `cluster` (topic catalogue, controller), `group` (consumer groups, committed offsets).
//! 4. `config` (the broker's settings, built from the services' own settings types).
//! 5. `shard` (one shard's services, wired to the other shards).
//! 6. `server` (the Kafka edge: connections, the API table, handlers, error codes).
//! 7. `broker` (the composition root: start and stop).
#![deny(unsafe_code)]

pub mod broker;
pub mod cluster;
pub mod config;
pub mod group;
pub mod protocol;
pub mod record_batch;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod simulation;
pub mod storage;
pub mod testkit;
