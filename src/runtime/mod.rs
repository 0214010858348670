//! The runtime layer, the bottom of the broker: executors and their glommio traps, messages
//! between shards, where partitions and groups are placed, the wall clock, and the shutdown
//! signal. It knows nothing of Kafka, storage or the broker's services; every other layer
//! may use it.
//!
//! - `executor`: every glommio executor Petrel starts (pinned shards, single-executor tools),
//!   each with the iopoll probe primed before any other DMA open.
//! - `mesh`: one bounded inbox per shard and `run_on` / `run_on_each`, generic over the
//!   per-shard context a job receives.
//! - `placement`: the hash rules that give each partition and each group one owning shard.
//! - `clock`: wall-clock milliseconds (Kafka timestamps, expiry times).
//! - `shutdown`: a flag and an event that long-running loops select on.

pub mod clock;
pub mod executor;
pub mod mesh;
pub mod placement;
pub mod shutdown;

pub use executor::{run_single, RuntimeError};
pub use mesh::{Mesh, ShardGone};
