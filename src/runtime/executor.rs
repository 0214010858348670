//! Executor bootstrap. Every glommio executor Petrel starts is built here, so the runtime's
//! traps are handled in one place.
//!
//! glommio 0.9.0 probes for iopoll support by reading the first DMA file a thread opens; the
//! probe misfires when that file is empty or opened write-only, after which every read fails
//! with EOPNOTSUPP (glommio #670). Every executor built here reads a non-empty file on the
//! data directory's device before its body runs, and `storage::io` opens every DMA file with
//! read access.

use std::future::Future;
use std::path::{Path, PathBuf};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start executor {name}: {reason}")]
    Spawn { name: String, reason: String },
    #[error("executor thread panicked")]
    Panicked,
    #[error("cannot prime the iopoll probe in {path}: {source}")]
    Probe {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `body` on one fresh, unpinned executor thread and returns its result, with the
/// iopoll probe primed on `data_dir`'s device first. For tools, tests and benchmarks; the
/// broker's shards start with [`spawn_pinned`].
pub fn run_single<T, F, Fut>(name: &str, data_dir: PathBuf, body: F) -> Result<T, RuntimeError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .spawn(move || async move {
            prime_iopoll_probe(&data_dir).await?;
            Ok::<T, RuntimeError>(body().await)
        })
        .map_err(|error| RuntimeError::Spawn {
            name: name.to_string(),
            reason: error.to_string(),
        })?;
    handle.join().map_err(|_| RuntimeError::Panicked)?
}

/// Starts an executor pinned to `cpu` that primes the iopoll probe on `data_dir`'s device,
/// then runs `body` with the probe's outcome (a shard reports a failed probe as its start
/// error instead of running).
pub fn spawn_pinned<F, Fut>(
    name: &str,
    cpu: usize,
    data_dir: PathBuf,
    body: F,
) -> Result<ExecutorJoinHandle<()>, RuntimeError>
where
    F: FnOnce(Result<(), RuntimeError>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(name)
        .spawn(move || async move {
            let primed = prime_iopoll_probe(&data_dir).await;
            body(primed).await
        })
        .map_err(|error| RuntimeError::Spawn {
            name: name.to_string(),
            reason: error.to_string(),
        })
}

/// The CPUs this process may run on (`sched_getaffinity`), in order.
#[allow(unsafe_code)] // the crate's one unsafe block: libc's CPU set has no safe wrapper
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Reads a freshly written, non-empty file in `dir` through a DMA open, so glommio's iopoll
/// probe sees a true answer. Must run once per executor thread before any other DMA open.
pub async fn prime_iopoll_probe(dir: &Path) -> Result<(), RuntimeError> {
    let failed = |source: std::io::Error| RuntimeError::Probe {
        path: dir.to_path_buf(),
        source,
    };
    let probe = dir.join(format!(".iopoll-probe-{}", thread_tag()));
    let (owned_dir, probe_path) = (dir.to_path_buf(), probe.clone());
    // std::fs on glommio's blocking pool, not on the executor: DMA cannot be used yet.
    glommio::executor()
        .spawn_blocking(move || {
            std::fs::create_dir_all(&owned_dir)?;
            std::fs::write(&probe_path, vec![0u8; 4096])
        })
        .await
        .map_err(failed)?;
    let file = glommio::io::OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(&probe)
        .await
        .map_err(|error| failed(error.into()))?;
    let read = file.read_at_aligned(0, 4096).await;
    file.close().await.map_err(|error| failed(error.into()))?;
    glommio::io::remove(&probe)
        .await
        .map_err(|error| failed(error.into()))?;
    read.map(drop).map_err(|error| failed(error.into()))
}

fn thread_tag() -> String {
    format!("{:?}", std::thread::current().id())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}
