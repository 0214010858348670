//! The storage engine: one append-only log per partition, on O_DIRECT files.
//!
//! Code map:
//! - `log`: a partition's segments, append / read / flush / retention / truncation / recovery.
//! - `segment`: one `.log` with its `.index` and `.timeindex`; scans and reads batches.
//! - `appender`: aligned DMA chunks, write-behind, partial-block rewrite.
//! - `index`, `checkpoint`, `cache`, `producer_state`: sans-I/O data structures.
//! - `io`: every file system call (glommio DMA files, blocking-pool directory calls).
//! - `files`: the shard's open segment files: budget, and a cache of sealed segments' files.
//! - `shard`: per-shard state (batch cache, open files).

mod appender;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod epochs;
pub mod error;
pub mod faults;
pub mod files;
pub mod index;
pub mod io;
pub mod log;
pub mod producer_state;
pub mod segment;
pub mod shard;

pub use config::{FlushPolicy, LogConfig, LogLimits, ShardStorageConfig};
pub use error::{Result, StorageError};
pub use log::{AppendOutcome, Durability, Log, LogRead};
pub use shard::ShardStorage;

#[cfg(test)]
mod tests;
