//! The storage engine's file system calls, all through glommio. Data files are opened
//! O_DIRECT (DMA); directory listing and creation, which glommio 0.9 lacks as async calls,
//! run on glommio's blocking thread pool so the shard's executor never blocks.

use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};

use super::error::{io_error, Result};
use super::faults::{self, FaultKind, FaultOp};

/// Opens a DMA file, always with read access.
///
/// glommio 0.9.0 probes for iopoll support by reading the first DMA file a thread opens;
/// a write-only open breaks that probe (glommio #670), so every open asks for reads too.
pub async fn open_dma(path: &Path, create: bool) -> Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .dma_open(path)
        .await
        .map_err(io_error("open", path))
}

pub async fn create_dir_all(dir: &Path) -> Result<()> {
    let owned = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || std::fs::create_dir_all(&owned))
        .await
        .map_err(io_error("create directory", dir))
}

/// Whether anything (a file, a directory, a link) exists at `path`.
pub async fn exists(path: &Path) -> Result<bool> {
    let owned = path.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || match std::fs::symlink_metadata(&owned) {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        })
        .await
        .map_err(io_error("stat", path))
}

/// Names of the entries of `dir`.
pub async fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let owned = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || -> std::io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&owned)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            Ok(names)
        })
        .await
        .map_err(io_error("list directory", dir))
}

/// `path`, made absolute against the working directory. glommio 0.9's `Directory::open`
/// passes dirfd -1 to `openat`, which fails with EBADF for relative paths.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
}

/// Makes creations, renames and deletions inside `dir` durable.
pub async fn sync_dir(dir: &Path) -> Result<()> {
    let dir = &absolute(dir);
    let directory = glommio::io::Directory::open(dir)
        .await
        .map_err(io_error("open directory", dir))?;
    let synced = match injected(FaultOp::Sync, dir, "fsync directory") {
        Ok(()) => directory
            .sync()
            .await
            .map_err(io_error("fsync directory", dir)),
        Err(error) => Err(error),
    };
    directory
        .close()
        .await
        .map_err(io_error("close directory", dir))?;
    synced
}

/// Removes `path`; a file that is already gone is not an error (recovery may repeat a
/// removal a crash interrupted).
pub async fn remove_file_if_exists(path: &Path) -> Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(error) => {
            let error: std::io::Error = error.into();
            if error.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(io_error("remove", path)(error))
            }
        }
    }
}

/// Removes `dir` and everything in it.
pub async fn remove_dir_all(dir: &Path) -> Result<()> {
    let owned = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || std::fs::remove_dir_all(&owned))
        .await
        .map_err(io_error("remove directory", dir))
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file:
/// write a temp file (O_DIRECT, padded to the block size, then truncated), `fdatasync` it,
/// rename it over `path`, and `fsync` the directory.
pub async fn write_file_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let temp = temp_path(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&temp)
        .await
        .map_err(io_error("create", &temp))?;
    let written = write_padded(&file, contents, &temp).await;
    let closed = file.close().await.map_err(io_error("close", &temp));
    written?;
    closed?;
    rename(&temp, path).await?;
    match path.parent() {
        Some(dir) => sync_dir(dir).await,
        None => Ok(()),
    }
}

async fn write_padded(file: &DmaFile, contents: &[u8], path: &Path) -> Result<()> {
    let padded = file.align_up(contents.len() as u64).max(file.alignment()) as usize;
    let mut buffer = file.alloc_dma_buffer(padded);
    buffer.as_bytes_mut()[..contents.len()].copy_from_slice(contents);
    buffer.as_bytes_mut()[contents.len()..].fill(0);
    let written = match faults::check(FaultOp::Write, path) {
        None => file.write_at(buffer, 0).await.map_err(std::io::Error::from),
        Some(kind) => Err(write_faulty(file, buffer, 0, kind).await),
    };
    written.map_err(io_error("write", path))?;
    truncate(file, path, contents.len() as u64).await?;
    fdatasync(file, path).await
}

/// Fails with the fault the installed plan (`storage::faults`) injects for `op`, if any.
fn injected(op: FaultOp, path: &Path, what: &'static str) -> Result<()> {
    match faults::check(op, path) {
        Some(kind) => Err(io_error(what, path)(kind.error())),
        None => Ok(()),
    }
}

/// `fdatasync` of a data file (every sync on the write path goes through here).
pub async fn fdatasync(file: &DmaFile, path: &Path) -> Result<()> {
    injected(FaultOp::Sync, path, "fdatasync")?;
    file.fdatasync().await.map_err(io_error("fdatasync", path))
}

/// Sets a data file's size.
pub async fn truncate(file: &DmaFile, path: &Path, size: u64) -> Result<()> {
    injected(FaultOp::Truncate, path, "truncate")?;
    file.truncate(size)
        .await
        .map_err(io_error("truncate", path))
}

/// Reserves blocks up to `end` without changing the file size (fallocate KEEP_SIZE).
pub async fn fallocate(file: &DmaFile, path: &Path, end: u64) -> Result<()> {
    injected(FaultOp::Allocate, path, "fallocate")?;
    file.pre_allocate(end, true)
        .await
        .map_err(io_error("fallocate", path))
}

/// Renames `from` (a file or a directory) to `to` on the same file system. The caller
/// syncs the directories involved.
pub async fn rename(from: &Path, to: &Path) -> Result<()> {
    injected(FaultOp::Rename, from, "rename")?;
    glommio::io::rename(from, to)
        .await
        .map_err(io_error("rename", from))
}

/// An injected write fault: a torn write stores the first half of `buffer` (in whole
/// alignment blocks) before failing; the others store nothing. Returns the error to report.
pub async fn write_faulty(
    file: &DmaFile,
    buffer: glommio::io::DmaBuffer,
    position: u64,
    kind: FaultKind,
) -> std::io::Error {
    if kind == FaultKind::Torn {
        let alignment = file.alignment().max(512) as usize;
        let prefix = buffer.len() / 2 / alignment * alignment;
        if prefix > 0 {
            let mut part = file.alloc_dma_buffer(prefix);
            part.as_bytes_mut()
                .copy_from_slice(&buffer.as_bytes()[..prefix]);
            if let Err(error) = file.write_at(part, position).await {
                return error.into();
            }
        }
    }
    kind.error()
}

/// A temp file name beside `path` that no other write uses: `<name>.<pid>-<n>.tmp`.
/// Writers of one file are serialized by their owners (a log's `checkpoint_lock`, the
/// controller's lock); a shared temp name would still turn any overlap into a failed
/// rename, or into one writer renaming the other's half-written file. Names end in
/// `.tmp`, which recovery removes.
pub fn temp_path(path: &Path) -> PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{write}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Whether `name` is a temp file `temp_path` made for the file named `file_name`.
pub fn is_temp_of(name: &str, file_name: &str) -> bool {
    name.strip_prefix(file_name)
        .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(".tmp"))
}

/// Reads a whole small file, or `None` if it does not exist.
pub async fn read_small_file(path: &Path, bytes_max: usize) -> Result<Option<Vec<u8>>> {
    let file = match OpenOptions::new().read(true).dma_open(path).await {
        Ok(file) => file,
        Err(error) => {
            let error: std::io::Error = error.into();
            if error.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(io_error("open", path)(error));
        }
    };
    let read = read_whole(&file, path, bytes_max).await;
    file.close().await.map_err(io_error("close", path))?;
    read.map(Some)
}

async fn read_whole(file: &DmaFile, path: &Path, bytes_max: usize) -> Result<Vec<u8>> {
    let size = file.file_size().await.map_err(io_error("stat", path))?;
    let size = usize::try_from(size).unwrap_or(usize::MAX).min(bytes_max);
    if size == 0 {
        return Ok(Vec::new());
    }
    let read = file
        .read_at(0, size)
        .await
        .map_err(io_error("read", path))?;
    Ok(read.to_vec())
}
