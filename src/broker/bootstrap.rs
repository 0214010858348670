//! What the main thread does before any shard starts: the data directory (its lock, its
//! trash, the metadata file) and the listen port. The only `std::fs` of a running broker,
//! and it runs before any executor exists.

use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::error::StartError;
use crate::cluster::metadata::{self, ClusterMetadata};
use crate::config::BrokerConfig;
use crate::shard::{DELETED_DIR, ORPHANS_DIR};
use crate::storage::io::is_temp_of;

/// `<data dir>/.lock`: held (`flock`) by the one broker using the directory; holds its pid.
pub const LOCK_FILE: &str = ".lock";
/// Created and removed by the O_DIRECT check (`super::preflight`).
pub const O_DIRECT_PROBE_FILE: &str = ".o-direct-probe";
/// Prefix of the file each executor creates and removes to prime glommio's iopoll probe.
const IOPOLL_PROBE_PREFIX: &str = ".iopoll-probe-";

/// Takes the data directory for this process: an exclusive `flock` on `<dir>/.lock`, held
/// as long as the returned file is open (the kernel drops it when the process dies, even by
/// SIGKILL), then this process's pid written into it for whoever is refused next. The file
/// is truncated only once the lock is held, so a refused broker never erases the owner's pid.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StartError> {
    let path = dir.join(LOCK_FILE);
    let failed = |source: std::io::Error| StartError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            // Best effort: the owner may not have written its pid yet.
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            return Err(StartError::Locked {
                dir: dir.to_path_buf(),
                path,
                owner: if owner.is_empty() {
                    "pid not written yet".to_string()
                } else {
                    format!("pid {owner}")
                },
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(failed(source)),
    }
    file.set_len(0).map_err(failed)?;
    file.rewind().map_err(failed)?;
    writeln!(file, "{}", std::process::id()).map_err(failed)?;
    Ok(file)
}

/// Empties what earlier runs left to remove: partition directories of deleted topics
/// (`.deleted/`, renamed there before removal; a crash may have cut the removal short) and
/// temp files of metadata writes a crash interrupted. Only with the lock held.
pub fn purge_leftovers(dir: &Path) -> Result<(), StartError> {
    let failed = |path: PathBuf| move |source| StartError::DataDir { path, source };
    let trash = dir.join(DELETED_DIR);
    match std::fs::remove_dir_all(&trash) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(trash)(error)),
    }
    for name in entry_names(dir)? {
        if is_temp_of(&name, metadata::FILE_NAME) {
            let path = dir.join(&name);
            std::fs::remove_file(&path).map_err(failed(path))?;
        }
    }
    Ok(())
}

fn entry_names(dir: &Path) -> Result<Vec<String>, StartError> {
    let failed = |source| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        names.push(
            entry
                .map_err(failed)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok(names)
}

/// Entries of the data directory that are not data: the lock, probe files, metadata temp
/// files, the orphans and trash directories, and a file system's `lost+found`.
fn is_housekeeping(name: &str) -> bool {
    name == "lost+found"
        || name == LOCK_FILE
        || name == super::files::USERS_FILE
        || name == O_DIRECT_PROBE_FILE
        || name == ORPHANS_DIR
        || name == DELETED_DIR
        || name.starts_with(IOPOLL_PROBE_PREFIX)
        || is_temp_of(name, metadata::FILE_NAME)
        || name == super::files::META_FILE
        || is_temp_of(name, super::files::META_FILE)
}

/// Loads the metadata file, or creates it for a new cluster (main thread, before any shard).
///
/// A missing file over a directory that holds data is refused: starting an empty cluster
/// there would serve no topics although their logs are on disk, and creating one of them
/// again would start its log over. Rebuilding the catalogue from the directories is not
/// attempted: topic configs (retention.ms, ...) and topic ids exist only in the file.
pub fn load_or_create_metadata(config: &BrokerConfig) -> Result<ClusterMetadata, StartError> {
    let path = config.metadata_path();
    let failed = |reason: String| StartError::Metadata {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => ClusterMetadata::decode(&bytes).map_err(|e| failed(e.to_string())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let data: Vec<String> = entry_names(&config.data_dir)?
                .into_iter()
                .filter(|name| !is_housekeeping(name))
                .collect();
            if !data.is_empty() {
                return Err(StartError::MetadataMissing {
                    path,
                    dir: config.data_dir.clone(),
                    entries: data,
                });
            }
            let metadata = ClusterMetadata::new();
            super::files::write_file_blocking(&path, &metadata.encode())
                .map_err(|e| failed(e.to_string()))?;
            Ok(metadata)
        }
        Err(error) => Err(failed(error.to_string())),
    }
}

/// Binds (without listening) a SO_REUSEPORT socket on `address`, reserving the port.
/// Until the shards listen, a connection to it is refused, and clients retry.
pub fn reserve_port(address: SocketAddr) -> Result<(socket2::Socket, u16), StartError> {
    let failed = |source| StartError::Listen { address, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        None,
    )
    .map_err(failed)?;
    socket.set_reuse_port(true).map_err(failed)?;
    socket.bind(&address.into()).map_err(failed)?;
    let port = socket
        .local_addr()
        .map_err(failed)?
        .as_socket()
        .map(|a| a.port())
        .unwrap_or(address.port());
    Ok((socket, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::error::name_some;

    #[test]
    fn housekeeping_entries_are_not_data() {
        for name in [
            "lost+found",
            ".lock",
            ".o-direct-probe",
            ".iopoll-probe-ThreadId3",
            ".orphans",
            ".deleted",
            "petrel-metadata.json.tmp",
            "petrel-metadata.json.77-3.tmp",
        ] {
            assert!(is_housekeeping(name), "{name}");
        }
        for name in [
            "orders-0",
            "__internal",
            "petrel-metadata.json.bak",
            ".hidden",
        ] {
            assert!(!is_housekeeping(name), "{name}");
        }
        let names: Vec<String> = (0..7).map(|n| format!("t-{n}")).collect();
        assert_eq!(name_some(&names), "t-0, t-1, t-2, t-3, t-4, … and 2 more");
    }
}
