//! The runtime layer, the bottom of the broker: executors and their glommio traps, messages
//! between shards, where partitions and groups are placed, time, sockets, metrics and the
//! shutdown signal. It knows nothing of Kafka, storage or the broker's services; every
//! other layer may use it. It is the one layer that names glommio for tasks, timers and
//! sockets (storage uses glommio's DMA files directly), so the seams a test or a new
//! transport replaces are here.
//!
//! - `executor`: every glommio executor Petrel starts (pinned shards, single-executor tools),
//!   each with the iopoll probe primed before any other DMA open.
//! - `mesh`: one bounded inbox per shard and `run_on` / `run_on_each`, generic over the
//!   per-shard context a job receives; `Service`, one inbox for a per-broker service.
//! - `placement`: the hash rules that give each partition and each group one owning shard.
//! - `time`: now, sleeps, timeouts and deadlines, replaceable by a fake clock in tests.
//! - `net`: the stream seam (listen, accept, connect, bounded reads) under every socket.
//! - `metrics`: per-shard counters and histograms, gathered on demand.
//! - `shutdown`: a flag and an event that long-running loops select on.

pub mod executor;
pub mod mesh;
pub mod metrics;
pub mod net;
pub mod placement;
pub mod shutdown;
pub mod time;
pub mod tls;

pub use executor::{run_single, RuntimeError};
pub use mesh::{Mesh, ShardGone};

/// A task of this shard's executor; dropping it cancels it unless detached.
pub use glommio::Task;

/// Single-threaded synchronization of a shard: a counting semaphore (a connection's byte
/// budget) and a bounded channel between its tasks.
pub mod sync {
    pub use glommio::channels::local_channel;
    pub use glommio::sync::{Semaphore, StaticPermit};
}

/// Runs `future` as a new task on this shard's executor.
pub fn spawn<T: 'static>(future: impl std::future::Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(future)
}

/// Lets other tasks of this shard run if this one has run long enough (a long loop).
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}
