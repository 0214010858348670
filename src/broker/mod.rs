//! The composition root: starts the shards of `petrel serve`, wires each shard's services
//! and its Kafka listener, and stops them. The only module that knows every layer.
//!
//! 1. The main thread takes the data directory: creates it, locks `<data dir>/.lock` (one
//!    broker per directory), checks the host (RLIMIT_MEMLOCK, O_DIRECT, io_uring:
//!    `preflight`), installs the fatal-panic hook, empties the trash of deleted topics,
//!    loads (or creates) the metadata file, and reserves each listener's port with a bound,
//!    non-listening SO_REUSEPORT socket (so port 0 resolves once, for all shards)
//!    (`bootstrap`).
//! 2. One executor per shard is spawned, pinned to its CPU (`runtime::executor`). Each primes
//!    glommio's iopoll probe, opens the logs of the partitions it owns and its group
//!    coordinator, and reports Loaded (`shard_main`).
//! 3. Once every shard has loaded, the main thread opens the start gate: each shard binds
//!    its listeners, listens and reports Listening; then the reservations are dropped. So a port
//!    refuses connections until every partition is open, and a client never reaches a
//!    shard that forwards its request to one still loading.
//! 4. On SIGINT/SIGTERM the main thread sends every shard a shutdown job: the shard stops
//!    accepting, lets its connections finish the requests in flight, syncs and closes its
//!    logs, and its executor returns. The process exits 0. A panic on any thread after the
//!    pre-flight ends the process (exit 70): a shard that is gone would leave its
//!    partitions unanswered while the others kept running.

mod bootstrap;
mod error;
mod files;
pub mod identity;
mod preflight;
mod shard_main;
pub mod users;

pub use bootstrap::{lock_data_dir, LOCK_FILE};
pub use error::StartError;
use shard_main::{Phase, Report};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::metadata::{BrokerInfo, ClusterMetadata};
use crate::config::BrokerConfig;
use crate::runtime::placement::CONTROLLER_SHARD;
use crate::runtime::{executor, mesh, metrics};
use crate::shard::control_plane;
use crate::shard::{Shard, ShardJob};

/// Exit status after a panic on any thread (EX_SOFTWARE, "internal software error").
pub const EXIT_AFTER_PANIC: i32 = 70;

/// A panic injected into one shard, for tests of what a panicking shard does to the
/// process (`serve --inject-panic-shard`, hidden). `after` zero: while it starts.
#[derive(Debug, Clone, Copy)]
pub struct InjectedPanic {
    pub shard: usize,
    pub after: Duration,
}

/// A running broker: its shards' inboxes and threads, and the data directory's lock.
pub struct Broker {
    /// The first listener's address (the port resolved).
    pub listen: SocketAddr,
    /// Every listener's name and address.
    pub listeners: Vec<(String, SocketAddr)>,
    senders: Vec<async_channel::Sender<ShardJob>>,
    /// `None` once joined.
    threads: Vec<Option<executor::ShardThread>>,
    /// The `flock` on `<data dir>/.lock`; released when this is dropped, after `stop` has
    /// joined every shard thread.
    _lock: std::fs::File,
}

/// Starts every shard and returns once all of them listen.
pub fn start(
    config: BrokerConfig,
    injected_panic: Option<InjectedPanic>,
) -> Result<Broker, StartError> {
    files::create_data_dir(&config.data_dir)?;
    let lock = bootstrap::lock_data_dir(&config.data_dir)?;
    preflight::check_host(&config.data_dir)?;
    install_fatal_panic_hook();
    bootstrap::purge_leftovers(&config.data_dir)?;
    let identity = identity::check(&config)?;
    let bootstrap_users = users::read(&config.data_dir)?;
    let mut metadata = initial_metadata(&config, identity.as_ref())?;
    refuse_busy_addresses(&config)?;
    let partitions = metadata.partition_count();
    if partitions > config.partitions_max {
        return Err(StartError::PartitionsMax {
            partitions,
            partitions_max: config.partitions_max,
        });
    }
    let mut config = config;
    // Each listener's port, reserved: port 0 resolves here, once, for every shard.
    let mut reservations = Vec::new();
    for listener in &mut config.listeners.all {
        let (reservation, port) = bootstrap::reserve_port(listener.bind)?;
        listener.bind.set_port(port);
        if listener.advertised.1 == 0 {
            listener.advertised.1 = port;
        }
        reservations.push(reservation);
    }
    if identity.is_none() {
        let inter_broker = config.inter_broker_listener();
        metadata.brokers.insert(
            config.node_id,
            BrokerInfo {
                id: config.node_id,
                host: inter_broker.advertised.0.clone(),
                port: inter_broker.advertised.1,
                incarnation: uuid::Uuid::new_v4(),
                epoch: 0,
                fenced: false,
                listeners: config.endpoints(),
            },
        );
    }
    let config = Arc::new(config);
    let (senders, receivers) = mesh::inboxes::<Shard>(config.shards);
    let mut broker = Broker {
        listen: config.listeners.all[0].bind,
        listeners: config
            .listeners
            .all
            .iter()
            .map(|listener| (listener.name.clone(), listener.bind))
            .collect(),
        senders,
        threads: Vec::new(),
        _lock: lock,
    };
    // Closing the gate's channel (dropping `gate_open`) opens it for every shard.
    let (gate_open, gate) = async_channel::bounded::<()>(1);
    let launch = Launch {
        config,
        metadata: Arc::new(metadata),
        gate,
        injected_panic,
        bootstrap_users,
    };
    let started = broker.launch(launch, receivers, gate_open);
    // Every shard listens now (or we are giving up): release the reservations.
    drop(reservations);
    started.map(|()| broker)
}

/// The catalogue a start begins with: a cluster's comes from the metadata quorum once
/// shard 0 starts it (empty here); a single broker's from its metadata file.
fn initial_metadata(
    config: &BrokerConfig,
    identity: Option<&identity::NodeIdentity>,
) -> Result<ClusterMetadata, StartError> {
    let Some(identity) = identity else {
        let mut metadata = bootstrap::load_or_create_metadata(config)?;
        // A single broker: it holds every replica and lists itself (files written before
        // clusters existed name no replicas).
        metadata.fill_replicas(config.node_id);
        return Ok(metadata);
    };
    if config
        .data_dir
        .join(crate::cluster::metadata::FILE_NAME)
        .exists()
    {
        return Err(StartError::Identity(format!(
            "{} holds a single broker's metadata file too; a cluster node's data directory \
             holds none",
            config.data_dir.display()
        )));
    }
    let mut metadata = ClusterMetadata::new();
    metadata.cluster_id = identity.cluster_id.clone();
    Ok(metadata)
}

/// A second broker on the same port would share it silently (SO_REUSEPORT): refuse early
/// if anything already listens there, or on the quorum address.
fn refuse_busy_addresses(config: &BrokerConfig) -> Result<(), StartError> {
    let mut addresses = Vec::new();
    if let Some(quorum) = &config.quorum {
        addresses.push((
            quorum.listen,
            "something already listens on the quorum address",
        ));
    }
    for listener in &config.listeners.all {
        if listener.bind.port() != 0 {
            addresses.push((listener.bind, "something already listens there"));
        }
    }
    for (address, reason) in addresses {
        if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Err(StartError::Listen {
                address,
                source: std::io::Error::new(std::io::ErrorKind::AddrInUse, reason),
            });
        }
    }
    Ok(())
}

/// What every shard starts with.
struct Launch {
    config: Arc<BrokerConfig>,
    metadata: Arc<ClusterMetadata>,
    gate: async_channel::Receiver<()>,
    injected_panic: Option<InjectedPanic>,
    /// `petrel format --add-scram`'s users, offered by the controller shard at start.
    bootstrap_users: Option<Vec<crate::cluster::controller::ScramUpsertion>>,
}

impl Broker {
    /// Spawns one pinned executor per shard, waits until each has loaded, opens the gate,
    /// and waits until each listens. On failure, the shards started are stopped.
    fn launch(
        &mut self,
        launch: Launch,
        receivers: Vec<async_channel::Receiver<ShardJob>>,
        gate_open: async_channel::Sender<()>,
    ) -> Result<(), StartError> {
        let mut gate_open = Some(gate_open);
        let (report_tx, reports) = std::sync::mpsc::channel::<(usize, Report)>();
        // The control plane lives on the controller shard; every shard holds its handle.
        let (control_plane, control_inbox) = control_plane::handle::channel();
        let mut control_inbox = Some(control_inbox);
        let mut failure = None;
        for (id, inbox) in receivers.into_iter().enumerate() {
            let reporter = shard_main::Reporter::new(id, report_tx.clone());
            let start = shard_main::Start {
                reporter,
                gate: launch.gate.clone(),
                panic_after: launch
                    .injected_panic
                    .filter(|injected| injected.shard == id)
                    .map(|injected| injected.after),
                control_inbox: (id == CONTROLLER_SHARD)
                    .then(|| control_inbox.take())
                    .flatten(),
                bootstrap_users: (id == CONTROLLER_SHARD)
                    .then(|| launch.bootstrap_users.clone())
                    .flatten(),
            };
            let context = (
                launch.config.clone(),
                launch.metadata.clone(),
                self.senders.clone(),
                control_plane.clone(),
            );
            match spawn_shard(id, context, inbox, start) {
                Ok(thread) => self.threads.push(Some(thread)),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        drop(report_tx);
        let spawned = self.threads.len();
        let mut started = failure.map_or(Ok(()), Err);
        if started.is_ok() {
            started = self.await_reports(&reports, spawned, Phase::Loaded);
        }
        if started.is_ok() {
            drop(gate_open.take());
            started = self.await_reports(&reports, spawned, Phase::Listening);
        }
        if started.is_err() {
            // Shards still at the gate see the shutdown; the gate never opens for them
            // (`gate_open` lives until they are joined).
            self.stop_shards();
            drop(gate_open);
        }
        started
    }

    /// Waits until `shards` shards have sent `wanted`, or one fails. A shard's thread that
    /// ended without a word is joined for its reason (e.g. glommio could not build its
    /// reactor), so the error names the shard and the real cause.
    fn await_reports(
        &mut self,
        reports: &std::sync::mpsc::Receiver<(usize, Report)>,
        shards: usize,
        wanted: Phase,
    ) -> Result<(), StartError> {
        let mut reached = 0;
        while reached < shards {
            let Ok((shard, report)) = reports.recv() else {
                return Err(StartError::Shard {
                    shard: 0,
                    reason: "every shard exited during start without a report".into(),
                });
            };
            match report {
                Report::Failed(error) => return Err(error),
                Report::Exited => {
                    let reason = self.join(shard).unwrap_or_else(|| {
                        "its executor ended during start without a reason".into()
                    });
                    return Err(StartError::Shard { shard, reason });
                }
                Report::Reached(phase) => {
                    debug_assert_eq!(phase, wanted, "shard {shard} skipped a phase");
                    reached += 1;
                }
            }
        }
        Ok(())
    }

    /// Joins shard `shard`'s thread; returns why it failed, if it did.
    fn join(&mut self, shard: usize) -> Option<String> {
        let thread = self.threads.get_mut(shard)?.take()?;
        thread.join().err().map(executor::exit_reason)
    }

    /// Every shard's metrics, merged: each shard takes its own snapshot on its own thread
    /// (`runtime::metrics::gather`), and the snapshots are summed here. Blocks the calling
    /// thread (never a shard's) until every running shard has answered.
    pub fn gather_metrics(&self) -> metrics::Snapshot {
        let mut total = metrics::Snapshot::default();
        for sender in &self.senders {
            let (reply, answer) = futures_channel::oneshot::channel();
            let job: ShardJob = Box::new(move |_shard| {
                Box::pin(async move {
                    let _ = reply.send(metrics::gather());
                })
            });
            if sender.send_blocking(job).is_err() {
                continue; // a shard that stopped has nothing to add
            }
            if let Ok(snapshot) = futures_lite::future::block_on(answer) {
                total.merge(snapshot);
            }
        }
        total
    }

    /// Asks every shard to shut down gracefully and waits for their threads.
    pub fn stop(mut self) {
        self.stop_shards();
    }

    fn stop_shards(&mut self) {
        for sender in &self.senders {
            let job: ShardJob = Box::new(|shard| Box::pin(async move { shard.shutdown.begin() }));
            // A shard that already exited has closed its inbox; nothing to tell it.
            let _ = sender.send_blocking(job);
        }
        for shard in 0..self.threads.len() {
            if let Some(reason) = self.join(shard) {
                tracing::error!(shard, "shard stopped with an error: {reason}");
            }
        }
    }
}

/// The shard's services on its own pinned executor: a shard's context (settings,
/// catalogue, the mesh's inboxes, the control plane's handle), its inbox, and how it starts.
fn spawn_shard(
    id: usize,
    context: (
        Arc<BrokerConfig>,
        Arc<ClusterMetadata>,
        Vec<async_channel::Sender<ShardJob>>,
        control_plane::ControlPlaneHandle,
    ),
    inbox: async_channel::Receiver<ShardJob>,
    start: shard_main::Start,
) -> Result<executor::ShardThread, StartError> {
    let (config, metadata, senders, control_plane) = context;
    let cpu = config.cpus[id % config.cpus.len()];
    let data_dir = config.data_dir.clone();
    executor::spawn_pinned(
        &format!("petrel-shard-{id}"),
        cpu,
        data_dir,
        move |primed| async move {
            if let Err(error) = primed {
                let reason = error.to_string();
                start
                    .reporter
                    .failed(StartError::Shard { shard: id, reason });
                return;
            }
            let shard = Shard::new(id, config, senders, metadata, control_plane);
            shard_main::run_shard(shard, inbox, start).await;
        },
    )
    .map_err(|error| StartError::Shard {
        shard: id,
        reason: error.to_string(),
    })
}

/// From here on a panic on any thread ends the process, after the default hook has printed
/// it: a shard that is gone would leave its partitions and groups unanswered while the
/// process kept running, and a restart recovers every log as after a crash.
fn install_fatal_panic_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        eprintln!("petrel: fatal: thread {name} panicked; exiting");
        std::process::exit(EXIT_AFTER_PANIC);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_ends_without_a_report_is_named_with_its_reason_not_waited_for() {
        let temp = tempfile::tempdir().expect("temp dir");
        let (report_tx, reports) = std::sync::mpsc::channel();
        let mut broker = Broker {
            listen: "127.0.0.1:0".parse().expect("address"),
            listeners: Vec::new(),
            senders: Vec::new(),
            threads: Vec::new(),
            _lock: std::fs::File::create(temp.path().join(".lock")).expect("lock file"),
        };
        // Shard 0 loads and keeps running; shard 1's executor ends by a panic before it
        // reports anything. Waiting for both to load must not hang on shard 0.
        let (release, held) = async_channel::bounded::<()>(1);
        for id in 0..2 {
            let mut reporter = shard_main::Reporter::new(id, report_tx.clone());
            let held = held.clone();
            let cpu = executor::allowed_cpus()[0];
            let thread = executor::spawn_pinned(
                &format!("test-shard-{id}"),
                cpu,
                temp.path().to_path_buf(),
                move |_primed| async move {
                    if id == 1 {
                        panic!("shard {id} gave up");
                    }
                    reporter.reached(Phase::Loaded);
                    let _ = held.recv().await;
                    reporter.called_off();
                },
            )
            .expect("spawn");
            broker.threads.push(Some(thread));
        }
        drop(report_tx);
        let waited = broker.await_reports(&reports, 2, Phase::Loaded);
        match waited {
            Err(StartError::Shard { shard: 1, reason }) => {
                assert_eq!(reason, "panicked: shard 1 gave up");
            }
            other => panic!("expected shard 1's failure, got {other:?}"),
        }
        drop(release);
        broker.stop();
    }
}
