//! The main thread's file system calls on the data directory before any shard exists
//! (`std::fs`; shards use `storage::io`).

use std::io::Write;
use std::path::Path;

use super::error::StartError;

/// The node identity file (`identity.rs`): Kafka's name.
pub const META_FILE: &str = "meta.properties";
/// `petrel format --add-scram`'s bootstrap users in a data directory (`users`).
pub const USERS_FILE: &str = "bootstrap-users.json";

pub fn create_data_dir(dir: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Atomic replace with fsyncs: temp file, `fsync`, rename, directory `fsync`.
pub fn write_file_blocking(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = crate::storage::io::temp_path(path);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
