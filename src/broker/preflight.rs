//! Checks, on the main thread before any shard starts, that this host can run the shards,
//! so a refusal names its cause and its fix instead of surfacing as a shard thread that
//! ended (or a panic) during start:
//! - RLIMIT_MEMLOCK: glommio refuses to build an io_uring reactor below 512 KiB; a low soft
//!   limit is raised to the hard limit first.
//! - O_DIRECT on the data directory's file system (every data file is opened O_DIRECT).
//! - io_uring itself: an executor is built and run with an empty body.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::bootstrap::O_DIRECT_PROBE_FILE;
use super::error::StartError;
use crate::runtime::executor::{self, RuntimeError};

/// glommio's floor for RLIMIT_MEMLOCK (`MIN_MEMLOCK_LIMIT` in `Reactor::new`,
/// vendor/glommio/src/sys/uring.rs): below it every executor fails to start.
pub const MEMLOCK_BYTES_MIN: u64 = 512 * 1024;

pub fn check_host(data_dir: &Path) -> Result<(), StartError> {
    raise_memlock_limit()?;
    check_o_direct(data_dir)?;
    probe_io_uring(data_dir)
}

/// Raises the RLIMIT_MEMLOCK soft limit to the hard limit when it is below glommio's floor
/// (allowed without privileges); refuses if even the hard limit is too low.
fn raise_memlock_limit() -> Result<(), StartError> {
    let memlock = rlimit::Resource::MEMLOCK;
    let failed = |error: std::io::Error| StartError::MemLockUnknown { error };
    let (soft, hard) = memlock.get().map_err(failed)?;
    if soft >= MEMLOCK_BYTES_MIN {
        return Ok(());
    }
    if hard > soft {
        memlock.set(hard, hard).map_err(failed)?;
    }
    let (raised, hard) = memlock.get().map_err(failed)?;
    if raised < MEMLOCK_BYTES_MIN {
        return Err(StartError::MemLock { soft: raised, hard });
    }
    tracing::info!(
        from_bytes = soft,
        to_bytes = raised,
        "raised the RLIMIT_MEMLOCK soft limit to the hard limit"
    );
    Ok(())
}

/// Opens (creating) a file in `data_dir` with O_DIRECT, then removes it. EINVAL is the
/// kernel's answer for a file system without O_DIRECT (ramfs; tmpfs before Linux 6.6).
fn check_o_direct(data_dir: &Path) -> Result<(), StartError> {
    let probe = data_dir.join(O_DIRECT_PROBE_FILE);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    // The file may exist even when the open failed (created before O_DIRECT was refused).
    let _ = std::fs::remove_file(&probe);
    match opened {
        Ok(_) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Err(StartError::NoDirectIo {
            dir: data_dir.to_path_buf(),
            error,
        }),
        Err(source) => Err(StartError::DataDir {
            path: probe,
            source,
        }),
    }
}

/// Builds and runs one executor with an empty body, as every shard will. glommio panics
/// inside its io_uring probe when io_uring is unavailable ("kernel too old"); that panic
/// is reported as a start error with what to check, not printed as a crash.
fn probe_io_uring(data_dir: &Path) -> Result<(), StartError> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probed = executor::run_single("petrel-io-uring-probe", data_dir.to_path_buf(), || async {});
    std::panic::set_hook(previous_hook);
    match probed {
        Ok(()) => Ok(()),
        Err(RuntimeError::Probe { path, source }) => Err(StartError::DataDir { path, source }),
        Err(error) => Err(StartError::IoUring {
            reason: error.to_string(),
            disabled: read_trimmed("/proc/sys/kernel/io_uring_disabled"),
            seccomp: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|line| line.strip_prefix("Seccomp:"))
                        .map(|mode| mode.trim().to_string())
                })
                .unwrap_or_else(|| "unknown".to_string()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        }),
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "unknown".to_string(), |v| v.trim().to_string())
}
