//! A broker-only node (not among the voters): it follows the voters' catalogue instead of
//! applying the metadata log itself. It asks a voter for the catalogue past the index it
//! has; the voter answers once it has applied something newer (a long poll), with the
//! whole catalogue. The last catalogue applied is stored (`__internal/catalogue`), so a
//! restart opens the replicas this broker holds, as a voter's journal replay does,
//! instead of taking them for leftovers of unknown topics.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use event_listener::Event;

use super::client::CALL_TIMEOUT;
use super::leader::CATALOGUE_WAIT;
use super::node::{ClusterNode, Role, StartError, RETRY_DELAY};
use crate::cluster::metadata::ClusterMetadata;
use crate::cluster::node::catalogue::{self, Catalogue};
use crate::cluster::node::rpc::{self, NodeCall, NodeError, NodeReply};
use crate::cluster::quorum::core::QuorumStatus;
use crate::cluster::quorum::voters::QuorumConfig;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::time;
use crate::shard::Shard;
use crate::storage::io;

/// The stored catalogue's file, under `__internal/`.
const CATALOGUE_FILE: &str = "catalogue";
/// The largest stored catalogue read back (a quorum frame's cap).
const CATALOGUE_BYTES_MAX: usize = 80 << 20;

/// The observer's part of the start: its status starts from the stored catalogue.
pub(super) async fn start(
    shard: &Shard,
    config: &QuorumConfig,
    catalogue: &Catalogue,
    shutdown: &Rc<Shutdown>,
) -> Result<(Role, async_channel::Receiver<()>), StartError> {
    tracing::info!(
        node = shard.config.node_id,
        "not among the quorum's voters: joining as a broker only"
    );
    // Nothing to close at the end but the links: "stopped" is the shutdown itself.
    let (done, stopped) = async_channel::bounded(1);
    let ended = shutdown.clone();
    crate::runtime::spawn(async move {
        ended.or_stopped(std::future::pending::<()>()).await;
        drop(done);
    })
    .detach();
    let mut status = QuorumStatus {
        leader: config.voters.keys().next().copied().unwrap_or(0),
        ..QuorumStatus::default()
    };
    let stored = load(&catalogue_path(shard))
        .await
        .map_err(StartError::StoredCatalogue)?;
    if let Some((index, stored)) = stored {
        catalogue.replace(stored);
        status.applied = index;
    }
    let role = Role::Observer {
        status: Cell::new(status),
        changed: Event::new(),
    };
    Ok((role, stopped))
}

impl ClusterNode {
    /// Keeps the catalogue in step with the voters', trying the voters in turn while one
    /// does not answer (the leader first: it is never behind).
    pub(super) async fn follow_catalogue(self: Rc<Self>) {
        let stored = catalogue_path(&self.shard);
        let voters: Vec<u64> = self.config.voters.keys().copied().collect();
        let mut next = 0usize;
        while !self.shutdown.is_started() {
            let known = self.status();
            let voter = if known.leader != 0 && next == 0 {
                known.leader
            } else {
                voters[next % voters.len().max(1)]
            };
            match self.ask_catalogue(voter, known.applied).await {
                Ok(NodeReply::Catalogue {
                    index,
                    leader,
                    image,
                }) => {
                    next = 0;
                    self.take_catalogue(&stored, voter, index, leader, image)
                        .await;
                }
                other => {
                    tracing::debug!(voter, answer = ?other, "no catalogue from this voter; trying another");
                    next += 1;
                    time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }

    async fn ask_catalogue(&self, voter: u64, after: u64) -> Result<NodeReply, NodeError> {
        let body = rpc::encode(&NodeCall::Catalogue { after });
        let bytes = self
            .peers
            .call(voter, &body, CATALOGUE_WAIT + CALL_TIMEOUT)
            .await
            .map_err(|error| NodeError::Failed(error.to_string()))?;
        rpc::decode(voter, &bytes)
    }

    /// Applies a voter's answer: a newer catalogue is stored, then taken.
    async fn take_catalogue(
        &self,
        stored: &Path,
        voter: u64,
        index: u64,
        leader: u64,
        image: Option<String>,
    ) {
        let decoded = image.map(|text| ClusterMetadata::decode(text.as_bytes()));
        match decoded {
            Some(Ok(newer)) if index > self.status().applied => {
                // Stored before it is applied: a replica opened from it is then known to
                // the next start. A failed write costs only that.
                if let Err(error) = store(stored, index, &newer).await {
                    tracing::warn!(%error, "storing the catalogue failed");
                }
                self.catalogue.replace(newer);
                self.observe(Some(index), leader);
            }
            Some(Err(error)) => {
                tracing::warn!(voter, %error, "undecodable catalogue from a voter")
            }
            _ => self.observe(None, leader),
        }
    }

    /// A broker-only node learns of a newer catalogue or another leader.
    fn observe(&self, index: Option<u64>, leader: u64) {
        let Role::Observer { status, changed } = &self.role else {
            return;
        };
        let mut seen = status.get();
        if let Some(index) = index {
            seen.applied = seen.applied.max(index);
        }
        if leader != 0 {
            seen.leader = leader;
        }
        status.set(seen);
        changed.notify(usize::MAX);
    }
}

fn catalogue_path(shard: &Shard) -> PathBuf {
    shard
        .config
        .data_dir
        .join("__internal")
        .join(CATALOGUE_FILE)
}

/// The stored catalogue with its index; `None` if there is none.
async fn load(path: &Path) -> Result<Option<(u64, ClusterMetadata)>, String> {
    let Some(bytes) = io::read_small_file(path, CATALOGUE_BYTES_MAX)
        .await
        .map_err(|error| error.to_string())?
    else {
        return Ok(None);
    };
    catalogue::decode_stored(&bytes)
        .map(Some)
        .map_err(|error| error.to_string())
}

/// Replaces the stored catalogue (temp file, fdatasync, rename, directory fsync).
async fn store(
    path: &Path,
    index: u64,
    catalogue: &ClusterMetadata,
) -> Result<(), crate::storage::StorageError> {
    if let Some(dir) = path.parent() {
        io::create_dir_all(dir).await?;
    }
    io::write_file_atomic(path, &catalogue::encode_stored(index, catalogue)).await
}
