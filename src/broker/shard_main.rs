//! The life of one shard after its executor starts: open the partitions it owns and its
//! group coordinator, wait at the start gate for every other shard to have done the same,
//! listen, serve until shutdown, drain connections, close every log.

use std::rc::Rc;
use std::time::Duration;

use super::error::StartError;
use crate::cluster::control::ControlCall;
use crate::cluster::controller::ScramUpsertion;
use crate::group::coordinator::GroupCoordinator;
use crate::runtime::mesh;
use crate::runtime::net::Listener;
use crate::runtime::time::{self, Deadline};
use crate::shard::cluster::ClusterNode;
use crate::shard::control_plane::handle::Request;
use crate::shard::control_plane::plane::{self, ControlPlane};
use crate::shard::control_plane::single::{self, SingleBroker};
use crate::shard::{Shard, ShardJob};

/// How far a starting shard has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Its partitions and group coordinator are open; it waits at the start gate.
    Loaded,
    /// It listens on the port.
    Listening,
}

/// What a starting shard tells the main thread.
pub(super) enum Report {
    Reached(Phase),
    Failed(StartError),
    /// Its executor ended (or never ran its body) without reporting: the main thread joins
    /// the thread for the reason.
    Exited,
}

/// How often each shard applies retention to its partitions. Kafka's
/// `log.retention.check.interval.ms` default is 5 minutes; a check here only compares
/// in-memory segment sizes and times, and at this disk's write rates (130+ MB/s per log set)
/// 5 minutes meant tens of GB beyond `retention.bytes` between checks (a 30-minute soak
/// filled the disk).
/// How long a shutting-down shard waits for its connections to finish their requests.
const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often each shard reopens its failed logs (`Shard::reopen_failed_logs`). Short, so a
/// partition whose disk filled up works again soon after space is freed; a check is a scan
/// of the shard's partition table when nothing failed.
const FAILED_LOG_REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// A shard's line to the main thread during start. If it is dropped before the shard
/// listens or reports a failure (the executor never ran the shard, or its body ended
/// early), it reports `Exited`, so the main thread never waits for a shard that is gone.
pub struct Reporter {
    shard: usize,
    sender: std::sync::mpsc::Sender<(usize, Report)>,
    finished: bool,
}

impl Reporter {
    pub fn new(shard: usize, sender: std::sync::mpsc::Sender<(usize, Report)>) -> Reporter {
        Reporter {
            shard,
            sender,
            finished: false,
        }
    }

    fn send(&self, report: Report) {
        // The main thread may have given up on the start already.
        let _ = self.sender.send((self.shard, report));
    }

    pub(super) fn reached(&mut self, phase: Phase) {
        self.finished = phase == Phase::Listening;
        self.send(Report::Reached(phase));
    }

    pub fn failed(mut self, error: StartError) {
        self.finished = true;
        self.send(Report::Failed(error));
    }

    /// The start was called off (another shard failed): nothing more to report.
    pub(super) fn called_off(mut self) {
        self.finished = true;
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if !self.finished {
            self.send(Report::Exited);
        }
    }
}

/// What a shard needs for its start.
pub struct Start {
    pub reporter: Reporter,
    /// Closed by the main thread once every shard has loaded.
    pub gate: async_channel::Receiver<()>,
    /// `serve --inject-panic-shard`: panic this long after listening (zero: while loading).
    pub panic_after: Option<Duration>,
    /// The controller shard only: the control plane's inbox, served once it is built.
    pub control_inbox: Option<async_channel::Receiver<Request>>,
    /// The controller shard only: bootstrap users to offer the controller
    /// (`broker::users`).
    pub bootstrap_users: Option<Vec<ScramUpsertion>>,
}

/// Runs one shard from start to stop: loads, waits at the gate, listens, serves.
pub async fn run_shard(shard: Rc<Shard>, inbox: async_channel::Receiver<ShardJob>, start: Start) {
    let Start {
        mut reporter,
        gate,
        panic_after,
        control_inbox,
        bootstrap_users,
    } = start;
    // The inbox runs from the start: other shards may already send jobs (e.g. metadata).
    let inbox_handle = inbox.clone();
    crate::runtime::spawn(mesh::serve_inbox(shard.clone(), inbox)).detach();
    if let Some(plan) = shard.config.inject_faults.clone() {
        tracing::warn!(
            shard = shard.id,
            ?plan,
            "storage fault injection is on (tests only)"
        );
        crate::storage::faults::install(plan);
    }
    if panic_after == Some(Duration::ZERO) {
        panic!("injected panic in shard {} while it starts", shard.id);
    }
    let control_plane = match open_services(&shard, control_inbox, bootstrap_users).await {
        Ok(control_plane) => control_plane,
        Err(error) => {
            reporter.failed(error);
            shard.close_all().await;
            return;
        }
    };
    reporter.reached(Phase::Loaded);
    // A connection to any shard may be forwarded to any other: no shard listens before
    // every shard has its partitions open.
    if shard.shutdown.or_stopped(gate.recv()).await.is_none() {
        reporter.called_off();
        shard.close_all().await;
        return;
    }
    let listeners = match listen(&shard) {
        Ok(listeners) => listeners,
        Err(error) => {
            reporter.failed(error);
            shard.close_all().await;
            return;
        }
    };
    reporter.reached(Phase::Listening);
    tracing::info!(
        shard = shard.id,
        listeners = shard.config.listeners.all.len(),
        partitions = shard.owned_partitions().len(),
        "shard ready"
    );
    if let Some(after) = panic_after {
        let id = shard.id;
        crate::runtime::spawn(async move {
            time::sleep(after).await;
            panic!("injected panic in shard {id}, {after:?} after it started");
        })
        .detach();
    }
    crate::runtime::spawn(retention_loop(shard.clone())).detach();
    if shard.config.quorum.is_some() {
        crate::runtime::spawn(crate::shard::replication::follower::run(shard.clone())).detach();
        crate::runtime::spawn(crate::shard::replication::leader::check_lag(shard.clone())).detach();
        crate::runtime::spawn(crate::shard::groups::run(shard.clone())).detach();
    }
    crate::runtime::spawn(reopen_failed_logs_loop(shard.clone())).detach();
    let accepting = listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            crate::runtime::spawn(crate::server::accept_loop(shard.clone(), listener, index))
        })
        .collect::<Vec<_>>();
    for accept_loop in accepting {
        accept_loop.await;
    }
    drain_connections(&shard).await;
    if let Some(control_plane) = control_plane {
        // A cluster node: fenced (or given up on), then the quorum node's journal closes.
        control_plane.stopped().await;
    }
    shard.close_all().await;
    // Other shards may still be draining: a job they send from now on, or sent and not yet
    // run, fails at once (ShardGone: its reply is dropped) instead of waiting for an answer
    // this stopped shard will never give (a fetch on a draining shard that read from a
    // stopped one held its connection, and the stop, for the whole drain timeout).
    inbox_handle.close();
    while inbox_handle.try_recv().is_ok() {}
    tracing::info!(shard = shard.id, "shard stopped");
}

/// Opens the logs of the partitions this shard owns and its group coordinator; on the
/// controller shard (the one given the control plane's inbox), also the control plane,
/// which it then serves (returned).
async fn open_services(
    shard: &Rc<Shard>,
    control_inbox: Option<async_channel::Receiver<Request>>,
    bootstrap_users: Option<Vec<ScramUpsertion>>,
) -> Result<Option<Rc<ControlPlane>>, StartError> {
    let id = shard.id;
    let fail = |reason: String| StartError::Shard { shard: id, reason };
    let metadata = shard.metadata();
    // In a cluster the catalogue comes from the quorum: the controller shard opens this
    // broker's replicas below, once its quorum node has replayed the journal.
    let single = shard.config.quorum.is_none();
    for topic in metadata.topics().values().filter(|_| single) {
        let owned: Vec<i32> = (0..topic.partitions)
            .filter(|&p| shard.owner_of(topic, p) == id)
            .collect();
        shard
            .open_partitions(topic, &owned, false)
            .await
            .map_err(|error| fail(format!("opening {}: {error}", topic.name)))?;
    }
    // A single broker keeps each shard's committed offsets in a local log; a cluster's
    // live in `__consumer_offsets` (`shard::groups::run` loads them as leadership comes).
    if single {
        let offsets_dir = shard
            .config
            .data_dir
            .join("__internal")
            .join(format!("consumer-offsets-{id}"));
        let limits = shard.config.group_limits.clone();
        let coordinator = GroupCoordinator::open(shard.storage.clone(), offsets_dir, limits)
            .await
            .map_err(|error| fail(format!("loading committed offsets: {error}")))?;
        shard.install_local_coordinator(coordinator);
    }
    let Some(inbox) = control_inbox else {
        return Ok(None);
    };
    let controller = single::controller_of(&shard.config);
    let plane = if single {
        ControlPlane::Single(SingleBroker::new(shard.clone(), controller))
    } else {
        let node = ClusterNode::start(shard, metadata.cluster_id.clone(), controller)
            .await
            .map_err(|error| StartError::Cluster(error.to_string()))?;
        ControlPlane::Cluster(node)
    };
    let plane = Rc::new(plane);
    crate::runtime::spawn(plane::serve(plane.clone(), inbox)).detach();
    if let Some(users) = bootstrap_users {
        if single {
            // Before any listener opens: the first client may log in as one of them.
            offer_bootstrap_users(shard, users)
                .await
                .map_err(|error| fail(format!("bootstrap users: {error}")))?;
        } else {
            // Through the quorum's leader, which may change meanwhile: until it answers.
            let shard = shard.clone();
            crate::runtime::spawn(async move {
                while !shard.shutdown.is_started() {
                    match offer_bootstrap_users(&shard, users.clone()).await {
                        Ok(()) => return,
                        Err(error) => {
                            tracing::info!(%error, "bootstrap users not applied yet; retrying")
                        }
                    }
                    time::sleep(Duration::from_secs(1)).await;
                }
            })
            .detach();
        }
    }
    Ok(Some(plane))
}

/// Offers `petrel format --add-scram`'s users to the controller, which applies them once
/// per catalogue.
async fn offer_bootstrap_users(
    shard: &Rc<Shard>,
    users: Vec<ScramUpsertion>,
) -> Result<(), String> {
    let reply = shard
        .control(ControlCall::BootstrapUsers(users))
        .await
        .map_err(|error| error.to_string())?;
    match reply.into_done(1).pop() {
        Some(Err(error)) => Err(error.to_string()),
        _ => Ok(()),
    }
}

/// Binds every client listener (their ports reserved, so never port 0 here).
fn listen(shard: &Shard) -> Result<Vec<Listener>, StartError> {
    shard
        .config
        .listeners
        .all
        .iter()
        .map(|listener| {
            let address = listener.bind;
            Listener::bind(address).map_err(|source| StartError::Listen { address, source })
        })
        .collect()
}

/// Shutting down: lets connections finish what they have in flight, for a while.
async fn drain_connections(shard: &Shard) {
    let deadline = Deadline::after(SHUTDOWN_DRAIN_TIMEOUT);
    let drained = time::wait_until(&shard.connection_closed, deadline, || {
        (shard.connections.get() == 0).then_some(())
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            shard = shard.id,
            connections = shard.connections.get(),
            "connections still busy at the end of the drain; closing them"
        );
    }
}

/// Applies retention to every partition this shard owns, every
/// `--log-retention-check-interval-ms`, until shutdown.
async fn retention_loop(shard: Rc<Shard>) {
    let interval = shard.config.retention_check_interval;
    let tick = || time::sleep(interval);
    while shard.shutdown.or_stopped(tick()).await.is_some() {
        let now_ms = crate::runtime::time::now_ms();
        for partition in shard.owned_partitions() {
            if let Err(error) = partition.log.enforce_retention(now_ms).await {
                tracing::error!(log = %partition.log.name(), %error, "retention failed");
            }
        }
    }
}

/// Reopens this shard's failed logs every `FAILED_LOG_REOPEN_INTERVAL`, until shutdown.
async fn reopen_failed_logs_loop(shard: Rc<Shard>) {
    let tick = || time::sleep(FAILED_LOG_REOPEN_INTERVAL);
    while shard.shutdown.or_stopped(tick()).await.is_some() {
        shard.reopen_failed_logs().await;
    }
}
