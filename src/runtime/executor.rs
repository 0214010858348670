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

/// A pinned shard's thread, to join at stop.
pub type ShardThread = ExecutorJoinHandle<()>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start executor {name}: {reason}")]
    Spawn { name: String, reason: String },
    /// The executor never ran its body (glommio could not build it) or its thread panicked.
    #[error("executor {name} failed: {reason}")]
    Failed { name: String, reason: String },
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
    handle.join().map_err(|error| RuntimeError::Failed {
        name: name.to_string(),
        reason: exit_reason(error),
    })?
}

/// Why an executor thread ended without its result, in words: glommio's error (a reactor
/// it could not build, e.g. below its RLIMIT_MEMLOCK floor) or the message of a panic.
pub fn exit_reason(error: glommio::GlommioError<()>) -> String {
    use glommio::{BuilderErrorKind, GlommioError, ReactorErrorKind};
    match error {
        GlommioError::BuilderError(BuilderErrorKind::ThreadPanic(payload)) => {
            format!("panicked: {}", panic_message(payload.as_ref()))
        }
        GlommioError::ReactorError(ReactorErrorKind::MemLockLimit(limit, needed)) => format!(
            "cannot build an io_uring reactor: RLIMIT_MEMLOCK is {limit} bytes, glommio needs \
             at least {needed}"
        ),
        other => format!("cannot build an io_uring reactor: {other}"),
    }
}

/// The text of a panic's payload (`panic!` with a message gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_string()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_executor_that_ends_early_says_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let failed = run_single("panicking", dir.path().into(), || async {
            panic!("the probe said no ({})", 7);
        });
        match failed {
            Err(RuntimeError::Failed { name, reason }) => {
                assert_eq!(name, "panicking");
                assert_eq!(reason, "panicked: the probe said no (7)");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let memlock = glommio::GlommioError::ReactorError(glommio::ReactorErrorKind::MemLockLimit(
            65_536, 524_288,
        ));
        assert!(exit_reason(memlock).contains("RLIMIT_MEMLOCK is 65536 bytes"));
        let payload: Box<dyn std::any::Any + Send> = Box::new(17u8);
        assert_eq!(
            panic_message(payload.as_ref()),
            "(a panic without a message)"
        );
    }

    /// glommio 0.9.0's blocking-pool thread panicked when the executor that asked was gone
    /// by the time its call finished (vendor/glommio/PETREL-PATCHES.md, patch 3).
    #[test]
    fn an_executor_may_end_while_a_blocking_call_runs() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        static POOL_PANICKED: AtomicBool = AtomicBool::new(false);
        let previous = Arc::new(std::panic::take_hook());
        let chained = previous.clone();
        std::panic::set_hook(Box::new(move |info| {
            if panic_message(info.payload()).contains("failed to send response") {
                POOL_PANICKED.store(true, Ordering::SeqCst);
            }
            chained(info);
        }));
        let dir = tempfile::tempdir().expect("temp dir");
        let ended = run_single("leaves-a-blocking-call", dir.path().into(), || async {
            glommio::spawn_local(
                glommio::executor()
                    .spawn_blocking(|| std::thread::sleep(std::time::Duration::from_millis(200))),
            )
            .detach();
            // Let the call reach the pool before the executor ends.
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        });
        assert!(ended.is_ok(), "{ended:?}");
        // The call finishes after its executor is gone.
        std::thread::sleep(std::time::Duration::from_millis(400));
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| previous(info)));
        assert!(
            !POOL_PANICKED.load(Ordering::SeqCst),
            "a blocking-pool thread panicked after its executor ended"
        );
    }
}
