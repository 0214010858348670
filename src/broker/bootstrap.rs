//! What the main thread does before any shard starts: the data directory, the metadata
//! file, and the listen port. The only `std::fs` of a running broker, and it runs before
//! any executor exists.

use std::net::SocketAddr;

use super::StartError;
use crate::cluster::metadata::ClusterMetadata;
use crate::config::BrokerConfig;

/// Loads the metadata file, or creates it for a new cluster (main thread, before any shard).
pub fn load_or_create_metadata(config: &BrokerConfig) -> Result<ClusterMetadata, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let path = config.metadata_path();
    let failed = |reason: String| StartError::Metadata {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => ClusterMetadata::decode(&bytes).map_err(|e| failed(e.to_string())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let metadata = ClusterMetadata::new();
            write_metadata_blocking(&path, &metadata.encode())
                .map_err(|e| failed(e.to_string()))?;
            Ok(metadata)
        }
        Err(error) => Err(failed(error.to_string())),
    }
}

/// Atomic replace with fsyncs, for the main thread only (shards use `storage::io`).
fn write_metadata_blocking(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
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

/// Binds (without listening) a SO_REUSEPORT socket on `address`, reserving the port.
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
