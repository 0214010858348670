//! The composition root: starts the shards of `petrel serve`, wires each shard's services
//! and its Kafka listener, and stops them. The only module that knows every layer.
//!
//! 1. The main thread loads (or creates) the metadata file and reserves the listen port with
//!    a bound, non-listening SO_REUSEPORT socket (so port 0 resolves once, for all shards)
//!    (`bootstrap`).
//! 2. One executor per shard is spawned, pinned to its CPU (`runtime::executor`). Each primes
//!    glommio's iopoll probe, opens the logs of the partitions it owns, binds the port, and
//!    reports ready (`shard_main`).
//! 3. On SIGINT/SIGTERM the main thread sends every shard a shutdown job: the shard stops
//!    accepting, lets its connections finish the requests in flight, syncs and closes its
//!    logs, and its executor returns. The process exits 0.

mod bootstrap;
mod shard_main;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::BrokerConfig;
use crate::runtime::{executor, mesh};
use crate::shard::{Shard, ShardJob};

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
    #[error(
        "the topics hold {partitions} partitions, more than partitions-max ({partitions_max}); \
         raise --partitions-max (and with it the file descriptor limit) or delete topics"
    )]
    PartitionsMax {
        partitions: usize,
        partitions_max: usize,
    },
}

/// A running broker: its shards' inboxes and threads.
pub struct Broker {
    pub listen: SocketAddr,
    senders: Vec<async_channel::Sender<ShardJob>>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
}

/// Starts every shard and returns once all of them listen.
pub fn start(config: BrokerConfig) -> Result<Broker, StartError> {
    let metadata = Arc::new(bootstrap::load_or_create_metadata(&config)?);
    let partitions = metadata.partition_count();
    if partitions > config.partitions_max {
        return Err(StartError::PartitionsMax {
            partitions,
            partitions_max: config.partitions_max,
        });
    }
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
    let (reservation, port) = bootstrap::reserve_port(config.listen)?;
    let mut config = config;
    if config.advertised.1 == 0 {
        config.advertised.1 = port;
    }
    let config = Arc::new(config);
    let (senders, receivers) = mesh::inboxes::<Shard>(config.shards);
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
        let data_dir = config.data_dir.clone();
        let spawned = executor::spawn_pinned(
            &format!("petrel-shard-{id}"),
            cpu,
            data_dir,
            move |primed| async move {
                if let Err(error) = primed {
                    let reason = error.to_string();
                    let _ = ready.send(Err(StartError::Shard { shard: id, reason }));
                    return;
                }
                let shard = Shard::new(id, config, port, senders, metadata);
                shard_main::run_shard(shard, inbox, ready).await;
            },
        )
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
            let job: ShardJob = Box::new(|shard| Box::pin(async move { shard.shutdown.begin() }));
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
