//! Executor bootstrap. Every glommio executor Petrel starts is built here, so the
//! runtime's traps are handled in one place.

use std::future::Future;
use std::path::PathBuf;

use glommio::{LocalExecutorBuilder, Placement};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start executor: {0}")]
    Spawn(String),
    #[error("executor thread panicked")]
    Panicked,
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// Runs `body` on one fresh, unpinned executor thread and returns its result. Primes
/// glommio's iopoll probe on `data_dir`'s device before `body` opens any DMA file.
/// For tools, tests and benchmarks; the broker's pinned shards start elsewhere.
pub fn run_single<T, F, Fut>(name: &str, data_dir: PathBuf, body: F) -> Result<T, RuntimeError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .spawn(move || async move {
            crate::storage::io::prime_iopoll_probe(&data_dir).await?;
            Ok::<T, RuntimeError>(body().await)
        })
        .map_err(|error| RuntimeError::Spawn(error.to_string()))?;
    handle.join().map_err(|_| RuntimeError::Panicked)?
}
