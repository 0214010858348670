//! Starting and stopping the shards of `petrel serve`.
//!
//! 1. The main thread loads (or creates) the metadata file and reserves the listen port with
//!    a bound, non-listening SO_REUSEPORT socket (so port 0 resolves once, for all shards).
//! 2. One executor per shard is spawned, pinned to its CPU. Each primes glommio's iopoll
//!    probe, opens the logs of the partitions it owns, binds the port, and reports ready.
//! 3. On SIGINT/SIGTERM the main thread sends every shard a shutdown job: the shard stops
//!    accepting, lets its connections finish the requests in flight, syncs and closes its
//!    logs, and its executor returns. The process exits 0.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use super::{Job, Shard, INBOX_CAPACITY};
use crate::cluster::metadata::ClusterMetadata;
use crate::config::BrokerConfig;

/// How often each shard applies retention to its partitions. Kafka's
/// `log.retention.check.interval.ms` default is 5 minutes; a check here only compares
/// in-memory segment sizes and times, and at this disk's write rates (130+ MB/s per log set)
/// 5 minutes meant tens of GB beyond `retention.bytes` between checks (a 30-minute soak
/// filled the disk).
const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How long a shutting-down shard waits for its connections to finish their requests.
const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("metadata file {path}: {reason}")]
    Metadata {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("shard {shard} failed to start: {reason}")]
    Shard { shard: usize, reason: String },
}

/// A running broker: its shards' inboxes and threads.
pub struct Broker {
    pub listen: SocketAddr,
    senders: Vec<async_channel::Sender<Job>>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
}

/// Loads the metadata file, or creates it for a new cluster (main thread, before any shard).
fn load_or_create_metadata(config: &BrokerConfig) -> Result<ClusterMetadata, StartError> {
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
fn reserve_port(address: SocketAddr) -> Result<(socket2::Socket, u16), StartError> {
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

/// Starts every shard and returns once all of them listen.
pub fn start(config: BrokerConfig) -> Result<Broker, StartError> {
    let metadata = Arc::new(load_or_create_metadata(&config)?);
    // A second broker on the same port would share it silently (SO_REUSEPORT): refuse early
    // if anything already listens there.
    if config.listen.port() != 0
        && std::net::TcpStream::connect_timeout(&config.listen, Duration::from_millis(200)).is_ok()
    {
        return Err(StartError::Listen {
            address: config.listen,
            source: std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "something already listens there",
            ),
        });
    }
    let (reservation, port) = reserve_port(config.listen)?;
    let mut config = config;
    if config.advertised.1 == 0 {
        config.advertised.1 = port;
    }
    let config = Arc::new(config);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.shards)
        .map(|_| async_channel::bounded::<Job>(INBOX_CAPACITY))
        .unzip();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, StartError>>();
    let mut threads = Vec::new();
    for (id, inbox) in receivers.into_iter().enumerate() {
        let cpu = config.cpus[id % config.cpus.len()];
        let (config, metadata, senders, ready) = (
            config.clone(),
            metadata.clone(),
            senders.clone(),
            ready_tx.clone(),
        );
        let spawned = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("petrel-shard-{id}"))
            .spawn(move || async move {
                let shard = Shard::new(id, config, port, senders, metadata);
                run_shard(shard, inbox, ready).await;
            })
            .map_err(|error| StartError::Shard {
                shard: id,
                reason: error.to_string(),
            })?;
        threads.push(spawned);
    }
    drop(ready_tx);
    let mut started = 0;
    let mut failure = None;
    while started < config.shards {
        match ready_rx.recv() {
            Ok(Ok(_)) => started += 1,
            Ok(Err(error)) => {
                failure = Some(error);
                break;
            }
            Err(_) => {
                failure = Some(StartError::Shard {
                    shard: started,
                    reason: "exited during start".into(),
                });
                break;
            }
        }
    }
    // Every shard listens now (or we are giving up): release the reservation.
    drop(reservation);
    let broker = Broker {
        listen: SocketAddr::new(config.listen.ip(), port),
        senders,
        threads,
    };
    if let Some(error) = failure {
        broker.stop();
        return Err(error);
    }
    Ok(broker)
}

impl Broker {
    /// Asks every shard to shut down gracefully and waits for their threads.
    pub fn stop(self) {
        for sender in &self.senders {
            let job: Job = Box::new(|shard| Box::pin(async move { begin_shutdown(&shard) }));
            // A shard that already exited has closed its inbox; nothing to tell it.
            let _ = sender.send_blocking(job);
        }
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a shard thread panicked during shutdown");
            }
        }
    }
}

fn begin_shutdown(shard: &Shard) {
    shard.shutting_down.set(true);
    shard.shutdown_started.notify(usize::MAX);
}

async fn run_shard(
    shard: Rc<Shard>,
    inbox: async_channel::Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<usize, StartError>>,
) {
    let id = shard.id;
    let fail = |reason: String| StartError::Shard { shard: id, reason };
    if let Err(error) = crate::storage::io::prime_iopoll_probe(&shard.config.data_dir).await {
        let _ = ready.send(Err(fail(error.to_string())));
        return;
    }
    // The inbox runs from the start: other shards may already send jobs (e.g. metadata).
    glommio::spawn_local(inbox_loop(shard.clone(), inbox)).detach();
    let metadata = shard.metadata();
    for topic in metadata.topics.values() {
        let owned: Vec<i32> = (0..topic.partitions)
            .filter(|&p| shard.owner_of(topic, p) == id)
            .collect();
        if let Err(error) = shard.open_partitions(topic, &owned, false).await {
            let _ = ready.send(Err(fail(format!("opening {}: {error}", topic.name))));
            return;
        }
    }
    let offsets_dir = shard
        .config
        .data_dir
        .join("__internal")
        .join(format!("consumer-offsets-{id}"));
    match crate::group::coordinator::GroupCoordinator::open(
        shard.storage.clone(),
        offsets_dir,
        shard.config.group_limits.clone(),
    )
    .await
    {
        Ok(coordinator) => *shard.groups.borrow_mut() = Some(coordinator),
        Err(error) => {
            let _ = ready.send(Err(fail(format!("loading committed offsets: {error}"))));
            return;
        }
    }
    let address = SocketAddr::new(shard.config.listen.ip(), shard.port);
    let listener = match glommio::net::TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            let _ = ready.send(Err(StartError::Listen {
                address,
                source: error.into(),
            }));
            return;
        }
    };
    let _ = ready.send(Ok(id));
    tracing::info!(shard = id, %address, partitions = shard.owned_partitions().len(), "shard ready");
    glommio::spawn_local(retention_loop(shard.clone())).detach();
    crate::server::accept_loop(shard.clone(), listener).await;
    // Shutting down: let connections finish what they have in flight.
    let deadline = std::time::Instant::now() + SHUTDOWN_DRAIN_TIMEOUT;
    while shard.connections.get() > 0 && std::time::Instant::now() < deadline {
        let closed = shard.connection_closed.listen();
        if shard.connections.get() == 0 {
            break;
        }
        futures_lite::future::or(closed, async {
            glommio::timer::sleep(Duration::from_millis(100)).await;
        })
        .await;
    }
    shard.close_all().await;
    tracing::info!(shard = id, "shard stopped");
}

async fn inbox_loop(shard: Rc<Shard>, inbox: async_channel::Receiver<Job>) {
    while let Ok(job) = inbox.recv().await {
        glommio::spawn_local(job(shard.clone())).detach();
    }
}

async fn retention_loop(shard: Rc<Shard>) {
    loop {
        let stop = shard.shutdown_started.listen();
        if shard.shutting_down.get() {
            return;
        }
        let slept = futures_lite::future::or(
            async {
                glommio::timer::sleep(RETENTION_CHECK_INTERVAL).await;
                true
            },
            async {
                stop.await;
                false
            },
        )
        .await;
        if !slept {
            return;
        }
        let now_ms = crate::server::now_ms();
        for partition in shard.owned_partitions() {
            if let Err(error) = partition.log.enforce_retention(now_ms).await {
                tracing::error!(log = %partition.log.name(), %error, "retention failed");
            }
        }
    }
}
